"""Small file helpers shared by rooms that know nothing of each other."""
import contextlib
import hashlib
import os
import shutil
import tempfile

__all__ = ["file_digest", "new_folder", "normal_mode", "umask"]


def file_digest(path, algorithm="sha256"):
    """Hex digest of the whole file at ``path`` (read in 1 MiB blocks, so memory stays flat);
    ``algorithm`` a :mod:`hashlib` name. (``hashlib.file_digest`` needs Python 3.11; the
    project supports 3.9.)"""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def new_folder(out_dir, what="folder", error=ValueError, prefix=".new-"):
    """Write a whole new folder so that it appears complete or not at all: yields a temporary
    folder beside ``out_dir`` (an absolute path that must not exist or be an empty folder) and
    renames it to ``out_dir`` when the block ends; on any error (Ctrl-C included) it is removed
    and ``out_dir`` is left as it was. ``what`` is what to choose instead in the one-line
    refusal, raised as ``error`` (the caller's error type, e.g. ``DataError``); ``prefix``
    starts the temporary folder's name."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise error(f"{out_dir} is a file; choose a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise error(f"{out_dir} exists and is not empty; choose another {what} or remove it")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield tmp
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def umask():
    """The process's file-creation mask (e.g. ``0o022``), read from ``/proc/self/status`` (setting
    it to read it back would race with other threads creating files); ``0o022`` when unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def normal_mode(path):
    """Give ``path`` the mode a newly created file gets (``0o666`` less the umask: ``0o644``
    usually). MindSpore's ``save_checkpoint`` and ``export`` leave their files read-only to the
    owner (``0o400``, its ``os.chmod(..., stat.S_IRUSR)``): a user could not overwrite, copy over
    or share them without a ``chmod``. Returns ``path``."""
    os.chmod(path, 0o666 & ~umask())
    return path

