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
