"""Loss scaling and operator precision where the device needs them (issue 24, deliverable 3):
``train.loss_scale: auto`` scales on Ascend even at O0 (dynamic from 1024 since issue 35), and
a power-of-two scale leaves float32 training bit-identical on CPU; ``runtime.precision_mode`` is a
recorded device option with a default per chip, explicit values win."""
import numpy as np
import pytest
from mindspore import Tensor

from mindyolox import load_config
from mindyolox.training.ema import ModelEMA
from mindyolox.training.optimizer import SGD, param_groups
from mindyolox.training.train_step import ASCEND_O0_SCALE, TrainStep, resolve_loss_scale
from mindyolox.errors import ConfigError
from mindyolox.options import DeviceOptions, default_precision_mode, resolve_options

from .test_train import _Tiny, _TinyLoss


def test_auto_loss_scale_per_device_and_level():
    assert resolve_loss_scale("auto", "O0", "Ascend") == ("dynamic", 1024.0) == ("dynamic", ASCEND_O0_SCALE)
    assert resolve_loss_scale("auto", "O0", "CPU") == ("none", 1.0)
    assert resolve_loss_scale("auto", "O0", "GPU") == ("none", 1.0)
    assert resolve_loss_scale("auto", "O2", "Ascend", 65536.0) == ("dynamic", 65536.0)
    assert resolve_loss_scale("auto", "O1", "CPU", 4096.0) == ("dynamic", 4096.0)
    # explicit values win
    assert resolve_loss_scale("none", "O0", "Ascend") == ("none", 65536.0)
    assert resolve_loss_scale("static", "O0", "Ascend", 128.0) == ("static", 128.0)
    assert resolve_loss_scale("dynamic", "O0", "CPU", 512.0) == ("dynamic", 512.0)


def tiny_step(loss_scale, scale_value=1024.0):
    """A compiled :class:`TrainStep` of the tiny test network with ``loss_scale`` (none | static |
    dynamic) from ``scale_value``; its EMA starts at the weights. Returns ``(step, model)``."""
    model, ema_model = _Tiny(), _Tiny()
    for (_, p), (_, e) in zip(model.parameters_and_names(), ema_model.parameters_and_names()):
        e.set_data(p.data.copy())
    model.set_train(True)
    decay, no_decay = param_groups(model)
    opt = SGD(decay + no_decay, [True] * len(decay) + [False] * len(no_decay))
    return TrainStep(_TinyLoss(model), opt, ModelEMA(model, ema_model), loss_scale=loss_scale,
                     scale_value=scale_value), model


def _train(loss_scale, scale_value, steps=12):
    np.random.seed(0)
    step, model = tiny_step(loss_scale, scale_value)
    opt = step.optimizer
    rng = np.random.default_rng(1)
    losses = []
    for k in range(steps):
        step.set_lr(0.05)
        # magnitudes from 1e-6 to 1e3: gradients that small stay exact when scaled by 2^10
        x = Tensor((rng.normal(size=(2, 2, 6, 6)) * 10.0 ** rng.integers(-6, 4)).astype(np.float32))
        y = Tensor(rng.normal(size=(2, 3, 6, 6)).astype(np.float32))
        out = step(x, y)
        losses.append(float(out[0].asnumpy()))
        assert bool(out[6].asnumpy())  # no step skipped
    params = [p.asnumpy() for p in model.get_parameters()] + [m.asnumpy() for m in opt.moments]
    return losses, params, float(step.scale.asnumpy())


def test_scale_1024_leaves_float32_training_bit_identical():
    """Measured on CPU: 12 float32 steps with the dynamic 1024 scale (auto on Ascend at O0) give
    the losses, weights, BN statistics and momentum buffers of the unscaled run, bit for bit."""
    base_losses, base_params, base_scale = _train("none", 1.0)
    losses, params, scale = _train("dynamic", ASCEND_O0_SCALE)
    assert base_scale == 1.0 and scale == 1024.0
    assert losses == base_losses
    assert len(params) == len(base_params)
    for a, b in zip(params, base_params):
        np.testing.assert_array_equal(a, b)
    # and a scale that is not a power of two would not be exact: the check can tell
    _, odd, _ = _train("static", 1000.0)
    assert any(not np.array_equal(a, b) for a, b in zip(odd, base_params))


def test_precision_mode_is_a_recorded_device_option():
    cfg = load_config("configs/yolox-nano.yaml", [])
    cpu = resolve_options(cfg, device="CPU")
    assert cpu.precision_mode == "none" and "precision mode" not in cpu.describe()
    asc = resolve_options(cfg, device="Ascend")
    # auto per chip: 910A allow_fp32_to_fp16, other Ascend chips must_keep_origin_dtype (this host: no 910A)
    assert asc.precision_mode == default_precision_mode("Ascend") == "must_keep_origin_dtype"
    assert "precision mode must_keep_origin_dtype" in asc.describe()
    explicit = resolve_options(load_config("configs/yolox-nano.yaml", ["runtime.precision_mode=force_fp16"]),
                               device="Ascend")
    assert explicit.precision_mode == "force_fp16"
    assert resolve_options(cfg, device="Ascend", precision_mode="allow_fp32_to_fp16").precision_mode == \
        "allow_fp32_to_fp16"
    assert DeviceOptions.from_dict(explicit.to_dict()) == explicit  # what checkpoints record
    assert DeviceOptions.from_dict({"device": "CPU"}).precision_mode == "none"  # older checkpoints
    with pytest.raises(ConfigError, match="precision_mode"):
        DeviceOptions(precision_mode="fast")
    with pytest.raises(ConfigError, match="runtime.precision_mode"):
        load_config("configs/yolox-nano.yaml", ["runtime.precision_mode=fast"])
