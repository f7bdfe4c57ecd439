"""A short run of a shipped recipe starts: ``train.max_epoch=1`` on the demo recipe (warm-up 1
+ no-aug 1 epochs) trains its one epoch with the schedule clipped to fit and one note in the
log (mindyolox/engine/lr.py, ``fit_short_schedule``)."""
import json

import pytest

from mindyolox import load_config
from mindyolox.data.demo import DemoSpec, generate
from mindyolox.engine.lr import build_lr_schedule
from mindyolox.engine.trainer import Trainer, progress_postfix


def test_progress_bar_shows_no_loss_before_the_first_log_window():
    """Issue 26 point 7: the bar showed ``loss nan lr 0.00e+00`` until the first log line."""
    assert progress_postfix({"total": float("nan"), "lr": 0.0}) == "loss \u2013 lr \u2013"
    assert progress_postfix({"total": 3.214, "lr": 0.01, "step": 19}) == "loss 3.21 lr 1.00e-02"


@pytest.mark.slow
def test_demo_recipe_trains_one_epoch(tmp_path, capfd):
    data = generate(tmp_path / "demo", DemoSpec(32, 4, 0), progress=False)
    cfg = load_config("demo/yolox-nano-demo", [f"data.data_dir=demo:{data}", "train.max_epoch=1",
                                               "train.tensorboard=false", "data.num_workers=0"])
    trainer = Trainer(cfg, run_dir=tmp_path / "run", evaluate=False, progress=True)
    assert trainer.train() == "finished"
    bar = capfd.readouterr().err
    assert "epoch 1/1" in bar and "loss nan" not in bar
    log = (tmp_path / "run" / "train_log.txt").read_text()
    assert log.count("short schedule: warm-up clipped to 0.25 epoch(s), no-aug tail to 0") == 1, log
    assert "no Mosaic/MixUp from now on, L1 loss on" in log  # the one epoch is the official last (no-aug) one
    # the caller's recipe is untouched; the run's config.yaml holds what ran
    assert (cfg.train.warmup_epochs, cfg.train.no_aug_epochs) == (1.0, 1)
    import yaml
    ran = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert (ran["warmup_epochs"], ran["no_aug_epochs"], ran["max_epoch"]) == (0.25, 0, 1)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    assert [(r["epoch"], r["iter"]) for r in train] == [(1, 4)]  # 32 images / batch 8, one log line at the end
    sched = build_lr_schedule(ran, 4)
    assert sched.warmup_iters == 1 and sched(0) == 0.0
    assert train[0]["lr"] == pytest.approx(sched(3)) and train[0]["l1"] > 0 and train[0]["total"] > 0
    assert (tmp_path / "run" / "last.ckpt").is_file()
