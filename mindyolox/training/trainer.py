"""The YOLOX trainer: the loop (train / epoch / chunk / iteration) and the order of its hooks
around the compiled :class:`~mindyolox.training.train_step.TrainStep`.

Run directory ``<train.output_dir>/<name>`` (rank 0 writes; the other ranks train and evaluate
their shard of the val set, printing their evaluation line on their own stdout):

* ``last.ckpt`` (every epoch end, every ``train.checkpoint_interval`` steps inside an epoch, and
  on a stop request; the one it replaces is kept as ``last.prev.ckpt``), ``best.ckpt`` (best EMA
  AP50:95), ``epoch_<N>.ckpt`` every ``train.save_interval`` epochs -- training checkpoints (:mod:`~mindyolox.training.checkpoint`),
  written atomically with a CRC;
* ``metrics.jsonl``: one JSON record per logged iteration (``type: train``: epoch, iter, step,
  lr, loss terms, ms/step, data ms, memory), per evaluation (``type: eval``), and run events;
* ``train_log.txt`` (the log lines), ``config.yaml`` (resolved recipe), ``curves.png``,
  ``tensorboard/`` (``train.tensorboard`` or ``tensorboard`` in ``train.loggers``: :mod:`~mindyolox.training.tensorboard`),
  ``mlruns/`` and ``wandb/`` (``train.loggers``: :mod:`~mindyolox.training.hooks.experiment`).

The parts (model, EMA model, loader, optimizer, compiled step, evaluator) come from
:func:`~mindyolox.training.builder.build_training`; this class runs the loop around them.

**Hooks.** Everything the loop does besides stepping is a :class:`TrainHook` on the interface
users get (:mod:`mindyolox.training.hooks`): one list, built-ins and ``hooks=`` together,
called at each point in order of ``priority``, lower first (mmengine's scale; equal
priorities keep their order, built-ins first). A user hook has 50 (``NORMAL``).

================  ========  ==================================================================
hook              priority  what it does at each point
================  ========  ==================================================================
ResumeHook        10        before_train: load model/EMA/optimizer/loss scale/RNG of a resume
                            (else, distributed: rank 0's initial weights to every rank)
(trainer)         10 < p    wrap_step of every hook (in this order), then the feeder is opened
PrecompileHook    20        before_train: ``--precompile``: every train-step size, EMA, eval
LoggerHook        30        before_train: the ``training ...`` line, ``start`` event;
                            before_epoch: TensorBoard samples, progress bar; after_iter: the log
                            window every ``print_interval`` (means, loss scale and skipped
                            steps, ETA, memory, NaN/Inf check: diverged; float16 overflow:
                            warning, or last.ckpt and overflowed); on_stop: the window since the
                            last line; after_epoch / after_train: bar closed
user hooks        50        whatever they do (``trainer.last`` is fresh in their after_iter)
EvalHook          60        after_epoch when due: BN stats agreed (distributed), evaluation,
                            ``best.ckpt`` (+ ``best_detections.json``) on a new best, early stop
                            (``train.patience``)
CheckpointHook    70        after_iter: ``last.ckpt`` every ``train.checkpoint_interval`` steps;
                            after_epoch: ``last.ckpt`` (+ ``last.prev.ckpt``), ``epoch_<N>.ckpt``;
                            on_stop: ``last.ckpt`` and the stopping / stopped line. Before every
                            save, distributed: BN statistics averaged over the ranks (once per step)
AnalysisHook      80        after_train (rank 0): ``analysis/`` of ``best.ckpt`` from
                            ``best_detections.json`` (kept by EvalHook; no second inference)
SummaryHook       90        before_train: ``dataset_report.json`` / ``.png`` of the training set;
                            after_train: data summary, ``curves.png``, summary line, time record,
                            ``end`` event
ExperimentHook    95        ``train.loggers`` mlflow / wandb: after_record (every record): its metrics
                            to the trackers; after_train: the run's PNG/CSV files and
                            ``best.ckpt``, the end status (:mod:`~.hooks.experiment`)
================  ========  ==================================================================

Points, in order: ``wrap_step`` (once), ``before_train``, then per epoch ``before_epoch``, per
chunk ``before_iter`` / ``after_iter``, ``after_epoch``; ``on_stop`` when a stop request or
``max_iters`` ends the run inside an epoch; ``after_train`` on every end past ``before_train``.
Before ``after_train`` the trainer closes the loop's resources (signal handlers, the data
queue) and, distributed, agrees the BN statistics of a run that ended well.

**Stops.** A stop request -- SIGINT/SIGTERM to any rank, or a ``STOP`` file created in the run
folder -- is agreed by all ranks after each chunk's ``after_iter``
(:class:`~mindyolox.runtime.stop.StopRequests`: one small ``AllReduce`` per chunk), so every rank
stops after the same step, rank 0 writes ``last.ckpt`` with it, every rank logs ``stopping after
step N: SIGTERM on rank 1; ...`` (``N``: the steps done, the checkpoint's ``global_step``) and, a
distributed run, waits for the others before it returns (msrun SIGKILLs the workers still
running when one exits non-zero: rank 0 must not be inside its save then).

**Resources.** ``train()`` enters each process resource as a context manager on one
``contextlib.ExitStack``: MindSpore's compile-dump folder and graph-cache environment
(:mod:`~mindyolox.runtime.context`, :mod:`~mindyolox.runtime.compile_cache`), the run-folder
lock (:func:`~mindyolox.training.hooks.checkpoint.run_folder`), the run log, and on a nested
stack the feeder (its device queue) and the signal handlers
(:func:`~mindyolox.runtime.signals.stop_signals`, installed after ``before_train``). Every
end -- finished, stopped, early-stopped, interrupted, diverged, an error, an error in set-up --
releases each exactly once.

The loop is device-resident: steps run in chunks (:class:`~mindyolox.training.feeder.StepFeeder`)
that end at a multiscale size change (:mod:`~mindyolox.data.multiscale`), a log line
(``train.print_interval``), the epoch end or ``max_iters``; inside a chunk the host sends
nothing (the lr comes from the step's counter) and reads nothing. The loss terms are summed on
the device and read once per log line (``host_reads`` counts every device-to-host read), which
is also when a NaN/Inf loss is noticed. ``before_iter`` / ``after_iter`` run once per chunk,
``iter`` being its first / last iteration; ``last`` holds the means of the last logged window.

Iteration semantics: global step ``k = epoch * steps_per_epoch + iter`` runs with ``lr =
schedule(k)`` (the official ``update_lr(progress + 1)`` after each step); the last
``no_aug_epochs + 1`` epochs (official 0.3.0, :func:`~mindyolox.data.loader.no_aug_start`) run
without Mosaic/MixUp (the loader), with the L1 term (the ``use_l1`` Parameter of the compiled
step) and with an evaluation after each of them (:func:`eval_due`). A checkpoint taken after
step ``k`` stores ``epoch``/``iter`` of step ``k + 1``; resuming restores model, EMA, momentum
buffers, loss-scale state and RNG, and the loader starts at that batch (``start_iter``), so a
resumed run reproduces an uninterrupted one. A recipe whose warm-up and no-aug tail leave no
cosine phase is clipped once (:func:`~mindyolox.training.lr.fit_recipe`).
"""
import json
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import mindspore as ms
import numpy as np
import yaml

from ..convert.weights import check_weights_file
from ..data.loader import check_sink_support, no_aug_start
from ..data.multiscale import steps_to_change
from ..errors import MindYOLOXError
from ..options import resolve_options
from ..runtime.compile_cache import compile_cache_in, resolve_compile_cache, run_switches
from ..runtime.context import apply_device_context, compile_dumps_in
from ..runtime.distributed import PeerLost, all_reduce_sum, check_not_launched_in_parallel, init_data_parallel
from ..runtime.signals import stop_signals
from ..runtime.stop import StopRequests
from .builder import build_training
from .feeder import StepFeeder
from .hooks import VERY_HIGH, TrainHook, TrainingDiverged, builtin_hooks, eval_due, ordered, progress_postfix
from .hooks.checkpoint import agree_bn, checkpoint_meta, read_resume_meta, run_folder, save
from .hooks.evaluation import evaluate_and_save
from .hooks.experiment import check_loggers, loggers_of
from .hooks.logging import new_window
from .hooks.precompile import compile_notice
from .lr import fit_recipe
from .run_log import RunLog, last_logged_step

__all__ = ["Trainer", "TrainingDiverged", "TrainHook", "eval_due", "progress_postfix", "last_logged_step"]

PARTS = ("model", "net", "ema_model", "loader", "lr_schedule", "optimizer", "step", "evaluator")
TIMING = ("setup_s", "compile_s", "step_s", "data_s", "eval_s", "ckpt_s")


class Trainer:
    """Train a YOLOX model from a recipe.

    Args:
        cfg: the loaded recipe (``mindyolox.load_config``).
        options: :class:`~mindyolox.options.DeviceOptions` (None: resolved from the recipe and
            MindSpore's device target when training starts).
        run_dir: output folder (default ``<train.output_dir>/<name>``).
        name: run name (default the recipe's ``name``, else ``exp``).
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
        evaluate: run the periodic evaluation (``train.eval_interval``).
        hooks: list of :class:`TrainHook` (``self.hooks``; appending before :meth:`train`
            works too).
        progress: show tqdm bars.
        compile_cache: MindSpore's on-disk graph cache: None / ``off`` (default), ``auto`` (a
            folder keyed by code version, recipe and device options, for fixed-size recipes)
            or a folder (a keyed subfolder of it); see :mod:`mindyolox.runtime.compile_cache`.
        precompile: compile the train step for every input size the run will meet (and the
            EMA and evaluation graphs) before the first step
            (:mod:`~mindyolox.training.hooks.precompile`).
    """

    def __init__(self, cfg, options=None, run_dir=None, name=None, resume=False, exist_ok=False, weights=None,
                 distributed=False, data_sink=False, num_workers=None, max_iters=None, evaluate=True,
                 hooks=(), progress=True, compile_cache=None, precompile=False):
        self.cfg, self.schedule_note = fit_recipe(cfg)
        self.tcfg = self.cfg.train
        check_loggers(self.tcfg)   # a tracker asked for but not installed: one line, before anything compiles
        self.options = options
        name = name or str(self.cfg.get("name", "") or "exp")
        self.run_dir = Path(run_dir) if run_dir else Path(str(self.tcfg.output_dir)) / name
        self.resume, self.exist_ok, self.weights = resume, exist_ok, weights
        self.distributed, self.data_sink = bool(distributed), bool(data_sink)
        self.num_workers, self.max_iters = num_workers, max_iters
        self.do_eval, self.hooks, self.progress = evaluate, list(hooks), progress
        self.builtin_hooks = builtin_hooks()
        self.compile_cache, self.cache_path = compile_cache, None
        self.precompile_sizes = bool(precompile)
        # the run's state, all of it set here (nothing is looked up before it exists)
        for part in PARTS:
            setattr(self, part, None)
        self.runlog = self.feeder = None
        self.rank, self.world_size = 0, 1
        self.max_epoch = int(self.tcfg.max_epoch)
        self.start_epoch = self.start_iter = self.epoch = self.iter = 0
        self.steps_per_epoch = self.per_device_batch = self.no_aug_from = 0
        self.resume_path = self.resume_meta = None
        self.best_ap, self.last_ap = 0.0, None
        self.eval_model = None   # the BN-folded copy evaluations run (hooks/evaluation.py eval_network)
        self.prev_best, self.stale_evals = 0.0, 0   # early stopping (train.patience)
        self.stop_signal = None   # the signal of the agreed stop request (None: none, or a STOP file)
        self.stop_requests = None  # StopRequests (set up with the run folder); stop_request: the agreed one
        self.stop_request = None
        self.saved_at = self.bn_agreed_at = -1  # iters_done at the last last.ckpt save / BN average
        self.status = "running"
        self.iters_done = self.host_reads = self.overflow_steps = self.chunk_steps = 0
        self.scale_settled = False  # a dynamic loss scale found a working value (hooks/overflow.py)
        self.notes = []   # lines for the log, said once it exists (resume, run folder)
        self.sizes_seen = {}  # input size -> seconds of its first step (its compile)
        self.timing = dict.fromkeys(TIMING, 0.0)
        self.window = new_window()
        self.last = {"total": float("nan"), "lr": 0.0}
        self.t_start = time.perf_counter()
        self._order = []
        self._loop = ExitStack()

    # ================================================================== run
    def train(self):
        """Run the whole training; returns ``status``: ``finished``, ``stopped`` (max_iters),
        ``early_stopped`` (``train.patience`` evaluations without a better AP50:95; last.ckpt
        and best.ckpt kept) or ``interrupted`` (a stop request: SIGINT/SIGTERM or the ``STOP`` file,
        agreed by all ranks; checkpoint saved). Raises ``TrainingDiverged`` on NaN/Inf,
        ``OverflowStalled`` after ``train.overflow_stop_steps`` steps in a row skipped for float16
        overflow (status ``overflowed``, last.ckpt saved)."""
        with ExitStack() as stack:
            self._start(stack)
            try:
                self.train_in_epoch()
            except BaseException:
                if self.status not in ("diverged", "overflowed"):
                    self.status = "failed"
                raise
            finally:
                self._end()
        return self.status

    def train_in_epoch(self):
        for self.epoch in range(self.start_epoch, self.max_epoch):
            use_l1 = self.epoch >= self.no_aug_from
            self.step.set_use_l1(use_l1)
            if use_l1 and (self.epoch == self.no_aug_from or self.epoch == self.start_epoch):
                self.log(f"epoch {self.epoch + 1}: no Mosaic/MixUp from now on, L1 loss on")
            self.call("before_epoch")
            self.train_in_iter()
            if self.status != "running":
                return
            self.call("after_epoch")
            if self.status != "running":
                return
        self.status = "finished"

    def train_in_iter(self):
        """The chunks of one epoch, from ``start_iter`` in the first; an agreed stop request or ``max_iters``
        ends the run after the chunk (``on_stop``); the epoch ends with ``iter == steps_per_epoch``."""
        self.iter = self.start_iter if self.epoch == self.start_epoch else 0
        while self.iter < self.steps_per_epoch:
            self.chunk_steps = self._chunk_length()
            self.call("before_iter")
            self.train_chunk(self.chunk_steps)
            self.call("after_iter")
            done = self.max_iters is not None and self.iters_done >= self.max_iters
            self.stop_request = self.stop_requests.agree()  # every rank, every chunk (module doc)
            if self.stop_request is not None:
                self.stop_signal = self.stop_request.signum
            if self.stop_request is not None or done:
                self.status = "interrupted" if self.stop_request is not None else "stopped"
                self.call("on_stop")
                return
            self.iter += 1

    @property
    def progress_in_iter(self):
        """Global step of the current iteration: ``epoch * steps_per_epoch + iter``."""
        return self.epoch * self.steps_per_epoch + self.iter

    def call(self, point, hooks=None):
        """Call ``point`` (``before_train``, ...) of every hook in order (module doc)."""
        for h in self._order if hooks is None else hooks:
            getattr(h, point)(self)

    # ================================================================== one chunk
    def _chunk_length(self):
        """Steps from ``iter`` to the next multiscale change, log line, epoch end, mid-epoch
        checkpoint (``train.checkpoint_interval`` global steps) or max_iters."""
        it = self.iter
        pi = max(1, int(self.tcfg.print_interval))
        n = min(steps_to_change(self.progress_in_iter, self.loader.interval), pi - it % pi,
                self.steps_per_epoch - it)
        ci = int(self.tcfg.get("checkpoint_interval", 0) or 0)
        if ci > 0:
            n = min(n, ci - self.progress_in_iter % ci)
        if self.max_iters is not None:
            n = min(n, self.max_iters - self.iters_done)
        return max(1, n)

    def train_chunk(self, n):
        """Run ``n`` steps from ``iter`` (one input size); ``iter`` ends on the last of them."""
        size = self.loader.size_at(self.progress_in_iter)
        self.window["steps"] += n
        data_s = 0.0
        if size not in self.sizes_seen:  # the first step of a size compiles its graph: say so, time it
            self.log(compile_notice(size, self.sizes_seen, self.cache_path, self.step.ema_graph))
            t0 = time.perf_counter()
            data_s += self.feeder.run(1, size)
            self.step.stats.asnumpy()  # wait for it
            self.host_reads += 1
            self.sizes_seen[size] = time.perf_counter() - t0
            self.window["compile_s"] += self.sizes_seen[size]
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
        self.window["data_s"] += data_s
        self.window["size"] = size

    # ================================================================== start and end
    def _start(self, stack):
        """Everything before the first epoch: resources entered on ``stack`` (module doc), the
        resume position, the run folder and log, the parts, the feeder, ``before_train``."""
        t_setup = time.perf_counter()
        if self.data_sink:  # on CPU too (before the run folder): the command must not fail only on the device
            check_sink_support(self.cfg.data)
        stack.enter_context(compile_dumps_in(self.run_dir))
        self._init_devices()
        meta = self.resume_meta = read_resume_meta(self)
        run = run_switches(self.cfg, (self.start_epoch, self.start_iter), distributed=self.distributed,
                           world_size=self.world_size, data_sink=self.data_sink, evaluate=bool(self.do_eval),
                           precompile=self.precompile_sizes)
        # (the cache folder is named by the key alone: two runs of one recipe have two run names)
        cache_path, cache_note = resolve_compile_cache(self.compile_cache, self.cfg, self.options, run)
        self.cache_path = cache_path
        stack.enter_context(compile_cache_in(cache_path))  # before anything compiles
        if self.weights and meta is None:
            check_weights_file(self.weights)  # before the run folder exists
        if self.rank == 0:
            stack.enter_context(run_folder(self))
        self.runlog = stack.enter_context(RunLog(self.run_dir, self.rank,
                                                 tensorboard="tensorboard" in loggers_of(self.tcfg)))
        self.runlog.listeners.append(self._after_record)
        self.stop_requests = StopRequests(self.run_dir, self.rank, self.world_size)
        if self.stop_requests.stale is not None:
            self.log(f"note: {self.stop_requests.path} was there before this start: ignored (a STOP file is a "
                     "request only when created or touched while the run trains)")
        if self.rank == 0 and not self.resume:
            with open(self.run_dir / "config.yaml", "w") as f:
                yaml.safe_dump(json.loads(json.dumps(self.cfg, default=str)), f, sort_keys=False)
        for note in (self.schedule_note, cache_note):
            if note:
                self.log(note)
        ms.set_seed(int(self.tcfg.seed))
        np.random.seed(int(self.tcfg.seed))
        sink = self.data_sink and self.options.device != "CPU"
        if self.data_sink and not sink:
            self.log("--data-sink: MindSpore refuses data sink on CPU; the same chunked loop runs through "
                     "the dataset iterator")
        self._build(meta)
        self._order = ordered(self.builtin_hooks + self.hooks)
        first = [h for h in self._order if h.priority <= VERY_HIGH]
        self.call("before_train", first)  # the resumed state, before the data stream starts
        feed = self.step
        for h in self._order:
            feed = h.wrap_step(self, feed)
        self._loop = stack.enter_context(ExitStack())
        self.feeder = self._loop.enter_context(StepFeeder(feed, self.loader, sink=sink))
        self.t_start = time.perf_counter()
        self.timing["setup_s"] = self.t_start - t_setup
        self.call("before_train", [h for h in self._order if h not in first])
        self._loop.enter_context(stop_signals(self._on_signal))

    def _init_devices(self):
        """The device options and MindSpore's context, then rank and world size (distributed).

        Order: the msrun refusal first (cheap, before anything compiles); the options'
        context -- jit level and Ascend precision mode -- before ``init_data_parallel``
        initialises the device and HCCL (:func:`~mindyolox.options.apply_device_options`)."""
        if not self.distributed:  # msrun without --distributed: one line, see distributed.check_not_launched_in_parallel
            check_not_launched_in_parallel()
        if self.options is None:
            self.options = resolve_options(self.cfg)
        apply_device_context(self.options)
        if self.distributed:
            try:
                self.rank, self.world_size = init_data_parallel()
            except PeerLost as e:  # msrun's scheduler process: name the step rank 0 logged last
                raise PeerLost(e.ranks, e.detail, last_logged_step(self.run_dir / "metrics.jsonl")) from None

    def _build(self, meta):
        """The parts (:func:`~mindyolox.training.builder.build_training`) and what they say."""
        t = self.tcfg
        parts = build_training(self.cfg, self.options, rank=self.rank, world_size=self.world_size,
                               distributed=self.distributed, start_epoch=self.start_epoch, start_iter=self.start_iter,
                               num_workers=self.num_workers, weights=None if meta else self.weights,
                               evaluate=self.do_eval)
        for name in PARTS:
            setattr(self, name, getattr(parts, name))
        for note in self.notes:
            self.log(note)
        report = parts.weights_report
        if report is not None:
            cls_layers = [n for n, _, _ in report.mismatched if n.startswith("head.cls_preds.")]
            if cls_layers:
                self.log(f"fine-tuning: num_classes differs from {self.weights}, the head's class layers "
                         f"({len(cls_layers)} tensors) keep their fresh initialisation")
            self.log(report.summary())
        if parts.bn_note:  # folded BatchNorm re-inflated (or, with train.bn_calibration_images 0, the warning)
            self.log(parts.bn_note)
        if parts.frozen is not None:
            self.log(f"frozen ({', '.join(map(str, t.freeze))}): {parts.frozen[0]} tensors without gradient, "
                     f"{parts.frozen[1]} BatchNorm layers in eval mode; {len(self.optimizer.params)} tensors train")
        self.steps_per_epoch = self.loader.steps_per_epoch
        self.per_device_batch = self.loader.batch_size
        if self.start_iter >= self.steps_per_epoch:
            raise MindYOLOXError(f"checkpoint iteration {self.start_iter} >= {self.steps_per_epoch} steps per "
                                 "epoch: the dataset or batch size changed since the checkpoint")
        self.no_aug_from = no_aug_start(self.max_epoch, t.no_aug_epochs)
        if self.no_aug_from == 0:
            self.log("note: no_aug_epochs + 1 >= max_epoch: the whole run is without Mosaic/MixUp, with L1")

    def _end(self):
        """After the loop, however it ended: the loop's resources closed (once), BN statistics
        agreed (distributed, a run that ended well), ``after_train``. An error here after a
        failed run is one note: the error in flight is the one the user must see."""
        try:
            self._loop.close()
            if self.distributed and self.status in ("finished", "stopped", "early_stopped", "interrupted"):
                agree_bn(self)  # (a no-op after the last save: it agreed them)
            self.call("after_train")
            if self.distributed and self.status == "interrupted":  # the ranks leave together (module doc)
                all_reduce_sum(np.zeros(1, np.float32))
        except Exception as e:
            if self.status != "failed":
                raise
            print(f"note: the run summary was not written either ({type(e).__name__}: {e})", file=sys.stderr)

    def _after_record(self, rec):
        """``after_record`` of every hook, in order (module doc: Records)."""
        for h in self._order:
            h.after_record(self, rec)

    def _on_signal(self, signum):
        self.stop_requests.note_signal(signum)
        self.runlog.rank_info(f"received {signal.Signals(signum).name}: all ranks stop after the current chunk "
                              "and last.ckpt is saved")

    # ================================================================== for hooks and callers
    def log(self, msg):
        """A log line (rank 0 only: console + train_log.txt)."""
        self.runlog.info(msg)

    def checkpoint_meta(self):
        """Checkpoint metadata naming ``(epoch, iter)`` as the next iteration to run."""
        return checkpoint_meta(self)

    def save(self, tag, meta):
        """Write ``<run_dir>/<tag>.ckpt`` (:func:`~mindyolox.training.hooks.checkpoint.save`)."""
        return save(self, tag, meta)

    def evaluate_and_save(self):
        """Evaluate now (:func:`~mindyolox.training.hooks.evaluation.evaluate_and_save`)."""
        return evaluate_and_save(self)
