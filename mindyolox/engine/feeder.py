"""Feeding the compiled train step: runs of ``n`` steps of one input size with no host read.

:class:`StepFeeder` is what the trainer calls once per chunk (a run of steps ending at a
multiscale size change, a log line, an epoch end or ``max_iters``); it never reads anything
back from the device, so the only host round trips are the trainer's ``read_stats`` once per
``print_interval`` and the first step of a new input size (timed for the compile log line).

* ``sink=False`` (CPU, or no ``--data-sink``): batches come from the loader's stream iterator
  (``next``), each ``step(images, labels)`` is one graph launch.
* ``sink=True`` (Ascend/GPU): one ``mindspore.data_sink(step, pipeline, sink_size=1)`` per
  input size over the loader's per-size pipelines (``Loader.by_size``): a device queue holds
  only one shape, which MindSpore's GetNext requires (its shape-change handling exists on
  Ascend only, and only for ``sink_size=1``). A chunk of ``n`` steps is ``n`` calls of that
  size's sink function: no host data transfer, lr, or read between them. (MindSpore 2.10's
  ``data_sink`` without a ``jit_config`` runs ``sink_size`` launches in a Python loop as
  well, so this costs nothing against ``sink_size=n``; and it allows chunks of any length.)

Every device queue is stopped and released when training ends, on every exit path (the
trainer's ``after_train``, which runs in a ``finally``, calls :meth:`StepFeeder.close`): MindSpore's
own ``Model.train`` ends a sink run with ``dataset_helper.stop_send()`` and ``release()``
(``mindspore/train/model.py:1189-1190``); ``mindspore.data_sink`` keeps its transfer dataset
on the pipeline as ``__transfer_dataset__`` (``mindspore/train/data_sink.py:57``), whose
``stop_send`` / ``release`` (``mindspore/dataset/engine/datasets.py:4681``, ``:4721``) are what
``DatasetHelper`` calls (``mindspore/train/dataset_helper.py:596-597``). Without it a queue
keeps its prefetched batches (and its sending thread) until the process exits.
"""
import time

__all__ = ["StepFeeder"]


class StepFeeder:
    """Run the train ``step`` over a :class:`~mindyolox.data.loader.Loader`'s batches.

    ``run(n, size)`` launches ``n`` steps whose batches have input size ``size`` ``(h, w)``
    and returns the seconds spent waiting for data (0 with sink, where the loader must have
    been built with ``split_sizes=True``).
    """

    def __init__(self, step, loader, sink=False):
        self.step = step
        self.sink = bool(sink)
        self._sinks = {}
        if self.sink:
            if not loader.by_size:
                raise ValueError("StepFeeder: data sink needs a loader built with split_sizes=True")
            self.by_size = loader.by_size
        else:
            self._stream = loader.ms_dataset.create_tuple_iterator(num_epochs=1, do_copy=False)

    def _sink_fn(self, size):
        if size not in self._sinks:
            if size not in self.by_size:
                raise ValueError(f"StepFeeder: no pipeline for input size {size} (sizes {sorted(self.by_size)})")
            import mindspore as ms
            self._sinks[size] = ms.data_sink(self.step, self.by_size[size], sink_size=1)
        return self._sinks[size]

    def close(self):
        """Stop and release the device queue of every size this feeder has opened (module
        doc); idempotent, nothing to do without sink. Every queue is tried; the first error,
        if any, is raised after all of them."""
        error = None
        for size in list(self._sinks):
            transfer = getattr(self.by_size[size], "__transfer_dataset__", None)
            del self._sinks[size]
            if transfer is None:
                continue
            for call in (transfer.stop_send, transfer.release):
                try:
                    call()
                except Exception as e:  # noqa: BLE001 -- re-raised below, after the other queues
                    error = error or e
        if error is not None:
            raise error

    def run(self, n, size):
        if self.sink:
            fn = self._sink_fn(tuple(size))
            for _ in range(int(n)):
                fn()
            return 0.0
        data_s = 0.0
        for _ in range(int(n)):
            t0 = time.perf_counter()
            try:
                images, labels = next(self._stream)
            except StopIteration:
                raise RuntimeError("the training data stream ended before the schedule did") from None
            data_s += time.perf_counter() - t0
            if tuple(images.shape[2:]) != tuple(size):
                raise RuntimeError(f"batch of size {tuple(images.shape[2:])} where the schedule expects {tuple(size)}")
            self.step(images, labels)
        return data_s
