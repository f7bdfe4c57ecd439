"""Training-state checkpoints: one MindSpore ``.ckpt`` holding everything ``--resume`` needs.

Entry names:

* ``model.<name>``  -- every model parameter (BN moving statistics included);
* ``ema.<name>``    -- the EMA weights (when EMA is on); ``load_weights`` prefers this prefix,
  so ``--weights last.ckpt`` fine-tunes from the EMA like the official checkpoints;
* ``optimizer/momentum/<name>`` -- SGD momentum buffers (the ``/`` keeps ``load_weights``
  from mistaking them for a model prefix);
* ``state/<name>``  -- train-step scalars: loss scale, good steps, overflow count, EMA updates;
* ``meta_json``     -- a JSON string: epoch, iter (next iteration to run), global step,
  best AP, the config, NumPy / Python RNG states, the mindyolox version.

Files are written to ``.<name>.tmp.ckpt`` in the same folder and renamed with ``os.replace``,
so a crash or a signal during the write never leaves a truncated checkpoint behind. A write
that fails (disk full, ...) raises :class:`CheckpointWriteError` with one line and removes its
temporary files; the previous checkpoint of that name is kept.
"""
import json
import os
import random
from pathlib import Path

import numpy as np

from ..errors import MindYOLOXError, WeightsError

__all__ = ["CheckpointWriteError", "save_training_state", "load_training_state", "read_meta", "rng_state", "set_rng_state"]

META_KEY = "meta_json"


class CheckpointWriteError(MindYOLOXError):
    """A checkpoint could not be written (disk full, no permission, file size limit); the
    previous file of that name is untouched and no temporary file is left behind."""


def rng_state():
    """JSON-serialisable NumPy global and Python ``random`` states."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}


def set_rng_state(state):
    """Restore what :func:`rng_state` returned."""
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _named(prefix, cell_or_params):
    import mindspore as ms
    if isinstance(cell_or_params, ms.nn.Cell):
        items = cell_or_params.parameters_and_names()
    else:
        items = cell_or_params
    return [{"name": prefix + n, "data": p.data if hasattr(p, "data") else p} for n, p in items]


def save_training_state(path, model, step=None, ema_model=None, optimizer=None, meta=None):
    """Write a training checkpoint to ``path`` atomically; returns the ``Path``.

    Args:
        model: the trained Cell; ema_model: the EMA Cell (or None);
        optimizer: :class:`~mindyolox.engine.optimizer.SGD` (momentum buffers saved by the
        names of the parameters they belong to); step: the
        :class:`~mindyolox.engine.train_step.TrainStep` (its ``state.*`` scalars and the EMA
        update count); meta: JSON-serialisable dict.
    """
    import mindspore as ms
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model_names = {id(p): n for n, p in model.parameters_and_names()}
    entries = _named("model.", model)
    if ema_model is not None:
        entries += _named("ema.", ema_model)
    if optimizer is not None:
        entries += [{"name": "optimizer/momentum/" + model_names[id(p)], "data": m.data}
                    for p, m in zip(optimizer.params, optimizer.moments)]
    if step is not None:
        for p in _step_state(step):
            entries.append({"name": "state/" + p.name.split(".", 1)[-1], "data": p.data})
    tmp = path.with_name(f".{path.name}.tmp.ckpt")
    try:
        with _quiet_save_failure():
            ms.save_checkpoint(entries, str(tmp), append_dict={META_KEY: json.dumps(meta or {})})
        os.replace(tmp, path)
    except OSError as e:
        for leftover in _temp_files(tmp):
            leftover.unlink(missing_ok=True)
        why = (e.strerror or str(e) or type(e).__name__).strip()
        kept = f"the previous {path.name} is kept" if path.is_file() else f"no {path.name} was written before"
        raise CheckpointWriteError(f"could not write {path.name}: {why[:1].lower() + why[1:]}; {kept} "
                                   f"({path.parent})") from None
    return path


def _temp_files(tmp):
    """What a failed :func:`save_training_state` can leave: our temp name and MindSpore's own
    (``_exec_save`` writes ``<name without .ckpt>.tmp`` and renames it to the name it was given,
    mindspore/train/serialization.py:380-382 and 471-472 of MindSpore 2.10)."""
    return [tmp, tmp.with_suffix(".tmp")]


class _quiet_save_failure:
    """Drop MindSpore's own CRITICAL line for a failed save ("Failed to save the checkpoint file
    ... Maybe don't have the permission ...", logged by ``_exec_save`` before it re-raises,
    mindspore/train/serialization.py:475-477, through ``mindspore.log._get_logger``, log.py:152):
    the caller says it once, in its own words."""

    def filter(self, record):
        return not str(record.msg).startswith("Failed to save the checkpoint file")

    def __enter__(self):
        from mindspore import log
        self._logger = log._get_logger()
        self._logger.addFilter(self)
        return self

    def __exit__(self, *exc):
        self._logger.removeFilter(self)
        return False


def _step_state(step):
    out = [step.scale, step.good_steps, step.overflows]
    if step.ema is not None:
        out.append(step.ema.updates)
    return out


def read_meta(path):
    """The ``meta_json`` dict of a training checkpoint (``WeightsError`` when absent)."""
    params = _load(path)
    if META_KEY not in params:
        raise WeightsError(f"{path}: not a mindyolox training checkpoint (no {META_KEY}); "
                           "use --weights to fine-tune from plain weights")
    return json.loads(str(params[META_KEY]))


def _load(path):
    import mindspore as ms
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    try:
        return ms.load_checkpoint(str(path))
    except (ValueError, RuntimeError, TypeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{path}: not a readable MindSpore checkpoint ({first})") from None


def load_training_state(path, model, step=None, ema_model=None, optimizer=None):
    """Restore what :func:`save_training_state` wrote into the given objects; returns meta.

    Every expected entry must be present with the same shape, otherwise ``WeightsError``
    lists the missing / mismatched names and nothing is assigned.
    """
    import mindspore as ms
    params = _load(path)
    if META_KEY not in params:
        raise WeightsError(f"{path}: not a mindyolox training checkpoint (no {META_KEY}); "
                           "use --weights to fine-tune from plain weights")
    targets = [("model." + n, p) for n, p in model.parameters_and_names()]
    if ema_model is not None:
        targets += [("ema." + n, p) for n, p in ema_model.parameters_and_names()]
    if optimizer is not None:
        names = {id(p): n for n, p in model.parameters_and_names()}
        targets += [("optimizer/momentum/" + names[id(p)], m) for p, m in zip(optimizer.params, optimizer.moments)]
    if step is not None:
        targets += [("state/" + p.name.split(".", 1)[-1], p) for p in _step_state(step)]
    missing = [n for n, _ in targets if n not in params]
    mismatched = [f"{n} model {tuple(p.shape)} vs file {tuple(params[n].shape)}"
                  for n, p in targets if n in params and tuple(params[n].shape) != tuple(p.shape)]
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} entries missing: {', '.join(missing[:5])}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {', '.join(mismatched[:5])}")
        raise WeightsError(f"{path} does not fit this run (other model or EMA setting?): {'; '.join(parts)}")
    for n, p in targets:
        p.set_data(ms.Tensor(params[n].asnumpy(), dtype=p.dtype))
    return json.loads(str(params[META_KEY]))
