"""Parameter counts and GFLOPs against the official YOLOX 0.3.0 numbers (../shared/README.md)."""
import subprocess
import sys
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from mindyolox.config import load_config
from mindyolox.models import Upsample2x, build_model
from mindyolox.models.info import count_flops, count_params, parse_img_size, profile_ops

ROOT = Path(__file__).resolve().parents[1]

# Official thop figures: params, GFLOPs at 640 (README "Official parameter counts / GFLOPs").
OFFICIAL = {
    "nano": (912_159, 2.63),
    "tiny": (5_055_855, 15.36),
    "s": (8_968_255, 26.93),
    "m": (25_326_495, 73.98),
    "l": (54_208_895, 156.01),
    "x": (99_071_455, 282.46),
    "darknet53": (63_724_767, 185.47),
}
OFFICIAL_416 = {"nano": 1.11, "tiny": 6.49}

_MODELS = {}


def model_of(variant):
    """The model of configs/yolox-<variant>.yaml, built once per test session."""
    if variant not in _MODELS:
        _MODELS[variant] = build_model(load_config(ROOT / "configs" / f"yolox-{variant}.yaml"))
    return _MODELS[variant]


@pytest.mark.parametrize("variant", list(OFFICIAL))
def test_params_match_official(variant):
    assert count_params(model_of(variant)) == OFFICIAL[variant][0]


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(OFFICIAL))
def test_gflops_at_640_match_official(variant):
    gflops = count_flops(model_of(variant), 640)
    assert gflops == pytest.approx(OFFICIAL[variant][1], rel=0.02)
    # the rules reproduce thop, so the official two-decimal figure comes out exactly
    assert round(gflops, 2) == OFFICIAL[variant][1]


@pytest.mark.parametrize("variant", list(OFFICIAL_416))
def test_gflops_at_416_match_official(variant):
    gflops = count_flops(model_of(variant), (416, 416))
    assert gflops == pytest.approx(OFFICIAL_416[variant], rel=0.02)
    assert round(gflops, 2) == OFFICIAL_416[variant]


@pytest.mark.slow
def test_scaling_from_64_equals_direct_count_at_multiples_of_32():
    model = model_of("nano")
    direct = 2 * sum(profile_ops(model, 416).values()) / 1e9
    assert count_flops(model, 416) == pytest.approx(direct, rel=1e-12)


def test_params_exclude_bn_moving_stats_only():
    model = model_of("nano")
    every = sum(int(np.prod(p.shape)) for p in model.get_parameters())
    moving = sum(int(np.prod(p.shape)) for p in model.get_parameters()
                 if p.name.endswith(("moving_mean", "moving_variance")))
    assert moving > 0
    assert count_params(model) == every - moving


class _Tiny(nn.Cell):
    """conv 3->8 (3x3, stride 2, bias) -> BN -> SiLU -> depthwise 3x3 -> 2x nearest upsample."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, pad_mode="pad", padding=1, has_bias=True)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.SiLU()
        self.dw = nn.Conv2d(8, 8, 3, 1, pad_mode="pad", padding=1, group=8)
        self.up = Upsample2x()

    def construct(self, x):
        return self.up(self.dw(self.act(self.bn(self.conv(x)))))


def test_counting_rules_on_a_hand_computed_net():
    ops = profile_ops(_Tiny(), (16, 32))  # conv output [1, 8, 8, 16]
    out = 8 * 8 * 16
    assert ops["conv"] == out * 3 * 9 + out * 1 * 9  # MACs, bias not counted, groups respected
    assert ops["bn"] == 4 * out                       # thop: 2 per element, x2 for affine
    assert ops["upsample"] == 4 * out                 # one per output element of the upsample


def test_profile_restores_mode_and_training_and_removes_hooks():
    assert ms.get_context("mode") == ms.GRAPH_MODE  # set by conftest
    net = _Tiny()
    net.set_train(True)
    first = profile_ops(net, 32)
    second = profile_ops(net, 32)
    assert first == second  # hooks left behind would double-count the second time
    assert ms.get_context("mode") == ms.GRAPH_MODE
    assert net.training


def test_layer_without_rule_is_refused():
    net = nn.SequentialCell([nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Dense(4 * 8 * 8, 2)])
    with pytest.raises(ValueError, match=r"no FLOP rule for layer '2' \(Dense\)"):
        count_flops(net, 8)


@pytest.mark.parametrize("bad", [0, (640, -32), (1, 2, 3), ("640",)])
def test_bad_img_size(bad):
    with pytest.raises(ValueError, match="image size"):
        parse_img_size(bad)


def _run_tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "model_info.py"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_prints_nano_line():
    res = _run_tool("--config", "configs/yolox-nano.yaml")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "yolox-nano: params 912,159 (0.91 M), GFLOPs 1.11 @ 416x416"


@pytest.mark.slow
def test_cli_img_size_and_overrides_after_it():
    res = _run_tool("--config", "configs/yolox-nano.yaml", "--img-size", "640", "model.num_classes=20")
    assert res.returncode == 0, res.stderr
    # 20 classes: each of the 3 cls_preds loses 60 * (64 + 1) parameters
    assert res.stdout.strip().startswith(f"yolox-nano: params {912_159 - 3 * 60 * 65:,} ")
    assert res.stdout.strip().endswith("@ 640x640")


def test_cli_missing_config_one_line_error():
    res = _run_tool("--config", "missing.yaml")
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing.yaml" in lines[0]
    assert res.stdout == ""
