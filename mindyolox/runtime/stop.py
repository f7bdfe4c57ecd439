"""Stop requests that every rank agrees on: SIGINT / SIGTERM to any worker, or a ``STOP`` file
in the run folder.

Why an agreement: under ``msrun`` a signal reaches one worker (a scheduler's preemption, ``kill``
by hand) or reaches them at different moments, and each rank would notice it at its own chunk
boundary. A rank that stops alone enters the collectives of its stop (the log window's
statistics, the BatchNorm average, the save) while another rank starts a step whose gradient
all-reduce pairs with one of them: a hang until the HCCL timeout, or two ranks that disagree.
So the trainer asks :meth:`StopRequests.agree` once per chunk, at the same point of every rank's
timeline (after the chunk's ``after_iter`` hooks, whose collectives every rank runs alike):
one ``AllReduce`` of a ``[world_size]`` float32 vector, slot ``r`` holding rank ``r``'s request
code (0: none). Every rank reads the same sum, so every rank stops after the same step or none
does. Its cost: one collective of ``4 * world_size`` bytes per chunk (a chunk is at most
``train.print_interval`` steps).

Why a file: ``msrun`` starts the workers in their own sessions and on Ctrl-C SIGKILLs every
worker (``mindspore/parallel/cluster/process_entity/_api.py:355-371`` and ``402-409``): no
handler runs. ``touch <run>/STOP`` is the portable way to stop an msrun job (or a single
process, or one run under a scheduler that cannot signal the worker).

Decisions (also in docs/troubleshooting.md):

* every rank checks ``<run_dir>/STOP`` itself (one ``os.stat`` per chunk); one rank seeing it is
  enough (the agreement), so a run folder on one node's local disk works for a multi-node job;
* a ``STOP`` file already there when the run starts is stale (left by a run that was killed
  before it honoured it, or created after a run ended): it is ignored and said once; changing
  it (``touch`` again, or delete and create) makes it a request. No clock is compared (an NFS
  server's clock may differ from the node's): the file's ``(st_mtime_ns, st_ino)`` at the start
  is remembered and any other value counts;
* an honoured ``STOP`` file is removed by rank 0 once it has written ``last.ckpt`` (rank 0's
  line says so), so ``--resume`` continues; a copy another node saw on its own disk stays and is
  stale at the next start.
"""
import os
import signal
from pathlib import Path

import numpy as np

__all__ = ["STOP_FILE", "StopRequest", "StopRequests", "SIGNAL_CODES", "FILE_CODE"]

STOP_FILE = "STOP"
FILE_CODE = 3
SIGNAL_CODES = {int(signal.SIGINT): 1, int(signal.SIGTERM): 2}
_NAMES = {1: "SIGINT", 2: "SIGTERM", FILE_CODE: "STOP file"}
_SIGNUMS = {code: signum for signum, code in SIGNAL_CODES.items()}


class StopRequest:
    """The stop every rank agreed on: ``by`` lists ``(rank, code)`` of every rank that asked
    (rank order). ``signum`` is the signal of the first one (None for a ``STOP`` file): the
    exit code of every rank comes from it, so all ranks exit alike; ``file`` is whether any rank
    saw the ``STOP`` file."""

    def __init__(self, by):
        self.by = sorted((int(r), int(c)) for r, c in by)
        self.signum = _SIGNUMS.get(self.by[0][1])
        self.file = any(c == FILE_CODE for _, c in self.by)

    def __str__(self):
        """``SIGTERM on rank 1``; several: ``STOP file on ranks 0, 1; SIGINT on rank 2``."""
        parts = []
        for code in sorted({c for _, c in self.by}, key=[c for _, c in self.by].index):
            ranks = [r for r, c in self.by if c == code]
            parts.append(f"{_NAMES[code]} on rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}")
        return "; ".join(parts)


class StopRequests:
    """This rank's stop requests (a signal noted by the handler, the ``STOP`` file of
    ``run_dir``) and their agreement over the ranks (module doc).

    Args:
        run_dir: the run folder (``Path``); its ``STOP`` file's state now is the stale one.
        rank, world_size: this rank and the number of ranks (1: no collective).
        reduce: the element-wise sum over ranks of a float32 vector (default
            :func:`~mindyolox.runtime.distributed.all_reduce_sum`; a test passes its own).
    """

    def __init__(self, run_dir, rank=0, world_size=1, reduce=None):
        self.path = Path(run_dir) / STOP_FILE
        self.rank, self.world_size = int(rank), int(world_size)
        self._reduce = reduce
        self.signum = None
        self.stale = self._stamp()
        self.agreed = None

    def _stamp(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino

    def note_signal(self, signum):
        """Called from the signal handler: this rank was asked to stop (the first signal counts)."""
        if self.signum is None:
            self.signum = int(signum)

    def file_requested(self):
        """Whether ``STOP`` exists now and is not the stale file of the start."""
        now = self._stamp()
        return now is not None and now != self.stale

    def local_code(self):
        """This rank's request: 0 none, 1 SIGINT, 2 SIGTERM, 3 ``STOP`` file (a signal first)."""
        if self.signum is not None:
            return SIGNAL_CODES.get(self.signum, SIGNAL_CODES[int(signal.SIGTERM)])
        return FILE_CODE if self.file_requested() else 0

    def agree(self):
        """The stop all ranks agree on now (:class:`StopRequest`), or None. Distributed, every
        rank must call it at the same point of its timeline (one ``AllReduce``, module doc)."""
        codes = np.zeros(max(self.world_size, 1), np.float32)
        codes[self.rank] = self.local_code()
        if self.world_size > 1:
            reduce = self._reduce
            if reduce is None:
                from .distributed import all_reduce_sum
                reduce = all_reduce_sum
            codes = np.asarray(reduce(codes))
        by = [(r, int(round(float(c)))) for r, c in enumerate(codes) if round(float(c)) > 0]
        self.agreed = StopRequest(by) if by else None
        return self.agreed

    def remove_file(self):
        """Remove an honoured ``STOP`` file (rank 0, after its save). Returns whether it was there."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
