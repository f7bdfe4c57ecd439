"""Small file helpers shared by rooms that know nothing of each other."""
import hashlib

__all__ = ["file_digest"]


def file_digest(path, algorithm="sha256"):
    """Hex digest of the whole file at ``path`` (read in 1 MiB blocks, so memory stays flat);
    ``algorithm`` a :mod:`hashlib` name. (``hashlib.file_digest`` needs Python 3.11; the
    project supports 3.9.)"""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
