"""The YOLOX trainer (official ``yolox/core/trainer.py`` structure: before/after hooks for the
whole run, each epoch and each iteration) around the compiled :class:`TrainStep`.

Run directory ``<train.output_dir>/<name>`` (rank 0 writes, other ranks only train):

* ``last.ckpt`` (every epoch end and on SIGINT/SIGTERM), ``best.ckpt`` (best EMA AP50:95),
  ``epoch_<N>.ckpt`` every ``train.save_interval`` epochs -- training checkpoints
  (:mod:`~mindyolox.engine.checkpoint`), written atomically;
* ``metrics.jsonl``: one JSON record per logged iteration (``type: train``: epoch, iter, step,
  lr, loss terms, ms/step, data ms, memory), per evaluation (``type: eval``), and run events;
* ``train_log.txt`` (the log lines), ``config.yaml`` (resolved recipe), ``curves.png``.

Iteration semantics: global step ``k = epoch * steps_per_epoch + iter`` runs with
``lr = schedule(k)`` (the official ``update_lr(progress + 1)`` after each step); epochs
``>= max_epoch - no_aug_epochs`` run without Mosaic/MixUp (the loader) and with the L1 term
(the ``use_l1`` Parameter of the compiled step). A checkpoint taken after step ``k`` stores
``epoch``/``iter`` of step ``k + 1``; resuming restores model, EMA, momentum buffers,
loss-scale state and RNG, and the loader starts at that batch (``start_iter``), so a resumed
run reproduces an uninterrupted one.
"""
import json
import logging
import math
import os
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, MindYOLOXError
from .checkpoint import load_training_state, read_meta, rng_state, save_training_state, set_rng_state
from .lr import build_lr_schedule

__all__ = ["Trainer", "TrainingDiverged", "TrainHook"]

LOSS_NAMES = ("total", "iou", "obj", "cls", "l1", "num_fg")


_CACHE_ENV = ("MS_COMPILER_CACHE_ENABLE", "MS_COMPILER_CACHE_PATH")

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


def _rss_gb():
    """(current, peak) resident memory of this process in GB."""
    try:
        import psutil
        cur = psutil.Process().memory_info().rss / 1e9
    except ImportError:
        cur = float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return cur, peak


def _fmt_eta(seconds):
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class Trainer:
    """Train a YOLOX model from a recipe.

    Args:
        cfg: the loaded recipe (``mindyolox.load_config``).
        run_dir: output folder (default ``<train.output_dir>/<name>``); name: run name.
        resume: False, True (``run_dir/last.ckpt``) or a checkpoint path.
        exist_ok: allow writing into an existing non-empty run directory without resuming.
        weights: ``.ckpt``/``.pth``/``.npz`` to fine-tune from (class layers re-initialised
            when ``num_classes`` differs).
        distributed: data parallel over the ``msrun`` workers (communication initialised here).
        data_sink: use ``mindspore.data_sink`` (Ascend/GPU; on CPU it falls back with a message).
        num_workers: data workers (default ``data.num_workers`` capped at the CPU count).
        max_iters: stop after this many iterations in this process (tests, benchmarks);
            the LR schedule still follows ``max_epoch``.
        evaluate: run the periodic evaluation (``train.eval_interval``); hooks: list of
            :class:`TrainHook`; progress: show tqdm bars; compile_cache: MindSpore's on-disk
            graph cache folder (None: off).
    """

    def __init__(self, cfg, run_dir=None, name=None, resume=False, exist_ok=False, weights=None,
                 distributed=False, data_sink=False, num_workers=None, max_iters=None, evaluate=True,
                 hooks=(), progress=True, compile_cache=None):
        self.cfg = cfg
        self.tcfg = cfg.train
        name = name or str(cfg.get("name", "") or "exp")
        self.run_dir = Path(run_dir) if run_dir else Path(str(self.tcfg.output_dir)) / name
        self.resume, self.exist_ok, self.weights = resume, exist_ok, weights
        self.distributed, self.data_sink = bool(distributed), bool(data_sink)
        self.num_workers, self.max_iters = num_workers, max_iters
        self.do_eval, self.hooks, self.progress = evaluate, list(hooks), progress
        self.compile_cache = compile_cache
        self.rank, self.world_size = 0, 1
        self.best_ap, self.last_ap = 0.0, None
        self.stop_signal = None
        self.status = "running"
        self.iters_done = 0
        self.history = []
        self.logger = logging.getLogger("mindyolox.train")

    # ================================================================== run
    def train(self):
        """Run the whole training; returns ``status``: ``finished``, ``stopped`` (max_iters)
        or ``interrupted`` (signal, checkpoint saved). Raises ``TrainingDiverged`` on NaN/Inf."""
        self.before_train()
        try:
            self.train_in_epoch()
        finally:
            try:
                self.after_train()
            finally:
                self._restore_env()
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
        bar = self._bar(first)
        self.iter = first
        while self.iter < self.steps_per_epoch:
            self.before_iter()
            self.train_one_iter()
            self.after_iter()
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"loss {self.last['total']:.2f} lr {self.last['lr']:.2e}")
            self.iter += 1
            if self.stop_signal is not None:
                self._stop_on_signal()
                break
            if self.max_iters is not None and self.iters_done >= self.max_iters:
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

    # ================================================================== one iteration
    def train_one_iter(self):
        t0 = time.perf_counter()
        if self.sink_fn is None:
            images, labels = next(self.data_iter)
            t1 = time.perf_counter()
            k = self.progress_in_iter
            lr = self.lr_schedule(k)
            self.step.set_lr(lr)
            out = self.step(images, labels)
            size = tuple(images.shape[2:])
        else:
            t1 = time.perf_counter()
            k = self.progress_in_iter
            lr = self.lr_schedule(k)
            self.step.set_lr(lr)
            out = self.sink_fn()
            size = None
        vals = [float(o.asnumpy()) for o in out[:6]]
        t2 = time.perf_counter()
        compiled = size is not None and size not in self.sizes_seen
        if compiled:
            self.sizes_seen[size] = t2 - t1
            self.log(f"compiled the train step for input {size[0]}x{size[1]} in {t2 - t1:.1f} s "
                     f"({len(self.sizes_seen)} size(s) so far)")
        self.iters_done += 1
        rec = dict(zip(LOSS_NAMES, vals))
        rec.update(lr=lr, step=k, epoch=self.epoch + 1, iter=self.iter + 1, finite=bool(out[6].asnumpy()),
                   scale=float(out[7].asnumpy()), step_ms=1e3 * (t2 - t1), data_ms=1e3 * (t1 - t0),
                   size=list(size) if size else None, compiled=compiled)
        self.last = rec
        if not math.isfinite(rec["total"]):
            self.status = "diverged"
            ck = self.run_dir / "last.ckpt"
            msg = (f"loss is {rec['total']} at epoch {self.epoch + 1} iter {self.iter + 1} (step {k}, lr {lr:.3g}); "
                   f"stopping. The last good checkpoint is kept: "
                   f"{ck if ck.exists() else 'none written yet'}. Lower the lr or check the data.")
            self.event("diverged", message=msg)
            raise TrainingDiverged(msg)
        if not rec["finite"]:
            self.overflow_steps += 1
        self._window.append(rec)

    # ================================================================== hooks
    def before_train(self):
        import mindspore as ms
        self._setup_runtime()
        cfg, t = self.cfg, self.tcfg
        if self.rank == 0:
            self._prepare_run_dir()
        self._setup_logging()
        ms.set_seed(int(t.seed))
        np.random.seed(int(t.seed))
        self.max_epoch = int(t.max_epoch)
        self._build_model()
        meta = self._resume_or_load()
        self._build_data()
        self.lr_schedule = build_lr_schedule(t, self.steps_per_epoch)
        if self.max_epoch - int(t.no_aug_epochs) <= 0:
            self.log("note: no_aug_epochs >= max_epoch: the whole run is without Mosaic/MixUp, with L1")
        self._build_step()
        if self.sink_fn is None:
            self._start_data_iter()
        if meta is not None:
            load_training_state(self.resume_path, self.model, self.step, self.ema_model, self.optimizer)
            if "rng" in meta:
                set_rng_state(meta["rng"])
            self.log(f"resumed from {self.resume_path}: epoch {self.start_epoch + 1} iter {self.start_iter + 1} "
                     f"(step {self.start_epoch * self.steps_per_epoch + self.start_iter}), best AP {100 * self.best_ap:.2f}")
        elif self.distributed:
            self._broadcast_initial_weights()
        self.evaluator = self._build_evaluator() if self.do_eval and self.rank == 0 else None
        self.sizes_seen = {}
        self.overflow_steps = 0
        self._window = []
        self.last = {"total": float("nan"), "lr": 0.0}
        self.t_start = time.perf_counter()
        self._install_signals()
        self.log(f"training {self.max_epoch} epochs x {self.steps_per_epoch} iterations "
                 f"(batch {self.per_device_batch} x {self.world_size} device(s)), {self.lr_schedule}")
        self.event("start", start_epoch=self.start_epoch, start_iter=self.start_iter)
        for h in self.hooks:
            h.before_train(self)

    def after_train(self):
        self._restore_signals()
        if self.distributed and self.status in ("finished", "stopped"):
            self.all_reduce_norm()
        for h in self.hooks:
            h.after_train(self)
        if self.rank == 0 and hasattr(self, "metrics_path") and self.metrics_path.exists():
            from .plots import plot_training_curves
            png = plot_training_curves(self.metrics_path, self.run_dir / "curves.png")
            self.log(f"{self.status}: {self.iters_done} iterations in {time.perf_counter() - self.t_start:.0f} s, "
                     f"best AP50:95 {100 * self.best_ap:.2f}, {self.overflow_steps} overflow-skipped steps; "
                     f"curves: {png}")
        self.event("end", status=self.status)

    def before_epoch(self):
        no_aug_from = self.max_epoch - int(self.tcfg.no_aug_epochs)
        use_l1 = self.epoch >= no_aug_from
        self.step.set_use_l1(use_l1)
        if use_l1 and (self.epoch == no_aug_from or self.epoch == self.start_epoch):
            self.log(f"epoch {self.epoch + 1}: no Mosaic/MixUp from now on, L1 loss on")
        for h in self.hooks:
            h.before_epoch(self)

    def after_epoch(self):
        for h in self.hooks:
            h.after_epoch(self)
        ep = self.epoch + 1
        meta = self._meta()
        self.save("last", meta)
        si = int(self.tcfg.save_interval)
        if si > 0 and ep % si == 0:
            self.save(f"epoch_{ep}", meta)
        no_aug_from = self.max_epoch - int(self.tcfg.no_aug_epochs)
        ei = int(self.tcfg.eval_interval)
        # official: eval_interval becomes 1 in the no-aug epochs
        due = ei > 0 and (ep % ei == 0 or self.epoch >= no_aug_from or ep == self.max_epoch)
        if self.do_eval and due:
            if self.distributed:
                self.all_reduce_norm()
            self.evaluate_and_save()

    def before_iter(self):
        for h in self.hooks:
            h.before_iter(self)

    def after_iter(self):
        for h in self.hooks:
            h.after_iter(self)
        pi = max(1, int(self.tcfg.print_interval))
        if (self.iter + 1) % pi == 0 or self.iter + 1 == self.steps_per_epoch:
            self._log_window()

    # ================================================================== evaluation / checkpoints
    def evaluate_and_save(self):
        """Evaluate the EMA weights (the model without EMA); write ``best.ckpt`` on a new best."""
        if self.rank != 0 or self.evaluator is None:
            return None
        model = self.ema_model if self.ema_model is not None else self.model
        t0 = time.perf_counter()
        res = self.evaluator.evaluate(model, progress=False)
        model.set_train(False)
        self.model.set_train(True)
        ap, ap50 = float(res["AP50_95"]), float(res["AP50"])
        self.last_ap = ap
        best = ap > self.best_ap
        self.best_ap = max(self.best_ap, ap)
        self.log(f"eval epoch {self.epoch + 1}: AP50:95 {100 * ap:.2f} AP50 {100 * ap50:.2f} "
                 f"(best {100 * self.best_ap:.2f}) in {time.perf_counter() - t0:.1f} s")
        self._write_jsonl({"type": "eval", "epoch": self.epoch + 1, "AP50_95": ap, "AP50": ap50,
                           "stats": [float(s) for s in res.get("stats", [])]})
        if best:
            self.save("best", self._meta())
        return res

    def save(self, tag, meta):
        """Write ``<run_dir>/<tag>.ckpt`` (rank 0 only)."""
        if self.rank != 0:
            return None
        path = save_training_state(self.run_dir / f"{tag}.ckpt", self.model, self.step, self.ema_model,
                                   self.optimizer, meta)
        self.event("checkpoint", tag=tag, path=str(path), epoch=meta["epoch"], iter=meta["iter"])
        return path

    def _meta(self):
        """Checkpoint metadata: ``epoch``/``iter`` of the next iteration to run (0-based)."""
        epoch, it = self.epoch, self.iter
        if it >= self.steps_per_epoch:
            epoch, it = epoch + 1, 0
        return {"epoch": epoch, "iter": it, "global_step": epoch * self.steps_per_epoch + it,
                "steps_per_epoch": self.steps_per_epoch, "world_size": self.world_size,
                "best_ap": self.best_ap, "last_ap": self.last_ap, "rng": rng_state(),
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
        import mindspore as ms
        if self.compile_cache:
            # process-global MindSpore switches: set for this run, restored by train() so that
            # later compiles in the same process (tests, notebooks) do not inherit them
            self._env_saved = {k: os.environ.get(k) for k in _CACHE_ENV}
            os.environ["MS_COMPILER_CACHE_ENABLE"] = "1"
            os.environ["MS_COMPILER_CACHE_PATH"] = str(self.compile_cache)
        if self.distributed:
            from mindspore.communication import get_group_size, get_rank, init
            try:
                init()
            except RuntimeError as e:
                raise MindYOLOXError("--distributed: could not initialise communication (launch with "
                                     f"msrun --worker_num=N --local_worker_num=N train.py ...): "
                                     f"{str(e).strip().splitlines()[0]}") from None
            self.rank, self.world_size = get_rank(), get_group_size()
            ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                         device_num=self.world_size)
        self.device = ms.get_context("device_target")
        self.sink_fn = None

    def _prepare_run_dir(self):
        d = self.run_dir
        if d.exists() and any(d.iterdir()) and not self.resume and not self.exist_ok:
            raise MindYOLOXError(f"run directory {d} already exists and is not empty: pass --resume to "
                                 "continue it, --exist-ok to write into it anyway, or another --name")
        d.mkdir(parents=True, exist_ok=True)

    def _setup_logging(self):
        self.metrics_path = self.run_dir / "metrics.jsonl"
        lg = self.logger
        lg.handlers.clear()
        lg.propagate = False
        if self.rank != 0:
            lg.setLevel(logging.WARNING)
            return
        lg.setLevel(logging.INFO)
        fmt = logging.Formatter("%(asctime)s | %(message)s", "%Y-%m-%d %H:%M:%S")
        sh = logging.StreamHandler(sys.stdout)
        sh.setFormatter(fmt)
        fh = logging.FileHandler(self.run_dir / "train_log.txt", mode="a")
        fh.setFormatter(fmt)
        lg.addHandler(sh)
        lg.addHandler(fh)
        if not self.resume:
            import yaml
            with open(self.run_dir / "config.yaml", "w") as f:
                yaml.safe_dump(json.loads(json.dumps(self.cfg, default=str)), f, sort_keys=False)

    def log(self, msg):
        """A log line (rank 0 only: console + train_log.txt)."""
        if self.rank == 0:
            self.logger.info(msg)

    def _write_jsonl(self, rec):
        if self.rank == 0:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def event(self, kind, **fields):
        """A ``type: event`` record in metrics.jsonl."""
        self._write_jsonl({"type": "event", "event": kind, "time": time.time(), **fields})

    def _build_model(self):
        import mindspore as ms
        from .. import build_model
        from ..losses import YOLOXLoss, YOLOXWithLoss
        cfg = self.cfg
        self.model = build_model(cfg)
        self.ema_model = build_model(cfg) if bool(self.tcfg.ema) else None
        self.model.set_train(True)
        self.amp_level = str(self.tcfg.amp_level)
        if self.amp_level != "O0":
            if self.device == "CPU":
                self.log(f"train.amp_level={self.amp_level} is not used on CPU: training in float32 (O0)")
                self.amp_level = "O0"
            else:
                ms.amp.auto_mixed_precision(self.model, self.amp_level)
        self.net = YOLOXWithLoss(self.model, YOLOXLoss(int(cfg.model.num_classes)))

    def _resume_or_load(self):
        """Resume metadata (or None); loads fine-tuning weights."""
        self.start_epoch, self.start_iter = 0, 0
        if self.resume:
            self.resume_path = Path(self.run_dir / "last.ckpt" if self.resume is True else self.resume)
            meta = read_meta(self.resume_path)
            self.start_epoch, self.start_iter = int(meta["epoch"]), int(meta["iter"])
            self.best_ap = float(meta.get("best_ap", 0.0))
            self.last_ap = meta.get("last_ap")
            if int(meta.get("world_size", self.world_size)) != self.world_size:
                self.log(f"note: checkpoint written with {meta['world_size']} devices, resuming on {self.world_size}")
            if self.start_epoch >= self.max_epoch:
                raise MindYOLOXError(f"{self.resume_path}: the run already finished ({self.start_epoch} of "
                                     f"{self.max_epoch} epochs); raise train.max_epoch to train longer")
            return meta
        if self.weights:
            from .. import load_weights
            report = load_weights(self.model, self.weights, strict=False, skip_mismatched=True)
            cls_layers = [n for n, _, _ in report.mismatched if n.startswith("head.cls_preds.")]
            if cls_layers:
                self.log(f"fine-tuning: num_classes differs from {self.weights}, the head's class layers "
                         f"({len(cls_layers)} tensors) keep their fresh initialisation")
            other = [n for n, _, _ in report.mismatched if not n.startswith("head.cls_preds.")]
            if other or report.missing:
                raise MindYOLOXError(f"--weights {self.weights} does not fit the model: {report.summary()}")
            self.log(report.summary())
        return None

    def _build_data(self):
        from ..data.loader import create_train_loader
        t = self.tcfg
        workers = self.num_workers
        if workers is None:
            workers = min(int(self.cfg.data.num_workers), os.cpu_count() or 1)
        self.loader = create_train_loader(self.cfg.data, self.cfg.aug, t, rank=self.rank,
                                          world_size=self.world_size, start_epoch=self.start_epoch,
                                          num_workers=workers, start_iter=self.start_iter)
        self.steps_per_epoch = self.loader.steps_per_epoch
        self.per_device_batch = self.loader.batch_size
        if self.start_iter >= self.steps_per_epoch:
            raise MindYOLOXError(f"checkpoint iteration {self.start_iter} >= {self.steps_per_epoch} steps per "
                                 "epoch: the dataset or batch size changed since the checkpoint")

    def _start_data_iter(self):
        """``self.data_iter``: ``next()`` gives ``(images, labels)`` Tensors across epoch boundaries."""
        raw = self.loader.ms_dataset.create_tuple_iterator(num_epochs=self.max_epoch - self.start_epoch,
                                                           do_copy=False)

        def gen():
            while True:
                got = False
                for item in raw:
                    got = True
                    yield item
                if not got:
                    return
        self.data_iter = gen()
        for _ in range(self.start_iter):  # placeholders of the resumed epoch (see create_train_loader)
            next(self.data_iter)

    def _build_step(self):
        from .ema import ModelEMA
        from .optimizer import build_optimizer
        from .train_step import TrainStep, resolve_loss_scale
        t = self.tcfg
        self.optimizer = build_optimizer(self.model, t)
        ema = None
        if self.ema_model is not None:
            ema = ModelEMA(self.model, self.ema_model, decay=float(t.ema_decay), tau=float(t.ema_tau))
        loss_scale = resolve_loss_scale(str(t.loss_scale), self.amp_level)
        self.step = TrainStep(self.net, self.optimizer, ema, loss_scale=loss_scale,
                              scale_value=float(t.loss_scale_value), distributed=self.distributed,
                              group_size=self.world_size)
        if self.data_sink:
            if self.device == "CPU":
                self.log("--data-sink: MindSpore refuses data sink on CPU; running without sink")
            else:
                import mindspore as ms
                self.sink_fn = ms.data_sink(self.step, self.loader.ms_dataset, sink_size=1)
                self.log("data sink on: one step per sink call")

    def _build_evaluator(self):
        from ..data.loader import build_dataset
        from .evaluator import COCOEvaluator, VOCEvaluator
        try:
            ds = build_dataset(self.cfg.data, "val")
        except MindYOLOXError as e:
            raise MindYOLOXError(f"evaluation dataset: {e} (set data.val_ann / data.val_images, or pass --no-eval)") from None
        cls = COCOEvaluator if getattr(ds, "coco", None) is not None else VOCEvaluator
        tc = self.cfg.test
        return cls(ds, tuple(self.cfg.data.test_size), int(tc.batch_size), float(tc.conf), float(tc.nms),
                   bool(tc.class_agnostic), 0)

    # ================================================================== distributed helpers
    def _flat_all_reduce(self, params, mean):
        """All-reduce (sum or mean over ranks) the values of ``params`` through one flat tensor."""
        import mindspore as ms
        from mindspore import nn, ops
        arrays = [p.asnumpy().astype(np.float32).ravel() for p in params]
        flat = np.concatenate(arrays) if arrays else np.zeros(1, np.float32)

        class _AR(nn.Cell):
            def __init__(self):
                super().__init__()
                self.ar = ops.AllReduce()

            def construct(self, x):
                return self.ar(x)
        out = _AR()(ms.Tensor(flat)).asnumpy()
        if mean:
            out = out / self.world_size
        pos = 0
        for p, a in zip(params, arrays):
            p.set_data(ms.Tensor(out[pos:pos + a.size].reshape(p.shape), dtype=p.dtype))
            pos += a.size

    def _broadcast_initial_weights(self):
        """Every rank starts from rank 0's weights (sum of rank-0-masked values)."""
        params = [p for _, p in self.model.parameters_and_names()]
        if self.rank != 0:
            for p in params:
                p.set_data(p.data * 0)
        self._flat_all_reduce(params, mean=False)
        if self.ema_model is not None:
            for (_, e), p in zip(self.ema_model.parameters_and_names(), params):
                e.set_data(p.data.copy())

    def all_reduce_norm(self):
        """Average the BN moving statistics over ranks (official ``all_reduce_norm``)."""
        params = [p for n, p in self.model.parameters_and_names() if "moving_" in n]
        self._flat_all_reduce(params, mean=True)

    # ================================================================== logging
    def _bar(self, first):
        if not self.progress or self.rank != 0:
            return None
        from tqdm import tqdm
        return tqdm(total=self.steps_per_epoch, initial=first, desc=f"epoch {self.epoch + 1}/{self.max_epoch}",
                    leave=False, dynamic_ncols=True, file=sys.stderr)

    def _log_window(self):
        w = self._window
        if not w:
            return
        avg = {k: float(np.mean([r[k] for r in w])) for k in LOSS_NAMES}
        # steps that compiled a graph (first step of a new input size) are left out of the timing
        times = [r["step_ms"] for r in w if not r["compiled"]] or [w[-1]["step_ms"]]
        step_ms = float(np.median(times))
        data_ms = float(np.mean([r["data_ms"] for r in w]))
        total_steps = self.max_epoch * self.steps_per_epoch
        done = self.progress_in_iter + 1
        eta = (total_steps - done) * (step_ms + data_ms) / 1e3
        cur, peak = _rss_gb()
        last = w[-1]
        self.log(f"epoch {last['epoch']}/{self.max_epoch} iter {last['iter']}/{self.steps_per_epoch} "
                 f"lr {last['lr']:.3e} | total {avg['total']:.3f} iou {avg['iou']:.3f} obj {avg['obj']:.3f} "
                 f"cls {avg['cls']:.3f} l1 {avg['l1']:.3f} fg {avg['num_fg']:.2f} | {step_ms:.0f} ms/step "
                 f"data {data_ms:.0f} ms | size {last['size'][0] if last['size'] else '-'} | "
                 f"ETA {_fmt_eta(eta)} | mem {cur:.2f} GB (peak {peak:.2f})")
        for r in w:
            self._write_jsonl({"type": "train", **{k: r[k] for k in ("epoch", "iter", "step", "lr", *LOSS_NAMES,
                                                                         "step_ms", "data_ms", "finite", "scale", "size", "compiled")},
                               "mem_gb": cur})
        self._window = []

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

    def _restore_signals(self):
        for sig, h in getattr(self, "_old_handlers", {}).items():
            signal.signal(sig, h)

    def _stop_on_signal(self):
        self._log_window()
        meta = self._meta()
        path = self.save("last", meta)
        self.status = "interrupted"
        self.log(f"interrupted by {signal.Signals(self.stop_signal).name} at epoch {meta['epoch'] + 1} "
                 f"iter {meta['iter'] + 1}: saved {path}; continue with --resume")
        self.event("interrupted", signal=int(self.stop_signal), epoch=meta["epoch"], iter=meta["iter"])


def check_config(cfg):
    """Fail early, with one line, on train settings the trainer cannot use."""
    t = cfg.train
    if int(t.batch_size) <= 0:
        raise ConfigError(f"train.batch_size must be positive, got {t.batch_size}")
    if str(t.loss_scale) not in ("auto", "none", "static", "dynamic"):
        raise ConfigError(f"train.loss_scale must be auto, none, static or dynamic, got {t.loss_scale!r}")
    if str(t.amp_level) not in ("O0", "O1", "O2", "O3"):
        raise ConfigError(f"train.amp_level must be O0, O1, O2 or O3, got {t.amp_level!r}")
