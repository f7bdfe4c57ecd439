"""Load weights of any supported format into a mindyolox model, with a readable report.

Formats, chosen by suffix:

- ``.ckpt``: a MindSpore checkpoint with mindyolox names (``save_checkpoint`` below, or
  ``mindspore.save_checkpoint(model, path)``), its CRC checked when it has one
  (:func:`~mindyolox.convert.ckpt_file.read_ckpt`). A training checkpoint that stores the model
  under a name prefix (e.g. ``network.`` or ``ema.`` beside optimizer state) also loads:
  when the model's names are not found as-is, the prefix under which they are found is
  stripped (``ema`` prefixes win when several fit; pass ``prefix=`` to choose) and the
  entries outside it (optimizer state, ...) are ignored, not reported as unexpected.
- ``.pth`` / ``.pt``: an official YOLOX PyTorch checkpoint, read without torch
  (``torch_pickle``), official names mapped by ``official_to_mindyolox``.
- ``.npz``: arrays under official (or mindyolox) names, e.g. ``../shared/reference/*_weights.npz``.

``num_batches_tracked`` entries are ignored (counted in ``LoadReport.ignored``) (no MindSpore counterpart). Nothing is assigned
unless the whole load is accepted, so a failed load leaves the model untouched.

Folded BatchNorm: after the load, the BatchNorm layers that hold no statistics of their own --
on every channel weight 1, running mean 0, running variance ``1 - eps``, what weights recovered
from an exported (ONNX) graph hold, BN folded into the convolution
(:func:`~mindyolox.models.batchnorm.looks_folded`) -- are listed in ``LoadReport.folded_bn``
and the summary says so. They are exact in eval mode (evaluation, prediction, export need
nothing); train-mode BatchNorm would renormalise them, so fine-tuning re-inflates them first
(:mod:`~mindyolox.training.bn_reinflate`).
"""
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import WeightsError
from .ckpt_file import read_ckpt, save_ckpt
from .official import official_to_mindyolox
from .torch_pickle import read_torch_state_dict

SUFFIXES = (".ckpt", ".pth", ".pt", ".npz")
_SHOW = 5  # names shown per category in error messages and summaries


@dataclass
class LoadReport:
    """What ``load_weights`` did: names loaded, and those missing / unexpected / skipped.

    Names are mindyolox names. ``mismatched`` holds ``(name, model_shape, file_shape)``;
    with ``skip_mismatched=True`` these are the tensors left at their current values.
    ``folded_bn``: names of the BatchNorm cells loaded from the file whose BN was folded into the
    convolution (module doc); ``batchnorms``: the model's BatchNorm2d count.
    """

    path: str
    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    ignored: int = 0
    prefix: str = ""
    folded_bn: list = field(default_factory=list)
    batchnorms: int = 0

    def summary(self):
        """One line, e.g. ``loaded 538 tensors from yolox_nano.pth``, plus what was left out."""
        line = f"loaded {len(self.loaded)} tensors from {self.path}"
        if self.prefix:
            line += f" (prefix '{self.prefix}')"
        extra = _describe(self)
        line = f"{line}; not loaded: {extra}" if extra else line
        if self.folded_bn:
            n, total = len(self.folded_bn), self.batchnorms
            which = f"all {total}" if n == total else f"{n} of {total} (the others hold trained statistics)"
            line += (f"; BatchNorm folded into the convolutions in {which} layers (weight 1, running mean 0, "
                     "running variance 1-eps: weights recovered from an exported graph): exact in eval mode; "
                     "train-mode BatchNorm would renormalise them unless re-inflated (train.bn_calibration_images)")
        return line


def _shape(s):
    return "(" + ",".join(str(int(d)) for d in s) + ")"


def _first(names):
    more = f", ... (+{len(names) - _SHOW})" if len(names) > _SHOW else ""
    return ", ".join(names[:_SHOW]) + more


def _class_note(report):
    """'checkpoint has N classes, model has M' when only the class layers differ in shape."""
    mm = report.mismatched
    if not mm or report.missing or report.unexpected:
        return ""
    if not all(n.startswith("head.cls_preds.") for n, _, _ in mm):
        return ""
    return f" (checkpoint has {mm[0][2][0]} classes, model has {mm[0][1][0]})"


def _describe(report):
    parts = []
    if report.mismatched:
        shapes = [f"{n} model {_shape(a)} vs file {_shape(b)}" for n, a, b in report.mismatched]
        parts.append(f"{len(report.mismatched)} shape mismatches{_class_note(report)}: {_first(shapes)}")
    if report.missing:
        parts.append(f"{len(report.missing)} model tensors missing from the file: {_first(report.missing)}")
    if report.unexpected:
        parts.append(f"{len(report.unexpected)} file tensors unknown to the model: {_first(report.unexpected)}")
    return "; ".join(parts)


def _read_ckpt(path):
    """CRC checked when the file has one (:func:`~mindyolox.convert.ckpt_file.read_ckpt`:
    damaged or cut-short files are ``CheckpointDamaged``; files without CRC load as they are)."""
    params, _ = read_ckpt(path)
    return {k: v.asnumpy() if hasattr(v, "asnumpy") else np.asarray(v) for k, v in params.items()}


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise WeightsError(f"{path}: not a readable .npz archive ({e})") from None


def check_weights_file(path):
    """``WeightsError`` unless ``path`` is a file with a weights suffix (a cheap check made
    before anything is created or built); returns the suffix in lower case."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise WeightsError(f"{path}: unknown weights format '{suffix}' (use {', '.join(SUFFIXES)})")
    return suffix


def read_weights(path):
    """``{mindyolox name: array}`` from a ``.ckpt``/``.pth``/``.pt``/``.npz`` file.

    Official names are mapped to ours and ``num_batches_tracked`` dropped; returns the
    dict and the number of dropped entries.
    """
    path = Path(path)
    suffix = check_weights_file(path)
    if suffix == ".ckpt":
        return _read_ckpt(path), 0
    if suffix in (".pth", ".pt"):
        raw = read_torch_state_dict(path)
    else:
        raw = _read_npz(path)
    out, ignored = {}, 0
    for name, value in raw.items():
        ours = official_to_mindyolox(name)
        if ours is None:
            ignored += 1
        else:
            out[ours] = value
    return out, ignored


def _find_prefix(arrays, names, prefix, path):
    """The name prefix under which the model's tensors sit in ``arrays`` ('' if none)."""
    if prefix is not None:
        return prefix
    if not names or any(n in arrays for n in names):
        return ""
    probe = names[0]
    found = sorted({k[: -len(probe)] for k in arrays if k.endswith("." + probe)})
    if not found:
        return ""
    if len(found) > 1:
        ema = [p for p in found if "ema" in p.lower()]
        if len(ema) != 1:
            raise WeightsError(f"{path}: the model is stored under several prefixes "
                               f"({', '.join(found)}); pass prefix= to choose one")
        return ema[0]
    return found[0]


def load_weights(model, path, strict=True, skip_mismatched=False, prefix=None):
    """Load ``path`` into ``model`` (a mindyolox Cell) and return a ``LoadReport``.

    ``strict``: tensors missing from the file or unknown to the model raise ``WeightsError``.
    ``skip_mismatched``: tensors whose shape differs are left as they are and reported
    instead of raising (fine-tuning with another ``num_classes``). ``prefix``: strip this
    name prefix from a training checkpoint (found automatically when None).
    """
    import mindspore as ms

    arrays, ignored = read_weights(path)
    params = dict(model.parameters_and_names())
    names = list(params)
    prefix = _find_prefix(arrays, names, prefix, path)
    if prefix:  # entries outside the prefix (optimizer state, raw weights) are ignored
        inside = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        ignored += len(arrays) - len(inside)
        arrays = inside

    report = LoadReport(path=str(path), ignored=ignored, prefix=prefix)
    todo = []
    for name in names:
        if name not in arrays:
            report.missing.append(name)
            continue
        value, param = arrays[name], params[name]
        if tuple(value.shape) != tuple(param.shape):
            report.mismatched.append((name, tuple(param.shape), tuple(value.shape)))
            continue
        todo.append((name, value, param))
    report.unexpected = [k for k in arrays if k not in params]

    if (report.mismatched and not skip_mismatched) or (strict and (report.missing or report.unexpected)):
        only_shapes = report.mismatched and not (strict and (report.missing or report.unexpected))
        hint = " Use skip_mismatched=True to load the rest." if only_shapes else ""
        raise WeightsError(f"{path} does not fit the model: {_describe(report)}.{hint}")

    for name, value, param in todo:
        param.set_data(ms.Tensor(np.ascontiguousarray(value), dtype=param.dtype))
        report.loaded.append(name)
    from ..models.batchnorm import folded_batchnorms
    loaded = set(report.loaded)
    folded, report.batchnorms = folded_batchnorms(model)
    report.folded_bn = [n for n in folded if f"{n}.gamma" in loaded and f"{n}.moving_variance" in loaded]
    return report


def save_checkpoint(model, path):
    """Write ``model``'s parameters (BN running stats included) as a MindSpore ``.ckpt``.

    Written with a CRC (:mod:`~mindyolox.convert.ckpt_file`) to a temporary file first and
    renamed, so ``path`` is never left half-written.
    """
    path = Path(path)
    if path.suffix.lower() != ".ckpt":
        raise WeightsError(f"{path}: output must end in .ckpt")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.ckpt")
    save_ckpt(model, tmp)
    os.replace(tmp, path)
    return path
