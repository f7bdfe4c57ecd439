"""mindspore.dataset loaders: determinism, worker counts, multiscale, sharding, no-aug, eval."""
import numpy as np
import pytest

from mindyolox.data import build_dataset, create_eval_loader, create_train_loader, preproc, size_for_step
from mindyolox.data.loader import TrainSource, multiscale_range, no_aug_start
from mindyolox.data.mosaic import MosaicMixup
from mindyolox.data.transforms import xyxy2cxcywh

from .conftest import shared_path

AUG = dict(mosaic_prob=1.0, mixup_prob=1.0, hsv_prob=1.0, flip_prob=0.5, degrees=10.0, translate=0.1,
           mosaic_scale=[0.1, 2.0], enable_mixup=True, mixup_scale=[0.5, 1.5], shear=2.0)
TRAIN = dict(batch_size=4, seed=3, max_epoch=3, no_aug_epochs=1)


def _data(**kw):
    d = dict(format="coco", data_dir=str(shared_path("data", "coco16")),
             train_ann="annotations/instances_train2017.json", train_images="train2017",
             val_ann="annotations/instances_train2017.json", val_images="train2017",
             input_size=[96, 96], test_size=[96, 96], multiscale_range=0, random_size=[],
             max_labels=50, num_workers=0, cache=False)
    d.update(kw)
    return d


@pytest.fixture(scope="module")
def coco16():
    return build_dataset(_data(), "train")


def _epochs(loader, n):
    it = loader.ms_dataset.create_tuple_iterator(num_epochs=n, output_numpy=True)
    return [[(im.copy(), lb.copy()) for im, lb in it] for _ in range(n)]


def test_train_loader_deterministic_for_any_worker_count(coco16):
    runs = {w: _epochs(create_train_loader(_data(), AUG, TRAIN, num_workers=w, dataset=coco16), 2)
            for w in (0, 2)}
    again = _epochs(create_train_loader(_data(), AUG, TRAIN, num_workers=0, dataset=coco16), 1)
    e0 = runs[0][0]
    assert len(e0) == 4
    for im, lb in e0:
        assert im.dtype == np.uint8 and im.shape == (4, 3, 96, 96)  # cast on the device and lb.shape == (4, 50, 5)
        assert 0 <= im.min() and im.max() <= 255
        valid = lb[..., 3] > 0
        assert valid.any() and (lb[..., 1][valid] <= 96).all()
    for a, b in zip(e0, runs[2][0]):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    for a, b in zip(e0, again[0]):
        np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(runs[0][0][0][0], runs[0][1][0][0])  # epochs differ
    for a, b in zip(runs[0][1], runs[2][1]):
        np.testing.assert_array_equal(a[1], b[1])


def test_multiscale_sizes_per_batch(coco16):
    data = _data(random_size=[2, 4])
    assert multiscale_range(data) == (2, 4)
    assert multiscale_range(_data(input_size=[640, 640], multiscale_range=5)) == (15, 25)
    sizes = {size_for_step(s, (96, 96), (2, 4), seed=0, interval=1) for s in range(1, 60)}
    assert sizes == {(64, 64), (96, 96), (128, 128)}
    assert size_for_step(0, (96, 96), (2, 4), seed=0) == (96, 96)  # first block: input size
    h, w = size_for_step(5, (96, 192), (2, 4), seed=1, interval=1)  # aspect 2 kept
    assert w == 2 * h and h in (64, 96, 128)
    # multiscale_resize: sample builds each batch at its step's size
    loader = create_train_loader(dict(data, multiscale_resize="sample"), AUG, TRAIN, num_workers=1, dataset=coco16,
                                 interval=1)
    source = loader.source
    shapes = []
    for step, (im, lb) in enumerate(loader):
        shapes.append(im.shape[2:])
        assert im.shape[2:] == source.size(0, step * 4)
        assert im.shape[2] % 32 == 0 and im.shape[2] == im.shape[3]
        valid = lb[..., 3] > 0
        assert (lb[..., 1][valid] <= im.shape[3]).all() and (lb[..., 2][valid] <= im.shape[2]).all()
    assert len(shapes) == 4 and len(set(shapes)) > 1


def test_multiscale_batch_mode_sends_the_input_size_samples(coco16):
    """Official Exp.preprocess: every sample is built at input_size (one batch shape for the
    whole run, what one data-sink queue needs); the step resizes the batch
    (tests/test_sink_pipeline.py). ``sample`` builds the sample at the step's size instead."""
    builder = MosaicMixup(coco16, (96, 96), AUG, 50)
    src = TrainSource(builder, 2, seed=0, ms_range=(2, 4), interval=1)
    direct = TrainSource(builder, 2, seed=0, ms_range=(2, 4), interval=1, resize_batch=False)
    pos = next(p for p in range(0, 16, 2) if src.size(0, p) != (96, 96))
    index = int(src.indices(0)[pos])
    ref = builder.sample(index, (96, 96), np.random.default_rng([0, 0, index]))
    got = src[pos]
    assert got[0].dtype == np.uint8 and got[0].shape == (3, 96, 96)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    other = direct[pos]
    assert other[0].shape == (3,) + src.size(0, pos)


def test_no_aug_switch_is_the_official_epoch():
    assert no_aug_start(10, 1) == 8 and no_aug_start(300, 15) == 284  # the last N + 1 epochs
    assert no_aug_start(3, 5) == 0


def test_sharding_follows_the_official_infinite_stream(coco16):
    """Official InfiniteSampler + YoloBatchSampler: rank r takes stream positions r, r + world,
    ...; an epoch is ceil((n // world) / batch) full batches, running into the next pass."""
    builder = MosaicMixup(coco16, (96, 96), AUG, 50)
    shards = [TrainSource(builder, 2, seed=1, rank=r, world_size=3) for r in range(3)]
    assert shards[0].steps_per_epoch == 3  # 16 // 3 = 5 per rank -> ceil(5 / 2) = 3 batches of 2
    for epoch in (0, 1):
        stream = np.empty(18, np.int64)
        for r, s in enumerate(shards):
            stream[r::3] = s.indices(epoch)
        first = 18 * epoch  # epoch e covers stream positions [18 e, 18 e + 18)
        g = np.arange(first, first + 18)
        for p in np.unique(g // 16):  # each pass of the stream is one permutation
            at = g // 16 == p
            np.testing.assert_array_equal(stream[at], np.random.default_rng([1, int(p)]).permutation(16)[g[at] % 16])
    assert shards[0].size(2, 0) == shards[1].size(2, 0)


def test_epoch_length_is_the_official_one():
    from types import SimpleNamespace
    builder = SimpleNamespace(dataset=[None] * 1500, input_size=(160, 160))
    assert TrainSource(builder, 8).steps_per_epoch == 188  # official: 188 (ceil), not 187
    assert TrainSource(builder, 8, rank=1, world_size=8).steps_per_epoch == 24  # ceil(187 / 8)


def test_no_aug_epochs_feed_plain_letterboxed_images(coco16):
    aug = dict(AUG, flip_prob=0.0, hsv_prob=0.0)
    builder = MosaicMixup(coco16, (96, 96), aug, 50)
    source = TrainSource(builder, 4, seed=0, no_aug_epoch=1)
    key = source.samples_per_epoch + 2  # epoch 1, position 2
    img, labels = source[key]
    index = int(source.indices(1)[2])
    boxes, classes = coco16.load_anno(index)
    h, w = coco16.orig_size(index)
    r = min(96 / h, 96 / w)
    cx = xyxy2cxcywh(boxes * r)
    keep = np.minimum(cx[:, 2], cx[:, 3]) > 1
    np.testing.assert_allclose(labels[:keep.sum(), 1:], cx[keep], rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(labels[:keep.sum(), 0], classes[keep])
    assert (img[:, int(h * r):, :] == 114).all() and (img[:, :, int(w * r):] == 114).all()
    np.testing.assert_array_equal(img, preproc(coco16.load_image(index), (96, 96))[0].astype(np.uint8))


def test_eval_loader_pads_last_batch_and_matches_preproc():
    loader = create_eval_loader(_data(), batch_size=5, num_workers=0)
    batches = list(loader)
    assert loader.steps_per_epoch == 4 and len(batches) == 4
    index = np.concatenate([b[1] for b in batches])
    assert index.tolist() == list(range(16)) + [-1] * 4
    im, idx, hw, ratio = batches[0]
    ref, r = preproc(loader.dataset.load_image(0), (96, 96))
    np.testing.assert_array_equal(im[0], ref)
    assert ratio[0] == pytest.approx(r) and tuple(hw[0]) == loader.dataset.orig_size(0)
