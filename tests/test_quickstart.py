"""The README quickstart, end to end, with a short schedule: train on the demo dataset (and
evaluate), then test.py, predict.py, deploy/export.py and deploy/infer.py on the checkpoint.

The commands are read from README.md (the ``<!-- quickstart-train -->`` block and the block
after it), so the quickstart cannot drift from what is tested. They run as a user runs them,
in a scratch working directory that links to the project's scripts, with ``HOME`` pointing
into it (so ``~/.cache/mindyolox/demo`` is scratch too) and a short schedule:

- the demo dataset is pre-made small with the generator CLI (48 train / 16 val images), which
  ``data.data_dir: demo:~/.cache/mindyolox/demo`` then uses instead of generating 1500/200;
- ``train.py`` commands get ``TRAIN_SHORT`` appended: two epochs (one with augmentation, then
  one no-aug epoch with L1 -- ``no_aug_epochs=0``: the official switch covers the last
  ``no_aug_epochs + 1`` epochs -- and the evaluation), no warmup and a gentle lr.

The helpers here are shared with ``tests/test_readme.py``; the quickstart runs once per
pytest session (a marker file in the session's temp folder), whichever test needs it first.
"""
import fcntl
import json
import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, shared_path

README = ROOT / "README.md"
LINKED = ("train.py", "test.py", "predict.py", "deploy", "tools", "configs", "mindyolox", "requirements.txt")
DEMO_SMALL = ["--train", "48", "--val", "16"]
# without warmup the demo recipe's lr (0.032) sends 12 steps' box regression to absurd sizes
TRAIN_SHORT = ["train.max_epoch=2", "train.warmup_epochs=0", "train.no_aug_epochs=0",
               "train.basic_lr_per_img=0.0005", "--no-progress"]
RUN = "runs/train/yolox-nano-demo"
COMMAND_TIMEOUT = 600


# ----------------------------------------------------------------------------- README parsing
@dataclass
class Block:
    """A fenced ```bash block of README.md or a docs page: ``line`` (1-based, of the fence),
    ``marker`` (the HTML comment right before it, '' if none), ``commands`` (continuation lines
    joined, comments and blank lines dropped), ``path`` (the file, relative to the project)."""
    line: int
    marker: str
    commands: list = field(default_factory=list)
    path: str = "README.md"

    @property
    def where(self):
        """``file:line`` of the fence, for messages."""
        return f"{self.path}:{self.line}"

    @property
    def skip_reason(self):
        """Why CI does not run this block, or None. ``<!-- ci: skip (reason) -->`` marks a
        block; the ``<!-- install -->`` and ``<!-- test -->`` blocks are run by .ci/run."""
        m = re.fullmatch(r"<!--\s*ci:\s*skip\s*\((.+)\)\s*-->", self.marker)
        if m:
            return m.group(1)
        if self.marker in ("<!-- install -->", "<!-- test -->"):
            return ".ci/run runs it"
        return None


def readme_blocks(text=None, path=README):
    """Every ```bash block of the README (or of the Markdown file ``path``), in order."""
    lines = (path.read_text() if text is None else text).splitlines()
    name = path.relative_to(ROOT).as_posix()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            prev = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            block = Block(i + 1, prev if prev.startswith("<!--") else "", path=name)
            i += 1
            body = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise AssertionError(f"{block.where}: unclosed ```bash block")
            block.commands = join_commands(body)
            blocks.append(block)
        i += 1
    return blocks


def doc_files():
    """The Markdown files whose commands are checked: README.md, then every page under docs/
    (sorted by path)."""
    return [README] + sorted((ROOT / "docs").rglob("*.md"))


def doc_blocks():
    """Every ```bash block of README.md and docs/**/*.md, file by file (see ``doc_files``)."""
    return [b for path in doc_files() for b in readme_blocks(path=path)]


def join_commands(body):
    """Shell lines -> commands: ``\\`` continuations joined, ``# comments`` and blanks dropped."""
    out, cur = [], ""
    for raw in body:
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip() and not cur:
            continue
        if line.endswith("\\"):
            cur += line[:-1].strip() + " "
            continue
        cur += line.strip()
        if cur:
            out.append(cur)
        cur = ""
    if cur:
        out.append(cur.strip())
    return out


def block_after(marker, blocks=None):
    """The block right after the line ``marker``, and the one following it."""
    blocks = blocks if blocks is not None else readme_blocks()
    for k, b in enumerate(blocks):
        if b.marker == marker:
            return b, (blocks[k + 1] if k + 1 < len(blocks) else None)
    raise AssertionError(f"README.md has no block after {marker}")


def shorten(command):
    """A README command with the CI short schedule appended (see the module doc)."""
    words = shlex.split(command)
    if len(words) >= 2 and words[0] == "python" and words[1] == "train.py":
        return command + " " + " ".join(TRAIN_SHORT)
    return command


# ----------------------------------------------------------------------------- scratch workdir
def make_workdir(path):
    """A scratch working directory with links to the project's scripts, ``home/`` as HOME,
    the official nano weights and dog.jpg standing in for the README's downloads."""
    path.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        (path / name).symlink_to(ROOT / name)
    (path / "yolox_nano.pth").symlink_to(shared_path("weights", "yolox_nano.pth"))
    (path / "dog.jpg").symlink_to(shared_path("data", "images", "dog.jpg"))
    (path / "home").mkdir()
    return path


def env_for(workdir, command):
    """The environment of one command: ``home/`` as HOME and a MindSpore graph cache of the
    command's own (``ms_cache/<hash of the command line>``). MindSpore caches graphs by their
    compile position in a process (mindyolox/runtime/compile_cache.py), so one folder shared by
    different commands could hand one command the graph of another (the frozen fine-tune the
    unfrozen one's); the same command line run again reuses its own."""
    env = {k: v for k, v in os.environ.items() if k != "GLOG_v"}  # the scripts' own default, as for a user
    key = hashlib.sha1(command.encode()).hexdigest()[:12]
    env.update({"HOME": str(workdir / "home"), "PYTHONUNBUFFERED": "1",
                "MS_COMPILER_CACHE_ENABLE": "1", "MS_COMPILER_CACHE_PATH": str(workdir.parent / "ms_cache" / key)})
    return env


def run_command(command, workdir, log):
    """Run one shell command in ``workdir``; returns ``(returncode, output, seconds)`` and
    appends both to ``log`` (a list). Python is this interpreter."""
    cmd = re.sub(r"^python\b", shlex.quote(sys.executable), command)
    t0 = time.perf_counter()
    print(f"+ {command}", flush=True)
    proc = subprocess.run(["bash", "-c", cmd], cwd=workdir, env=env_for(workdir, command), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT)
    dt = time.perf_counter() - t0
    print(f"  exit {proc.returncode} in {dt:.1f} s", flush=True)
    log.append({"command": command, "returncode": proc.returncode, "seconds": dt, "output": proc.stdout})
    return proc.returncode, proc.stdout, dt


def quickstart(tmp_path_factory):
    """Run the README quickstart once per session (short schedule); returns ``(workdir,
    records)`` with one record per command: command, returncode, seconds, output.

    Under pytest-xdist the run lives in the session's temporary folder, the parent of every
    worker's own, and a file lock makes a second worker wait for the first one's run."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    base = root / "quickstart"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _quickstart_once(base)


def _quickstart_once(base):
    done = base / "records.json"
    if done.exists():
        return base / "work", json.loads(done.read_text())
    work = make_workdir(base / "work")
    train_block, next_block = block_after("<!-- quickstart-train -->")
    records = []
    rc, out, _ = run_command("python -m mindyolox.commands.demo --out ~/.cache/mindyolox/demo " + " ".join(DEMO_SMALL),
                             work, records)
    assert rc == 0, out[-3000:]
    for command in train_block.commands + next_block.commands:
        rc, out, _ = run_command(shorten(command), work, records)
        if rc != 0:
            break
    done.write_text(json.dumps(records))
    return work, records


@pytest.fixture(scope="module")
def qs(tmp_path_factory):
    return quickstart(tmp_path_factory)


def _record(records, script):
    """The record of the quickstart command running ``script``."""
    for r in records:
        if shlex.split(r["command"])[1:2] == [script]:
            assert r["returncode"] == 0, f"{r['command']} failed:\n{r['output'][-4000:]}"
            return r
    raise AssertionError(f"the README quickstart runs no {script}: {[r['command'] for r in records]}")


# ----------------------------------------------------------------------------- tests
def test_readme_quickstart_is_the_demo_recipe():
    train_block, next_block = block_after("<!-- quickstart-train -->")
    assert train_block.commands == ["python train.py --config configs/demo/yolox-nano-demo.yaml"]
    scripts = [shlex.split(c)[1] for c in next_block.commands]
    assert scripts == ["test.py", "predict.py", "deploy/export.py", "deploy/infer.py"]


@pytest.mark.slow
def test_quickstart_train_writes_checkpoints_metrics_and_evaluates(qs):
    work, records = qs
    r = _record(records, "train.py")
    run = work / RUN
    for name in ("last.ckpt", "metrics.jsonl", "train_log.txt", "config.yaml", "curves.png"):
        assert (run / name).is_file(), f"{name} missing in {run}: {sorted(os.listdir(run))}"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [m for m in metrics if m.get("type") == "train"]
    evals = [m for m in metrics if m.get("type") == "eval"]
    # 48 images / batch 8 = 6 iterations per epoch, 2 epochs, every loss finite
    assert sorted({(m["epoch"], m["iter"]) for m in train})[-1] == (2, 6)
    assert all(m["skipped"] == 0 and np.isfinite(m["total"]) for m in train)
    # L1 only in the last (no-aug) epoch
    assert all(m["l1"] == 0 for m in train if m["epoch"] == 1) and all(m["l1"] > 0 for m in train if m["epoch"] == 2)
    # evaluated once, at the end
    assert [m["epoch"] for m in evals] == [2], evals
    assert 0.0 <= evals[0]["AP50_95"] <= evals[0]["AP50"] <= 1.0
    # best.ckpt is written on a new best AP50:95 (none when 12 steps give AP 0)
    assert (run / "best.ckpt").is_file() == (evals[0]["AP50_95"] > 0)
    # issue 37: best.ckpt's analysis from the detections of its evaluation (no second inference)
    assert (run / "best_detections.json").is_file() == (run / "analysis" / "per_class.csv").is_file() \
        == (run / "best.ckpt").is_file()
    # the recipe's LR schedule with the overrides: no warmup, cosine over the 12 steps (no flat tail)
    from mindyolox.config import load_config
    cfg = load_config(str(ROOT / "configs/demo/yolox-nano-demo.yaml"), [o for o in TRAIN_SHORT if "=" in o])
    base_lr = cfg.train.basic_lr_per_img * cfg.train.batch_size
    from mindyolox.training.lr import build_lr_schedule
    sched = build_lr_schedule(cfg.train, 6)  # each record: the lr of the last step of its window
    assert sched(0) == base_lr and all(abs(m["lr"] - sched(m["step"])) < 1e-9 for m in train)
    assert train[-1]["lr"] < 0.1 * base_lr  # near min_lr_ratio (0.05) at the last step
    assert "eval epoch 2: AP50:95" in r["output"]
    assert "Some side effect nodes" not in r["output"]  # MindSpore's compile warnings stay hidden (GLOG_v)
    # the silent first compile is announced before it starts (issue 40), then timed
    out = r["output"]
    assert 0 <= out.index("compiling the train step for input 160x160: one graph") \
        < out.index("compiled the train step for input 160x160 in"), out[-3000:]
    assert out.index("the first evaluation also compiles the evaluation graph") < out.index("eval epoch 2: AP50:95")
    # the demo dataset came from ~/.cache (HOME = scratch), pre-made small
    manifest = json.loads((work / "home/.cache/mindyolox/demo/demo_manifest.json").read_text())
    assert manifest["images"] == {"train": 48, "val": 16}


@pytest.mark.slow
def test_quickstart_test_py_reports_coco_metrics(qs):
    work, records = qs
    r = _record(records, "test.py")
    out = r["output"]
    m = re.search(r"AP50:95 ([\d.]+)\s+AP50 ([\d.]+)\s+\((\d+) detections written to (\S+)\)", out)
    assert m, out[-2000:]
    ap, ap50, n_det = float(m.group(1)), float(m.group(2)), int(m.group(3))
    assert 0.0 <= ap <= ap50 <= 100.0
    # same weights, same val split: test.py's AP equals the trainer's evaluation of the EMA
    evals = [json.loads(line) for line in (work / RUN / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    assert abs(100 * evals[-1]["AP50"] - ap50) < 0.01 and abs(100 * evals[-1]["AP50_95"] - ap) < 0.01
    assert "loaded" in out and "prefix 'ema.'" in out  # the EMA weights of last.ckpt
    dets = json.loads((work / m.group(4)).read_text())
    assert isinstance(dets, list) and len(dets) == n_det
    assert all(d["category_id"] in range(1, 7) and len(d["bbox"]) == 4 and d["score"] >= 0.01 for d in dets)
    if n_det:  # 12 training steps may leave every score under test.conf
        assert "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]" in out
        for name in ("circle", "square", "triangle", "star", "ring", "cross"):
            assert name in out, f"per-class table lacks {name}"


@pytest.mark.slow
def test_quickstart_predict_writes_annotated_image_and_json(qs):
    import cv2
    work, records = qs
    _record(records, "predict.py")
    out_dir = work / "runs/predict/demo"
    img = cv2.imread(str(out_dir / "000001.jpg"))
    src = cv2.imread(str(work / "home/.cache/mindyolox/demo/val/000001.jpg"))
    assert img is not None and img.shape == src.shape
    dets = json.loads((out_dir / "000001.jpg.json").read_text())["detections"]
    h, w = src.shape[:2]
    for d in dets:
        x1, y1, x2, y2 = d["bbox"]
        assert -1 <= x1 < x2 <= w + 1 and -1 <= y1 < y2 <= h + 1
        assert d["class_name"] in ("circle", "square", "triangle", "star", "ring", "cross")
        assert 0.25 <= d["score"] <= 1.0
    if dets:  # boxes were drawn: the annotated image differs from the source
        assert np.abs(img.astype(int) - src.astype(int)).max() > 50


@pytest.mark.slow
def test_quickstart_export_and_infer(qs):
    work, records = qs
    _record(records, "deploy/export.py")
    mindir = work / "runs/export/yolox-nano-demo.mindir"
    assert mindir.is_file() and mindir.stat().st_size > 500_000
    meta = json.loads((work / "runs/export/yolox-nano-demo.json").read_text())
    assert meta["input_shape"] == [1, 3, 160, 160]
    assert meta["class_names"] == ["circle", "square", "triangle", "star", "ring", "cross"]
    _record(records, "deploy/infer.py")
    infer = json.loads((work / "runs/infer/demo/000001.jpg.json").read_text())["detections"]
    pred = json.loads((work / "runs/predict/demo/000001.jpg.json").read_text())["detections"]
    # the exported graph gives the Cell's detections
    assert [d["class_name"] for d in infer] == [d["class_name"] for d in pred]
    for a, b in zip(infer, pred):
        assert np.allclose(a["bbox"], b["bbox"], atol=0.05) and abs(a["score"] - b["score"]) < 1e-3


def _tensorboard_events(folder):
    """``[(tag, step, value or "image")]`` of the event files in ``folder`` (TFRecord frames:
    length u64, crc u32, an ``Event`` protobuf, crc u32), read with tensorboardX's protos."""
    import struct

    from tensorboardX.proto import event_pb2
    out = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out.append((v.tag, event.step, "image" if v.HasField("image") else v.simple_value))
    return out


@pytest.mark.slow
def test_quickstart_run_writes_tensorboard(qs):
    work, _ = qs
    run = work / RUN
    events = _tensorboard_events(run / "tensorboard")
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [m for m in metrics if m["type"] == "train"]
    totals = [(s, v) for t, s, v in events if t == "train/total"]
    assert [s for s, _ in totals] == [m["step"] for m in train]
    assert np.allclose([v for _, v in totals], [m["total"] for m in train], rtol=1e-6)
    ev = [m for m in metrics if m["type"] == "eval"]
    aps = [(s, v) for t, s, v in events if t == "eval/AP50_95"]
    assert [s for s, _ in aps] == [m["step"] for m in ev] and np.allclose([v for _, v in aps], [m["AP50_95"] for m in ev])
    assert any(t == "eval/AR100" for t, _, _ in events)
    images = {(t, s) for t, s, v in events if v == "image"}
    assert ("train/augmented", 0) in images and ("eval/detections", ev[-1]["step"]) in images
