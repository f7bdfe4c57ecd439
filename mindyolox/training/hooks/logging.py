"""What a run tells: log windows (the device-side loss sums read once per log line, their
means, the NaN/Inf check, ETA, memory), the progress bar, TensorBoard samples, at the start
the training set's ``dataset_report.json`` / ``.png`` (:mod:`mindyolox.data.report`), and at
the end the data summary, ``curves.png``, the summary line and where the time went.

:class:`LoggerHook` (``HIGH``: its ``after_iter`` reads the window before the user hooks, which
see it in ``trainer.last``); :class:`SummaryHook` (``VERY_LOW``: ``after_train`` after every
other hook, so the summary counts what they did).
"""
import math
import sys
import time

from tqdm import tqdm

from ...data.report import dataset_as_split, dataset_stats, write_report
from ...data.samples import render_samples
from ...data.verify import data_summary
from ...utils.visualize import make_grid
from ..plots import plot_training_curves
from ..run_log import fmt_eta, rss_gb
from .base import HIGH, VERY_LOW, TrainHook
from .checkpoint import diverge
from .overflow import check_overflow, scale_text

__all__ = ["LoggerHook", "SummaryHook", "progress_postfix", "LOSS_NAMES", "new_window", "log_window"]

LOSS_NAMES = ("total", "iou", "obj", "cls", "l1", "num_fg")


def progress_postfix(last):
    """The progress bar's ``loss 3.21 lr 1.00e-02`` from the last logged window (``last``, a
    ``type: train`` record); ``loss – lr –`` until the first window is read (the loss is summed
    on the device and read once per log line: before that there is no value to show)."""
    if "step" not in last:
        return "loss \u2013 lr \u2013"
    return f"loss {last['total']:.2f} lr {last['lr']:.2e}"


def new_window():
    """An empty log window: its start time (``perf_counter`` s), data-wait and compile
    seconds, the input size ``(h, w)`` and the number of steps run in it."""
    return {"t0": time.perf_counter(), "data_s": 0.0, "compile_s": 0.0, "size": None, "steps": 0}


def log_window(tr):
    """Read the step's device-side sums (one read), log their means, the loss scale and the
    skipped steps, check for NaN/Inf and for float16 overflow (:mod:`.overflow`)."""
    if tr.window["steps"] == 0:  # nothing ran since the last read
        return
    stats = tr.step.read_stats()
    tr.host_reads += 1
    n = int(round(stats["steps"]))
    if n == 0:
        return
    w, k = tr.window, tr.progress_in_iter
    wall = time.perf_counter() - w["t0"] - w["compile_s"]
    tr.timing["step_s"] += max(wall - w["data_s"], 0.0)
    tr.timing["data_s"] += w["data_s"]
    tr.timing["compile_s"] += w["compile_s"]
    rec = {name: stats[name] / n for name in LOSS_NAMES}
    rec.update(epoch=tr.epoch + 1, iter=tr.iter + 1, step=k, steps=n,
               lr=tr.lr_schedule(k // int(tr.tcfg.accumulate)),
               skipped=int(round(stats["skipped"])), scale=stats["scale"],
               step_ms=1e3 * max(wall - w["data_s"], 0.0) / n, data_ms=1e3 * w["data_s"] / n,
               size=list(w["size"]) if w["size"] else None)
    tr.last = rec
    tr.overflow_steps += rec["skipped"]
    tr.window = new_window()
    if not math.isfinite(rec["total"]):
        diverge(tr, f"loss is {rec['total']} in the {n} step(s) up to epoch {tr.epoch + 1} iter "
                    f"{tr.iter + 1} (step {k}, lr {rec['lr']:.3g})")
    rec["skip_run"] = int(round(stats["skip_run"]))  # longest run of skipped steps (hooks/overflow.py)
    total_steps = tr.max_epoch * tr.steps_per_epoch
    eta = (total_steps - k - 1) * (rec["step_ms"] + rec["data_ms"]) / 1e3
    cur, peak = rss_gb()
    tr.log(f"epoch {rec['epoch']}/{tr.max_epoch} iter {rec['iter']}/{tr.steps_per_epoch} "
           f"lr {rec['lr']:.3e} | total {rec['total']:.3f} iou {rec['iou']:.3f} obj {rec['obj']:.3f} "
           f"cls {rec['cls']:.3f} l1 {rec['l1']:.3f} fg {rec['num_fg']:.2f}{scale_text(tr, rec)} | "
           f"{rec['step_ms']:.0f} ms/step "
           f"data {rec['data_ms']:.0f} ms | size {rec['size'][0] if rec['size'] else '-'} | "
           f"ETA {fmt_eta(eta)} | mem {cur:.2f} GB (peak {peak:.2f})")
    tr.runlog.record({"type": "train", **rec, "mem_gb": cur})
    check_overflow(tr, rec)  # after the line: the overflow warning, or the stop after too many in a row


class LoggerHook(TrainHook):
    """``before_train``: the ``training ...`` line and the ``start`` event; ``before_epoch``:
    TensorBoard samples (at the start and at the no-aug switch), the progress bar; ``after_iter``:
    a log line every ``train.print_interval`` iterations and at the epoch end; ``on_stop``: the
    steps since the last line; ``after_epoch`` / ``after_train``: the bar closed."""

    priority = HIGH

    def __init__(self):
        self.bar = None

    def before_train(self, trainer):
        tr = trainer
        tr.log(f"training {tr.max_epoch} epochs x {tr.steps_per_epoch} iterations "
               f"(batch {tr.per_device_batch} x {tr.world_size} device(s)), {tr.lr_schedule}; "
               f"{tr.options.describe()}{', data sink' if tr.feeder.sink else ''}")
        tr.runlog.event("start", start_epoch=tr.start_epoch, start_iter=tr.start_iter,
                        options=tr.options.to_dict())

    def before_epoch(self, trainer):
        tr = trainer
        if tr.runlog.tb is not None and tr.epoch in (tr.start_epoch, tr.no_aug_from):
            images, _ = render_samples(tr.cfg.data, tr.cfg.aug, int(tr.tcfg.seed) + tr.epoch, 8,
                                       mosaic=tr.epoch < tr.no_aug_from, dataset=tr.loader.dataset,
                                       progress=tr.progress)
            tr.runlog.tb.image("train/augmented", make_grid(images, 4), tr.epoch * tr.steps_per_epoch)
        if tr.window["steps"] == 0:  # the epoch end's checkpoint and evaluation are not step time
            tr.window["t0"] = time.perf_counter()
        if tr.progress and tr.rank == 0:
            first = tr.start_iter if tr.epoch == tr.start_epoch else 0
            self.bar = tqdm(total=tr.steps_per_epoch, initial=first, desc=f"epoch {tr.epoch + 1}/{tr.max_epoch}",
                            leave=False, dynamic_ncols=True, file=sys.stderr)

    def after_iter(self, trainer):
        tr = trainer
        pi = max(1, int(tr.tcfg.print_interval))
        if (tr.iter + 1) % pi == 0 or tr.iter + 1 == tr.steps_per_epoch:
            log_window(tr)
        if self.bar is not None:
            self.bar.update(tr.chunk_steps)
            self.bar.set_postfix_str(progress_postfix(tr.last))

    def on_stop(self, trainer):
        log_window(trainer)  # the steps since the last log line

    def after_epoch(self, trainer):
        self._close()

    def after_train(self, trainer):
        self._close()

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class SummaryHook(TrainHook):
    """``before_train`` (rank 0): the training set's report in the run folder;
    ``after_train`` (rank 0): the data summary (``type: data`` records), ``curves.png``, the
    summary line and the time record; the ``end`` event."""

    priority = VERY_LOW

    def before_train(self, trainer):
        """``dataset_report.json`` and ``.png`` of the training set the trainer built (its
        cleaned boxes, :func:`~mindyolox.data.report.dataset_as_split`), one log line; rank 0
        only. A write that fails (disk full) is logged, not fatal."""
        tr = trainer
        ds = getattr(tr.loader, "dataset", None)   # a stand-in loader (tests) may have none
        if tr.rank != 0 or ds is None:
            return
        try:
            stats = dataset_stats(dataset_as_split(ds), name=f"train: {ds.name}")
            _, png = write_report(stats, tr.run_dir)
        except OSError as e:
            tr.log(f"dataset report not written ({e})")
            return
        dup = stats["duplicate_images"]
        tr.log(f"dataset report: {png} ({stats['images']} images, {stats['boxes']} boxes, "
               f"{stats['images_without_boxes']} without boxes, {dup} duplicate images, "
               f"{stats['labels_outside_image']} labels outside the image)")

    def after_train(self, trainer):
        tr = trainer
        if tr.rank == 0 and tr.runlog.metrics_path.exists():
            self._data_summary(tr)
            try:
                png = plot_training_curves(tr.runlog.metrics_path, tr.run_dir / "curves.png")
            except OSError as e:  # disk full: the run's result is not a picture
                png = f"not written ({e})"
            best = (f"best AP50:95 {100 * tr.best_ap:.2f}" if tr.last_ap is not None else
                    "no evaluation ran" + (" (--no-eval)" if not tr.do_eval else ""))
            tr.log(f"{tr.status}: {tr.iters_done} iterations in {time.perf_counter() - tr.t_start:.0f} s, "
                   f"{best}, {tr.overflow_steps} overflow-skipped steps, "
                   f"{tr.host_reads} device reads; curves: {png}")
            self._timing(tr)
        tr.runlog.event("end", status=tr.status)

    @staticmethod
    def _data_summary(tr):
        """What the data left out (:func:`~mindyolox.data.verify.data_summary`): one ``type:
        data`` record per split in metrics.jsonl and one log line."""
        # an evaluator replaced by a hook (a stand-in returning scripted APs) may have no dataset
        splits = {"train": tr.loader.dataset, "val": getattr(tr.evaluator, "dataset", None)}
        parts = []
        for split, ds in splits.items():
            if ds is None:
                continue
            c = data_summary(ds)
            tr.runlog.record({"type": "data", "split": split, **c})
            parts.append(f"{split} {c['images']} images, {c['images_skipped']} skipped, {c['boxes_dropped']} boxes "
                         f"dropped, {c['boxes_clipped']} clipped, {c['images_without_boxes']} without boxes")
        if parts:
            tr.log("data: " + "; ".join(parts))

    @staticmethod
    def _timing(tr):
        """Where the run's wall time went (a ``type: time`` record and one log line): setup
        (model, data, graph building before the first step), the first step of each input size
        (graph compile), the other steps (device time), waiting for data, evaluations,
        checkpoint writes, and the rest (logging, hooks, plots)."""
        t = dict(tr.timing, total_s=time.perf_counter() - tr.t_start + tr.timing["setup_s"])
        t["other_s"] = t["total_s"] - sum(tr.timing.values())
        tr.runlog.record({"type": "time", **t})
        tr.log("time: " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in t.items()))

