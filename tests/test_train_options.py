"""Training options users reach for: early stopping (``train.patience``)."""
import json

from mindyolox.engine.trainer import TrainHook, Trainer

from .test_train import coco16_cfg


class _ScriptedAP(TrainHook):
    """Replaces the evaluator by one returning the given AP50:95 values in turn."""

    def __init__(self, aps):
        self.aps = list(aps)

    def before_train(self, trainer):
        aps = self.aps

        class _Eval:
            def evaluate(self, model, progress=False):
                ap = aps.pop(0)
                return {"AP50_95": ap, "AP50": ap, "stats": [ap] * 12, "timing": {"images": 16}}
        trainer.evaluator = _Eval()


def test_patience_ends_the_run_cleanly(tmp_path):
    cfg = coco16_cfg("train.eval_interval=1", "train.patience=2", max_epoch=10)
    tr = Trainer(cfg, run_dir=tmp_path / "run", num_workers=0, progress=False,
                 hooks=[_ScriptedAP([0.10, 0.12, 0.11, 0.12, 0.5, 0.5])])
    assert tr.train() == "early_stopped"  # 0.11 and 0.12 do not beat 0.12: two stale evaluations
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "eval"] == [1, 2, 3, 4]
    assert [r["epoch"] for r in records if r.get("event") == "early_stop"] == [4]
    assert (tmp_path / "run" / "last.ckpt").is_file() and (tmp_path / "run" / "best.ckpt").is_file()
    from mindyolox.engine.checkpoint import read_meta
    assert read_meta(tmp_path / "run" / "best.ckpt")["epoch"] == 2
    log = (tmp_path / "run" / "train_log.txt").read_text()
    assert "early stop after epoch 4: 2 evaluation(s) without a better AP50:95 than 12.00" in log
    assert "early_stopped: 32 iterations" in log


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
    from mindyolox.engine.freeze import freeze
    from mindyolox.errors import ConfigError
    model = build_model(load_config("configs/yolox-nano.yaml"))
    n_neck, bn_neck = freeze(model, ["neck"])
    names = {n for n, p in model.parameters_and_names() if not p.requires_grad and "moving_" not in n}
    assert names and all(n.startswith("backbone.") and not n.startswith("backbone.backbone.") for n in names)
    assert any(n.startswith("backbone.C3_p4.") for n in names) and bn_neck > 10
    with pytest.raises(ConfigError, match="train.freeze: 'backbone.dark9' matches no parameter"):
        freeze(model, ["backbone.dark9"])
