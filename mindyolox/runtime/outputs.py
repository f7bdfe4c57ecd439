"""Where the outputs of ``predict.py``, ``deploy/infer.py`` and ``test.py`` go, and what is
checked before anything is written (issue 33: outputs never overwrite inputs, and two
processes never silently share an output).

Names. The outputs of an input are named from its whole file name, so inputs that share a
stem (``a.jpg``, ``a.png``, ``a.mp4``) get files of their own, and no per-input file can take
the summary's name (every per-input JSON ends in ``.<image or video extension>.json``):

- image ``dog.jpg``: ``dog.jpg`` (boxes drawn, same name and format as the input) and
  ``dog.jpg.json`` (its detections);
- video ``clip.avi``: ``clip.avi.mp4`` (boxes drawn, MPEG-4; a ``clip.mp4`` keeps its name)
  and ``clip.avi.json`` (per frame);
- webcam / stream (predict.py, deploy/infer.py): ``webcam0.mp4`` / ``stream.mp4`` and ``.json``;
- ``predictions.json``: everything of the run.

Checks, all before the first file is written (:func:`check_outputs`):

- no output may be an input file: the sources, the weights or model (and its ``.json``
  metadata), the recipe, the annotation file. The test is by file identity (``os.stat``
  device and inode, so symlinks and hard links count), per output path -- decided: a
  ``--save-dir`` is refused because an output would replace an input, not because of where
  it is. In practice the source folder itself is refused (the drawn image has the input's
  name); a folder next to it or below it is fine.
- no two outputs of one run share a path (inputs ``x.avi`` and ``x.avi.mp4``).

Concurrency (:func:`claim_output_dir`): an output folder is claimed by one process at a time
with the training run lock (:mod:`mindyolox.runtime.run_lock`, ``<folder>/.run.lock`` created
with ``O_EXCL``, removed at the end, a dead holder's lock taken over with a note); a second
run into a folder in use stops with one line before writing anything. JSON files are
written atomically (:func:`save_json`: a temporary file renamed over the target).
"""
import contextlib
import json
import os

from ..errors import MindYOLOXError

__all__ = ["SUMMARY", "output_names", "prediction_outputs", "check_outputs", "claim_output_dir", "save_json"]

SUMMARY = "predictions.json"


def output_names(path, video):
    """``(drawn, json)`` file names (no folder) of input ``path`` (module doc)."""
    name = os.path.basename(str(path))
    drawn = name + ".mp4" if video and not name.lower().endswith(".mp4") else name
    return drawn, name + ".json"


def prediction_outputs(files, save_dir, is_video):
    """``({input path: (drawn path, json path)}, summary path)`` in ``save_dir`` for the inputs
    ``files``; ``is_video(path) -> bool``."""
    plan = {}
    for p in files:
        drawn, js = output_names(p, is_video(p))
        plan[p] = (os.path.join(save_dir, drawn), os.path.join(save_dir, js))
    return plan, os.path.join(save_dir, SUMMARY)


def _identity(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_outputs(outputs, inputs, flag="--save-dir"):
    """Raise :class:`MindYOLOXError` (one line) when an output would replace an input file
    or two outputs share a path.

    Args:
        outputs: iterable of ``(output path, what writes it)``, ``what`` e.g. the input file
            it belongs to or ``"the summary"``; or ``(path, what, flag)`` with the option that
            chose that output's place.
        inputs: paths read by the run (missing ones and None are ignored).
        flag: the option that chose the outputs' place, for the advice.
    """
    ins = {}
    for p in inputs:
        ident = _identity(p) if p else None
        if ident is not None and os.path.isfile(p):
            ins.setdefault(ident, str(p))
    seen = {}
    for out, what, *where in outputs:
        flag_here = where[0] if where else flag
        key = os.path.normcase(os.path.realpath(out))
        if key in seen and seen[key][1] != what:
            raise MindYOLOXError(f"{flag_here}: the outputs of {seen[key][1]} and of {what} would both be written to "
                                 f"{out}; rename one of them")
        seen[key] = (out, what)
        ident = _identity(out)
        if ident is not None and ident in ins:
            raise MindYOLOXError(f"{flag_here}: writing {out} would overwrite the input {ins[ident]}; choose "
                                 f"another {flag_here} (outputs never replace inputs)")


@contextlib.contextmanager
def claim_output_dir(folder, flag="--save-dir", log=print):
    """Hold the run lock of output folder ``folder`` (created) for the ``with`` block; a
    folder in use by a live process raises :class:`~mindyolox.runtime.run_lock.RunFolderBusy`
    (one line naming the holder). ``folder`` None: nothing is claimed."""
    if not folder:
        yield None
        return
    from .run_lock import RunLock
    lock = RunLock(folder, what=f"output folder ({flag})", advice=f"choose another {flag}")
    for note in lock.acquire():
        log(note)
    try:
        yield lock
    finally:
        lock.release()


def save_json(path, obj, indent=1):
    """Write ``obj`` as JSON to ``path`` atomically (a temporary file in the same folder,
    then ``os.replace``): a reader or an interrupted run never sees half a file. ``indent``
    None: compact (large lists such as detections)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
