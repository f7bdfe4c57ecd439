"""Keep the trainer's SIGINT handler in place while MindSpore runs graphs.

MindSpore 2.10 replaces the process's SIGINT handler every time it builds or runs a graph:
``GraphScheduler::Run`` and the backend's ``Build`` call ``RegisterGlobalSignalHandler
(DefaultIntHandler)`` (mindspore/ccsrc/utils/signal_util.cc, in this install
``lib/libmindspore_common.so``, its log line "MSCONTEXT_REGISTER_INIT_FUNC register int
handler"), and ``DefaultIntHandler`` does ``kill(getpid(), SIGTERM)``. So after the first step a
Ctrl-C reaches Python as SIGTERM: the run said "received SIGTERM" and exited 143 for a SIGINT.
Python's ``signal.getsignal`` still reports the Python handler (MindSpore calls ``sigaction``
itself), so nothing in Python notices.

:class:`SignalKeeper` saves the C-level ``struct sigaction`` that ``signal.signal`` installed
(Python's trampoline, which calls the Python handler in the main thread) and, from a small
thread, puts it back whenever MindSpore has replaced it, checking every ``interval`` seconds
(two ``sigaction`` calls, no GIL held during them). A SIGINT can still become a SIGTERM if it
arrives in the first ``interval`` (5 ms) of a graph run; at any other time it is reported as
the SIGINT it is. Linux/glibc only (``ctypes``); elsewhere it does nothing.
"""
import ctypes
import signal
import threading
from contextlib import contextmanager

__all__ = ["SignalKeeper", "stop_signals"]

_SIGACTION_BYTES = 256  # >= sizeof(struct sigaction) (152 on x86_64 / aarch64 glibc)


class SignalKeeper:
    """Hold the current handler of ``signum`` against replacement (module doc); ``stop()``
    ends it. ``restored`` counts how often MindSpore's handler was replaced back."""

    def __init__(self, signum=signal.SIGINT, interval=0.005):
        self.signum, self.interval, self.restored = int(signum), float(interval), 0
        self._stop = threading.Event()
        self._thread = None
        try:
            self._sigaction = ctypes.CDLL(None, use_errno=True).sigaction
        except (OSError, AttributeError):
            return
        self._saved = ctypes.create_string_buffer(_SIGACTION_BYTES)
        self._now = ctypes.create_string_buffer(_SIGACTION_BYTES)
        if self._sigaction(self.signum, None, self._saved) != 0:
            return
        self._thread = threading.Thread(target=self._run, name="mindyolox-sigint-keeper", daemon=True)
        self._thread.start()

    @property
    def active(self):
        return self._thread is not None

    def _run(self):
        while not self._stop.wait(self.interval):
            if self._sigaction(self.signum, None, self._now) != 0:
                continue
            if self._now.raw[:8] != self._saved.raw[:8]:  # the handler pointer changed
                self._sigaction(self.signum, self._saved, None)
                self.restored += 1

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)


@contextmanager
def stop_signals(on_signal, signals=(signal.SIGINT, signal.SIGTERM)):
    """For the ``with`` block, SIGINT and SIGTERM ask to stop: the first one calls
    ``on_signal(signum)`` (the trainer notes it, saves after the current chunk and stops), a
    second one raises ``KeyboardInterrupt`` (leave now). SIGINT is held against MindSpore's
    replacement (:class:`SignalKeeper`). When the block ends, however it ends, the keeper stops
    and the previous handlers are back. Outside the main thread nothing is installed."""
    received = []

    def handler(signum, frame):
        if received:  # second signal: leave now
            raise KeyboardInterrupt
        received.append(signum)
        on_signal(signum)

    old = {}
    keeper = None
    try:
        for sig in signals:
            try:
                old[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        if signal.SIGINT in old:  # MindSpore turns SIGINT into SIGTERM otherwise (module doc)
            keeper = SignalKeeper(signal.SIGINT)
        yield
    finally:
        if keeper is not None:
            keeper.stop()
        for sig, h in old.items():
            signal.signal(sig, h)
