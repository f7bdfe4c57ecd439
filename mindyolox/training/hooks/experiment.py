"""``train.loggers``: experiment trackers (MLflow, Weights & Biases) fed from the run's records.

:class:`ExperimentHook` is a built-in :class:`~.base.TrainHook` (priority 95, after every other
hook: its ``after_train`` sees the files the others wrote at the end). It taps the one place a
record is written -- :meth:`~mindyolox.training.run_log.RunLog.record`, through the hook point
``after_record`` -- so every record of ``metrics.jsonl`` reaches the trackers, and nothing else.
Rank 0 only (the other ranks write no records and start no tracker).

What each tracker gets, through one small interface per backend (``start(recipe)``,
``log(metrics, step)``, ``artifact(path, folder)``, ``end(status)``):

* the recipe: MLflow params (dotted keys, ``train.max_epoch``), the W&B run config (nested);
* every ``train`` / ``eval`` / ``time`` / ``data`` record, each number as ``<type>/<key>``
  (``train/total``, ``train/epoch``, ``eval/AP50_95``, ``time/step_s``; the eval record's
  ``stats`` list as ``eval/<COCO stat>``, e.g. ``eval/AP75``; a list such as the input ``size``
  as ``train/size_0``, ``train/size_1``; a ``data`` record as ``data/<split>/<key>``) at the
  record's ``step`` (global iteration). A record without a step (``time``, ``data``) takes the
  last step logged (decision: W&B refuses a step lower than one already logged). ``event``
  records are not metrics: the ``end`` event's status becomes the run's end status;
* at the end: every ``*.png`` / ``*.csv`` under the run folder (recursively, ``curves.png``,
  ``dataset_report.png``, ``analysis/...``; the trackers' own folders ``mlruns/``, ``wandb/``
  and ``tensorboard/`` left out) in their folder relative to the run, and ``best.ckpt`` (not
  ``last.ckpt``);
* the end status: ``finished`` / ``early_stopped`` end the tracker's run as finished;
  ``interrupted`` / ``stopped`` (``max_iters``) as killed (MLflow ``KILLED``; W&B exit code 1);
  ``diverged`` / ``overflowed`` / ``failed`` as failed (MLflow ``FAILED``; W&B exit code 1).

A tracker that raises (its server vanished, a disk filled up) costs one warning line in the
log and is not called again; the training goes on. A resumed run starts a new tracker run.

Decisions: ``train.mlflow_uri`` empty (default) is the local file store ``<run>/mlruns`` (the
run folder stays self-contained); MLflow >= 3.7 refuses file stores unless
``MLFLOW_ALLOW_FILE_STORE`` is set, so for a file store this module sets it to ``true`` in this
process (``mlflow/store/tracking/file_store.py``, ``FileStore.__init__``) unless the user set
it. MLflow metrics are sent in batches (``log_batch``, at most 1000 a call) every
``FLUSH_SECONDS`` and at the end, never once per step. ``train.wandb_mode`` ``offline``
(default) writes ``<run>/wandb/offline-run-*`` with no network and no login (``wandb sync``
uploads it later); the recipe's mode wins over ``WANDB_MODE``; ``WANDB_DIR``, when set, wins
over the run folder. Names a recipe may list: ``tensorboard`` (the ``train.tensorboard`` switch
of :class:`~mindyolox.training.run_log.RunLog`: either one turns it on), ``mlflow``, ``wandb``.
"""
import importlib.util
import os
import re
import shutil
import time
from pathlib import Path

from ...errors import ConfigError
from ...evaluation.evaluator import COCO_STAT_NAMES
from .base import TrainHook

__all__ = ["ExperimentHook", "check_loggers", "loggers_of", "flatten_record", "recipe_params", "LOGGERS",
           "MlflowTracker", "WandbTracker"]

LOGGERS = ("tensorboard", "mlflow", "wandb")
PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}
# what to install: the pins of the optional extras `mlflow` / `wandb` (pyproject.toml), which also
# work for a clone installed with `pip install -e .` (no "mindyolox[...]" on an index to resolve)
EXTRAS = {"tensorboard": "tensorboardX", "mlflow": "mlflow-skinny==3.18.0", "wandb": "wandb==0.31.0"}
METRIC_TYPES = ("train", "eval", "time", "data")
ARTIFACT_SUFFIXES = (".png", ".csv")
TRACKER_FOLDERS = ("mlruns", "wandb", "tensorboard")  # never logged as artifacts
FLUSH_SECONDS = 30.0
MLFLOW_BATCH = 1000   # MLflow's log_batch limit on metrics per call
MLFLOW_PARAMS = 100   # ... and on params per call
END_STATUS = {"finished": "FINISHED", "early_stopped": "FINISHED", "interrupted": "KILLED", "stopped": "KILLED"}


def loggers_of(tcfg):
    """The trackers a ``train`` section asks for: ``train.loggers`` plus ``tensorboard`` when
    ``train.tensorboard`` is true (the older switch, an alias), in ``LOGGERS`` order."""
    names = set(tcfg.get("loggers", []) or [])
    if tcfg.get("tensorboard", False):
        names.add("tensorboard")
    return [n for n in LOGGERS if n in names]


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install counts as missing
        return False


def check_loggers(tcfg):
    """Refuse, before anything compiles, a tracker whose package is not installed (one line,
    ``ConfigError``); the names themselves are checked with the recipe (``config.py``)."""
    for name in loggers_of(tcfg):
        if not _installed(PACKAGES[name]):
            key = "train.loggers" if name in (tcfg.get("loggers", []) or []) else "train.tensorboard"
            what = f"has {name}" if key == "train.loggers" else "is true"
            raise ConfigError(f"{key} {what} but the package is not installed: pip install {EXTRAS[name]}")


def flatten_record(rec):
    """``{name: float}`` of one ``metrics.jsonl`` record (module doc: ``<type>/<key>``); ``{}``
    for events and anything else that is not a metric record. ``step`` and ``type`` are not
    metrics (the step is where they are logged); bools, strings and None are left out."""
    kind = rec.get("type")
    if kind not in METRIC_TYPES:
        return {}
    prefix = f"data/{rec.get('split', 'unknown')}" if kind == "data" else kind
    out = {}
    for key, value in rec.items():
        if key in ("type", "step") or isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            out[f"{prefix}/{key}"] = float(value)
        elif isinstance(value, (list, tuple)):
            names = (COCO_STAT_NAMES if key == "stats" and kind == "eval" and len(value) == len(COCO_STAT_NAMES)
                     else [f"{key}_{i}" for i in range(len(value))])
            for name, v in zip(names, value):
                if isinstance(v, (int, float)) and not isinstance(v, bool) and f"{prefix}/{name}" not in out:
                    if not (key == "stats" and name in rec):  # AP50_95 / AP50 are keys of the record too
                        out[f"{prefix}/{name}"] = float(v)
    return out


def recipe_params(cfg, prefix=""):
    """The recipe as ``{dotted key: str}`` (lists as their YAML-ish ``repr``)."""
    out = {}
    for key, value in cfg.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(recipe_params(value, dotted + "."))
        else:
            out[dotted] = str(value)
    return out


def _plain(cfg):
    """The recipe as plain nested dicts and lists (the W&B config)."""
    if isinstance(cfg, dict):
        return {str(k): _plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [_plain(v) for v in cfg]
    return cfg if cfg is None or isinstance(cfg, (bool, int, float, str)) else str(cfg)


class MlflowTracker:
    """One MLflow run through ``MlflowClient`` (no global active run: nothing leaks into the
    user's process). ``uri``: tracking URI ('' = ``<run>/mlruns``); ``experiment``: its name."""

    name = "mlflow"

    def __init__(self, run_dir, uri, experiment):
        self.run_dir, self.experiment = Path(run_dir), experiment or "mindyolox"
        self.uri = uri or (self.run_dir / "mlruns").resolve().as_uri()
        self.client = self.run_id = None
        self.pending, self.flushed_at = [], time.monotonic()

    def start(self, recipe):
        if self.uri.startswith("file:") or "://" not in self.uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # module doc
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment)
        run = self.client.create_run(exp_id, run_name=self.run_dir.name, tags={"mindyolox.run_dir": str(self.run_dir)})
        self.run_id = run.info.run_id
        params = [Param(k, v[:6000]) for k, v in recipe_params(recipe).items()]
        for i in range(0, len(params), MLFLOW_PARAMS):
            self.client.log_batch(self.run_id, params=params[i:i + MLFLOW_PARAMS])

    def log(self, metrics, step):
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.pending += [Metric(k, v, now, int(step)) for k, v in metrics.items()]
        if time.monotonic() - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self):
        while self.pending:
            self.client.log_batch(self.run_id, metrics=self.pending[:MLFLOW_BATCH])
            self.pending = self.pending[MLFLOW_BATCH:]
        self.flushed_at = time.monotonic()

    def artifact(self, path, folder):
        self.flush()
        self.client.log_artifact(self.run_id, str(path), folder or None)

    def end(self, status):
        self.flush()
        self.client.set_tag(self.run_id, "mindyolox.status", status)
        self.client.set_terminated(self.run_id, END_STATUS.get(status, "FAILED"))


class WandbTracker:
    """One W&B run (``mode``: offline | online | disabled; ``project``: its project). Files are
    copied into the run's ``files/`` (the offline folder holds them); ``best.ckpt`` also as a
    ``model`` artifact."""

    name = "wandb"

    def __init__(self, run_dir, project, mode):
        self.run_dir, self.project, self.mode = Path(run_dir), project or "mindyolox", mode or "offline"
        self.run = None

    def start(self, recipe):
        import wandb
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, save_code=False, disable_git=True)
        self.run = wandb.init(project=self.project, name=self.run_dir.name, mode=self.mode, config=_plain(recipe),
                              dir=os.environ.get("WANDB_DIR") or str(self.run_dir), settings=settings)

    def log(self, metrics, step):
        self.run.log(metrics, step=int(step))

    def artifact(self, path, folder):
        """A copy of ``path`` in the run's ``files/<folder>/``, saved now (``run.save`` of a file
        outside the W&B run's folder symlinks or hard-links it, ``wandb/sdk/wandb_run.py:2082``
        ``_save``: the offline folder would point back into the run folder); a ``.ckpt`` also as
        a model artifact."""
        path = Path(path)
        dest = Path(self.run.dir) / folder / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        self.run.save(str(dest), base_path=self.run.dir, policy="now")
        if path.suffix == ".ckpt":
            import wandb
            art = wandb.Artifact(re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.run_dir.name}-{path.stem}"), type="model")
            art.add_file(str(path))
            self.run.log_artifact(art)

    def end(self, status):
        """Finish the run; then, when no other W&B run is active in this process, ``wandb.teardown()``:
        ``finish`` can return before W&B's service has written the offline ``.wandb`` file (seen with
        0.31), ``teardown`` waits for it (``wandb/sdk/wandb_setup.py:572``)."""
        import wandb
        self.run.summary["status"] = status
        self.run.finish(exit_code=0 if END_STATUS.get(status) == "FINISHED" else 1)
        if wandb.run is None:
            wandb.teardown()


def _trackers(trainer):
    t, run_dir = trainer.tcfg, trainer.run_dir
    names = loggers_of(t)
    out = []
    if "mlflow" in names:
        out.append(MlflowTracker(run_dir, str(t.get("mlflow_uri", "") or ""), str(t.get("mlflow_experiment", "") or "")))
    if "wandb" in names:
        out.append(WandbTracker(run_dir, str(t.get("wandb_project", "") or ""), str(t.get("wandb_mode", "") or "")))
    return out


class ExperimentHook(TrainHook):
    """Feeds the trackers of ``train.loggers`` (module doc). ``make_trackers(trainer)``: the
    backends to start (default: from the recipe; tests pass stand-ins)."""

    priority = 95   # after SummaryHook (90): the end-of-train files exist, the ``end`` event is logged

    def __init__(self, make_trackers=_trackers):
        self.make_trackers = make_trackers
        self.trackers = None   # started on the first record or before_train, whichever comes first
        self.step = 0          # the last step logged
        self.status = None     # of the ``end`` event

    def _open(self, trainer):
        if self.trackers is not None or trainer.rank != 0:
            return
        self.trackers = []
        for tr in self.make_trackers(trainer):
            if self._guard(trainer, tr, tr.start, trainer.cfg):
                self.trackers.append(tr)

    def _guard(self, trainer, tracker, fn, *args):
        """``fn(*args)``; an exception costs one warning line and the tracker (True: it worked)."""
        try:
            fn(*args)
            return True
        except Exception as e:  # a tracker never stops the training (module doc)
            first = (str(e).strip().splitlines() or [""])[0]
            trainer.log(f"warning: {tracker.name} logging stopped (the training goes on): "
                        f"{type(e).__name__}{': ' + first if first else ''}")
            if self.trackers is not None and tracker in self.trackers:
                self.trackers.remove(tracker)
            return False

    def before_train(self, trainer):
        self._open(trainer)

    def after_record(self, trainer, record):
        self._open(trainer)
        if not self.trackers:
            return
        if record.get("type") == "event" and record.get("event") == "end":
            self.status = record.get("status")
        metrics = flatten_record(record)
        if not metrics:
            return
        self.step = max(self.step, int(record.get("step", self.step)))
        for tr in list(self.trackers):
            self._guard(trainer, tr, tr.log, metrics, self.step)

    def after_train(self, trainer):
        if trainer.rank != 0 or not self.trackers:
            return
        run_dir = Path(trainer.run_dir)
        files = [p for p in sorted(run_dir.rglob("*")) if p.suffix in ARTIFACT_SUFFIXES and p.is_file()
                 and p.relative_to(run_dir).parts[0] not in TRACKER_FOLDERS]
        if (run_dir / "best.ckpt").is_file():
            files.append(run_dir / "best.ckpt")
        status = self.status or trainer.status
        for tr in list(self.trackers):
            for p in files:
                folder = p.relative_to(run_dir).parent.as_posix()
                if not self._guard(trainer, tr, tr.artifact, p, "" if folder == "." else folder):
                    break
            else:
                self._guard(trainer, tr, tr.end, status)
        self.trackers = []
