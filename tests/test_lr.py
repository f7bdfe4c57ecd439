"""The yoloxwarmcos schedule equals the official formula at sampled iterations (warmup,
cosine, no-aug tail), with the official iteration convention (step k runs with f(k))."""
import math

import pytest

from mindyolox import load_config
from mindyolox.training.lr import LRSchedule, build_lr_schedule
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


def test_short_runs_clip_warmup_and_no_aug_tail_to_fit():
    """max_epoch=1 or 2 on the demo recipe (warmup 1 + no-aug 1) and <= 20 on the COCO
    recipes (5 + 15) used to be refused; now each is clipped to a quarter of the run."""
    from mindyolox.training.lr import build_lr_schedule, fit_short_schedule

    def train(max_epoch, warmup, no_aug):
        return dict(max_epoch=max_epoch, warmup_epochs=warmup, no_aug_epochs=no_aug, scheduler="yoloxwarmcos",
                    basic_lr_per_img=0.001, batch_size=8, warmup_lr=0.0, min_lr_ratio=0.05, accumulate=1)

    assert fit_short_schedule(train(300, 5.0, 15)) == (5.0, 15, None)      # the official recipe: untouched
    assert fit_short_schedule(train(10, 1.0, 1)) == (1.0, 1, None)         # the demo recipe: untouched
    w, n, note = fit_short_schedule(train(1, 1.0, 1))
    assert (w, n) == (0.25, 0) and "warm-up clipped to 0.25 epoch(s), no-aug tail to 0" in note
    assert fit_short_schedule(train(2, 1.0, 1))[:2] == (0.5, 0)
    assert fit_short_schedule(train(10, 5.0, 15))[:2] == (2.5, 2)
    assert fit_short_schedule(train(20, 5.0, 15))[:2] == (5.0, 5)
    # the schedule built from a short recipe: quadratic warm-up over a quarter, cosine to the floor
    s = build_lr_schedule(train(1, 1.0, 1), 40)
    assert (s.warmup_iters, s.no_aug_iters, s.total_iters) == (10, 0, 40)
    assert s(0) == 0.0 and s(5) == pytest.approx(0.008 * 0.25) and s(10) == pytest.approx(0.008)
    assert all(s(k) > s(k + 1) for k in range(10, 39)) and s(39) > 0.008 * 0.05
    s = build_lr_schedule(train(10, 5.0, 15), 4)   # 10 epochs of a COCO recipe: a flat tail of 2 epochs
    assert all(s(k) == pytest.approx(0.0004) for k in range(32, 40)) and s(31) > 0.0004
