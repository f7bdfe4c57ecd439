"""Device choices live in one explicit object: resolution from recipe + flags, per-model
effect (two models in one process, different options), no hidden process-wide switches."""
import re

import numpy as np
import pytest
from mindspore import Tensor

from mindyolox import build_model, load_config
from mindyolox.errors import ConfigError
from mindyolox.models.blocks import BaseConv
from mindyolox.models.conv import Conv2d
from mindyolox.options import DeviceOptions, resolve_options

from .conftest import ROOT


def _nano(*overrides):
    return load_config(ROOT / "configs" / "yolox-nano.yaml", list(overrides))


def test_resolution_from_recipe_and_flags():
    cpu = resolve_options(_nano())  # the test session runs on CPU
    assert cpu == DeviceOptions("CPU", "im2col", "float64", True, "O0", cpu_kernels=True)  # g++ is here
    assert not resolve_options(_nano(), device="GPU").cpu_kernels
    assert not resolve_options(_nano("runtime.cpu_kernels=false")).cpu_kernels
    gpu = resolve_options(_nano(), device="GPU")
    assert (gpu.conv, gpu.decode_exp) == ("native", "float32")
    o = resolve_options(_nano("runtime.conv=native", "runtime.decode_exp=float32", "train.amp_level=O2"))
    assert (o.conv, o.decode_exp, o.amp_level) == ("native", "float32", "O2")
    assert o.fold_bn is False  # BN stays a float32 cell under mixed precision
    assert resolve_options(_nano("runtime.conv=native"), conv="im2col").conv == "im2col"  # the flag wins
    assert DeviceOptions.from_dict(o.to_dict()) == o
    with pytest.raises(ConfigError, match="runtime.conv"):
        _nano("runtime.conv=winograd")
    with pytest.raises(ConfigError, match="device"):
        resolve_options(_nano(), device="TPU")


@pytest.mark.slow
def test_two_models_in_one_process_follow_their_own_options():
    cfg = _nano()
    a = build_model(cfg, DeviceOptions(conv="im2col", decode_exp="float64", fold_bn=False))
    b = build_model(cfg, DeviceOptions(conv="native", decode_exp="float32", fold_bn=True))
    for pa, pb in zip(a.get_parameters(), b.get_parameters()):  # same weights
        pb.set_data(pa.data.copy())
    k3a = [c for _, c in a.cells_and_names() if isinstance(c, Conv2d) and c.k == 3]
    k3b = [c for _, c in b.cells_and_names() if isinstance(c, Conv2d) and c.k == 3]
    assert k3a and all(c.im2col for c in k3a) and not any(c.im2col for c in k3b)
    assert all(not c.fold_bn for _, c in a.cells_and_names() if isinstance(c, BaseConv))
    assert all(c.fold_bn for _, c in b.cells_and_names() if isinstance(c, BaseConv))
    assert a.options.conv == "im2col" and b.options.conv == "native"
    a.set_train(False)
    b.set_train(False)
    x = Tensor(np.random.default_rng(0).uniform(0, 255, (1, 3, 64, 64)).astype(np.float32))
    ya, yb = a(x).asnumpy(), b(x).asnumpy()
    # the same detector (conv formulation and BN folding agree to float32 rounding) ...
    np.testing.assert_allclose(ya, yb, rtol=2e-3, atol=2e-3)
    # ... whose size decode ran through a float64 exp in one and float32 in the other
    assert a.head.exp_in_float64 and not b.head.exp_in_float64


def test_no_module_level_switch_for_device_choices():
    """No ``global`` rebinding and no device look-up outside options.py / the CLIs' setup."""
    pkg = ROOT / "mindyolox"
    for path in pkg.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s+global\s", text, re.M), f"{path}: a global switch"
        assert "MINDYOLOX_CONV" not in text, path
        if path.name != "options.py":
            assert 'get_context("device_target")' not in text, f"{path} reads the device target"
