"""One training process per run folder: ``<run_dir>/.run.lock``.

The lock file is created with ``O_CREAT | O_EXCL`` (atomic on local file systems and on NFS
v3+), so of two starts in the same instant exactly one gets it, and holds one line
``host pid start-time``. It is removed when the run ends (normally, on an error, after
SIGINT/SIGTERM) and by an exit handler; a process killed with ``kill -9`` leaves it behind.
Such a stale lock -- its host is this machine and its pid is not alive, or the pid now belongs
to a process started after the lock was written -- is taken over with a note. A lock of a
live process (or of another machine, where liveness cannot be checked) stops the new start
with one line naming the holder and the file to delete if that holder is really gone.

The lock is taken before anything in the folder is touched, so a second start can no longer
delete the files of a run that is still compiling its first graph.
"""
import atexit
import os
import socket
import time
from pathlib import Path

from ..errors import MindYOLOXError

__all__ = ["RunLock", "RunFolderBusy", "LOCK_NAME"]

LOCK_NAME = ".run.lock"


class RunFolderBusy(MindYOLOXError):
    """Another live process holds the run folder."""


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _proc_start(pid):
    """Start time of ``pid`` in seconds since the epoch (Linux ``/proc``), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 (starttime) of proc(5), counted after "pid (comm)"
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class RunLock:
    """The lock of ``run_dir`` (module doc). ``acquire()`` returns the notes to log (a stale
    lock taken over); ``release()`` removes the file if it is still ours. ``what`` and ``advice``
    word the refusal (an output folder of predict.py: ``"output folder (--save-dir)"``,
    ``"choose another --save-dir"``). As a context manager it is held for the ``with`` block
    (``__enter__`` acquires and keeps the notes in ``notes``; ``__exit__`` releases, however the
    block ends)."""

    def __init__(self, run_dir, what="run folder", advice="choose another --name"):
        self.path = Path(run_dir) / LOCK_NAME
        self.what, self.advice = what, advice
        self.held = False
        self.notes = []
        self.host, self.pid = socket.gethostname(), os.getpid()

    def __enter__(self):
        self.notes = self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def _holder(self):
        """``(host, pid, started)`` written in the lock file, or None if unreadable."""
        try:
            parts = self.path.read_text().split()
            return parts[0], int(parts[1]), float(parts[2])
        except (OSError, ValueError, IndexError):
            return None

    def _stale(self, holder):
        if holder is None:  # empty or garbled: a writer killed between create and write
            try:
                return time.time() - self.path.stat().st_mtime > 10
            except FileNotFoundError:
                return True
        host, pid, started = holder
        if host != self.host:
            return False
        if not _pid_alive(pid):
            return True
        began = _proc_start(pid)
        return began is not None and began > started + 1  # the pid was reused by a later process

    def acquire(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        notes = []
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if not self._stale(holder):
                    who = f"process {holder[1]} on {holder[0]}" if holder else "another process"
                    raise RunFolderBusy(
                        f"{self.what} {self.path.parent} is in use by {who} (lock {self.path}); wait for it, "
                        f"{self.advice}, or delete the lock file if that process is gone") from None
                who = f"process {holder[1]} on {holder[0]}" if holder else "an unknown process"
                notes.append(f"note: took over the lock of {who}, which is no longer running ({self.path})")
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{self.host} {self.pid} {_proc_start(self.pid) or time.time():.2f}\n")
            self.held = True
            atexit.register(self.release)
            return notes
        raise RunFolderBusy(f"{self.what} {self.path.parent}: could not take the lock {self.path} (other starts "
                            "keep taking it)")

    def release(self):
        if not self.held or os.getpid() != self.pid:  # a forked data worker does not own it
            return
        self.held = False
        holder = self._holder()
        if holder is not None and holder[0] == self.host and holder[1] == self.pid:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
