"""What a training run writes as it goes: log lines (console + ``train_log.txt``) and JSON
records (``metrics.jsonl``), rank 0 only; plus the small formatting helpers of its lines."""
import json
import logging
import resource
import sys
import time

__all__ = ["RunLog", "rss_gb", "fmt_eta"]


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


class RunLog:
    """Log lines and JSONL records of the run in ``run_dir`` (other ranks write nothing).

    ``info(msg)``: a timestamped line on stdout and in ``train_log.txt`` (appended);
    ``record(dict)``: one line of ``metrics.jsonl``; ``event(kind, **fields)``: a
    ``type: event`` record with the time."""

    def __init__(self, run_dir, rank=0, name="mindyolox.train"):
        self.rank = int(rank)
        self.metrics_path = run_dir / "metrics.jsonl"
        lg = self.logger = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = False
        if self.rank != 0:
            lg.setLevel(logging.WARNING)
            return
        lg.setLevel(logging.INFO)
        fmt = logging.Formatter("%(asctime)s | %(message)s", "%Y-%m-%d %H:%M:%S")
        for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(run_dir / "train_log.txt", mode="a")):
            handler.setFormatter(fmt)
            lg.addHandler(handler)

    def info(self, msg):
        if self.rank == 0:
            self.logger.info(msg)

    def record(self, rec):
        if self.rank == 0:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def event(self, kind, **fields):
        self.record({"type": "event", "event": kind, "time": time.time(), **fields})
