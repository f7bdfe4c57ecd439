"""The YOLOX trainer (official ``yolox/core/trainer.py`` structure: before/after hooks for the
whole run, each epoch and each iteration) around the compiled :class:`TrainStep`.

Run directory ``<train.output_dir>/<name>`` (rank 0 writes; the other ranks train and evaluate
their shard of the val set, printing their evaluation line on their own stdout):

* ``last.ckpt`` (every epoch end and on SIGINT/SIGTERM; the one it replaces is kept as
  ``last.prev.ckpt``), ``best.ckpt`` (best EMA AP50:95), ``epoch_<N>.ckpt`` every
  ``train.save_interval`` epochs -- training checkpoints (:mod:`~mindyolox.training.checkpoint`),
  written atomically with a CRC;
* ``metrics.jsonl``: one JSON record per logged iteration (``type: train``: epoch, iter, step,
  lr, loss terms, ms/step, data ms, memory), per evaluation (``type: eval``), and run events;
* ``train_log.txt`` (the log lines), ``config.yaml`` (resolved recipe), ``curves.png``,
  ``tensorboard/`` (``train.tensorboard``: :mod:`~mindyolox.training.tensorboard`).

The parts (model, EMA model, loader, optimizer, compiled step, evaluator) come from
:func:`~mindyolox.training.builder.build_training`; this class runs the loop around them.

The loop is device-resident: steps run in chunks (:class:`~mindyolox.training.feeder.StepFeeder`)
that end at a multiscale size change (every 10 global steps, the official interval), a log
line (``train.print_interval``), the epoch end or ``max_iters``; inside a chunk the host sends
nothing (the lr comes from the step's counter) and reads nothing. The loss terms are summed on
the device and read once per log line (``host_reads`` counts every device-to-host read), which
is also when a NaN/Inf loss is noticed. Hooks ``before_iter`` / ``after_iter`` run once per
chunk, ``iter`` being its last iteration; ``last`` holds the means of the last logged window.

Iteration semantics: global step ``k = epoch * steps_per_epoch + iter`` runs with ``lr =
schedule(k)`` (the official ``update_lr(progress + 1)`` after each step); the last
``no_aug_epochs + 1`` epochs (official 0.3.0, :func:`~mindyolox.data.loader.no_aug_start`) run
without Mosaic/MixUp (the loader), with the L1 term (the ``use_l1`` Parameter of the compiled
step) and with an evaluation after each of them (:func:`eval_due`). A checkpoint taken after
step ``k`` stores ``epoch``/``iter`` of step ``k + 1``; resuming restores model, EMA, momentum
buffers, loss-scale state and RNG, and the loader starts at that batch (``start_iter``), so a
resumed run reproduces an uninterrupted one.
"""
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ..data.loader import no_aug_start
from ..errors import ConfigError, MindYOLOXError, WeightsError
from .checkpoint import (NonFiniteWeights, good_checkpoint, load_training_state, non_finite, read_meta, rng_state,
                         save_training_state, set_rng_state, stale_temp_files, state_entries)
from .run_log import fmt_eta, rss_gb

__all__ = ["Trainer", "TrainingDiverged", "TrainHook", "eval_due"]

LOSS_NAMES = ("total", "iou", "obj", "cls", "l1", "num_fg")
PARTS = ("model", "net", "ema_model", "loader", "lr_schedule", "optimizer", "step", "evaluator")
# what a start writes before its first checkpoint: a run folder holding only these is not started
NOT_STARTED = {"config.yaml", "train_log.txt", "metrics.jsonl", "curves.png", "tensorboard"}


_CACHE_ENV = ("MS_COMPILER_CACHE_ENABLE", "MS_COMPILER_CACHE_PATH")

def eval_due(epoch, train_cfg):
    """Whether the trainer evaluates after ``epoch`` (1-based): every ``train.eval_interval``
    epochs (0: never), the last epoch, and each epoch from the no-aug switch on (the official
    trainer sets ``eval_interval = 1`` there)."""
    ei, max_epoch = int(train_cfg.eval_interval), int(train_cfg.max_epoch)
    start = no_aug_start(max_epoch, train_cfg.no_aug_epochs)
    return ei > 0 and (epoch % ei == 0 or epoch - 1 >= start or epoch == max_epoch)


def progress_postfix(last):
    """The progress bar's ``loss 3.21 lr 1.00e-02`` from the last logged window (``last``, a
    ``type: train`` record); ``loss – lr –`` until the first window is read (the loss is summed
    on the device and read once per log line: before that there is no value to show)."""
    if "step" not in last:
        return "loss \u2013 lr \u2013"
    return f"loss {last['total']:.2f} lr {last['lr']:.2e}"


class TrainingDiverged(MindYOLOXError):
    """The loss became NaN/Inf; the last good checkpoint is kept."""


class TrainHook:
    """Base class of trainer hooks: override any of these; each gets the trainer."""

    def before_train(self, trainer):
        pass

    def after_train(self, trainer):
        pass

    def before_epoch(self, trainer):
        pass

    def after_epoch(self, trainer):
        pass

    def before_iter(self, trainer):
        pass

    def after_iter(self, trainer):
        pass

    def wrap_step(self, trainer, step):
        """The callable the feeder launches once per training step (called once, before the
        first step, in hook order; each hook gets what the previous one returned). It receives
        exactly what the feeder hands the step -- with data sink, the device queue's tensors --
        and must call ``step`` with them and return its result. Default: ``step`` unchanged.
        (``bench/check_device.py`` checksums every batch the step receives this way.)"""
        return step


class Trainer:
    """Train a YOLOX model from a recipe.

    Args:
        cfg: the loaded recipe (``mindyolox.load_config``).
        options: :class:`~mindyolox.options.DeviceOptions` (None: resolved from the recipe and
            MindSpore's device target when training starts).
        run_dir: output folder (default ``<train.output_dir>/<name>``); name: run name.
        resume: False, True (``run_dir/last.ckpt``) or a checkpoint path.
        exist_ok: allow writing into an existing non-empty run directory without resuming.
        weights: ``.ckpt``/``.pth``/``.npz`` to fine-tune from (class layers re-initialised
            when ``num_classes`` differs).
        distributed: data parallel over the ``msrun`` workers (communication initialised here).
        data_sink: one ``mindspore.data_sink`` over the training pipeline for every input size
            (Ascend/GPU, :mod:`~mindyolox.training.feeder`; on CPU it falls back to the dataset
            iterator with a message; refused with ``data.multiscale_resize: sample`` while
            multiscale is on, :func:`~mindyolox.data.loader.check_sink_support`).
        num_workers: data workers (default ``data.num_workers`` capped at the CPU count).
        max_iters: stop after this many iterations in this process (tests, benchmarks);
            the LR schedule still follows ``max_epoch``.
        evaluate: run the periodic evaluation (``train.eval_interval``); hooks: list of
            :class:`TrainHook`; progress: show tqdm bars; compile_cache: MindSpore's on-disk
            graph cache: None / ``off`` (default), ``auto`` (a folder keyed by code version,
            recipe and device options, for fixed-size recipes) or a folder (a keyed subfolder
            of it); see :mod:`mindyolox.runtime.compile_cache`. precompile: compile the train
            step for every input size the run will meet (and the EMA and evaluation graphs)
            before the first step (:meth:`precompile`).
    """

    def __init__(self, cfg, options=None, run_dir=None, name=None, resume=False, exist_ok=False, weights=None,
                 distributed=False, data_sink=False, num_workers=None, max_iters=None, evaluate=True,
                 hooks=(), progress=True, compile_cache=None, precompile=False):
        from .lr import fit_short_schedule
        warmup, no_aug, self._schedule_note = fit_short_schedule(cfg.train)
        if self._schedule_note:  # a short run: a copy with the clipped schedule (lr module doc)
            from ..config import Config
            cfg = Config(json.loads(json.dumps(cfg, default=str)))
            cfg.train.warmup_epochs, cfg.train.no_aug_epochs = warmup, no_aug
        self.cfg = cfg
        self.tcfg = cfg.train
        self.options = options
        name = name or str(cfg.get("name", "") or "exp")
        self.run_dir = Path(run_dir) if run_dir else Path(str(self.tcfg.output_dir)) / name
        self.resume, self.exist_ok, self.weights = resume, exist_ok, weights
        self.distributed, self.data_sink = bool(distributed), bool(data_sink)
        self.num_workers, self.max_iters = num_workers, max_iters
        self.do_eval, self.hooks, self.progress = evaluate, list(hooks), progress
        self.compile_cache = compile_cache
        self.precompile_sizes = bool(precompile)
        self.rank, self.world_size = 0, 1
        self.best_ap, self.last_ap = 0.0, None
        self.prev_best, self.stale_evals = 0.0, 0   # early stopping (train.patience)
        self.stop_signal = None
        self.status = "running"
        self.iters_done = 0
        self.host_reads = 0
        self._resume_notes = []

    # ================================================================== run
    def train(self):
        """Run the whole training; returns ``status``: ``finished``, ``stopped`` (max_iters),
        ``early_stopped`` (``train.patience`` evaluations without a better AP50:95; last.ckpt
        and best.ckpt kept) or ``interrupted`` (signal, checkpoint saved). Raises
        ``TrainingDiverged`` on NaN/Inf."""
        try:
            self.before_train()
        except BaseException:
            if getattr(self, "feeder", None) is not None:  # a hook failed after the feeder was made
                try:
                    self.feeder.close()
                except Exception as e:  # the error in flight is the one to show
                    print(f"note: the data queue was not released either ({type(e).__name__}: {e})", file=sys.stderr)
            self._release_run_dir()
            raise
        try:
            self.train_in_epoch()
        except BaseException:
            if self.status != "diverged":
                self.status = "failed"
            raise
        finally:
            try:
                self.after_train()
            except Exception as e:
                if self.status != "failed":
                    raise
                # the error in flight is the one the user must see: one line, no chained traceback
                print(f"note: the run summary was not written either ({type(e).__name__}: {e})", file=sys.stderr)
            finally:
                self._release_run_dir()
        return self.status

    def train_in_epoch(self):
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.train_in_iter()
            if self.status != "running":
                return
            self.after_epoch()
            if self.status != "running":
                return
        self.status = "finished"

    def train_in_iter(self):
        first = self.start_iter if self.epoch == self.start_epoch else 0
        if self._win["steps"] == 0:  # the epoch end's checkpoint and evaluation are not step time
            self._win["t0"] = time.perf_counter()
        bar = self._bar(first)
        self.iter = first
        while self.iter < self.steps_per_epoch:
            n = self._chunk_length()
            self.before_iter()
            self.train_chunk(n)
            self.after_iter()
            if bar is not None:
                bar.update(n)
                bar.set_postfix_str(progress_postfix(self.last))
            done = self.max_iters is not None and self.iters_done >= self.max_iters
            if self.stop_signal is not None or done:
                self._log_window()  # the steps since the last log line
            self.iter += 1
            if self.stop_signal is not None:
                self._stop_on_signal()
                break
            if done:
                self.status = "stopped"
                self.save("last", self._meta())
                self.log(f"stopped after {self.iters_done} iterations (max_iters); saved {self.run_dir / 'last.ckpt'}")
                break
        if bar is not None:
            bar.close()

    @property
    def progress_in_iter(self):
        """Global step of the current iteration: ``epoch * steps_per_epoch + iter``."""
        return self.epoch * self.steps_per_epoch + self.iter

    # ================================================================== one chunk
    def _chunk_length(self):
        """Steps from ``iter`` to the next multiscale change, log line, epoch end or max_iters."""
        k, it = self.progress_in_iter, self.iter
        pi = max(1, int(self.tcfg.print_interval))
        n = min(self.interval - k % self.interval, pi - it % pi, self.steps_per_epoch - it)
        if self.max_iters is not None:
            n = min(n, self.max_iters - self.iters_done)
        return max(1, n)

    def train_chunk(self, n):
        """Run ``n`` steps from ``iter`` (one input size); ``iter`` ends on the last of them."""
        size = self.loader.source.size(self.epoch, self.iter * self.per_device_batch)
        self._win["steps"] += n
        data_s = 0.0
        if size not in self.sizes_seen:  # the first step of a size compiles its graph: time it
            t0 = time.perf_counter()
            data_s += self.feeder.run(1, size)
            self.step.stats.asnumpy()  # wait for it
            self.host_reads += 1
            self.sizes_seen[size] = time.perf_counter() - t0
            self._win["compile_s"] += self.sizes_seen[size]
            self.log(f"compiled the train step for input {size[0]}x{size[1]} in {self.sizes_seen[size]:.1f} s "
                     f"({len(self.sizes_seen)} size(s) so far)")
            n -= 1
            self.iters_done += 1
            self.iter += 1
        if n > 0:
            data_s += self.feeder.run(n, size)
            self.iters_done += n
            self.iter += n
        self.iter -= 1
        self._win["data_s"] += data_s
        self._win["size"] = size

    # ================================================================== compile up front
    def run_sizes(self):
        """The input sizes ``(h, w)`` of the steps this process will run (from the start or
        resume position to the schedule's end, or to ``max_iters``), in first-use order."""
        spe, src = self.steps_per_epoch, self.loader.source
        start = self.start_epoch * spe + self.start_iter
        end = self.max_epoch * spe
        if self.max_iters is not None:
            end = min(end, start + int(self.max_iters))
        sizes = []
        for k in list(range(start - start % self.interval, end, self.interval)) + [start]:
            size = tuple(src.size(k // spe, (k % spe) * self.per_device_batch))
            if max(k, start) < end and size not in sizes:
                sizes.append(size)
        return sizes

    def _example_batch(self, size):
        """Zero tensors shaped and typed as what the feeder hands the step for multiscale
        ``size`` (:class:`~mindyolox.training.feeder.StepFeeder`): images uint8 ``[B, 3, h0, w0]``
        at the recipe's input size when the step graph resizes the batch
        (``Loader.resize_in_graph``), else at ``size``; labels float32 ``[B, max_labels, 5]``;
        and ``size`` itself (a graph constant). A compile keys on shapes, dtypes and
        constants only, not on values."""
        from mindspore import Tensor
        b = self.per_device_batch
        hw = tuple(self.loader.source.builder.input_size) if self.loader.resize_in_graph else tuple(size)
        return (Tensor(np.zeros((b, 3) + tuple(int(v) for v in hw), np.uint8)),
                Tensor(np.zeros((b, int(self.cfg.data.max_labels), 5), np.float32)),
                (int(size[0]), int(size[1])))

    def precompile(self):
        """Compile, before the first step, the train-step graph of every input size the run
        will meet (:meth:`run_sizes`), the EMA-update graph and the evaluation forward, one
        log line per graph with its time, so that the steps then time evenly. They compile in
        the order a run without it meets them (first size, EMA, the other sizes, evaluation).

        Nothing runs: ``nn.Cell.compile(*args)`` builds and caches the graph for the inputs'
        shapes and dtypes and returns (``mindspore/nn/cell.py:1769-1784``); a later call
        compiles through the same ``Cell.compile`` (``compile_and_run``, ``cell.py:1786-1800``),
        whose ``_CellGraphExecutor.compile`` keys the graph on the cell and the arguments'
        shapes and dtypes (``generate_arguments_key``, ``mindspore/graph/api.py:2311``) and
        returns the cached graph when that key was compiled (``api.py:2333-2339``). So no
        parameter, optimizer, EMA, loss-scale, step-counter or statistics value changes
        (``tests/test_precompile.py``, ``tests/test_resume.py``: the weights bit for bit against a run
        without it).
        The example batch must keep the dtypes the feeder hands the step (:meth:`_example_batch`),
        or the real first step compiles once more (``step.compiled_graphs`` would show it).
        """
        sizes = self.run_sizes()
        t_all = time.perf_counter()
        for i, size in enumerate(sizes):
            t0 = time.perf_counter()
            self.step.compile(*self._example_batch(size))
            self.sizes_seen[size] = time.perf_counter() - t0
            self.log(f"precompile {i + 1}/{len(sizes)}: train step {size[0]}x{size[1]} in "
                     f"{self.sizes_seen[size]:.1f} s")
            if i == 0 and self.step.use_ema:  # the order a run without precompile meets them in
                t0 = time.perf_counter()
                self.step.ema.compile(self.step.applied)
                self.log(f"precompile: EMA update in {time.perf_counter() - t0:.1f} s")
        if self.evaluator is not None:
            from mindspore import Tensor
            model = self.ema_model if self.ema_model is not None else self.model
            ld = self.evaluator.loader
            size = tuple(ld.source.test_size)
            was_training = model.training
            t0 = time.perf_counter()
            model.set_train(False)
            try:
                model.compile(Tensor(np.zeros((ld.batch_size, 3) + size, np.float32)))
            finally:
                model.set_train(was_training)
            self.log(f"precompile: evaluation forward {size[0]}x{size[1]} in {time.perf_counter() - t0:.1f} s")
        spent = time.perf_counter() - t_all
        self.timing["compile_s"] += spent
        self.log(f"precompiled {len(sizes)} train-step size(s){' + EMA' if self.step.use_ema else ''}"
                 f"{' + evaluation' if self.evaluator is not None else ''} in {spent:.1f} s")

    # ================================================================== hooks
    def before_train(self):
        import mindspore as ms
        t_setup = time.perf_counter()
        if self.data_sink:  # on CPU too (before the run folder): the command must not fail only on the device
            from ..data.loader import check_sink_support
            check_sink_support(self.cfg.data)
        self._setup_runtime()
        cfg, t = self.cfg, self.tcfg
        self.max_epoch = int(t.max_epoch)
        meta = self._read_resume_meta()
        self._setup_compile_cache()  # needs the start position; nothing has compiled yet
        if self.weights and meta is None:
            from ..convert.weights import check_weights_file
            check_weights_file(self.weights)  # before the run folder exists
        if self.rank == 0:
            self._prepare_run_dir()
        self._setup_logging()
        if self._schedule_note:
            self.log(self._schedule_note)
        if getattr(self, "_cache_note", None):
            self.log(self._cache_note)
        ms.set_seed(int(t.seed))
        np.random.seed(int(t.seed))
        from .builder import build_training
        sink = self.data_sink and self.options.device != "CPU"
        if self.data_sink and not sink:
            self.log("--data-sink: MindSpore refuses data sink on CPU; the same chunked loop runs through "
                     "the dataset iterator")
        parts = build_training(cfg, self.options, rank=self.rank, world_size=self.world_size,
                               distributed=self.distributed, start_epoch=self.start_epoch, start_iter=self.start_iter,
                               num_workers=self.num_workers, weights=None if meta else self.weights,
                               evaluate=self.do_eval)
        for name in PARTS:
            setattr(self, name, getattr(parts, name))
        self._log_weights_report(parts.weights_report)
        if parts.bn_note:  # folded BatchNorm re-inflated (or, with train.bn_calibration_images 0, the warning)
            self.log(parts.bn_note)
        if parts.frozen is not None:
            n_train = len(self.optimizer.params)
            self.log(f"frozen ({', '.join(map(str, t.freeze))}): {parts.frozen[0]} tensors without gradient, "
                     f"{parts.frozen[1]} BatchNorm layers in eval mode; {n_train} tensors train")
        self.steps_per_epoch = self.loader.steps_per_epoch
        self.per_device_batch = self.loader.batch_size
        self.interval = self.loader.source.interval
        if self.start_iter >= self.steps_per_epoch:
            raise MindYOLOXError(f"checkpoint iteration {self.start_iter} >= {self.steps_per_epoch} steps per "
                                 "epoch: the dataset or batch size changed since the checkpoint")
        self.no_aug_from = no_aug_start(self.max_epoch, t.no_aug_epochs)
        if self.no_aug_from == 0:
            self.log("note: no_aug_epochs + 1 >= max_epoch: the whole run is without Mosaic/MixUp, with L1")
        if meta is not None:
            try:
                load_training_state(self.resume_path, self.model, self.step, self.ema_model, self.optimizer)
            except WeightsError as e:  # e.g. NaN/Inf weights in a file without CRC
                raise type(e)(f"{e}; {self._resume_advice()}") from None
            if "rng" in meta:
                set_rng_state(meta["rng"])
            self.log(f"resumed from {self.resume_path}: epoch {self.start_epoch + 1} iter {self.start_iter + 1} "
                     f"(step {self.start_epoch * self.steps_per_epoch + self.start_iter}), best AP {100 * self.best_ap:.2f}")
        elif self.distributed:
            from ..runtime.distributed import broadcast_initial_weights
            broadcast_initial_weights(self.model, self.ema_model, self.rank, self.world_size)
        self.sizes_seen = {}
        feed = self.step
        for h in self.hooks:
            feed = h.wrap_step(self, feed)
        from .feeder import StepFeeder
        self.feeder = StepFeeder(feed, self.loader, sink=sink)
        self.overflow_steps = 0
        self._new_window()
        self.last = {"total": float("nan"), "lr": 0.0}
        self.t_start = time.perf_counter()
        self.timing = dict.fromkeys(("setup_s", "compile_s", "step_s", "data_s", "eval_s", "ckpt_s"), 0.0)
        self.timing["setup_s"] = self.t_start - t_setup
        if self.precompile_sizes:
            self.precompile()
        self._install_signals()
        self.log(f"training {self.max_epoch} epochs x {self.steps_per_epoch} iterations "
                 f"(batch {self.per_device_batch} x {self.world_size} device(s)), {self.lr_schedule}; "
                 f"{self.options.describe()}{', data sink' if sink else ''}")
        self.event("start", start_epoch=self.start_epoch, start_iter=self.start_iter, options=self.options.to_dict())
        for h in self.hooks:
            h.before_train(self)

    def after_train(self):
        if getattr(self, "feeder", None) is not None:
            self.feeder.close()  # data sink: stop_send / release the device queue (feeder module doc)
        self._restore_signals()
        if self.distributed and self.status in ("finished", "stopped", "early_stopped"):
            from ..runtime.distributed import all_reduce_norm
            all_reduce_norm(self.model, self.world_size)
        for h in self.hooks:
            h.after_train(self)
        if self.rank == 0 and hasattr(self, "metrics_path") and self.metrics_path.exists():
            self._log_data_summary()
            from .plots import plot_training_curves
            try:
                png = plot_training_curves(self.metrics_path, self.run_dir / "curves.png")
            except OSError as e:  # disk full: the run's result is not a picture
                png = f"not written ({e})"
            best = (f"best AP50:95 {100 * self.best_ap:.2f}" if self.last_ap is not None else
                    "no evaluation ran" + (" (--no-eval)" if not self.do_eval else ""))
            self.log(f"{self.status}: {self.iters_done} iterations in {time.perf_counter() - self.t_start:.0f} s, "
                     f"{best}, {self.overflow_steps} overflow-skipped steps, "
                     f"{self.host_reads} device reads; curves: {png}")
            self._log_timing()
        self.event("end", status=self.status)
        self.runlog.close()

    def _log_data_summary(self):
        """What the data left out (:func:`~mindyolox.data.verify.data_summary`): one
        ``type: data`` record per split in metrics.jsonl and one log line."""
        from ..data.verify import data_summary
        splits = {"train": getattr(getattr(self, "loader", None), "dataset", None),
                  "val": getattr(getattr(self, "evaluator", None), "dataset", None)}
        parts = []
        for split, ds in splits.items():
            if ds is None:
                continue
            c = data_summary(ds)
            self.runlog.record({"type": "data", "split": split, **c})
            parts.append(f"{split} {c['images']} images, {c['images_skipped']} skipped, {c['boxes_dropped']} boxes "
                         f"dropped, {c['boxes_clipped']} clipped, {c['images_without_boxes']} without boxes")
        if parts:
            self.log("data: " + "; ".join(parts))

    def _tb_samples(self):
        """Augmented training samples to TensorBoard: at the start and at the no-aug switch."""
        if self.runlog.tb is None or self.epoch not in (self.start_epoch, self.no_aug_from):
            return
        from ..data.samples import render_samples
        from ..utils.visualize import make_grid
        images, _ = render_samples(self.cfg.data, self.cfg.aug, int(self.tcfg.seed) + self.epoch, 8,
                                   mosaic=self.epoch < self.no_aug_from, dataset=self.loader.dataset,
                                   progress=self.progress)
        self.runlog.tb.image("train/augmented", make_grid(images, 4), self.epoch * self.steps_per_epoch)

    def before_epoch(self):
        self._tb_samples()
        use_l1 = self.epoch >= self.no_aug_from
        self.step.set_use_l1(use_l1)
        if use_l1 and (self.epoch == self.no_aug_from or self.epoch == self.start_epoch):
            self.log(f"epoch {self.epoch + 1}: no Mosaic/MixUp from now on, L1 loss on")
        for h in self.hooks:
            h.before_epoch(self)

    def after_epoch(self):
        for h in self.hooks:
            h.after_epoch(self)
        ep = self.epoch + 1
        # the evaluation first, then last.ckpt: its best_ap / stale_evals include this epoch's
        # AP, so a kill at any point leaves best_ap and best.ckpt consistent (see _read_resume_meta)
        if self.do_eval and eval_due(ep, self.tcfg):
            if self.distributed:
                from ..runtime.distributed import all_reduce_norm
                all_reduce_norm(self.model, self.world_size)
                if self.ema_model is not None:  # one model evaluated on every shard
                    all_reduce_norm(self.ema_model, self.world_size)
            self.evaluate_and_save()
            self._check_patience()
        meta = self._meta()
        self.save("last", meta)
        si = int(self.tcfg.save_interval)
        if si > 0 and ep % si == 0:
            self.save(f"epoch_{ep}", meta)

    def _check_patience(self):
        """End the run after ``train.patience`` evaluations in a row without a new best
        (every rank decides the same: they all hold the AP)."""
        patience = int(self.tcfg.get("patience", 0) or 0)
        if patience <= 0 or self.evaluator is None:
            return
        self.stale_evals = 0 if self.best_ap > self.prev_best else self.stale_evals + 1
        self.prev_best = self.best_ap
        if self.stale_evals >= patience:
            self.status = "early_stopped"
            self.log(f"early stop after epoch {self.epoch + 1}: {patience} evaluation(s) without a better AP50:95 "
                     f"than {100 * self.best_ap:.2f} (train.patience={patience}); last.ckpt and best.ckpt kept")
            self.event("early_stop", epoch=self.epoch + 1, best_ap=self.best_ap, patience=patience)

    def before_iter(self):
        for h in self.hooks:
            h.before_iter(self)

    def after_iter(self):
        pi = max(1, int(self.tcfg.print_interval))
        if (self.iter + 1) % pi == 0 or self.iter + 1 == self.steps_per_epoch:
            self._log_window()
        for h in self.hooks:
            h.after_iter(self)

    # ================================================================== evaluation / checkpoints
    def evaluate_and_save(self):
        """Evaluate the EMA weights (the model without EMA); write ``best.ckpt`` on a new best.
        Distributed: every rank evaluates its shard and receives the AP (``evaluator`` module
        doc); each rank prints its line with the time it waited for the others."""
        if self.evaluator is None:
            return None
        model = self.ema_model if self.ema_model is not None else self.model
        t0 = time.perf_counter()
        res = self.evaluator.evaluate(model, progress=False)
        model.set_train(False)
        self.model.set_train(True)
        ap, ap50 = float(res["AP50_95"]), float(res["AP50"])
        eval_s = time.perf_counter() - t0
        wait_s = float(res["timing"].get("wait_s", 0.0))
        self.timing["eval_s"] += eval_s
        self.last_ap = ap
        best = ap > self.best_ap
        self.best_ap = max(self.best_ap, ap)
        line = (f"eval epoch {self.epoch + 1}: AP50:95 {100 * ap:.2f} AP50 {100 * ap50:.2f} "
                f"(best {100 * self.best_ap:.2f}) in {eval_s:.1f} s")
        if self.world_size > 1:
            line += (f"; {res['timing']['images']} images on this rank, {wait_s:.1f} s of it waiting for "
                     "the other ranks")
        self.runlog.rank_info(line)
        step = (self.epoch + 1) * self.steps_per_epoch
        self.runlog.record({"type": "eval", "epoch": self.epoch + 1, "step": step, "AP50_95": ap, "AP50": ap50,
                           "eval_s": eval_s, "wait_s": wait_s,
                           "stats": [float(s) for s in res.get("stats", [])]})
        if self.runlog.tb is not None and res.get("samples"):
            self.runlog.tb.detections(res["samples"], self.evaluator.dataset, step)
        if best:
            self.save("best", self._meta())
        return res

    def save(self, tag, meta):
        """Write ``<run_dir>/<tag>.ckpt`` (rank 0 only); ``last.ckpt`` keeps the file it replaces
        as ``last.prev.ckpt`` (:func:`~mindyolox.training.checkpoint.save_training_state`).

        Weights holding NaN/Inf (a step whose loss was still finite can leave them) are never
        written: the run stops as diverged (:meth:`_diverge`), the checkpoint on disk untouched.
        With several devices every rank checks (the weights are the same on all of them), so
        all stop at the same save with the same line."""
        what = (f"the weights hold NaN/Inf after {meta.get('global_step', '?')} steps, so {tag}.ckpt was not "
                "written over")
        if self.rank != 0:
            if self.world_size > 1:
                bad = non_finite(state_entries(self.model, self.step, self.ema_model, self.optimizer))
                if bad:
                    self._diverge(f"{what} ({', '.join(bad)})")
            return None
        t0 = time.perf_counter()
        try:
            path = save_training_state(self.run_dir / f"{tag}.ckpt", self.model, self.step, self.ema_model,
                                       self.optimizer, meta, keep_previous=tag == "last")
        except NonFiniteWeights as e:
            self._diverge(f"{what} ({', '.join(e.names)})")
        self.timing["ckpt_s"] += time.perf_counter() - t0
        self.event("checkpoint", tag=tag, path=str(path), epoch=meta["epoch"], iter=meta["iter"])
        return path

    def _diverge(self, what):
        """Stop the run as diverged: ``TrainingDiverged`` with one line saying ``what`` happened
        and the last good checkpoint -- the newest one in the run folder that loads, passes its
        CRC check and holds no NaN/Inf (:func:`~mindyolox.training.checkpoint.good_checkpoint`;
        ``last.ckpt``, else ``last.prev.ckpt``, ...), never a file merely because it exists."""
        self.status = "diverged"
        found = good_checkpoint(self.run_dir)
        kept = (f"{found[0]} (step {found[1]['global_step']}); continue from it with --resume {found[0]}"
                if found else "none written yet")
        msg = f"{what}; stopping. The last good checkpoint is kept: {kept}. Lower the lr or check the data."
        self.event("diverged", message=msg)
        raise TrainingDiverged(msg)

    def _meta(self):
        """Checkpoint metadata: ``epoch``/``iter`` of the next iteration to run (0-based)."""
        epoch, it = self.epoch, self.iter
        if it >= self.steps_per_epoch:
            epoch, it = epoch + 1, 0
        return {"epoch": epoch, "iter": it, "global_step": epoch * self.steps_per_epoch + it,
                "steps_per_epoch": self.steps_per_epoch, "world_size": self.world_size,
                "best_ap": self.best_ap, "last_ap": self.last_ap, "stale_evals": self.stale_evals,
                "rng": rng_state(),
                "options": self.options.to_dict(),
                "config": json.loads(json.dumps(self.cfg, default=str)), "time": time.time()}

    # ================================================================== setup pieces
    def _restore_env(self):
        for key, value in getattr(self, "_env_saved", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._env_saved = {}

    def _setup_runtime(self):
        # process-global MindSpore switches: set for this run, restored by train() so that
        # later compiles in the same process (tests, notebooks) do not inherit them
        self._env_saved = {}
        from ..runtime.context import keep_compile_dumps_in
        self._env_saved.update(keep_compile_dumps_in(self.run_dir))
        if self.distributed:
            from ..runtime.distributed import PeerLost, init_data_parallel
            try:
                self.rank, self.world_size = init_data_parallel()
            except PeerLost as e:  # msrun's scheduler process: name the step rank 0 logged last
                raise PeerLost(e.ranks, e.detail, last_logged_step(self.run_dir / "metrics.jsonl")) from None
        else:  # msrun without --distributed: one line, see distributed.check_not_launched_in_parallel
            from ..runtime.distributed import check_not_launched_in_parallel
            check_not_launched_in_parallel()
        if self.options is None:
            from ..options import resolve_options
            self.options = resolve_options(self.cfg)
        from ..options import apply_precision_mode
        apply_precision_mode(self.options)  # Ascend only; recorded in the checkpoints' options

    def _setup_compile_cache(self):
        """MindSpore's graph cache for this run (``compile_cache``: None/off, ``auto`` or a
        folder; see :mod:`mindyolox.runtime.compile_cache`), set before anything compiles."""
        from ..runtime.compile_cache import resolve_compile_cache, run_switches
        run = run_switches(self.cfg, (self.start_epoch, self.start_iter), distributed=self.distributed,
                           world_size=self.world_size, data_sink=self.data_sink, evaluate=bool(self.do_eval),
                           precompile=self.precompile_sizes)
        # (the folder is named by the key alone: two runs of one recipe have two run names)
        path, self._cache_note = resolve_compile_cache(self.compile_cache, self.cfg, self.options, run)
        if path is not None:
            self._env_saved.update({k: os.environ.get(k) for k in _CACHE_ENV})
            os.environ["MS_COMPILER_CACHE_ENABLE"] = "1"
            os.environ["MS_COMPILER_CACHE_PATH"] = str(path)

    def _read_resume_meta(self):
        """Resume metadata (or None); sets the start position and the best AP so far."""
        self.start_epoch, self.start_iter = 0, 0
        if not self.resume:
            return None
        self.resume_path = Path(self.run_dir / "last.ckpt" if self.resume is True else self.resume)
        if self.resume is True and not self.resume_path.is_file():
            raise MindYOLOXError(f"nothing to resume: {self.run_dir} holds no last.ckpt; {self._resume_advice()}")
        try:
            meta = read_meta(self.resume_path, self._resume_notes, ours=self.resume is True)
        except WeightsError as e:
            if not self.resume_path.is_file():
                raise
            raise type(e)(f"{e}; {self._resume_advice()}") from None
        self.start_epoch, self.start_iter = int(meta["epoch"]), int(meta["iter"])
        self.best_ap = self.prev_best = float(meta.get("best_ap", 0.0))
        self._reconcile_best()
        self.last_ap = meta.get("last_ap")
        self.stale_evals = int(meta.get("stale_evals", 0))
        if self.start_epoch >= self.max_epoch:
            raise MindYOLOXError(f"{self.resume_path}: the run already finished ({self.start_epoch} of "
                                 f"{self.max_epoch} epochs); raise train.max_epoch to train longer")
        if int(meta.get("world_size", self.world_size)) != self.world_size:
            self._resume_notes.append(f"note: checkpoint written with {meta['world_size']} devices, "
                                      f"resuming on {self.world_size}")
        return meta

    def _resume_advice(self):
        """What to do when ``resume_path`` cannot be resumed: the newest good checkpoint of the
        run folder (:func:`~mindyolox.training.checkpoint.good_checkpoint`), else how to start
        again -- without ``--resume`` when the folder holds only what a start writes before
        its first checkpoint (and temporary files of a save that did not finish, removed by
        :meth:`_prepare_run_dir`), else with ``--exist-ok``."""
        found = good_checkpoint(self.run_dir, exclude=[self.resume_path])
        if found:
            return (f"the newest good checkpoint is {found[0]} (step {found[1]['global_step']}): continue with "
                    f"--resume {found[0]}")
        from ..runtime.run_lock import LOCK_NAME
        d = self.run_dir
        temps = stale_temp_files(d)
        cut = f" (a save was cut off: {', '.join(p.name for p in temps)})" if temps else ""
        others = [p for p in d.iterdir() if p.name not in NOT_STARTED and p.name != LOCK_NAME
                  and p not in temps] if d.is_dir() else []
        if not others:
            return f"no checkpoint was saved yet{cut}: start the run again without --resume"
        return (f"no good checkpoint in it{cut}: start the run again with --exist-ok (or choose another --name)")

    def _reconcile_best(self):
        """``best_ap`` at least the AP of the ``best.ckpt`` on disk: a run killed after an
        evaluation wrote best.ckpt but before the next last.ckpt resumes with the older
        best_ap of last.ckpt, and a worse model would then overwrite best.ckpt."""
        best = Path(self.run_dir) / "best.ckpt"
        if not best.is_file() or Path(self.resume_path).resolve() == best.resolve():
            return
        try:
            on_disk = float(read_meta(best).get("best_ap", 0.0))
        except MindYOLOXError as e:
            self._resume_notes.append(f"note: {best} is unreadable ({e}); best AP from {self.resume_path}")
            return
        if on_disk > self.best_ap:
            self._resume_notes.append(f"note: best.ckpt holds AP50:95 {100 * on_disk:.2f}, newer than the "
                                      f"{100 * self.best_ap:.2f} in {Path(self.resume_path).name}: kept as the best")
            self.best_ap = self.prev_best = on_disk

    def _log_weights_report(self, report):
        for note in self._resume_notes:
            self.log(note)
        if report is None:
            return
        cls_layers = [n for n, _, _ in report.mismatched if n.startswith("head.cls_preds.")]
        if cls_layers:
            self.log(f"fine-tuning: num_classes differs from {self.weights}, the head's class layers "
                     f"({len(cls_layers)} tensors) keep their fresh initialisation")
        self.log(report.summary())

    def _prepare_run_dir(self):
        """Claim and create the run folder. It is locked first (:mod:`~mindyolox.runtime.run_lock`:
        a second start into a live run's folder stops with one line, touching nothing); then the
        temporary files of a save that did not finish (a process killed while saving,
        :func:`~mindyolox.training.checkpoint.stale_temp_files`) are removed; then a folder
        holding only what a start writes before its first checkpoint (a start that failed, or
        was killed during its first save) counts as not started: its files are replaced."""
        from ..runtime.run_lock import LOCK_NAME, RunLock
        d = self.run_dir
        self._lock = RunLock(d)
        self._resume_notes.extend(self._lock.acquire())
        stale = stale_temp_files(d)  # a process killed during a save; we hold the lock: nobody writes them
        for p in stale:
            p.unlink()
        if stale:
            self._resume_notes.append(f"note: removed {', '.join(p.name for p in stale)} in {d}: temporary file(s) "
                                      "of a checkpoint save that did not finish")
        entries = [p for p in d.iterdir() if p.name != LOCK_NAME]
        if entries and not self.resume and not self.exist_ok:
            if any(p.name not in NOT_STARTED for p in entries):
                self._release_run_dir()
                raise MindYOLOXError(f"run directory {d} already exists and is not empty: pass --resume to "
                                     "continue it, --exist-ok to write into it anyway, or another --name")
            for p in entries:
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            self._resume_notes.append(f"note: {d} held no checkpoint (a start that did not train); "
                                      "its files were replaced")
        d.mkdir(parents=True, exist_ok=True)

    def _release_run_dir(self):
        """Give the run folder's lock back (and MindSpore's environment switches)."""
        self._restore_env()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()

    def _setup_logging(self):
        from .run_log import RunLog
        self.runlog = RunLog(self.run_dir, self.rank, tensorboard=bool(self.tcfg.tensorboard))
        self.metrics_path = self.runlog.metrics_path
        if self.rank == 0 and not self.resume:
            import yaml
            with open(self.run_dir / "config.yaml", "w") as f:
                yaml.safe_dump(json.loads(json.dumps(self.cfg, default=str)), f, sort_keys=False)

    def log(self, msg):
        """A log line (rank 0 only: console + train_log.txt)."""
        self.runlog.info(msg)

    def event(self, kind, **fields):
        """A ``type: event`` record in metrics.jsonl."""
        self.runlog.event(kind, **fields)

    # ================================================================== logging
    def _bar(self, first):
        if not self.progress or self.rank != 0:
            return None
        from tqdm import tqdm
        return tqdm(total=self.steps_per_epoch, initial=first, desc=f"epoch {self.epoch + 1}/{self.max_epoch}",
                    leave=False, dynamic_ncols=True, file=sys.stderr)

    def _new_window(self):
        self._win = {"t0": time.perf_counter(), "data_s": 0.0, "compile_s": 0.0, "size": None, "steps": 0}

    def _log_window(self):
        """Read the step's device-side sums (one read), log their means, check for NaN/Inf."""
        if self._win["steps"] == 0:  # nothing ran since the last read
            return
        stats = self.step.read_stats()
        self.host_reads += 1
        n = int(round(stats["steps"]))
        if n == 0:
            return
        w, k = self._win, self.progress_in_iter
        wall = time.perf_counter() - w["t0"] - w["compile_s"]
        self.timing["step_s"] += max(wall - w["data_s"], 0.0)
        self.timing["data_s"] += w["data_s"]
        self.timing["compile_s"] += w["compile_s"]
        rec = {name: stats[name] / n for name in LOSS_NAMES}
        rec.update(epoch=self.epoch + 1, iter=self.iter + 1, step=k, steps=n,
                   lr=self.lr_schedule(k // int(self.tcfg.accumulate)),
                   skipped=int(round(stats["skipped"])), scale=stats["scale"],
                   step_ms=1e3 * max(wall - w["data_s"], 0.0) / n, data_ms=1e3 * w["data_s"] / n,
                   size=list(w["size"]) if w["size"] else None)
        self.last = rec
        self.overflow_steps += rec["skipped"]
        self._new_window()
        if not math.isfinite(rec["total"]):
            self._diverge(f"loss is {rec['total']} in the {n} step(s) up to epoch {self.epoch + 1} iter "
                          f"{self.iter + 1} (step {k}, lr {rec['lr']:.3g})")
        total_steps = self.max_epoch * self.steps_per_epoch
        eta = (total_steps - k - 1) * (rec["step_ms"] + rec["data_ms"]) / 1e3
        cur, peak = rss_gb()
        self.log(f"epoch {rec['epoch']}/{self.max_epoch} iter {rec['iter']}/{self.steps_per_epoch} "
                 f"lr {rec['lr']:.3e} | total {rec['total']:.3f} iou {rec['iou']:.3f} obj {rec['obj']:.3f} "
                 f"cls {rec['cls']:.3f} l1 {rec['l1']:.3f} fg {rec['num_fg']:.2f} | {rec['step_ms']:.0f} ms/step "
                 f"data {rec['data_ms']:.0f} ms | size {rec['size'][0] if rec['size'] else '-'} | "
                 f"ETA {fmt_eta(eta)} | mem {cur:.2f} GB (peak {peak:.2f})")
        self.runlog.record({"type": "train", **rec, "mem_gb": cur})

    def _log_timing(self):
        """Where the run's wall time went (a ``type: time`` record and one log line): setup
        (model, data, graph building before the first step), the first step of each input size
        (graph compile), the other steps (device time), waiting for data, evaluations,
        checkpoint writes, and the rest (logging, hooks, plots)."""
        t = dict(self.timing, total_s=time.perf_counter() - self.t_start + self.timing["setup_s"])
        t["other_s"] = t["total_s"] - sum(self.timing.values())
        self.runlog.record({"type": "time", **t})
        self.log("time: " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in t.items()))

    # ================================================================== signals
    def _install_signals(self):
        self._old_handlers = {}

        def handler(signum, frame):
            if self.stop_signal is not None:  # second signal: leave now
                raise KeyboardInterrupt
            self.stop_signal = signum
            self.log(f"received {signal.Signals(signum).name}: saving a checkpoint after this iteration")
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old_handlers[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        if signal.SIGINT in self._old_handlers:  # MindSpore turns SIGINT into SIGTERM otherwise
            from ..runtime.signals import SignalKeeper
            self._sigint_keeper = SignalKeeper(signal.SIGINT)

    def _restore_signals(self):
        keeper = getattr(self, "_sigint_keeper", None)
        if keeper is not None:
            keeper.stop()
            self._sigint_keeper = None
        for sig, h in getattr(self, "_old_handlers", {}).items():
            signal.signal(sig, h)

    def _stop_on_signal(self):
        meta = self._meta()
        path = self.save("last", meta)
        self.status = "interrupted"
        self.log(f"interrupted by {signal.Signals(self.stop_signal).name} at epoch {meta['epoch'] + 1} "
                 f"iter {meta['iter'] + 1}: saved {path}; continue with --resume")
        self.event("interrupted", signal=int(self.stop_signal), epoch=meta["epoch"], iter=meta["iter"])


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


def check_config(cfg):
    """Fail early, with one line, on train settings the trainer cannot use."""
    t = cfg.train
    if int(t.batch_size) <= 0:
        raise ConfigError(f"train.batch_size must be positive, got {t.batch_size}")
    if str(t.loss_scale) not in ("auto", "none", "static", "dynamic"):
        raise ConfigError(f"train.loss_scale must be auto, none, static or dynamic, got {t.loss_scale!r}")
    if str(t.amp_level) not in ("O0", "O1", "O2", "O3"):
        raise ConfigError(f"train.amp_level must be O0, O1, O2 or O3, got {t.amp_level!r}")
