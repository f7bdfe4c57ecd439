"""Faults a long run meets (issue 23), the parts that need no training: drawing non-finite
boxes, image verification when a dataset is indexed, the run folder lock (two real
processes), a checkpoint write that fails for real, best_ap after a kill between an evaluation
and the next save, signal names and exit codes, compile dumps, a lost msrun peer's message.
The training runs are in ``test_faults_run.py``."""
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from mindyolox.data.coco import COCODataset
from mindyolox.data.verify import check_image, data_summary, require_boxes
from mindyolox.errors import DataError, MindYOLOXError

from .conftest import ROOT

INF, NAN = float("inf"), float("nan")


# --------------------------------------------------------------------------- 1: drawing
def _dets():
    """[K, 7] x1 y1 x2 y2 obj cls_conf cls: one good box, one infinite, one NaN, one huge."""
    return np.array([[10, 10, 60, 50, 0.9, 0.9, 1],
                     [-INF, 5, INF, INF, 0.8, 0.9, 2],
                     [NAN, 5, 30, 30, 0.9, 0.9, 0],
                     [1e30, -1e30, 3e38, 40, 0.7, 0.9, 1]], np.float32)


def test_every_drawing_path_takes_non_finite_boxes(tmp_path):
    from mindyolox.training.plots import plot_training_curves
    from mindyolox.predict.loop import detections_to_records, draw_detections as _draw
    from mindyolox.training.tensorboard import TensorBoardLog
    from mindyolox.utils.visualize import draw_boxes
    img = np.full((80, 120, 3), 90, np.uint8)
    d = _dets()
    out = draw_boxes(img, d[:, :4], d[:, 6].astype(np.int64), d[:, 4] * d[:, 5], ["a", "b", "c"])
    assert out.shape == img.shape and (out != img).any()
    # the NaN row is left out: drawing the other rows gives the same picture
    keep = [0, 1, 3]
    same = draw_boxes(img, d[keep, :4], d[keep, 6].astype(np.int64), (d[:, 4] * d[:, 5])[keep], ["a", "b", "c"])
    np.testing.assert_array_equal(out, same)
    # the infinite box is clipped, not dropped: its top edge (y 5) runs across the whole image
    only_inf = draw_boxes(img, d[1:2, :4], [2], None)
    assert (only_inf[5, [0, 60, 119]] != 90).any(axis=1).all()
    # NaN scores and NaN class ids are left out too
    assert (draw_boxes(img, d[:1, :4], [0], [NAN]) == img).all()
    # predict.py: the drawing and the JSON records (no inf/NaN in JSON)
    assert _draw(img, d, ["a", "b", "c"]).shape == img.shape
    recs = detections_to_records(d, ["a", "b", "c"])
    assert [r["bbox"][0] for r in recs] == [10.0, pytest.approx(1e30)]  # the inf and NaN rows left out
    json.loads(json.dumps(recs), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))

    # TensorBoard's eval/detections
    class _Data:
        class_names = ("a", "b", "c")

        def read_image(self, index):
            return img

    tb = TensorBoardLog(tmp_path / "tb")
    tb.detections({0: d, 1: d[1:3]}, _Data(), step=3)
    tb.close()
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and b"eval/detections" in events[0].read_bytes()
    # curves.png from a metrics.jsonl holding inf / NaN losses and APs
    metrics = tmp_path / "metrics.jsonl"
    recs = [{"type": "train", "step": k, "total": v, "iou": 1.0, "obj": v, "cls": 1.0, "l1": 0.0}
            for k, v in enumerate([3.0, INF, NAN, 2.0])]
    recs += [{"type": "eval", "epoch": 1, "AP50_95": NAN, "AP50": INF}, {"type": "eval", "epoch": 2, "AP50_95": 0.1,
                                                                         "AP50": 0.2}]
    metrics.write_text("\n".join(json.dumps(r) for r in recs))
    png = cv2.imread(str(plot_training_curves(metrics, tmp_path / "curves.png")))
    assert png.shape == (500, 1200, 3) and png.std() > 5


# --------------------------------------------------------------------------- 2: image verification
def _jpeg(h, w, seed=0):
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _png(h, w):
    return cv2.imencode(".png", np.full((h, w, 3), 70, np.uint8))[1].tobytes()


def _broken_set(tmp_path):
    """A COCO set of 9 images: 4 good (one with padding after its JPEG end marker, one PNG,
    one turned by its EXIF orientation tag: recorded w x h swapped), 5 broken."""
    from .test_data_integrity import exif_segment
    turned = _jpeg(80, 60, 4)
    d = tmp_path / "imgs"
    d.mkdir()
    files = {"good.jpg": _jpeg(60, 80), "padded.jpg": _jpeg(60, 80, 1) + b"\0" * 300, "good.png": _png(60, 80),
             "cut.jpg": _jpeg(60, 80, 2)[:-2000], "cut.png": _png(60, 80)[:-12], "empty.jpg": b"",
             "wrongsize.jpg": _jpeg(50, 80, 3), "turned.jpg": turned[:2] + exif_segment(6) + turned[2:]}
    for name, data in files.items():
        (d / name).write_bytes(data)
    names = list(files) + ["missing.jpg"]
    images = [{"id": i, "file_name": n, "height": 60, "width": 80} for i, n in enumerate(names)]
    anns = [{"id": 100 + i, "image_id": i, "bbox": [5, 5, 30, 30], "category_id": 1, "area": 900, "iscrowd": 0}
            for i in range(len(names))]
    anns.append({"id": 200, "image_id": 0, "bbox": [70, 50, 30, 30], "category_id": 1, "area": 900,
                 "iscrowd": 0})  # clipped to the image
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    return ann, d


def test_broken_images_are_skipped_when_indexed_named_once_and_counted(tmp_path, caplog):
    ann, d = _broken_set(tmp_path)
    assert cv2.imread(str(d / "cut.jpg")) is not None  # the fault: OpenCV decodes a cut JPEG partly
    with caplog.at_level(logging.WARNING, logger="mindyolox.data"):
        ds = COCODataset(ann, d)
    assert sorted(os.path.basename(p) for p in ds.paths) == ["good.jpg", "good.png", "padded.jpg", "turned.jpg"]
    reasons = {os.path.basename(p): r for p, r in ds.broken}
    assert reasons == {"cut.jpg": "truncated JPEG (no end marker after the last scan)",
                       "cut.png": "truncated PNG (no IEND chunk)", "empty.jpg": "empty file",
                       "wrongsize.jpg": "image is 80x50 (w x h), the annotation says 80x60",
                       "missing.jpg": "file not found"}
    for name in reasons:  # one warning naming each file, then one line with the count
        assert sum(name in r.getMessage() for r in caplog.records) == 1
    assert any("5 of 9 images skipped as broken" in r.getMessage() for r in caplog.records)
    # the boxes still belong to their images
    assert [len(b) for b in ds.boxes] == [2, 1, 1, 1] and ds.ids == [0, 1, 2, 7]
    assert data_summary(ds) == {"images": 4, "images_skipped": 5, "boxes_dropped": 0, "boxes_clipped": 1,
                                "images_without_boxes": 0}
    assert check_image(str(d / "good.jpg"), (60, 80)) is None and check_image(str(d / "turned.jpg"), (60, 80)) is None


def test_a_training_set_without_boxes_is_an_error_unless_background_only(tmp_path):
    from mindyolox.config import load_config
    from mindyolox.data.loader import create_train_loader
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(_jpeg(60, 80))
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 60, "width": 80}],
                               "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    ds = COCODataset(ann, tmp_path / "imgs")
    cfg = load_config(ROOT / "configs" / "demo" / "yolox-nano-demo.yaml", ["train.batch_size=1"])
    with pytest.raises(DataError, match=r"training set ann.json has no boxes at all in its 1 images.*"
                                        r"data.background_only=true"):
        create_train_loader(cfg.data, cfg.aug, cfg.train, dataset=ds, num_workers=0)
    require_boxes(ds, background_only=True)  # the override: no error
    cfg = load_config(ROOT / "configs" / "demo" / "yolox-nano-demo.yaml",
                      ["train.batch_size=1", "data.background_only=true"])
    assert create_train_loader(cfg.data, cfg.aug, cfg.train, dataset=ds, num_workers=0).steps_per_epoch == 1


# --------------------------------------------------------------------------- 3: run folder lock
HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from mindyolox.config import load_config
from mindyolox.training.trainer import Trainer
tr = Trainer(load_config({cfg!r}, []), run_dir={run!r}, progress=False)
from mindyolox.training.hooks.checkpoint import run_folder
held = run_folder(tr)  # kept: the folder stays claimed while this process sleeps
held.__enter__()
(tr.run_dir / "train_log.txt").write_text("live run\\n")
print("holding", flush=True)
time.sleep(120)
"""


def _second_start(run):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "demo" /
                           "yolox-nano-demo.yaml"), "--run-dir", str(run), "--no-progress", "data.data_dir=unused"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_second_start_into_a_live_run_folder_stops_naming_the_holder(tmp_path):
    import socket
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), run=str(run), cfg=str(
        ROOT / "configs" / "demo" / "yolox-nano-demo.yaml"))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        second = _second_start(run)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert lines[-1].startswith("error: run folder") and "Traceback" not in second.stderr
        assert f"in use by process {holder.pid} on {socket.gethostname()}" in lines[-1]
        assert (run / "train_log.txt").read_text() == "live run\n"  # the live run's files untouched
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed (-9): its lock is stale, the next start takes it over with a note
    from mindyolox.runtime.run_lock import LOCK_NAME, RunLock
    assert str(holder.pid) in (run / LOCK_NAME).read_text()
    lock = RunLock(run)
    notes = lock.acquire()
    assert len(notes) == 1 and f"took over the lock of process {holder.pid}" in notes[0]
    assert f" {os.getpid()} " in (run / LOCK_NAME).read_text()
    lock.release()
    assert not (run / LOCK_NAME).exists()


def test_two_starts_in_the_same_instant_get_one_lock(tmp_path):
    """O_EXCL: of processes racing for one folder (released together once all are ready),
    exactly one holds it."""
    code = ("import os, sys, time; sys.path.insert(0, {root!r})\n"
            "from mindyolox.runtime.run_lock import RunLock, RunFolderBusy\n"
            "print('ready', flush=True)\n"
            "while not os.path.exists({go!r}): time.sleep(0.001)\n"
            "try:\n    RunLock({run!r}).acquire(); print('got', flush=True); time.sleep(2)\n"
            "except RunFolderBusy as e:\n    print('busy', flush=True)\n")
    go = tmp_path / "go"
    src = code.format(root=str(ROOT), run=str(tmp_path / "r"), go=str(go))
    procs = [subprocess.Popen([sys.executable, "-c", src], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 2
    go.touch()
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["busy", "got"]


# --------------------------------------------------------------------------- 4: a checkpoint write that fails
def test_a_failed_checkpoint_write_is_one_error_and_leaves_no_temp_file(tmp_path):
    """A real write failure: the file size limit (RLIMIT_FSIZE; Python ignores SIGXFSZ, so the
    write returns EFBIG), which works as root, where a read-only folder does not stop writes."""
    from mindspore import nn

    from mindyolox.training.checkpoint import CheckpointWriteError, read_meta, save_training_state
    net = nn.Dense(400, 400)  # 640 KB of weights
    save_training_state(tmp_path / "last.ckpt", net, meta={"epoch": 1})
    before = (tmp_path / "last.ckpt").read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
    try:
        with pytest.raises(CheckpointWriteError) as e:
            save_training_state(tmp_path / "last.ckpt", net, meta={"epoch": 2})
        with pytest.raises(CheckpointWriteError, match="no best.ckpt was written before"):
            save_training_state(tmp_path / "best.ckpt", net, meta={"epoch": 2})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(e.value).startswith("could not write last.ckpt: file too large; the previous last.ckpt is kept")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no .tmp files
    assert (tmp_path / "last.ckpt").read_bytes() == before and read_meta(tmp_path / "last.ckpt") == {"epoch": 1, "format": 2}


# --------------------------------------------------------------------------- 7: best.ckpt after a resume
def test_best_ap_survives_a_kill_between_an_evaluation_and_the_next_save(tmp_path):
    """The on-disk state such a kill leaves (constructed, not killed): last.ckpt of epoch 2
    (best_ap 0.10, written before the epoch-3 evaluation), best.ckpt of that evaluation (AP
    0.30). The resumed run must keep 0.30 as the best: a later AP of 0.20 leaves best.ckpt."""
    from mindspore import nn

    from mindyolox.config import load_config
    from mindyolox.training.checkpoint import read_meta, save_training_state
    from mindyolox.training.hooks.checkpoint import read_resume_meta
    from mindyolox.training.run_log import RunLog
    from mindyolox.training.trainer import Trainer
    run = tmp_path / "run"
    net = nn.Dense(2, 2)
    save_training_state(run / "last.ckpt", net, meta={"epoch": 2, "iter": 0, "best_ap": 0.10, "last_ap": 0.10})
    save_training_state(run / "best.ckpt", net, meta={"epoch": 3, "iter": 0, "best_ap": 0.30, "last_ap": 0.30})
    cfg = load_config(ROOT / "configs" / "demo" / "yolox-nano-demo.yaml", ["data.data_dir=unused"])
    tr = Trainer(cfg, run_dir=run, resume=True, progress=False)
    tr.max_epoch = 10
    assert read_resume_meta(tr)["best_ap"] == 0.10
    assert tr.best_ap == 0.30 and "best.ckpt holds AP50:95 30.00" in tr.notes[0]

    class _Eval:  # the next evaluation: worse than best.ckpt, better than last.ckpt's best_ap
        def evaluate(self, model, progress=False):
            return {"AP50_95": 0.20, "AP50": 0.40, "timing": {}}

    class _Options:
        fold_bn = False   # the net is no YOLOX: evaluated as it is, no folded copy

        def to_dict(self):
            return {}

    tr.model = tr.ema_model = net
    tr.step = tr.optimizer = None
    tr.evaluator, tr.options, tr.epoch, tr.iter, tr.steps_per_epoch = _Eval(), _Options(), 3, 0, 5
    tr.timing = {"eval_s": 0.0, "ckpt_s": 0.0}
    tr.runlog = RunLog(run)
    tr.evaluate_and_save()
    assert read_meta(run / "best.ckpt")["best_ap"] == 0.30 and tr.best_ap == 0.30


# --------------------------------------------------------------------------- 5: signals, compile dumps
def test_the_signal_named_is_the_one_received_and_sets_the_exit_code(tmp_path):
    from mindyolox.config import load_config
    from mindyolox.runtime.signals import stop_signals
    from mindyolox.runtime.stop import StopRequests
    from mindyolox.training.trainer import Trainer
    cfg = load_config(ROOT / "configs" / "demo" / "yolox-nano-demo.yaml", ["data.data_dir=unused"])
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        tr = Trainer(cfg, run_dir=tmp_path / "r", progress=False)
        lines = []
        tr.stop_requests = StopRequests(tmp_path / "r")  # (set up by train() with the run folder)
        tr.runlog = SimpleNamespace(rank_info=lines.append)
        with stop_signals(tr._on_signal):
            os.kill(os.getpid(), sig)
            time.sleep(0.05)
        assert lines == [f"received {sig.name}: all ranks stop after the current chunk and last.ckpt is saved"]
        agreed = tr.stop_requests.agree()  # what the loop does at the chunk boundary (one rank: no collective)
        assert agreed.signum == sig and str(agreed) == f"{sig.name} on rank 0"
        assert 128 + int(agreed.signum) == code  # commands/train.py's exit code for status "interrupted"


def test_sigint_stays_sigint_while_mindspore_runs_graphs():
    """MindSpore replaces the SIGINT handler at every graph run with one that sends SIGTERM
    (the control below); the trainer's keeper puts Python's back."""
    import mindspore as ms
    from mindspore import nn

    from mindyolox.runtime.signals import SignalKeeper
    got = []
    old = {s: signal.signal(s, lambda n, f: got.append(signal.Signals(n).name)) for s in (signal.SIGINT,
                                                                                         signal.SIGTERM)}
    x = ms.Tensor(np.ones((2, 3), np.float32))
    net = nn.Dense(3, 3)
    try:
        keeper = SignalKeeper()
        net(x)
        net(x)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        keeper.stop()
        net(x)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # without the keeper: MindSpore's handler
        time.sleep(0.05)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert got == ["SIGINT", "SIGTERM"] and keeper.restored >= 1


def test_compile_dumps_go_to_the_run_folder_not_the_working_directory(tmp_path, monkeypatch):
    import mindspore as ms
    from mindspore import nn, ops

    from mindyolox.runtime.context import keep_compile_dumps_in
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MS_OM_PATH", raising=False)
    monkeypatch.delenv("MS_DEV_SAVE_GRAPHS_PATH", raising=False)
    saved = keep_compile_dumps_in(tmp_path / "run")
    assert saved == {"MS_OM_PATH": None, "MS_DEV_SAVE_GRAPHS_PATH": None}

    class _Bad(nn.Cell):  # fails in type inference: MindSpore writes analyze_fail.ir
        def construct(self, x):
            return ops.matmul(x, x[0:2])

    with pytest.raises((RuntimeError, ValueError, TypeError)):
        _Bad()(ms.Tensor(np.ones((3, 3), np.float32)))
    assert list((tmp_path / "run").rglob("analyze_fail.ir"))
    assert not (tmp_path / "rank_0").exists()


# --------------------------------------------------------------------------- 6: a lost msrun peer
def test_a_lost_peer_is_named_with_its_step_not_the_launch_advice(tmp_path):
    from mindyolox.runtime.distributed import PeerLost, lost_ranks
    from mindyolox.training.run_log import last_logged_step
    said = ("The total number of timed out node is 2. Timed out node list is: [const vector]{0, 1}, "
            "worker 0 is the first one timed out, please check its log.")
    assert lost_ranks(said) == [0, 1] and lost_ranks("Failed to connect to the scheduler") is None
    m = tmp_path / "metrics.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in [
        {"type": "event", "event": "start"}, {"type": "train", "step": 7}, {"type": "event", "event": "start"},
        {"type": "train", "step": 2}, {"type": "train", "step": 11}, [3]]) + "\n{not json")
    assert last_logged_step(m) == 11 and last_logged_step(tmp_path / "none.jsonl") is None
    e = PeerLost([1, 0], said.split(".")[0], last_logged_step(m))
    assert isinstance(e, MindYOLOXError)
    assert str(e).startswith("--distributed: rank 1 stopped answering at step 11 (the last one logged); msrun then "
                             "stopped rank(s) 0. See worker_1.log")
    assert "launch with msrun" not in str(e)


def test_the_scheduler_sees_which_worker_went_first(tmp_path):
    """msrun SIGKILLs the other workers right after the first one fails, so MindSpore's list of
    timed-out nodes is in rank order; the scheduler's watch process notes the real order."""
    from mindyolox.runtime.distributed import _WorkerWatch
    port = str(40000 + os.getpid() % 20000)
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    workers = [subprocess.Popen(sleep, env=dict(os.environ, MS_ROLE="MS_WORKER", MS_SCHED_PORT=port,
                                                MS_NODE_ID=str(r))) for r in range(3)]
    tail = subprocess.Popen(["sleep", "60"], env=dict(os.environ, MS_ROLE="MS_WORKER", MS_SCHED_PORT=port,
                                                      MS_NODE_ID="2"))  # msrun's `tail -f` of worker 2's log
    other_job = subprocess.Popen(sleep, env=dict(os.environ, MS_ROLE="MS_WORKER", MS_SCHED_PORT="1",
                                                 MS_NODE_ID="5"))
    watch = _WorkerWatch(port)
    try:
        time.sleep(0.8)
        workers[2].kill()
        workers[2].wait()
        time.sleep(0.6)
        for w in workers[:2]:
            w.kill()
            w.wait()
        other_job.kill()
        time.sleep(0.6)
    finally:
        gone = watch.stop()
        for p in workers + [tail, other_job]:
            p.kill()
            p.wait()
    assert gone[0] == 2 and sorted(gone) == [0, 1, 2]
