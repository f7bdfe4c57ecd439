"""Capture what native (C++) code writes to file descriptor 2, to keep its log lines out of
a one-line error message."""
import contextlib
import os
import sys
import tempfile

__all__ = ["native_stderr_captured"]


class _Captured:
    text = ""


@contextlib.contextmanager
def native_stderr_captured():
    """Within the block fd 2 goes to a temporary file; ``.text`` holds it afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured = _Captured()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.text = tmp.read().decode(errors="replace")
