"""What a training run writes as it goes: log lines (console + ``train_log.txt``) and JSON
records (``metrics.jsonl``), rank 0 only; plus the small formatting helpers of its lines."""
import json
import logging
import resource
import sys
import time
from pathlib import Path

from ..utils.closing import Closing

__all__ = ["RunLog", "rss_gb", "fmt_eta", "last_logged_step"]


class BarAwareHandler(logging.StreamHandler):
    """Console handler that prints through ``tqdm.write``: an open progress bar (stderr) is
    cleared, the record printed on a line of its own, and the bar drawn again below it."""

    def emit(self, record):
        try:
            from tqdm import tqdm
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging's own convention: report, never raise from a handler
            self.handleError(record)


def rss_gb():
    """(current, peak) resident memory of this process in GB."""
    try:
        import psutil
        cur = psutil.Process().memory_info().rss / 1e9
    except ImportError:
        cur = float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return cur, peak


def fmt_eta(seconds):
    """``h:mm:ss`` of a non-negative duration in seconds."""
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class RunLog(Closing):
    """Log lines and JSONL records of the run in ``run_dir`` (other ranks write nothing).

    ``info(msg)``: a timestamped line on stdout (through any open progress bar, time of day
    only) and in ``train_log.txt`` (appended, date and time);
    ``record(dict)``: one line of ``metrics.jsonl``, then each of ``listeners`` called with it
(the trainer's ``after_record`` hooks); ``event(kind, **fields)``: a
    ``type: event`` record with the time; with ``tensorboard`` every record also goes to
    ``run_dir/tensorboard`` (:mod:`~mindyolox.training.tensorboard`). The data package's messages (``mindyolox.data``:
    loader set-up, image cache, skipped images) go to the same console and file."""

    closing_what = "the TensorBoard log"   # Closing: ``with RunLog(...)`` closes it on every exit

    def __init__(self, run_dir, rank=0, name="mindyolox.train", tensorboard=False):
        self.rank = int(rank)
        self.metrics_path = run_dir / "metrics.jsonl"
        self.tb = None  # TensorBoardLog of rank 0 with tensorboard=True
        self.listeners = []  # callables given each record after it is written (rank 0; the trainer's hooks)
        lg = self.logger = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = False
        if self.rank != 0:
            lg.setLevel(logging.WARNING)
            return
        lg.setLevel(logging.INFO)
        console, file = BarAwareHandler(sys.stdout), logging.FileHandler(run_dir / "train_log.txt", mode="a")
        console.setFormatter(logging.Formatter("%(asctime)s | %(message)s", "%H:%M:%S"))
        file.setFormatter(logging.Formatter("%(asctime)s | %(message)s", "%Y-%m-%d %H:%M:%S"))
        lg.addHandler(console)
        lg.addHandler(file)
        data = logging.getLogger("mindyolox.data")  # propagates as before (pytest's caplog sees it)
        for h in [h for h in data.handlers if getattr(h, "run_log", False)]:
            data.removeHandler(h)
            h.close()
        data.setLevel(logging.INFO)
        for h in (console, file):
            h.run_log = True
            data.addHandler(h)
        if tensorboard:
            from .tensorboard import TensorBoardLog
            self.tb = TensorBoardLog(run_dir / "tensorboard")

    def info(self, msg):
        if self.rank == 0:
            self.logger.info(msg)

    def rank_info(self, msg):
        """A line every rank says: rank 0 logs it as :meth:`info`, the others print it on
        their own stdout (``msrun``'s ``worker_<rank>.log``) as ``time | rank r | msg``."""
        if self.rank == 0:
            self.logger.info(msg)
        else:
            print(f"{time.strftime('%H:%M:%S')} | rank {self.rank} | {msg}", flush=True)

    def record(self, rec):
        if self.rank == 0:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if self.tb is not None:
                self.tb.record(rec)
            for listen in self.listeners:
                listen(rec)

    def close(self):
        if self.tb is not None:
            self.tb.close()

    def event(self, kind, **fields):
        self.record({"type": "event", "event": kind, "time": time.time(), **fields})


def last_logged_step(metrics_path):
    """Global step of the last ``type: train`` record after the last ``start`` event of a
    ``metrics.jsonl`` (None: unreadable or no step yet)."""
    step = None
    try:
        lines = Path(metrics_path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict):
            continue
        if rec.get("type") == "event" and rec.get("event") == "start":
            step = None
        elif rec.get("type") == "train" and "step" in rec:
            step = int(rec["step"])
    return step
