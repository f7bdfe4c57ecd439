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
where to put the file. A path that exists is used as it is; anything else is left to the
caller's "not found".
"""
import fcntl
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import WeightsError

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


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        raise WeightsError(f"{dest.stem}: cannot download {url} ({reason}); put the official {dest.name} into "
                           f"{dest.parent}/ (or pass --weights PATH)") from None
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
    dest.with_name(dest.name + ".sha256").write_text(_sha256(dest) + "\n")
    print(f"downloaded {url} -> {dest} ({got / 1e6:.1f} MB)", flush=True)


def resolve_weights(arg):
    """The local path for ``--weights arg``: ``arg`` itself when it exists or names no
    official file, else the cached official file (downloaded first when missing or no longer
    matching its recorded sha256; module doc)."""
    if arg is None or Path(arg).exists():
        return arg
    name = official_name(arg)
    if name is None:
        return arg
    folder = weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{name}.pth"
    with open(folder / f".{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        digest = dest.with_name(dest.name + ".sha256")
        if dest.is_file() and digest.is_file() and digest.read_text().strip() == _sha256(dest):
            return str(dest)
        if dest.is_file() and digest.is_file():
            print(f"{dest} does not match its recorded sha256: downloading it again", flush=True)
        elif dest.is_file():  # put there by hand (the offline advice): take it as it is
            digest.write_text(_sha256(dest) + "\n")
            return str(dest)
        _download(os.environ.get("MINDYOLOX_WEIGHTS_URL", RELEASE_URL).rstrip("/") + f"/{name}.pth", dest)
    return str(dest)
