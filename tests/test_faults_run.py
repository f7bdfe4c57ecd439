"""Faults a long run meets (issue 23), with one real training through ``train.py``'s own
entry point (a driver adds a hook): nano, 160 px, batch 2, 2 epochs of 3 steps, an evaluation
after each, TensorBoard on, on a tiny COCO set holding a truncated JPEG, a missing image, a
clipped and a zero-size box and an image without boxes. Its EMA model outputs infinite boxes at
both evaluations; a second ``train.py`` is started into its folder while it compiles; its run
folder is a 16 MB tmpfs (where ``mount`` is allowed), which holds epoch 1's 11 MB last.ckpt but
not epoch 2's beside it: the disk is full at the second checkpoint."""
import json
import resource
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mindyolox.training.checkpoint import read_meta
from mindyolox.runtime.run_lock import LOCK_NAME

from .conftest import ROOT

pytestmark = pytest.mark.slow

DEMO = ROOT / "configs" / "demo" / "yolox-nano-demo.yaml"


def _dataset(root):
    """6 good 160x160 JPEGs (one shape each; image 5 without boxes) + a truncated one + a
    missing one; one box of image 0 is clipped, a zero-size box of image 1 dropped."""
    imgs = root / "imgs"
    imgs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(8):
        img = np.full((160, 160, 3), 114, np.uint8)
        x, y = int(rng.integers(10, 90)), int(rng.integers(10, 90))
        cv2.rectangle(img, (x, y), (x + 50, y + 40), (40, 200, 40), -1)
        data = cv2.imencode(".jpg", img)[1].tobytes()
        if i == 6:
            data = data[:len(data) // 2]  # truncated
        if i != 7:  # 7 is missing
            (imgs / f"{i}.jpg").write_bytes(data)
        images.append({"id": i, "file_name": f"{i}.jpg", "height": 160, "width": 160})
        if i != 5:
            anns.append({"id": 10 + i, "image_id": i, "bbox": [x, y, 50, 40], "category_id": 1, "area": 2000,
                         "iscrowd": 0})
    anns.append({"id": 100, "image_id": 0, "bbox": [140, 140, 40, 40], "category_id": 2, "area": 1600, "iscrowd": 0})
    anns.append({"id": 101, "image_id": 1, "bbox": [20, 20, 0, 10], "category_id": 2, "area": 0, "iscrowd": 0})
    cats = [{"id": k, "name": n} for k, n in enumerate(["circle", "square", "triangle", "star", "ring", "cross"])]
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return [f"data.data_dir={root}", "data.train_ann=ann.json", "data.train_images=imgs", "data.val_ann=ann.json",
            "data.val_images=imgs", "train.batch_size=2", "train.max_epoch=2", "train.warmup_epochs=1",
            "train.no_aug_epochs=0", "train.eval_interval=1", "train.print_interval=1", "data.num_workers=0",
            "train.tensorboard=true"]


DRIVER = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from mindspore import Tensor
from mindyolox.training import trainer as T


class Faults(T.TrainHook):
    def before_train(self, trainer):  # a second start into this folder while this run compiles
        import subprocess
        out = open({second_out!r}, "w")
        self.second = subprocess.Popen([sys.executable, {train!r}, "--config", {demo!r}, "--run-dir",
                                        str(trainer.run_dir), "--no-progress", "data.data_dir=unused"],
                                       stdout=out, stderr=out)
        open({files_then!r}, "w").write(" ".join(sorted(p.name for p in trainer.run_dir.iterdir())))

    def after_epoch(self, trainer):  # infinite EMA boxes at every evaluation (exp of 1e4)
        for conv in trainer.ema_model.head.reg_preds:
            conv.bias.set_data(Tensor(np.full(conv.bias.shape, 1e4, np.float32)))

    def after_train(self, trainer):
        open({second_rc!r}, "w").write(str(self.second.wait()))


init = T.Trainer.__init__
T.Trainer.__init__ = lambda self, *a, **k: init(self, *a, **dict(k, hooks=[Faults()]))
from mindyolox.commands.train import run
sys.argv = ["train.py"] + {argv!r}
run()
"""


def _small_filesystem(path):
    """``(how, preexec)``: a 16 MB tmpfs mounted at ``path`` (room for one 11 MB nano
    checkpoint, not for the next one beside it) if ``mount`` is allowed, else a 1 MB file size
    limit for the child process (its first checkpoint fails). Both make a real write fail."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], capture_output=True)
    if r.returncode == 0:
        return "tmpfs", None
    return "fsize", lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    overrides = _dataset(base / "data")
    run = base / "run"
    how, preexec = _small_filesystem(run)
    try:
        driver = base / "driver.py"
        driver.write_text(DRIVER.format(root=str(ROOT), train=str(ROOT / "train.py"), demo=str(DEMO),
                                        second_out=str(base / "second.txt"), second_rc=str(base / "second_rc.txt"),
                                        files_then=str(base / "files_then.txt"),
                                        argv=["--config", str(DEMO), "--run-dir", str(run), "--no-progress",
                                              *overrides]))
        p = subprocess.run([sys.executable, str(driver)], cwd=base, capture_output=True, text=True, timeout=900,
                           preexec_fn=preexec)
        files = sorted(x.name for x in run.iterdir())
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        log = (run / "train_log.txt").read_text()
        meta = read_meta(run / "last.ckpt") if (run / "last.ckpt").is_file() else None
        tb = b"".join(x.read_bytes() for x in (run / "tensorboard").glob("events.out.tfevents.*"))
    finally:
        if how == "tmpfs":
            subprocess.run(["umount", str(run)], check=True)
    return dict(base=base, run=run, how=how, proc=p, files=files, records=records, log=log, meta=meta, tb=tb,
                second=(int((base / "second_rc.txt").read_text()), (base / "second.txt").read_text()),
                files_then=(base / "files_then.txt").read_text().split())


def test_evaluations_of_a_model_with_infinite_boxes_finish(faulty_run):
    evals = [r for r in faulty_run["records"] if r["type"] == "eval"]
    n = 2 if faulty_run["how"] == "tmpfs" else 1  # the 1 MB file size limit stops the run at epoch 1's save
    assert [r["epoch"] for r in evals] == list(range(1, n + 1))
    assert faulty_run["tb"].count(b"eval/detections") == n
    assert "Traceback" not in faulty_run["proc"].stderr


def test_skipped_images_and_box_counts_reach_the_summary_and_metrics(faulty_run):
    data = {r["split"]: r for r in faulty_run["records"] if r["type"] == "data"}
    want = {"images": 6, "images_skipped": 2, "boxes_dropped": 1, "boxes_clipped": 1, "images_without_boxes": 1}
    assert {k: data["train"][k] for k in want} == want and {k: data["val"][k] for k in want} == want
    assert "data: train 6 images, 2 skipped, 1 boxes dropped, 1 clipped, 1 without boxes" in faulty_run["log"]
    for name in ("6.jpg (truncated JPEG", "7.jpg (file not found)"):
        assert name in faulty_run["log"]


def test_a_second_start_into_the_live_run_stops_and_touches_nothing(faulty_run):
    rc, out = faulty_run["second"]
    assert rc == 2 and "Traceback" not in out
    assert out.strip().splitlines()[-1].startswith(f"error: run folder {faulty_run['run']} is in use by process ")
    assert f"on {socket.gethostname()} (lock " in out
    assert {"config.yaml", "train_log.txt"} <= set(faulty_run["files_then"])
    assert "config.yaml" in faulty_run["files"]
    assert LOCK_NAME not in faulty_run["files"]  # released at the end


def test_disk_full_at_a_checkpoint_is_one_line_and_a_non_zero_exit(faulty_run):
    p = faulty_run["proc"]
    assert p.returncode == 2, p.stderr[-3000:]
    if faulty_run["how"] == "tmpfs":  # epoch 1's last.ckpt fits, epoch 2's does not
        line = f"error: could not write last.ckpt: no space left on device; the previous last.ckpt is kept ({faulty_run['run']})"
        assert faulty_run["meta"]["epoch"] == 1  # the previous one, intact
        # written after its epoch's evaluation: its best AP is the run's after that evaluation
        assert faulty_run["meta"]["last_ap"] == [r for r in faulty_run["records"] if r["type"] == "eval"][0]["AP50_95"]
    else:
        line = f"error: could not write last.ckpt: file too large; no last.ckpt was written before ({faulty_run['run']})"
    assert p.stderr.strip().splitlines()[-1] == line
    assert "Traceback" not in p.stderr and "CRITICAL" not in p.stderr + p.stdout
    assert not [f for f in faulty_run["files"] if "tmp" in f], faulty_run["files"]
    assert "curves.png" in faulty_run["files"] and "\n" not in line
    assert "failed: " in p.stdout
