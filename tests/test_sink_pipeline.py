"""One sink pipeline (issue 24): one uint8 training pipeline at ``input_size``, the batch cast
and resized inside the step graph of each multiscale size (the official ``Exp.preprocess``),
a bounded device queue, ``stop_send`` / ``release`` when the feeder closes.

MindSpore refuses data sink on CPU (``mindspore/train/data_sink.py:222-225``), so the sink
path runs against a stand-in for ``mindspore.data_sink`` that does what it does on Ascend
without the device: it refuses a pipeline that is already bound (``data_sink.py:36-37``),
chooses the data-info-queue path as ``:44-46, 227-232`` do (and counts the host waits that
path costs), checks an ``input_signature`` with MindSpore's own check, binds a transfer
dataset to it (``:57``), and returns a function that takes the next batch the pipeline sends
and calls ``fn`` on it (``:234-258``). Its sending thread honours
``mindspore.dataset.config.set_sending_batches`` the way ``DataQueueOp::LimitSendingBatches``
does (counted per transfer as in the source; the pipeline's one MindSpore epoch ends after the
run's last batch, so a per-epoch count would be the same), so the queue depth the feeder
allows is measured. The step is
:class:`~mindyolox.training.preprocess.BatchPreprocess`, the cell :class:`TrainStep` runs first
(``test_train_step_runs_the_batch_preprocess`` ties the two), so what is compared is the exact
float32 batch each step graph computes on.
"""
import collections

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype

from mindyolox.data.loader import check_sink_support, create_train_loader
from mindyolox.training.feeder import QUEUE_BATCHES, StepFeeder
from mindyolox.training.optimizer import SGD
from mindyolox.training.preprocess import BatchPreprocess
from mindyolox.training.train_step import TrainStep
from mindyolox.training.trainer import Trainer
from mindyolox.errors import DataError

from .test_train import coco16_cfg


def _bilinear(images, size):
    """numpy reference of ``torch.nn.functional.interpolate(x, size, mode="bilinear",
    align_corners=False)``: source ``(dst + 0.5) * in / out - 0.5`` clamped at 0, the upper
    neighbour clamped at the last pixel, float64."""
    x = images.astype(np.float64)

    def taps(n_out, n_in):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    y0, y1, ly = taps(size[0], x.shape[2])
    x0, x1, lx = taps(size[1], x.shape[3])
    rows = x[:, :, y0] * (1 - ly)[:, None] + x[:, :, y1] * ly[:, None]
    return rows[..., x0] * (1 - lx) + rows[..., x1] * lx


def _scaled(labels, size, hw):
    want = labels.astype(np.float32).copy()
    want[..., 1::2] *= size[1] / hw[1]
    want[..., 2::2] *= size[0] / hw[0]
    return want


@pytest.fixture(scope="module")
def prep():
    return BatchPreprocess()  # one cell: each size's graph compiles once for the module


def test_batch_preprocess_is_the_official_bilinear_resize(prep):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3, 12, 16), dtype=np.uint8)
    labels = np.zeros((2, 4, 5), np.float32)
    labels[:, :2] = rng.uniform(1, 12, (2, 2, 5))
    for size in ((12, 16), (6, 8), (18, 24), (9, 20)):  # same, down, up, other aspect
        out, lab = (t.asnumpy() for t in prep(Tensor(images), Tensor(labels), size))
        assert out.dtype == np.float32 and out.shape == (2, 3) + size
        if size == (12, 16):  # the input size: a cast, nothing else
            np.testing.assert_array_equal(out, images.astype(np.float32))
            np.testing.assert_array_equal(lab, labels)
            continue
        np.testing.assert_allclose(out, _bilinear(images, size), rtol=0, atol=2e-3, err_msg=str(size))
        np.testing.assert_allclose(lab, _scaled(labels, size, (12, 16)), rtol=1e-6)
        assert not lab[:, 2:].any()  # padding rows stay zero


class _Recorder:
    """A step that keeps what the step graph of each size computes on (BatchPreprocess)."""

    def __init__(self, prep):
        self.prep, self.seen = prep, []

    def __call__(self, images, labels, size):
        out, lab = self.prep(images, labels, size)
        self.seen.append((size, out.asnumpy(), lab.asnumpy()))


class _SinkStandIn:
    """``mindspore.data_sink`` as on Ascend, without the device (module doc). ``queue`` holds
    the batches sent and not yet taken; ``depths`` its length at each step; ``log`` the limit
    changes, the transfer calls and the pipeline's end of epoch (``eoe``) in order.

    The sending thread is ``DataQueueOp::SendDataToAscend`` (MindSpore's ``data_queue_op.cc``):
    after each batch it waits while ``send_batch >= sending_batches`` (0 = no limit). The
    source counts ``send_batch`` from the transfer's start and never resets it; the
    ``set_sending_batches`` docstring says "in each epoch". The stand-in logs the end of the
    pipeline's MindSpore epoch (``eoe``, with the batches sent by then): when it comes only
    after the run's last batch, both readings give the same count.

    The path is chosen as ``data_sink.py:44-46, 227-232`` choose it on Ascend: ``sink_size=1``
    without a ``jit_config`` and without an ``input_signature`` takes the data-info queue,
    where every call first pops the next batch's info (``get_data_info``, ``:99``), a host wait
    for the sending thread; ``info_waits`` counts them. A given signature is checked with
    MindSpore's own ``_check_inputs`` against the pipeline's shapes and dtypes."""

    def __init__(self, monkeypatch):
        self.log, self.depths, self.limit, self.bound = [], [], 0, 0
        self.info_waits, self.info_queue = 0, None
        real = ds.config.set_sending_batches

        def set_sending_batches(n):
            real(n)
            self.limit = n
            self.log.append(("limit", n))
            self._send()
        monkeypatch.setattr(ds.config, "set_sending_batches", set_sending_batches)
        monkeypatch.setattr(ms, "data_sink", self.data_sink)

    def _send(self):  # LimitSendingBatches: send while the count is below the limit (0 = none)
        while self.it is not None and (self.limit == 0 or self.sent < self.limit):
            batch = next(self.it, None)
            if batch is None:  # the end of the pipeline's (one) MindSpore epoch
                self.log.append(("eoe", self.sent))
                self.it = None
                return
            self.queue.append(batch)
            self.sent += 1

    it = None

    def data_sink(self, fn, dataset, sink_size=1, jit_config=None, input_signature=None):
        from mindspore.train._utils import _get_types_and_shapes
        from mindspore.train.dataset_helper import _check_inputs
        if hasattr(dataset, "__transfer_dataset__"):
            raise ValueError("The dataset has been used with network.")
        assert jit_config is None, ("a JitConfig compiles GetNext and fn into one graph (data_sink.py:113-160): "
                                    "the chunk size dispatch reads would be frozen in it")
        types, shapes = _get_types_and_shapes(dataset)
        loop, create_info = (1, sink_size == 1) if jit_config is None else (sink_size, True)
        self.info_queue = (create_info and loop == 1 and dataset.get_dataset_size() != 1 and input_signature is None)
        if input_signature is not None:
            _check_inputs(input_signature, shapes, types)
        self.bound += 1
        stand_in = self

        class Transfer:
            def stop_send(self):
                stand_in.log.append(("stop_send",))

            def release(self):
                stand_in.log.append(("release",))
                stand_in.it = None
        dataset.__transfer_dataset__ = Transfer()
        self.queue, self.sent = collections.deque(), 0
        self.it = iter(dataset.create_tuple_iterator(num_epochs=1))
        self._send()

        def sink_process():
            if self.info_queue:   # get_data_info(): the host waits until the next batch was sent
                self.info_waits += 1
            out = None
            for _ in range(sink_size):
                self.depths.append(len(self.queue))
                assert self.queue, "the step found the device queue empty"
                out = fn(*self.queue.popleft())
            return out
        return sink_process


def _sizes(loader, start, end):
    spe, b = loader.steps_per_epoch, loader.batch_size
    return [loader.source.size(k // spe, (k % spe) * b) for k in range(start, end)]


def _run(feeder, sizes):
    """Chunks of one size, as the trainer runs them (the first step of a size alone)."""
    k = 0
    while k < len(sizes):
        n = 1
        while k + n < len(sizes) and sizes[k + n] == sizes[k]:
            n += 1
        feeder.run(1, sizes[k])
        if n > 1:
            feeder.run(n - 1, sizes[k])
        k += n


def test_sink_and_plain_loops_feed_the_same_batches_also_resumed(prep, monkeypatch):
    """The batches every step graph computes on are, byte for byte, the same with data sink
    and without, uninterrupted (2 epochs) and resumed at epoch 2 iter 4; each is the
    pipeline's uint8 batch at input size, in order, resized to the step's size as the
    official F.interpolate does; the device queue never holds more than QUEUE_BATCHES + 1
    batches nor runs dry, whether the sending limit counts per transfer (MindSpore's source)
    or per MindSpore epoch (its docstring): the pipeline's one epoch ends only after the
    run's last batch; no step waits on the data-info queue; one data_sink for every size;
    close stops, lifts the limit, releases, in that order, once."""
    cfg = coco16_cfg("data.random_size=[2,4]", size=96)
    kw = dict(rank=0, world_size=1, num_workers=0, interval=2, end_epoch=2)
    stand_in = _SinkStandIn(monkeypatch)
    runs = {}
    for name, sink, start_epoch, start_iter in (("plain", False, 0, 0), ("sink", True, 0, 0),
                                                ("plain_resumed", False, 1, 3), ("sink_resumed", True, 1, 3)):
        loader = create_train_loader(cfg.data, cfg.aug, cfg.train, start_epoch=start_epoch, start_iter=start_iter,
                                     **kw)
        assert loader.resize_in_graph
        spe = loader.steps_per_epoch
        rec = _Recorder(prep)
        feeder = StepFeeder(rec, loader, sink=sink)
        _run(feeder, _sizes(loader, start_epoch * spe + start_iter, 2 * spe))
        feeder.close()
        feeder.close()  # idempotent
        runs[name] = rec.seen
        if sink:
            assert stand_in.info_queue is False and stand_in.info_waits == 0, \
                "data_sink took the data-info-queue path: a host wait before every step (feeder module doc)"
            assert stand_in.log[-3:] == [("stop_send",), ("limit", 0), ("release",)]
            eoe = [e for e in stand_in.log if e[0] == "eoe"]
            assert eoe[-1] == ("eoe", len(rec.seen)), eoe  # one MindSpore epoch, ended by the run's last batch
            assert [e for e in stand_in.log if e[0] not in ("limit", "eoe")] == \
                [("stop_send",), ("release",)] * stand_in.bound
            assert max(stand_in.depths) <= QUEUE_BATCHES + 1 and len(stand_in.depths) == len(rec.seen)
            stand_in.depths.clear()
    assert stand_in.bound == 2  # one data_sink per run, for every size
    host = list(create_train_loader(cfg.data, cfg.aug, cfg.train, **kw).ms_dataset
                .create_tuple_iterator(num_epochs=1, output_numpy=True))
    sizes = [s for s, _, _ in runs["plain"]]
    assert len(sizes) == len(host) == 2 * spe and sizes == _sizes(loader, 0, 2 * spe)
    assert len(set(sizes)) > 1 and any(s != (96, 96) for s in sizes)
    for k, ((size, img, lab), (h_img, h_lab)) in enumerate(zip(runs["plain"], host)):
        assert h_img.dtype == np.uint8 and h_img.shape[2:] == (96, 96)  # uint8 across the boundary
        assert img.shape[2:] == size
        np.testing.assert_allclose(img, _bilinear(h_img, size), rtol=0, atol=2e-3, err_msg=f"step {k}")
        np.testing.assert_allclose(lab, _scaled(h_lab, size, (96, 96)), rtol=1e-6)
    tail = 1 * spe + 3
    for name, want in (("sink", runs["plain"]), ("plain_resumed", runs["plain"][tail:]),
                       ("sink_resumed", runs["plain"][tail:])):
        got = runs[name]
        assert len(got) == len(want), name
        for k, ((s1, i1, l1), (s2, i2, l2)) in enumerate(zip(got, want)):
            assert s1 == s2, (name, k)
            assert i1.tobytes() == i2.tobytes() and l1.tobytes() == l2.tobytes(), (name, k)


class _Probe(nn.Cell):
    """A loss net whose outputs describe its input: images' sum, labels' sum, height, width."""

    def __init__(self):
        super().__init__()
        self.w = Parameter(Tensor(np.ones(1, np.float32)), name="probe.w")

    def construct(self, images, labels, use_l1):
        total = (self.w * self.w).sum() + images.mean() * 0.0
        h = ops.scalar_to_tensor(images.shape[2], mstype.float32)
        w = ops.scalar_to_tensor(images.shape[3], mstype.float32)
        return total, images.sum(), labels.sum(), images.max(), h, w


def test_train_step_runs_the_batch_preprocess(prep):
    """TrainStep(images uint8, labels, size) computes on BatchPreprocess's output for that size."""
    probe = _Probe()
    step = TrainStep(probe, SGD([probe.w], [False]))
    rng = np.random.default_rng(1)
    images = Tensor(rng.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8))
    labels = Tensor(np.concatenate([rng.uniform(1, 90, (2, 3, 5)), np.zeros((2, 2, 5))], 1).astype(np.float32))
    out = step(images, labels, (64, 128))
    img, lab = prep(images, labels, (64, 128))
    assert (float(out[4].asnumpy()), float(out[5].asnumpy())) == (64.0, 128.0)
    assert float(out[1].asnumpy()) == pytest.approx(float(img.sum().asnumpy()), rel=1e-6)
    assert float(out[2].asnumpy()) == pytest.approx(float(lab.sum().asnumpy()), rel=1e-6)
    assert float(out[2].asnumpy()) != pytest.approx(float(labels.sum().asnumpy()), rel=1e-3)  # scaled


def test_sample_mode_with_multiscale_is_refused_with_sink(tmp_path):
    cfg = coco16_cfg("data.random_size=[2,4]", "data.multiscale_resize=sample", size=96)
    with pytest.raises(DataError, match="multiscale_resize=sample .* one data-sink queue"):
        Trainer(cfg, run_dir=tmp_path / "run", data_sink=True, num_workers=0, progress=False).train()
    assert not (tmp_path / "run").exists()  # refused before the run folder
    check_sink_support(coco16_cfg("data.multiscale_resize=sample", size=96).data)  # one size: one shape, fine
    check_sink_support(cfg.data | {"multiscale_resize": "batch"})
