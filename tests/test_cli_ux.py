"""What a new user meets first: argument order, re-running after a failed start, --help texts,
label tags on drawn detections, readable training curves."""
import subprocess
import sys

import numpy as np
import pytest

from mindyolox.config import load_config
from mindyolox.training.plots import _panel, nice_ticks
from mindyolox.training.hooks.checkpoint import run_folder
from mindyolox.training.trainer import Trainer
from mindyolox.errors import MindYOLOXError
from mindyolox.commands._args import add_config_args, parse_args
from mindyolox.utils.visualize import draw_boxes, place_labels

from .conftest import ROOT

DEMO = ROOT / "configs" / "demo" / "yolox-nano-demo.yaml"


def _script(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_overrides_and_options_mix_in_any_order():
    import argparse
    p = add_config_args(argparse.ArgumentParser())
    p.add_argument("--name")
    p.add_argument("--img-size", nargs="+")
    argv = ["train.seed=3", "--config", "X.yaml", "data.data_dir=D", "--name", "n", "train.seed=1",
            "--img-size", "320", "data.input_size=[64,64]"]
    args = parse_args(p, argv)
    assert (args.config, args.name, args.img_size) == ("X.yaml", "n", ["320"])
    assert args.overrides == ["train.seed=3", "data.data_dir=D", "train.seed=1", "data.input_size=[64,64]"]
    # the command, through a real script: the later override wins
    out = _script("tools/print_config.py", "--config", DEMO, "data.data_dir=D", "train.seed=1", "--config", DEMO,
                  "train.seed=7")
    assert out.returncode == 0, out.stderr
    assert "  seed: 7\n" in out.stdout and "  data_dir: D\n" in out.stdout


@pytest.mark.parametrize("script", ["train.py", "test.py", "predict.py", "deploy/export.py", "deploy/infer.py"])
def test_help_texts(script):
    out = _script(script, "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    if script != "train.py":
        assert "train.max_epoch" not in text  # an override that means nothing there
    if script == "deploy/infer.py":
        assert "(default runs/infer)" in text
    elif script == "predict.py":
        assert "(default runs/predict)" in text
    if script != "deploy/infer.py":
        assert "overrides anywhere on the line" in text


def _trainer(run_dir, **kw):
    return Trainer(load_config(DEMO, ["data.data_dir=unused"]), run_dir=run_dir, progress=False, **kw)


def test_a_failed_start_does_not_block_the_corrected_run(tmp_path):
    run = tmp_path / "run"
    # a missing or unknown weights file is refused before the run folder exists
    for weights in (tmp_path / "missing.pth", ROOT / "README.md"):
        with pytest.raises(MindYOLOXError, match="weights"):
            _trainer(run, weights=weights).train()
        assert not run.exists()
    # what a start that failed later leaves behind is not a run: the next start reuses it
    run.mkdir()
    (run / "config.yaml").write_text("old")
    (run / "train_log.txt").write_text("")
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"")
    with pytest.raises(MindYOLOXError, match="nothing to resume: .* holds no last.ckpt"):
        _trainer(run, resume=True).train()
    tr = _trainer(run)
    with run_folder(tr):
        assert [p.name for p in run.iterdir()] == [".run.lock"] and "held no checkpoint" in tr.notes[0]
    # a folder with a checkpoint (or anything else) is a run: refused as before
    (run / "last.ckpt").write_bytes(b"x")
    with pytest.raises(MindYOLOXError, match="already exists and is not empty"):
        with run_folder(_trainer(run)):
            pass
    assert (run / "last.ckpt").exists()


def test_label_tags_stay_inside_the_image_and_apart():
    w, h = 300, 200
    boxes = np.array([[0, 0, 50, 40], [250, 5, 300, 60], [60, 100, 120, 160], [65, 105, 125, 165],
                      [5, 170, 80, 199], [280, 150, 299, 199]], float)
    sizes = [(90, 14)] * len(boxes)
    rects = place_labels(boxes, sizes, w, h)
    for x, y, rw, rh in rects:
        assert 0 <= x and x + rw <= w and 0 <= y and y + rh <= h
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            overlap_w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
            overlap_h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
            assert overlap_w <= 0 or overlap_h <= 0, (a, b)
    # drawn: the tag of a box in the top-left corner is inside the image (its colour at the top rows)
    img = np.full((h, w, 3), 255, np.uint8)
    out = draw_boxes(img, boxes[:1], np.array([0]), np.array([0.9]), ["person"])
    assert (out[:12, :60] != 255).any(axis=2).mean() > 0.5


def test_curve_ticks_are_round_numbers_and_the_legend_is_off_the_data():
    for lo, hi, integer, expect in [(0, 1880, True, ["0", "500", "1000", "1500", "2000"]),
                                    (3.29, 6.58, False, ["3", "4", "5", "6", "7"]),
                                    (0, 10, True, ["0", "5", "10"]),
                                    (0, 0.37, False, ["0.0", "0.1", "0.2", "0.3", "0.4"])]:
        assert nice_ticks(lo, hi, integer=integer)[1] == expect
    img = np.full((500, 600, 3), 255, np.uint8)
    x0, y0, pw, ph = 80, 50, 480, 380
    legend = _panel(img, x0, y0, pw, ph, {"AP50_95": ([5, 9, 10], [40, 58, 60]), "AP50": ([5, 9, 10], [65, 83, 100])},
                    "AP", "epoch", markers=True)
    assert len(legend) == 2
    for x, y, lw, lh in legend:
        assert y + lh <= y0  # above the plot box
    # a marker at each evaluation: the AP50 dot at epoch 9 is filled
    px, py = x0 + round(9 / 10 * pw), y0 + ph - round(83 / 100 * ph)
    assert (img[py - 2:py + 3, px - 2:px + 3] != 255).any(axis=2).all()
