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
temporary files; the previous checkpoint of that name is kept. A process killed during a save
(``kill -9``) leaves those temporary files (:func:`stale_temp_files`); the trainer removes
them when it takes the run folder again under its lock.

Integrity (checkpoint format 2, ``meta["format"]``): every file carries MindSpore's CRC32
(:mod:`mindyolox.convert.ckpt_file`) and is read with it checked; a damaged or cut-short file is
:class:`~mindyolox.convert.ckpt_file.CheckpointDamaged` naming the file, and a file written
before format 2 (no CRC) still loads, with a note. Before the temporary file is renamed into
place its CRC is checked, and with ``keep_previous`` (the trainer's ``last.ckpt``) the file it
replaces is kept as ``<stem>.prev.ckpt`` (``last.prev.ckpt``) when its own CRC checks, so one
bad write or one damaged file never leaves a run without a good checkpoint. Weights holding
NaN/Inf are refused (:class:`NonFiniteWeights`): they are never written over a checkpoint.
"""
import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np

from ..convert.ckpt_file import (FORMAT_VERSION, META_KEY, CheckpointDamaged, DropMindSporeLines, crc_status, read_ckpt,
                                 save_ckpt)
from ..errors import MindYOLOXError, WeightsError

__all__ = ["CheckpointWriteError", "CheckpointDamaged", "NonFiniteWeights", "save_training_state",
           "load_training_state", "read_meta", "previous_path", "state_entries", "non_finite",
           "stale_temp_files", "good_checkpoint",
           "rng_state", "set_rng_state"]

# our temporary names (.last.ckpt.tmp.ckpt, .last.prev.ckpt.tmp.ckpt) and MindSpore's (.last.ckpt.tmp.tmp)
_TEMP = re.compile(r"^\..+\.ckpt\.tmp\.(ckpt|tmp)$")


class CheckpointWriteError(MindYOLOXError):
    """A checkpoint could not be written (disk full, no permission, file size limit); the
    previous file of that name is untouched and no temporary file is left behind."""


class NonFiniteWeights(MindYOLOXError):
    """The state to save holds NaN/Inf (``names``: the first entries that do); nothing was
    written and the previous checkpoint of that name is untouched."""

    def __init__(self, msg, names):
        super().__init__(msg)
        self.names = names


def previous_path(path):
    """Where :func:`save_training_state` keeps the file it replaces: ``last.ckpt`` ->
    ``last.prev.ckpt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def stale_temp_files(folder):
    """Temporary files of saves that did not finish (the process was killed while writing):
    ``.<name>.ckpt.tmp.ckpt`` (ours) and ``.<name>.ckpt.tmp.tmp`` (MindSpore's, see
    :func:`_temp_files`). Only safe to delete while holding the run folder's lock."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _TEMP.match(p.name))


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


def state_entries(model, step=None, ema_model=None, optimizer=None):
    """The ``[{"name", "data"}]`` list a training checkpoint holds (module doc: entry names)."""
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
    return entries


def host_entries(entries):
    """``entries`` with every tensor copied to the host once, as a CPU ``Tensor`` sharing a
    NumPy array's memory (``Tensor.from_numpy``): the NaN check and the save then read the
    same copy instead of each copying the device tensors."""
    import mindspore as ms
    return [{"name": e["name"], "data": ms.Tensor.from_numpy(np.asarray(_host(e["data"]), order="C"))}
            for e in entries]


def _host(data):
    return data.asnumpy() if hasattr(data, "asnumpy") else np.asarray(data)


def non_finite(entries, limit=3):
    """Names of the first ``limit`` float entries of ``entries`` (``[{"name", "data"}]``)
    holding NaN/Inf; reads every tensor to the host."""
    bad = []
    for e in entries:
        a = _host(e["data"])
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            bad.append(e["name"])
            if len(bad) >= limit:
                break
    return bad


def save_training_state(path, model, step=None, ema_model=None, optimizer=None, meta=None, keep_previous=False):
    """Write a training checkpoint to ``path`` atomically, with a CRC; returns the ``Path``.

    Args:
        model: the trained Cell; ema_model: the EMA Cell (or None);
        optimizer: :class:`~mindyolox.training.optimizer.SGD` (momentum buffers saved by the
        names of the parameters they belong to); step: the
        :class:`~mindyolox.training.train_step.TrainStep` (its ``state.*`` scalars and the EMA
        update count); meta: JSON-serialisable dict (``format`` is added: checkpoint format
        version); keep_previous: keep the file being replaced as :func:`previous_path` (only
        when its CRC checks or it predates CRCs: a damaged file never replaces a good one).

    Raises :class:`NonFiniteWeights` (nothing written) when any tensor holds NaN/Inf, and
    :class:`CheckpointWriteError` when the write fails or the written file fails its CRC check.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = host_entries(state_entries(model, step, ema_model, optimizer))
    bad = non_finite(entries)
    if bad:
        raise NonFiniteWeights(f"not saving {path.name}: NaN/Inf in {', '.join(bad)}", bad)
    meta = dict(meta or {}, format=FORMAT_VERSION)
    tmp = path.with_name(f".{path.name}.tmp.ckpt")
    prev, prev_tmp = previous_path(path), path.with_name(f".{previous_path(path).name}.tmp.ckpt")
    try:
        with DropMindSporeLines(DropMindSporeLines.SAVE):
            save_ckpt(entries, tmp, append_dict={META_KEY: json.dumps(meta)})
        if crc_status(tmp) != "ok":
            raise OSError(0, "the written file fails its CRC check (a bad write)")
        if keep_previous and path.is_file() and crc_status(path) != "bad":
            try:  # a hard link: path stays in place until the new file replaces it
                os.link(path, prev_tmp)
            except OSError:
                shutil.copy2(path, prev_tmp)
            os.replace(prev_tmp, prev)
        os.replace(tmp, path)
    except OSError as e:
        for leftover in _temp_files(tmp) + [prev_tmp]:
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


def _step_state(step):
    out = [step.scale, step.good_steps, step.overflows]
    if step.ema is not None:
        out.append(step.ema.updates)
    return out


def read_meta(path, notes=None, ours=False):
    """The ``meta_json`` dict of a training checkpoint, its CRC checked.

    ``WeightsError`` when the file is missing or holds no ``meta_json``;
    :class:`CheckpointDamaged` when it is damaged or cut short. A file written before
    checkpoint format 2 (no CRC) is read unchecked and a note is appended to ``notes``.
    ``ours``: the file is known to be a training checkpoint (a run folder's ``last.ckpt``), so
    one without ``meta_json`` -- the entry written last -- is cut short, not plain weights."""
    params = _load(path, notes, ours)
    return json.loads(str(params[META_KEY]))


def _load(path, notes=None, ours=False):
    params, checked = read_ckpt(path)
    if META_KEY not in params and ours:
        raise CheckpointDamaged(f"{path}: cut short (truncated): no {META_KEY}, the entry a training checkpoint "
                                "writes last")
    if META_KEY not in params:
        raise WeightsError(f"{path}: no {META_KEY} entry, so not a whole mindyolox training checkpoint: plain "
                           "weights (fine-tune from them with --weights) or a checkpoint cut short before its "
                           "last entry")
    if not checked and notes is not None:
        notes.append(f"note: {Path(path).name} has no CRC (written before checkpoint format {FORMAT_VERSION}): "
                     "loaded unchecked; the next save adds one")
    return params


def good_checkpoint(folder, exclude=()):
    """The newest training checkpoint in run folder ``folder`` that loads, checks (CRC, or
    none for a file older than format 2), has its ``meta_json`` and holds no NaN/Inf:
    ``(path, meta)``, or None. Candidates: ``last.ckpt``, ``last.prev.ckpt``, ``epoch_<N>.ckpt``,
    ``best.ckpt`` (not those in ``exclude``), newest file first; each is read in full, so this
    is for error paths (a failed resume, a divergence), not for every save."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    skip = {Path(p).resolve() for p in exclude}
    order = {"last.ckpt": 0, "last.prev.ckpt": 1, "best.ckpt": 3}
    cands = [p for p in folder.iterdir() if p.is_file() and p.resolve() not in skip
             and (p.name in order or re.fullmatch(r"epoch_\d+\.ckpt", p.name))]
    cands.sort(key=lambda p: (-p.stat().st_mtime, order.get(p.name, 2)))
    for p in cands:
        try:
            params = _load(p)
            meta = json.loads(str(params[META_KEY]))
        except (MindYOLOXError, ValueError):
            continue
        if isinstance(meta, dict) and "global_step" in meta and not non_finite(
                [{"name": k, "data": v} for k, v in params.items() if k != META_KEY], limit=1):
            return p, meta
    return None


def load_training_state(path, model, step=None, ema_model=None, optimizer=None, notes=None):
    """Restore what :func:`save_training_state` wrote into the given objects; returns meta.

    The file's CRC is checked (:func:`read_meta` for damaged, cut-short and pre-CRC files;
    ``notes`` as there). Every expected entry must be present with the same shape, otherwise
    ``WeightsError`` lists the missing / mismatched names; entries holding NaN/Inf are
    :class:`CheckpointDamaged`. In both cases nothing is assigned.
    """
    import mindspore as ms
    params = _load(path, notes)
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
    bad = non_finite([{"name": n, "data": params[n]} for n, _ in targets])
    if bad:
        raise CheckpointDamaged(f"{path}: NaN/Inf in {', '.join(bad)}: not a good checkpoint")
    for n, p in targets:
        p.set_data(ms.Tensor(params[n].asnumpy(), dtype=p.dtype))
    return json.loads(str(params[META_KEY]))
