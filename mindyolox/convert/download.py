"""Official weights by name: ``--weights yolox_s`` downloads the official release file once.

Names: ``yolox_nano``, ``yolox_tiny``, ``yolox_s``, ``yolox_m``, ``yolox_l``, ``yolox_x``,
``yolox_darknet`` (also written with ``-`` or as ``yolox_darknet53``). The file comes from
the official release (``MINDYOLOX_WEIGHTS_URL``, default :data:`RELEASE_URL`, + ``<name>.pth``)
into the cache folder ``MINDYOLOX_WEIGHTS_DIR`` (default ``~/.cache/mindyolox/weights``) with a
progress bar, under a lock (the ranks of one machine download it once). Checks: the bytes
received equal the server's ``Content-Length``, the file reads as a checkpoint of official
tensors, and its sha256 is written beside it (``<name>.pth.sha256``) and checked on every
later use -- a file that no longer matches is downloaded again. (No hash is pinned in the
code: the project has no copy of the release files to take it from.) Offline, one line says
where to put the file.

A file put into the cache by hand (no ``.sha256`` beside it) is read as a checkpoint first
and its hash recorded only when it reads; decided (issue 33): one that does not read
(truncated, not a checkpoint) is never recorded and is downloaded again, replacing it once the
download is complete and checked; offline, one line names the file, why it does not read and
that it is to be replaced (or deleted). A ``.sha256`` whose first line is a bare hash
(written before this check existed, perhaps for a broken file) is trusted only after the
file reads once; it is then rewritten with a ``checked`` mark.

A path that exists is used as it is. A word that is neither a path nor an official name
(no folder, no extension: ``yolox_nanoo``) is refused with the official names, the closest
first; anything else (``some/file.ckpt``) is left to the caller's "not found".
"""
import difflib
import fcntl
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import WeightsError
from ..utils.files import file_digest

__all__ = ["OFFICIAL_WEIGHTS", "RELEASE_URL", "resolve_weights", "weights_dir"]

RELEASE_URL = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/"
OFFICIAL_WEIGHTS = ("yolox_nano", "yolox_tiny", "yolox_s", "yolox_m", "yolox_l", "yolox_x", "yolox_darknet")
_ALIASES = {"yolox_darknet53": "yolox_darknet"}


def weights_dir():
    return Path(os.environ.get("MINDYOLOX_WEIGHTS_DIR", "~/.cache/mindyolox/weights")).expanduser()


def official_name(arg):
    """The official file stem ``arg`` names (``yolox-s`` -> ``yolox_s``), or None."""
    name = str(arg).strip().lower().replace("-", "_")
    name = _ALIASES.get(name, name)
    return name if name in OFFICIAL_WEIGHTS else None


def _download(url, dest):
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            total = int(r.headers.get("Content-Length") or 0)
            got = 0
            with open(part, "wb") as f, tqdm(total=total or None, unit="B", unit_scale=True,
                                             desc=f"downloading {dest.name}", leave=False) as bar:
                for block in iter(lambda: r.read(1 << 20), b""):
                    f.write(block)
                    got += len(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        err = WeightsError(f"{dest.stem}: cannot download {url} ({reason}); put the official {dest.name} into "
                           f"{dest.parent}/ (or pass --weights PATH)")
        err.reason = f"cannot download {url}: {reason}"
        raise err from None
    if total and got != total:
        part.unlink(missing_ok=True)
        raise WeightsError(f"{dest.stem}: download of {url} stopped at {got} of {total} bytes; run again")
    from .torch_pickle import read_torch_state_dict
    try:
        read_torch_state_dict(part)
    except WeightsError as e:
        part.unlink(missing_ok=True)
        raise WeightsError(f"{dest.stem}: {url} did not give a checkpoint ({e})") from None
    os.replace(part, dest)
    _record(dest)
    print(f"downloaded {url} -> {dest} ({got / 1e6:.1f} MB)", flush=True)


CHECKED = "checked"  # second word of a .sha256 line written after the file read as a checkpoint


def _record(dest):
    """Write ``<dest>.sha256``: the file's hash and the mark that it read as a checkpoint."""
    dest.with_name(dest.name + ".sha256").write_text(f"{file_digest(dest)} {CHECKED}\n")


def _unreadable(dest):
    """None when ``dest`` reads as a checkpoint of tensors, else why not (one line)."""
    from .torch_pickle import read_torch_state_dict
    try:
        read_torch_state_dict(dest)
    except WeightsError as e:
        text = " ".join(str(e).split())
        return text[len(f"{dest}: "):] if text.startswith(f"{dest}: ") else text
    return None


def _not_a_name(arg):
    """WeightsError for ``--weights arg`` that names no file and no official weights."""
    names = list(OFFICIAL_WEIGHTS)
    word = str(arg).strip().lower().replace("-", "_")
    close = difflib.get_close_matches(word, names, n=len(names), cutoff=0.0)  # best first
    return WeightsError(f"--weights {arg}: no such file and not an official name; official names (closest first): "
                        f"{', '.join(close)} (or pass a .ckpt / .pth / .npz path)")


def resolve_weights(arg):
    """The local path for ``--weights arg``: ``arg`` itself when it exists or is a path
    (the caller says "not found"), else the cached official file (downloaded first when
    missing, not reading as a checkpoint, or no longer matching its recorded sha256; module
    doc). A bare word that is no official name raises WeightsError listing the names."""
    if arg is None or Path(arg).exists():
        return arg
    name = official_name(arg)
    if name is None:
        text = str(arg)
        if os.sep not in text and "/" not in text and not Path(text).suffix:
            raise _not_a_name(arg)
        return arg
    folder = weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{name}.pth"
    url = os.environ.get("MINDYOLOX_WEIGHTS_URL", RELEASE_URL).rstrip("/") + f"/{name}.pth"
    with open(folder / f".{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        digest = dest.with_name(dest.name + ".sha256")
        recorded = digest.read_text().split() if digest.is_file() else []
        if dest.is_file() and recorded and recorded[0] == file_digest(dest):
            if recorded[1:2] == [CHECKED]:
                return str(dest)
            why = _unreadable(dest)  # recorded before files were read first: read it once
            if why is None:
                _record(dest)
                return str(dest)
        elif dest.is_file() and recorded:
            why = "it does not match its recorded sha256"
        elif dest.is_file():  # put there by hand (the offline advice): take it if it reads
            why = _unreadable(dest)
            if why is None:
                _record(dest)
                return str(dest)
        else:
            why = None
        if why is not None:
            digest.unlink(missing_ok=True)  # never a hash of a file that does not read
            print(f"{dest}: {why}; downloading it again", flush=True)
        try:
            _download(url, dest)
        except WeightsError as e:
            if why is None:
                raise
            raise WeightsError(f"{dest} cannot be used ({why}) and it could not be downloaded again "
                               f"({getattr(e, 'reason', e)}); replace it with the official {name}.pth (or delete it "
                               f"and run again when online)") from None
    return str(dest)
