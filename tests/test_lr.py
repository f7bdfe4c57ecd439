"""The yoloxwarmcos schedule equals the official formula at sampled iterations (warmup,
cosine, no-aug tail), with the official iteration convention (step k runs with f(k))."""
import math

import pytest

from mindyolox import load_config
from mindyolox.engine.lr import LRSchedule, build_lr_schedule
from mindyolox.errors import ConfigError


def official(k, lr, ipe, max_epoch, warmup_epochs, no_aug_epochs, min_lr_ratio, warmup_lr=0.0):
    """Official yolox_warm_cos_lr, written out independently from the module under test."""
    total, warm, no_aug = ipe * max_epoch, ipe * warmup_epochs, ipe * no_aug_epochs
    min_lr = lr * min_lr_ratio
    if k <= warm:
        return (lr - warmup_lr) * (k / warm) ** 2 + warmup_lr
    if k >= total - no_aug:
        return min_lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * (k - warm) / (total - warm - no_aug)))


def test_recipe_schedule_matches_official_formula():
    cfg = load_config("configs/yolox-s.yaml", [])
    ipe = 1833  # COCO train2017 at batch 64
    sched = build_lr_schedule(cfg.train, ipe)
    lr = 0.01 / 64 * 64
    assert sched.lr == pytest.approx(lr, rel=1e-12)
    samples = [0, 1, 7, ipe, ipe * 5 - 1, ipe * 5, ipe * 5 + 1, ipe * 100, ipe * 200 + 17,
               ipe * 285 - 1, ipe * 285, ipe * 290, ipe * 300 - 1]
    for k in samples:
        assert sched(k) == pytest.approx(official(k, lr, ipe, 300, 5, 15, 0.05), rel=1e-12, abs=1e-15), k


def test_phases_have_the_official_shape():
    s = LRSchedule("yoloxwarmcos", 0.02, 10, 20, warmup_epochs=2, no_aug_epochs=3, min_lr_ratio=0.05)
    assert s(0) == 0.0                                  # warmup from 0
    assert s(10) == pytest.approx(0.02 * 0.25)          # quadratic: half-way -> 1/4
    assert s(20) == pytest.approx(0.02)                 # peak at the end of warmup
    mid = 20 + (200 - 20 - 30) // 2                     # cosine half-way -> mean of peak and floor
    assert s(mid) == pytest.approx(0.5 * (0.02 + 0.001), rel=1e-9)
    assert all(s(k) == pytest.approx(0.001) for k in range(170, 200))  # flat no-aug tail
    assert all(s(k) > s(k + 1) for k in range(20, 169))  # strictly decreasing cosine


def test_warmup_lr_start_and_other_schedulers():
    s = LRSchedule("yoloxwarmcos", 0.01, 4, 10, warmup_epochs=1, warmup_lr=0.001, no_aug_epochs=2)
    assert s(0) == pytest.approx(0.001)
    assert s(2) == pytest.approx((0.01 - 0.001) * 0.25 + 0.001)
    w = LRSchedule("warmcos", 0.01, 4, 10, warmup_epochs=1, warmup_lr=0.0)
    assert w(2) == pytest.approx(0.005) and w(40) == pytest.approx(0.0, abs=1e-15)
    c = LRSchedule("cos", 0.01, 4, 10)
    assert c(20) == pytest.approx(0.005)


def test_bad_settings_raise_one_line_errors():
    with pytest.raises(ConfigError, match="unknown scheduler 'step'"):
        LRSchedule("step", 0.01, 10, 10)
    with pytest.raises(ConfigError, match="must be smaller than train.max_epoch"):
        LRSchedule("yoloxwarmcos", 0.01, 10, 10, warmup_epochs=5, no_aug_epochs=5)
