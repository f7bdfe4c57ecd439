"""Training options users reach for: freezing (``train.freeze``); early stopping
(``train.patience``) is tested in test_loggers.py, on the run that also feeds the trackers."""
import pytest

from mindyolox.training.trainer import TrainHook, Trainer

from .test_train import coco16_cfg


@pytest.mark.slow
def test_freeze_keeps_the_frozen_parts_bit_identical(tmp_path):
    import numpy as np
    cfg = coco16_cfg("train.freeze=[backbone, head.cls_preds]", "train.basic_lr_per_img=0.01", max_epoch=10)
    tr = Trainer(cfg, run_dir=tmp_path / "run", num_workers=0, progress=False, evaluate=False, max_iters=3)
    before = {}

    class _Snapshot(TrainHook):
        def before_train(self, trainer):
            before.update({n: p.asnumpy().copy() for n, p in trainer.model.parameters_and_names()})
    tr.hooks.append(_Snapshot())
    assert tr.train() == "stopped"
    after = {n: p.asnumpy() for n, p in tr.model.parameters_and_names()}
    frozen = [n for n in after if n.startswith(("backbone.backbone.", "head.cls_preds."))]
    free = [n for n in after if n not in frozen]
    assert len(frozen) > 100
    for n in frozen:  # weights and BN running statistics untouched
        np.testing.assert_array_equal(after[n], before[n], err_msg=n)
    changed = [n for n in free if not np.array_equal(after[n], before[n])]
    assert len(changed) > 0.9 * len(free), (len(changed), len(free))
    assert any("moving_mean" in n for n in changed)  # the neck's BN still learns its statistics
    # no optimizer state, no gradient for the frozen tensors
    trained = {p.name for p in tr.optimizer.params}
    assert not trained & set(frozen) and len(trained) == len([n for n in free if "moving_" not in n])
    log = (tmp_path / "run" / "train_log.txt").read_text()
    assert "frozen (backbone, head.cls_preds):" in log and "BatchNorm layers in eval mode" in log


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
