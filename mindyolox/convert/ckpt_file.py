"""MindSpore ``.ckpt`` files with a CRC32: write, check and read them, one line per fault.

Every ``.ckpt`` mindyolox writes (training checkpoints, converted weights) is saved with
MindSpore's ``crc_check=True``: ``_exec_save`` appends a 17-byte trailer ``b"crc_num"`` + the
CRC32 of everything before it as 10 big-endian bytes (``mindspore/train/serialization.py:431-432``
of MindSpore 2.10; the CRC is accumulated over each serialized entry in write order, lines
499-501, i.e. the CRC32 of the file's bytes before the trailer).

Reading (:func:`read_ckpt`):

* a file with the trailer is loaded with ``load_checkpoint(crc_check=True)``, which compares
  the CRC32 of the bytes before the trailer with the stored one (``serialization.py:1691-1702``);
  a mismatch is :class:`CheckpointDamaged` naming the file. (MindSpore itself reports that
  mismatch as "May not have permission to read it" through the re-raise of lines 1710-1719,
  so the cause is told here in our words and MindSpore's own log line is dropped.)
* a file without the trailer is what mindyolox wrote before checkpoint format 2 (and what
  other tools write): ``load_checkpoint(crc_check=True)`` would only log a warning and load it
  unchecked (lines 1691-1692), so it is loaded with ``crc_check=False`` and the caller is told
  it was not checked (``crc`` False) -- old checkpoints keep loading.
* truncation: a file cut short loses its trailer, so it looks unchecked; but a training
  checkpoint of format 2 or later says in its ``meta_json`` that it had one, and ``meta_json``
  is the last entry written (``append_dict`` entries follow the parameters, ``serialization.py:745-752``).
  So a file whose ``meta_json`` names format >= 2 but which has no trailer, or a file holding
  training-checkpoint entries (:func:`is_training_layout`) but no ``meta_json``, is
  :class:`CheckpointDamaged` ("cut short"). A cut that breaks an entry fails to parse at all
  (also :class:`CheckpointDamaged`).

:func:`crc_status` is the fast byte-level check (no parsing) used before a file is renamed
into place or kept as the previous good checkpoint.
"""
import binascii
import json
from pathlib import Path

from ..errors import WeightsError
from ..utils.files import normal_mode

__all__ = ["CheckpointDamaged", "FORMAT_VERSION", "META_KEY", "crc_status", "is_training_layout", "read_ckpt",
           "save_ckpt"]

META_KEY = "meta_json"
# 1: mindyolox up to 0.x wrote no CRC; 2: CRC trailer, "format" in meta_json
FORMAT_VERSION = 2
_MARK = b"crc_num"
_TRAILER = len(_MARK) + 10
_TRAINING_STATE = ("optimizer/momentum/", "state/")


class CheckpointDamaged(WeightsError):
    """A ``.ckpt`` failed its CRC check, is cut short, or does not parse."""


def crc_status(path, chunk=1 << 24):
    """``"ok"`` (trailer present, CRC matches), ``"bad"`` (trailer present, CRC differs) or
    ``"none"`` (no trailer: written without a CRC, or cut short) for the file at ``path``.
    Reads the file once in ``chunk``-byte pieces (16 MB), so checking a yolox-x training
    checkpoint (~1.2 GB) never holds the whole file in memory."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size < _TRAILER:
            return "none"
        f.seek(size - _TRAILER)
        trailer = f.read(_TRAILER)
        if trailer[:-10] != _MARK:
            return "none"
        f.seek(0)
        crc, left = 0, size - _TRAILER
        while left:
            block = f.read(min(chunk, left))
            crc = binascii.crc32(block, crc)
            left -= len(block)
    return "ok" if crc == int.from_bytes(trailer[-10:], byteorder="big") else "bad"


class DropMindSporeLines:
    """Drop MindSpore's own log lines that start with one of ``prefixes`` while inside: its
    lines of a failed load (``Failed to read/load the checkpoint file ...``, logged before it
    raises, ``serialization.py:1294-1295`` and ``1718``) or of a failed save (``Failed to save
    the checkpoint file ... Maybe don't have the permission ...``, ``serialization.py:475-477``),
    all through ``mindspore.log._get_logger`` (``log.py:152``): the caller says it once, in its
    own words."""

    LOAD = ("Failed to read the checkpoint file", "Failed to load the checkpoint")
    SAVE = ("Failed to save the checkpoint file",)

    def __init__(self, prefixes=LOAD):
        self.prefixes = tuple(prefixes)

    def filter(self, record):
        return not str(record.msg).startswith(self.prefixes)

    def __enter__(self):
        from mindspore import log
        self._logger = log._get_logger()
        self._logger.addFilter(self)
        return self

    def __exit__(self, *exc):
        self._logger.removeFilter(self)
        return False


def _is_crc_failure(err):
    e = err
    while e is not None:
        if "crc check" in str(e).lower():
            return True
        e = e.__cause__
    return False


def read_ckpt(path):
    """``(params, crc)``: MindSpore's ``load_checkpoint`` dict of ``path`` and whether its CRC
    was checked (False: a file without CRC, loaded as it is). Raises ``WeightsError`` for a
    missing file and :class:`CheckpointDamaged` (one line naming the file) for a CRC mismatch,
    a cut-short file or one that does not parse (module doc)."""
    import mindspore as ms
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    status = crc_status(path)
    if status == "bad":
        raise CheckpointDamaged(f"{path}: CRC check failed, the file is damaged (its bytes changed after it was "
                                "written)")
    try:
        with DropMindSporeLines():
            params = ms.load_checkpoint(str(path), crc_check=status == "ok")
    except (ValueError, RuntimeError, TypeError, OSError) as e:
        if _is_crc_failure(e):  # changed between crc_status and the load
            raise CheckpointDamaged(f"{path}: CRC check failed, the file is damaged (its bytes changed after it "
                                    "was written)") from None
        if status == "none":  # MindSpore's text repeats the path: say it once
            raise CheckpointDamaged(f"{path}: not a readable MindSpore checkpoint (cut short or damaged: it has no "
                                    "CRC trailer and does not parse)") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointDamaged(f"{path}: not a readable MindSpore checkpoint ({first})") from None
    if status == "none":
        _check_not_cut(path, params)
    return params, status == "ok"


def _check_not_cut(path, params):
    """A file without CRC trailer that should have one, or that lost its last entry."""
    if META_KEY in params:
        try:
            meta = json.loads(str(params[META_KEY]))
        except json.JSONDecodeError:
            raise CheckpointDamaged(f"{path}: its {META_KEY} entry is not JSON (damaged)") from None
        if isinstance(meta, dict) and int(meta.get("format", 1)) >= 2:
            raise CheckpointDamaged(f"{path}: cut short (truncated): a format-{meta['format']} checkpoint without "
                                    "its CRC trailer")
    elif is_training_layout(params):
        raise CheckpointDamaged(f"{path}: cut short (truncated): training-checkpoint entries but no {META_KEY}, "
                                "which is written last")


def is_training_layout(names):
    """Whether entry ``names`` are those of a mindyolox training checkpoint: training-state
    entries (``optimizer/momentum/...``, ``state/...``), or both ``model.*`` and ``ema.*``
    (a file cut inside its EMA entries). ``model.*`` alone is not enough: plain weights of other
    tools use that prefix too."""
    names = list(names)
    return (any(k.startswith(_TRAINING_STATE) for k in names)
            or (any(k.startswith("model.") for k in names) and any(k.startswith("ema.") for k in names)))


def save_ckpt(entries, path, append_dict=None):
    """``mindspore.save_checkpoint(entries, path, append_dict=..., crc_check=True)``; MindSpore
    writes ``<path without .ckpt>.tmp`` and renames it to ``path`` (``serialization.py:380-382,
    471-472``), read-only (0400); the file then gets the usual mode (``normal_mode``: 0644 under
    umask 022)."""
    import mindspore as ms
    ms.save_checkpoint(entries, str(path), append_dict=append_dict, crc_check=True)
    normal_mode(path)

