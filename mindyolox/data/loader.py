"""``mindspore.dataset`` loaders for training and evaluation.

Training (:func:`create_train_loader`)
    ONE ``GeneratorDataset`` over :class:`TrainSource` with a :class:`TrainSampler`, then
    ``batch(drop_remainder=True)``; no cast. Columns: ``images`` uint8 ``[B, 3, H0, W0]`` (BGR)
    and ``labels`` float32 ``[B, max_labels, 5]`` ``(class, cx, cy, w, h)`` in input pixels,
    zero rows = padding. The images cross the host-device boundary as uint8 and the compiled
    step casts them to float32 on the device
    (:class:`~mindyolox.training.preprocess.BatchPreprocess`). The same single pipeline feeds
    the step with and without data sink (:class:`~mindyolox.training.feeder.StepFeeder`).

    - Sample order, the official ``InfiniteSampler`` + ``YoloBatchSampler``: one endless
      stream of permutations of the dataset (pass ``p`` shuffled by ``[seed, p]``), rank ``r``
      of ``world`` taking stream positions ``r, r + world, ...``, cut into batches; an epoch
      is ``ceil((n // world) / batch)`` steps (1500 images at batch 8: 188), so the last
      batch of an epoch runs into the next pass and every batch is full.
    - Determinism: every random draw of a sample comes from
      ``np.random.default_rng([seed, pass, image index])``. The output is the same for any
      ``num_workers`` (0 = in-process, 1..n = Python worker processes).
    - Epochs: the sampler hands the workers ``epoch * samples_per_epoch + position``, so
      workers know the epoch without any shared state; all training epochs from
      ``(start_epoch, start_iter)`` on form one MindSpore epoch (resuming starts there).
      Mosaic/MixUp are off from :func:`no_aug_start` on (official 0.3.0: the last
      ``no_aug_epochs + 1`` epochs; the switch is part of the pipeline, so it also works in
      data-sink mode).
    - Multiscale: the rule of :mod:`mindyolox.data.multiscale` (one size per block of
      ``INTERVAL`` = 10 steps, the same on every rank; :meth:`TrainSource.size`,
      :meth:`Loader.size_at`). ``data.multiscale_resize``:

      * ``batch`` (default, official ``Exp.preprocess``): every sample is built at
        ``input_size`` (``H0, W0``), so every batch has one shape, and the compiled step of the
        block's size resizes the batch on the device (bilinear, half-pixel centres: the
        official ``F.interpolate(align_corners=False)``) with the labels scaled
        (:class:`~mindyolox.training.preprocess.BatchPreprocess`). One shape is what a data-sink
        device queue needs: one pipeline, one queue, for every size.
      * ``sample``: the sample is built at the step's size directly (mosaic canvas, affine and
        letterbox at that size: sharper small images, no second resampling). Batches change
        shape with the size, so this is refused with data sink while multiscale is on
        (:func:`check_sink_support`).

Evaluation (:func:`create_eval_loader`)
    Columns ``images`` float32 ``[B, 3, H, W]`` (``preproc``), ``index`` int32 ``[B]`` (dataset
    index; -1 = padding of the last batch or an unreadable image: ignore the row),
    ``orig_hw`` int32 ``[B, 2]`` and ``ratio`` float32 ``[B]`` (divide boxes by it).
"""
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .base import DetectionDataset, EventLog, logger
from .coco import COCODataset
from .mosaic import MosaicMixup
from .multiscale import INTERVAL, multiscale_range, size_for_step
from .transforms import letterbox
from .voc import VOCDataset

__all__ = [
    "build_dataset", "no_aug_start", "TrainSource", "TrainSampler", "multiscale_range", "size_for_step",
    "create_train_loader", "create_eval_loader", "Loader", "check_sink_support",
]


# ----------------------------------------------------------------------------- datasets
def build_dataset(data_cfg, split="train"):
    """The dataset named by a recipe's ``data`` section (dict-like) for ``split`` ``"train"``
    or ``"val"``: COCO (``data_dir/train_ann`` + ``data_dir/train_images``), VOC
    (``data_dir`` + ``train_split``, classes from ``data.classes``) or YOLO (the dataset YAML
    ``data.yaml``: its ``train``/``val`` images and ``names``, :mod:`mindyolox.data.yolo`;
    ``data_dir`` is not used). ``data_dir`` of the form
    ``demo:<dir>`` is the built-in synthetic COCO dataset, generated into ``<dir>`` on first
    use (:mod:`mindyolox.data.demo`)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    from .demo import resolve_data_dir  # here: `python -m mindyolox.data.demo` imports this package first
    fmt = str(data_cfg["format"]).lower()
    data_dir = resolve_data_dir(data_cfg["data_dir"])
    if fmt == "coco":
        ann = os.path.join(data_dir, str(data_cfg[f"{split}_ann"]))
        images = os.path.join(data_dir, str(data_cfg[f"{split}_images"]))
        if not os.path.isdir(images):
            raise DataError(f"image folder {images} not found (data.data_dir / data.{split}_images)")
        return COCODataset(ann, images)
    if fmt == "voc":
        return VOCDataset(data_dir, data_cfg[f"{split}_split"], list(data_cfg["classes"]) or None)
    if fmt == "yolo":
        from .yolo import build_yolo_dataset
        return build_yolo_dataset(data_cfg, split)
    raise DataError(f"data.format must be 'coco', 'voc' or 'yolo', got {fmt!r}")


# ----------------------------------------------------------------------------- multiscale
# multiscale_range and size_for_step: mindyolox.data.multiscale (imported above, still importable here)


# ----------------------------------------------------------------------------- training source
def no_aug_start(max_epoch, no_aug_epochs):
    """First epoch (0-based) without Mosaic/MixUp and with the L1 loss: official 0.3.0 switches
    in ``before_epoch`` when ``epoch + 1 == max_epoch - no_aug_epochs``, i.e. for the last
    ``no_aug_epochs + 1`` epochs (the LR's flat tail is ``no_aug_epochs`` long)."""
    return max(0, int(max_epoch) - int(no_aug_epochs) - 1)


class TrainSource:
    """Random-access source for ``GeneratorDataset``: key ``epoch * samples_per_epoch + pos``
    -> ``(image uint8 [3, H, W], labels float32 [max_labels, 5])``, built at ``input_size``
    (``resize_batch``: the step resizes the batch) or at the step's multiscale size."""

    def __init__(self, builder, batch_size, seed=0, rank=0, world_size=1, ms_range=None,
                 interval=INTERVAL, no_aug_epoch=None, resize_batch=True):
        self.builder = builder
        self.resize_batch = bool(resize_batch)
        self.batch_size = int(batch_size)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.ms_range, self.interval = ms_range, int(interval)
        self.no_aug_epoch = no_aug_epoch
        n = len(builder.dataset)
        per_rank = n // self.world_size
        if per_rank == 0:
            raise DataError(f"dataset {builder.dataset.name} has {n} images, fewer than the "
                            f"{self.world_size} devices")
        self.steps_per_epoch = -(-per_rank // self.batch_size)
        self.samples_per_epoch = self.steps_per_epoch * self.batch_size
        self._epoch, self._indices, self._passes = None, None, None
        self._block_size = {}

    def __len__(self):
        return self.samples_per_epoch

    def _stream(self, epoch):
        if self._epoch != epoch:
            n = len(self.builder.dataset)
            k = np.arange(epoch * self.samples_per_epoch, (epoch + 1) * self.samples_per_epoch, dtype=np.int64)
            g = k * self.world_size + self.rank        # position in the shared stream
            passes = g // n
            idx = np.empty_like(g)
            for p in np.unique(passes):
                at = passes == p
                idx[at] = np.random.default_rng([self.seed, int(p)]).permutation(n)[g[at] % n]
            self._epoch, self._indices, self._passes = epoch, idx, passes
        return self._indices, self._passes

    def indices(self, epoch):
        """Dataset indices this rank visits in ``epoch``, in order (``samples_per_epoch``)."""
        return self._stream(epoch)[0]

    def size(self, epoch, pos):
        """Input ``(h, w)`` of sample position ``pos`` of ``epoch`` (cached per size block)."""
        block = (epoch * self.steps_per_epoch + pos // self.batch_size) // self.interval
        if block not in self._block_size:
            self._block_size[block] = size_for_step(block * self.interval, self.builder.input_size,
                                                    self.ms_range, self.seed, self.interval)
        return self._block_size[block]

    def sizes(self, start_step, end_step):
        """The distinct input sizes ``(h, w)`` of global steps ``[start_step, end_step)``."""
        spe = self.steps_per_epoch
        return sorted({self.size(k // spe, (k % spe) * self.batch_size)
                       for k in range(int(start_step), int(end_step), self.interval)} |
                      {self.size((end_step - 1) // spe, ((end_step - 1) % spe) * self.batch_size)})

    def __getitem__(self, key):
        key = int(key)
        epoch, pos = divmod(key, self.samples_per_epoch)
        indices, passes = self._stream(epoch)
        index = int(indices[pos])
        rng = np.random.default_rng([self.seed, int(passes[pos]), index])
        mosaic = self.no_aug_epoch is None or epoch < self.no_aug_epoch
        size = self.builder.input_size if self.resize_batch else self.size(epoch, pos)
        return self.builder.sample(index, size, rng, mosaic=mosaic)


def _sampler_base():
    import mindspore.dataset as ds
    return ds.Sampler


class TrainSampler(_sampler_base()):
    """Keys ``epoch * n + pos`` of the batches from ``(start_epoch, start_pos)`` up to the end
    of ``end_epoch - 1``, in training order, as ONE MindSpore epoch (so a run of many
    training epochs is one pass: no pipeline restart per epoch, and a resumed run starts at
    its first unconsumed sample -- nothing is fed that the step must discard). A further
    MindSpore epoch continues with the next ``end_epoch - start_epoch`` training epochs.
    ``source`` gives ``samples_per_epoch``."""

    def __init__(self, source, start_epoch=0, start_pos=0, end_epoch=None):
        self.source = source
        self.n = int(source.samples_per_epoch)
        self.start_epoch, self.start_pos = int(start_epoch), int(start_pos)
        self.span = (int(end_epoch) if end_epoch is not None else self.start_epoch + 1) - self.start_epoch
        self.passes = 0
        super().__init__()

    def _range(self, p):
        first = (self.start_epoch + p * self.span) * self.n + (self.start_pos if p == 0 else 0)
        return first, (self.start_epoch + (p + 1) * self.span) * self.n

    def __iter__(self):
        start, end = self._range(self.passes)
        self.passes += 1
        return iter(range(start, end))

    def __len__(self):
        start, end = self._range(0)
        return end - start


@dataclass
class Loader:
    """What the loaders return. ``ms_dataset`` is the ``mindspore.dataset`` pipeline
    (iterate with ``create_tuple_iterator`` / ``create_dict_iterator`` or feed ``Model.train``);
    ``dataset`` the :class:`DetectionDataset`; ``events.summary()`` the skipped images and
    dropped labels counted so far (all worker processes). ``resize_in_graph`` (training):
    the batches are at ``input_size`` and the step resizes them to its multiscale size
    (``data.multiscale_resize: batch``); False: the batches already have the step's size."""
    ms_dataset: object
    dataset: DetectionDataset
    steps_per_epoch: int
    batch_size: int
    events: EventLog
    source: object = None
    resize_in_graph: bool = False

    def size_at(self, step):
        """Input ``(h, w)`` of global training step ``step`` (a training loader;
        :mod:`~mindyolox.data.multiscale`)."""
        spe = self.steps_per_epoch
        return tuple(self.source.size(int(step) // spe, (int(step) % spe) * self.batch_size))

    @property
    def interval(self):
        """Global steps per multiscale size block (a training loader)."""
        return self.source.interval

    def batch_hw(self, size):
        """``(h, w)`` of the image batches the pipeline gives for a step of input ``size``: the
        recipe's ``input_size`` when the step resizes the batch (``resize_in_graph``), else
        ``size``."""
        return tuple(int(v) for v in (self.source.builder.input_size if self.resize_in_graph else size))

    def __iter__(self):
        """One epoch of numpy tuples (convenience for tools and tests); nothing for a loader
        without batches (``ms_dataset`` None: an evaluation shard that got none)."""
        if self.ms_dataset is None:
            return iter(())
        return self.ms_dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)


def _generator(source, columns, num_workers, sampler):
    import mindspore.dataset as ds
    workers = int(num_workers)
    return ds.GeneratorDataset(
        source, column_names=columns, sampler=sampler,
        num_parallel_workers=max(1, workers), python_multiprocessing=workers >= 1)


def cache_mode(data_cfg):
    """``data.cache`` as ``None``, ``"ram"`` or ``"disk"`` (``true`` means ram); anything else
    is refused in one line."""
    value = data_cfg.get("cache", False)
    if value is False or value is None or value == "false":
        return None
    if value is True or value in ("ram", "disk"):
        return "ram" if value is True else value
    raise DataError(f"data.cache must be false, ram or disk (true = ram), got {value!r}")


def create_train_loader(data_cfg, aug_cfg, train_cfg, rank=0, world_size=1, start_epoch=0,
                        num_workers=None, dataset=None, interval=INTERVAL, mosaic=True, start_iter=0,
                        end_epoch=None):
    """Training loader from the recipe sections ``data``, ``aug`` and ``train`` (dict-like).

    ``train.batch_size`` is the total over ``world_size`` devices; each rank gets
    ``batch_size // world_size`` per step. ``num_workers`` overrides ``data.num_workers``
    (0 = in-process). ``mosaic=False`` disables Mosaic/MixUp for every epoch; otherwise they
    stop at epoch :func:`no_aug_start`. ``dataset`` reuses an already
    built dataset. The pipeline yields the batches of epochs ``start_epoch`` .. ``end_epoch - 1``
    (default: one epoch) as one MindSpore epoch, starting at batch ``start_iter`` of
    ``start_epoch`` (resuming mid-epoch: exactly the batches an uninterrupted run produces
    from there on). Images are uint8 (module doc). Returns a :class:`Loader`.
    """
    import mindspore.dataset as ds

    world_size = int(world_size)
    if int(train_cfg["batch_size"]) % world_size:
        raise DataError(f"train.batch_size={train_cfg['batch_size']} is not divisible by "
                        f"{world_size} devices")
    batch = int(train_cfg["batch_size"]) // world_size
    dataset = dataset if dataset is not None else build_dataset(data_cfg, "train")
    from .verify import require_boxes
    require_boxes(dataset, bool(data_cfg.get("background_only", False)))
    input_size = tuple(int(v) for v in data_cfg["input_size"])
    mode = cache_mode(data_cfg)
    if mode:
        dataset.cache_images(input_size, mode, data_cfg.get("cache_dir"), copies=world_size)
    builder = MosaicMixup(dataset, input_size, aug_cfg, int(data_cfg["max_labels"]))
    no_aug_epoch = 0 if not mosaic else no_aug_start(train_cfg["max_epoch"], train_cfg["no_aug_epochs"])
    seed = int(train_cfg.get("seed", 0))
    mode = str(data_cfg.get("multiscale_resize", "batch"))
    if mode not in ("batch", "sample"):
        raise DataError(f"data.multiscale_resize must be 'batch' or 'sample', got {mode!r}")
    source = TrainSource(builder, batch, seed=seed, rank=rank, world_size=world_size,
                         ms_range=multiscale_range(data_cfg), interval=interval, no_aug_epoch=no_aug_epoch,
                         resize_batch=mode == "batch")
    if not 0 <= int(start_iter) < source.steps_per_epoch:
        raise DataError(f"start_iter={start_iter} outside the epoch's {source.steps_per_epoch} steps")
    ds.config.set_seed(seed)
    workers = int(data_cfg["num_workers"] if num_workers is None else num_workers)
    end_epoch = int(end_epoch) if end_epoch is not None else int(start_epoch) + 1

    sampler = TrainSampler(source, start_epoch, int(start_iter) * batch, end_epoch)
    pipe = _generator(source, ["images", "labels"], workers, sampler).batch(batch, drop_remainder=True)
    logger.info("train loader: %s, %d steps/epoch of %d on rank %d/%d, %d workers, multiscale %s",
                dataset, source.steps_per_epoch, batch, rank, world_size, workers, source.ms_range)
    return Loader(pipe, dataset, source.steps_per_epoch, batch, dataset.events, source, source.resize_batch)


def check_sink_support(data_cfg):
    """Refuse, in one line, what one data-sink device queue cannot carry: batches whose shape
    changes during the run (``data.multiscale_resize: sample`` with multiscale on). MindSpore
    binds a pipeline to one transfer queue once (a second ``data_sink`` on it raises "The
    dataset has been used with network.", ``mindspore/train/data_sink.py:36-37``) and its
    ``GetNext`` has a fixed shape (``data_sink.py:70``)."""
    mode = str(data_cfg.get("multiscale_resize", "batch"))
    if mode == "sample" and multiscale_range(data_cfg) is not None:
        raise DataError("data.multiscale_resize=sample builds batches of a new shape per multiscale size, which "
                        "one data-sink queue cannot carry: use multiscale_resize=batch (official) with --data-sink, "
                        "or train without --data-sink")


# ----------------------------------------------------------------------------- evaluation
class EvalSource:
    """Key ``k`` -> ``(image uint8 [3, H, W], index int32, orig_hw int32 [2], ratio float32)``
    for rank-local position ``k`` (``-1`` index for padding / unreadable images).

    Sharding keeps whole batches of the single-process order: the dataset in order, cut into
    batches of ``batch_size`` (the last one padded), and rank ``r`` of ``world_size`` takes
    batches ``r, r + world_size, ...``. Every image is in exactly one rank's shard, in the same
    batch and slot as in a single-process run (so each image's forward pass is the same
    computation); ranks hold ``ceil`` or ``floor`` of ``batches / world_size`` batches
    (``steps``, possibly 0 for a rank beyond a tiny dataset)."""

    def __init__(self, dataset, test_size, batch_size, rank=0, world_size=1):
        self.dataset = dataset
        self.test_size = (int(test_size[0]), int(test_size[1]))
        self.batch = int(batch_size)
        self.batches = range(int(rank), max(1, -(-len(dataset) // self.batch)), int(world_size))
        self.steps = len(self.batches)
        self.total = self.steps * self.batch
        self.indices = [i for k in range(self.total) if (i := self.index(k)) >= 0]

    def index(self, k):
        """Dataset index at rank-local position ``k`` (-1: padding)."""
        i = self.batches[k // self.batch] * self.batch + k % self.batch
        return i if i < len(self.dataset) else -1

    def __len__(self):
        return self.total

    def __getitem__(self, k):
        index = self.index(int(k))
        img = self.dataset.read_image(index) if index >= 0 else None
        if img is None:
            blank = np.full((3,) + self.test_size, 114, dtype=np.uint8)
            return blank, np.int32(-1), np.zeros(2, np.int32), np.float32(1.0)
        canvas, r = letterbox(img, self.test_size)
        h, w = self.dataset.orig_size(index)
        return (np.ascontiguousarray(canvas.transpose(2, 0, 1)), np.int32(index),
                np.array([h, w], np.int32), np.float32(r))


def create_eval_loader(data_cfg, batch_size, rank=0, world_size=1, num_workers=None, dataset=None):
    """Evaluation loader over the ``val`` split at ``data.test_size`` (see the module doc), the
    shard of ``rank`` (:class:`EvalSource`). Returns a :class:`Loader`; its ``steps_per_epoch``
    may be 0 for a rank with no batch (then there is nothing to iterate)."""
    import mindspore as ms
    import mindspore.dataset as ds

    dataset = dataset if dataset is not None else build_dataset(data_cfg, "val")
    source = EvalSource(dataset, data_cfg["test_size"], batch_size, rank, world_size)
    if source.steps == 0:
        return Loader(None, dataset, 0, int(batch_size), dataset.events, source)
    workers = int(data_cfg["num_workers"] if num_workers is None else num_workers)
    pipe = _generator(source, ["images", "index", "orig_hw", "ratio"], workers,
                      ds.SequentialSampler())
    pipe = pipe.batch(int(batch_size), drop_remainder=True)
    pipe = pipe.map(operations=ds.transforms.TypeCast(ms.float32), input_columns=["images"])
    return Loader(pipe, dataset, source.steps, int(batch_size), dataset.events, source)
