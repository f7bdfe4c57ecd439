"""The two helper threads of the prediction loop (:mod:`mindyolox.predict.loop`), so that the
compute thread (the one calling the model) neither waits for decoding nor for encoding:

- :class:`Prefetch`: a reader thread that runs an iterator (images decoded from disk, frames
  of a video / webcam / stream) ahead of the consumer into a bounded queue of ``depth`` items
  (default 2 groups of ``batch``: memory stays at a few frames, never the whole video);
- :class:`Writer`: a writer thread that runs the output jobs (draw + encode an image, append a
  frame to a video, write a JSON / txt) in the order they were submitted, behind a bounded
  queue (``depth`` jobs; a full queue blocks the compute thread, so a slow disk slows the run
  instead of filling memory).

Exceptions: an exception raised in either thread is re-raised, as is, in the compute thread at
its next call (``next`` / ``submit`` / ``close``), so a :class:`~mindyolox.errors.MindYOLOXError`
raised while reading or writing is the command's one ``error:`` line; OpenCV and OS errors are
turned into one such line naming the file by the jobs themselves (:mod:`.loop`).

Stopping: :meth:`Prefetch.close` tells the reader to stop and waits for it (the capture is
released by the reader's own ``finally``); :meth:`Writer.close` runs every job already
submitted, then ends, so after Ctrl-C what was predicted is written (``wait=True``). Both are
daemon threads: a bug that hangs one cannot keep the process alive at exit. OpenCV releases
the GIL while decoding and encoding, so the threads overlap with the model's compute.
"""
import queue
import threading

__all__ = ["Prefetch", "Writer"]

_END = object()


class _Always:
    """A writer job that runs even after an earlier job failed."""

    def __init__(self, job):
        self.job = job

    def __call__(self):
        self.job()


class Prefetch:
    """Iterate ``iterable`` in a reader thread, ``depth`` items ahead; use as an iterator and
    a context manager (``with Prefetch(frames, 4) as items: for x in items: ...``)."""

    def __init__(self, iterable, depth=2, name="mindyolox-reader"):
        self._it = iterable
        self._q = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item):
        """Queue ``item`` unless asked to stop (checks every 0.1 s while the queue is full)."""
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        try:
            for item in self._it:
                if not self._put(item):
                    break
        except BaseException as e:   # handed to the consumer, re-raised there
            self._error = e
        finally:
            close = getattr(self._it, "close", None)
            if close is not None:   # a generator: runs its finally (e.g. releases a capture)
                close()
            self._put(_END)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._q.get()
        if item is _END:
            self._q.put(_END)   # later calls end too
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            raise StopIteration
        return item

    def close(self):
        """Stop the reader and wait for it (it finishes the item it is decoding)."""
        self._stop.set()
        while self._thread.is_alive():
            try:   # make room so a blocked put sees the stop flag
                self._q.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Writer:
    """Run output jobs (callables without arguments) in a writer thread, in submission order.

    ``submit(job)`` queues it (blocks while ``depth`` jobs wait) and first re-raises the error
    of an earlier job; ``close()`` runs what is queued, stops the thread and re-raises a job's
    error. After the first failing job the later ones are dropped (the run is ending anyway).
    """

    def __init__(self, depth=8, name="mindyolox-writer"):
        self._q = queue.Queue(maxsize=max(1, int(depth)))
        self._error = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            job = self._q.get()
            if job is _END:
                return
            always = isinstance(job, _Always)
            if self._error is None or always:
                try:
                    job()
                except BaseException as e:   # handed to the compute thread, re-raised there
                    if self._error is None:
                        self._error = e

    def _raise(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, job):
        self._raise()
        self._q.put(job)

    def always(self, job):
        """Queue ``job`` to run even after an earlier job failed (e.g. closing a video file), without
        re-raising an earlier error here (the next ``submit`` / ``close`` does). Runs it at once
        when the thread has ended."""
        if self._thread.is_alive():
            self._q.put(_Always(job))
        else:
            job()

    def close(self):
        """Run every queued job, end the thread, re-raise the first job error."""
        if self._thread.is_alive():
            self._q.put(_END)
            self._thread.join()
        self._raise()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        elif self._thread.is_alive():   # the exception already propagating (e.g. Ctrl-C) is the one
            self._q.put(_END)           # reported; what was submitted is still written
            self._thread.join()
        return False
