"""Training options users reach for: freezing (``train.freeze``: its names here; the frozen
training run and early stopping, ``train.patience``, are tested in test_loggers.py on the run
that also feeds the trackers), gradient accumulation, the lr schedule in optimizer steps."""
import pytest


def test_freeze_names_parts_and_refuses_unknown_ones():
    import pytest
    from mindyolox import build_model, load_config
    from mindyolox.training.freeze import freeze
    from mindyolox.errors import ConfigError
    model = build_model(load_config("configs/yolox-nano.yaml"))
    n_neck, bn_neck = freeze(model, ["neck"])
    names = {n for n, p in model.parameters_and_names() if not p.requires_grad and "moving_" not in n}
    assert names and all(n.startswith("backbone.") and not n.startswith("backbone.backbone.") for n in names)
    assert any(n.startswith("backbone.C3_p4.") for n in names) and bn_neck > 10
    with pytest.raises(ConfigError, match="train.freeze: 'backbone.dark9' matches no parameter"):
        freeze(model, ["backbone.dark9"])


def _accum_case(accumulate, batch, exact=True):
    """nano at 96 px with BN in eval mode (frozen flag) and exact BN: per-image gradients
    independent of the batch, so one batch of 8 and 4 micro-batches of 2 see the same loss."""
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor

    from mindyolox import build_model, load_config
    from mindyolox.training.ema import ModelEMA
    from mindyolox.training.optimizer import build_optimizer
    from mindyolox.training.train_step import TrainStep
    from mindyolox.losses import YOLOXLoss, YOLOXWithLoss
    from mindyolox.models.batchnorm import BatchNorm2d
    cfg = load_config("configs/yolox-nano.yaml", ["model.num_classes=3", f"model.exact_bn={str(exact).lower()}"])
    ms.set_seed(0)
    model, ema_model = build_model(cfg), build_model(cfg)
    for _, cell in model.cells_and_names():
        if isinstance(cell, BatchNorm2d):
            cell.frozen = True
    model.set_train(True)
    step = TrainStep(YOLOXWithLoss(model, YOLOXLoss(3)), build_optimizer(model, cfg.train),
                     ModelEMA(model, ema_model, decay=0.9, tau=1.0), accumulate=accumulate)
    step.set_lr(0.02)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, 3, 96, 96)).astype(np.float32)
    labels = np.zeros((8, 6, 5), np.float32)
    for b in range(8):
        n = 1 + b % 3 if b != 5 else 0  # image 5 has no object
        wh = rng.uniform(10, 50, (n, 2))
        labels[b, :n] = np.concatenate([rng.integers(0, 3, (n, 1)), wh / 2 + rng.uniform(0, 1, (n, 2)) * (96 - wh), wh], 1)
    init = {n: p.asnumpy().copy() for n, p in model.parameters_and_names()}
    for k in range(0, 8, batch):
        step(Tensor(images[k:k + batch]), Tensor(labels[k:k + batch]))
    moved = {n: p.asnumpy() - init[n] for n, p in model.parameters_and_names()}
    return moved, ema_model, step


@pytest.mark.slow
def test_four_accumulated_micro_batches_equal_one_batch():
    import numpy as np
    ref_moved, ref_ema, ref_step = _accum_case(1, 8)
    acc_moved, acc_ema, acc_step = _accum_case(4, 2)
    assert int(acc_step.global_step.asnumpy()) == int(ref_step.global_step.asnumpy()) == 1  # one optimizer step
    assert float(acc_step.ema.updates.asnumpy()) == 1.0
    worst = 0.0
    for n, a in ref_moved.items():  # the update of every parameter (lr x gradient, + decay)
        b = acc_moved[n]
        if not np.abs(a).max():
            continue
        worst = max(worst, np.abs(a - b).max() / np.abs(a).max())
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3 * np.abs(a).max(), err_msg=n)
    assert sum(np.abs(a).max() > 0 for a in ref_moved.values()) > 200
    for (n, a), (_, b) in zip(ref_ema.parameters_and_names(), acc_ema.parameters_and_names()):
        np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), rtol=2e-4, atol=2e-6, err_msg=n)
    print(f"accumulate 4 x 2 vs batch 8: worst difference of a parameter's update, relative to its largest "
          f"entry: {worst:.2e}")


def test_the_lr_schedule_counts_optimizer_steps():
    from mindyolox.training.lr import build_lr_schedule
    base = dict(basic_lr_per_img=0.01 / 64, batch_size=16, scheduler="yoloxwarmcos", max_epoch=10, warmup_epochs=1,
                warmup_lr=0.0, no_aug_epochs=2, min_lr_ratio=0.05)
    plain, acc = build_lr_schedule(dict(base, batch_size=64), 100), build_lr_schedule(dict(base, accumulate=4), 400)
    assert acc.lr == plain.lr == 0.01 and acc.iters_per_epoch == 100  # 400 batches of 16 = 100 steps of 64
    assert [acc(k) for k in (0, 50, 100, 700, 999)] == [plain(k) for k in (0, 50, 100, 700, 999)]
