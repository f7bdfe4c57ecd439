"""Feeding the compiled train step: runs of ``n`` steps of one input size with no host read.

:class:`StepFeeder` is what the trainer calls once per chunk (a run of steps ending at a
multiscale size change, a log line, an epoch end or ``max_iters``); it never reads anything
back from the device, so the only host round trips are the trainer's ``read_stats`` once per
``print_interval`` and the first step of a new input size (timed for the compile log line).

One pipeline, both modes. The loader's single pipeline (``Loader.ms_dataset``) yields uint8
batches at the recipe's ``input_size`` (``data.multiscale_resize: batch``); every step is
``step(images, labels, size)`` with the chunk's multiscale ``size`` as a Python tuple, so each
size is its own compiled graph, and that graph casts the images to float32 and resizes the
batch (:class:`~mindyolox.training.preprocess.BatchPreprocess`). With and without sink the step
receives the same batches in the same order and applies the same graph to them.

* ``sink=False`` (CPU, or no ``--data-sink``): batches come from the pipeline's tuple iterator
  (``next``), each ``step(images, labels, size)`` is one graph launch.
* ``sink=True`` (Ascend/GPU): ONE ``mindspore.data_sink(dispatch, pipeline, sink_size=1,
  input_signature=...)`` for the whole run. MindSpore binds a pipeline to one transfer queue
  once -- a second ``data_sink`` on the same pipeline raises "The dataset has been used with
  network." (``mindspore/train/data_sink.py:36-37``) -- and its ``GetNext`` has the pipeline's
  one shape (``data_sink.py:66-70``), so per-size graphs cannot each own a queue of this
  pipeline; they do not need to: without a ``jit_config`` the sink function is plain Python
  that pops the queue with ``GetNext`` and calls ``fn(*data)`` (``data_sink.py:234-258``),
  and ``fn`` here is ``dispatch``, which calls ``step(images, labels, size)`` with the size
  of the chunk being run (``run(n, size)`` sets it). A chunk of ``n`` steps is ``n`` calls of
  the sink function: no host data transfer, lr, or read between them.

  What MindSpore does on Ascend with these arguments, and why they are these:

  - ``jit_config=None`` (decided): with a ``JitConfig`` the sink function -- ``GetNext`` and
    ``dispatch`` -- would be compiled as one graph (``data_sink.py:113-160``), freezing the
    chunk size ``dispatch`` reads from Python into it; the step graphs are compiled per size
    by the step itself, at the process's jit level (``runtime.jit_level``).
  - ``input_signature`` (the pipeline's own shapes and dtypes, :func:`sink_signature`): on
    Ascend, ``sink_size=1`` without a ``jit_config`` and without a signature takes the
    *data-info queue* path (``data_sink.py:44-46``: ``create_info`` is ``sink_size == 1``,
    ``:227-232``): every call then pops the next batch's dtypes and shapes with
    ``get_data_info()`` (``data_sink.py:99``, ``DataQueueOp::GetDataInfo`` =
    ``PopFront`` of a queue that ``SendRowToTdt`` fills after each batch it pushed, MindSpore's
    ``data_queue_op.cc``), a host wait for the sending thread before every step, and builds
    a new ``GetNext`` (the cache it looks in, ``next_ops``, is never filled, ``:102-108``).
    That path exists for pipelines whose shape changes; this one's never does. A signature
    turns it off (``:44-46``) and MindSpore checks it against the pipeline
    (``_check_inputs``, ``mindspore/train/dataset_helper.py:166-196``). On GPU there is no
    info queue either way (``:46``: Ascend only).
  - ``sink_size=1``: one step per call, so a chunk can have any length.

Bounded device queue. The host keeps sending batches as long as the device queue takes them:
on Ascend up to 100 batches or 2 GB in the mbuf queue (``DataQueueOp::WaitForAscendQueue``,
``max_queue_size = 100``, ``max_queue_memory = 2.``, in MindSpore's
``ccsrc/minddata/dataset/engine/datasetops/data_queue_op.cc``; the compiled
``_c_dataengine`` of 2.10 holds its log text "max queue limit"). The feeder bounds it to
:data:`QUEUE_BATCHES` batches ahead of the step: before each step it sets
``mindspore.dataset.config.set_sending_batches(steps_run + 1 + QUEUE_BATCHES)``
(``mindspore/dataset/core/config.py:703-729``), a limit the sending thread re-reads every
10 ms (``DataQueueOp::LimitSendingBatches``), so the queue holds at most that many batches.
The limit is compared with a count of the batches sent since the transfer started:
``DataQueueOp::SendDataToAscend`` declares ``send_batch`` once, before its loop over the
pipeline's epochs, and never resets it (``config.py``'s docstring says "in each epoch").
Both readings agree here: the pipeline is ONE MindSpore epoch for the whole run
(:class:`~mindyolox.data.loader.TrainSampler`), and the feeder, created with the transfer,
counts the same steps (``steps_run``) -- cumulative, from 0 at the (resumed) start.
Two is double buffering: one batch is being read by the running step while the next one is
copied in; a deeper device queue only helps against a host that is slower than the device on
average, which no queue depth fixes (the host pipeline's own connectors, 16 batches each by
default, ``set_prefetch_size``, absorb the per-batch jitter of the augmentation workers).
On GPU MindSpore does not read ``sending_batches`` (only ``SendDataToAscend`` calls
``LimitSendingBatches``); its device buffer already holds 2 batches
(``DatasetInitKernelMod``, ``buffer_q_capacity_{2}``) plus 8 per copy thread on the host.

Every exit path stops and releases the queue: :meth:`StepFeeder.close` (the trainer enters
the feeder on its ``ExitStack`` and closes it once before ``after_train`` -- normal end,
``max_iters``, exception, SIGINT/SIGTERM after the checkpoint, a second signal's
``KeyboardInterrupt`` -- or when ``before_train`` fails after the feeder exists) does what MindSpore's own ``Model.train``
does at the end of a sink run, ``dataset_helper.stop_send()`` then ``release()``
(``mindspore/train/model.py:1189-1190``), on the transfer dataset ``data_sink`` keeps on the
pipeline as ``__transfer_dataset__`` (``mindspore/train/data_sink.py:57``;
``stop_send`` / ``release``: ``mindspore/dataset/engine/datasets.py:4681``, ``:4721``; what
``DatasetHelper`` calls, ``mindspore/train/dataset_helper.py:596-597``). Between the two it
lifts the sending limit back to 0 (= none, MindSpore's default): the sending thread waits in
``LimitSendingBatches`` without checking for termination, so ``release`` must not find it
there. Without sink, ``close`` stops the tuple iterator (``Iterator.stop``,
``mindspore/dataset/engine/iterators.py:301-309``: its worker processes end now, not at
interpreter exit).
"""
import time

from ..utils.closing import Closing

__all__ = ["StepFeeder", "QUEUE_BATCHES", "sink_signature"]

# batches the device queue may hold ahead of the running step (module doc: double buffering)
QUEUE_BATCHES = 2


def sink_signature(pipeline):
    """``input_signature`` for ``mindspore.data_sink`` over ``pipeline``: one shape-and-dtype
    ``Tensor`` per column, the pipeline's own (``output_shapes`` / ``output_types``, the
    values ``data_sink`` reads itself, ``data_sink.py:39-40``; cached on the pipeline after the
    first call). Given, it keeps Ascend off the data-info-queue path (module doc)."""
    import mindspore as ms
    from mindspore import Tensor
    return tuple(Tensor(shape=[int(v) for v in shape], dtype=ms.dtype.pytype_to_dtype(dtype))
                 for shape, dtype in zip(pipeline.output_shapes(), pipeline.output_types()))


class StepFeeder(Closing):
    """Run the train ``step`` over a :class:`~mindyolox.data.loader.Loader`'s batches.

    ``run(n, size)`` launches ``n`` steps of multiscale size ``size`` ``(h, w)`` and returns the
    seconds spent waiting for data (0 with sink). Without sink each batch's shape is checked
    against the schedule: ``input_size`` when the step resizes (``Loader.resize_in_graph``),
    else ``size``. ``steps_run`` counts the steps launched.

    A context manager: the ``with`` block ends with :meth:`close`; when the block ends by an
    error and the close fails too, the close's error is one note on stderr and the error in
    flight is the one raised (the one the user must see).
    """

    closing_what = "the data queue"   # Closing: ``with feeder:`` releases it on every exit

    def __init__(self, step, loader, sink=False):
        self.step = step
        self.sink = bool(sink)
        self.pipeline = loader.ms_dataset
        self.steps_run = 0
        self._size = None
        self._sink_fn = None
        self._closed = False
        self._batch_hw = None
        if loader.resize_in_graph:
            self._batch_hw = loader.batch_hw(None)
        if not self.sink:
            self._stream = self.pipeline.create_tuple_iterator(num_epochs=1, do_copy=False)

    def _dispatch(self, images, labels):
        """What the sink function calls with the queue's next batch: the step graph of the
        chunk's size."""
        return self.step(images, labels, self._size)

    def _open_sink(self):
        import mindspore as ms
        import mindspore.dataset as ds
        ds.config.set_sending_batches(1 + QUEUE_BATCHES)  # data_sink starts sending at once
        self._sink_fn = ms.data_sink(self._dispatch, self.pipeline, sink_size=1, jit_config=None,
                                     input_signature=sink_signature(self.pipeline))

    def close(self):
        """Stop and release the device queue (module doc), or stop the iterator without sink;
        idempotent. Every part is tried; the first error, if any, is raised after all."""
        if self._closed:
            return
        self._closed = True
        calls = []
        if self.sink:
            if self._sink_fn is not None:
                import mindspore.dataset as ds
                transfer = getattr(self.pipeline, "__transfer_dataset__", None)
                if transfer is not None:
                    calls.append(transfer.stop_send)
                calls.append(lambda: ds.config.set_sending_batches(0))
                if transfer is not None:
                    calls.append(transfer.release)
            self._sink_fn = None
        else:
            stop = getattr(self._stream, "stop", None)
            if stop is not None:
                calls.append(stop)
        error = None
        for call in calls:
            try:
                call()
            except Exception as e:  # noqa: BLE001 -- re-raised below, after the other parts
                error = error or e
        if error is not None:
            raise error

    def run(self, n, size):
        if self._closed:
            raise RuntimeError("StepFeeder.run after close")
        size = (int(size[0]), int(size[1]))
        if self.sink:
            import mindspore.dataset as ds
            if self._sink_fn is None:
                self._open_sink()
            self._size = size
            for _ in range(int(n)):
                ds.config.set_sending_batches(self.steps_run + 1 + QUEUE_BATCHES)
                self._sink_fn()
                self.steps_run += 1
            return 0.0
        want = self._batch_hw or size
        data_s = 0.0
        for _ in range(int(n)):
            t0 = time.perf_counter()
            try:
                images, labels = next(self._stream)
            except StopIteration:
                raise RuntimeError("the training data stream ended before the schedule did") from None
            data_s += time.perf_counter() - t0
            if tuple(images.shape[2:]) != want:
                raise RuntimeError(f"batch of size {tuple(images.shape[2:])} where the schedule expects {want}")
            self.step(images, labels, size)
            self.steps_run += 1
        return data_s
