"""Transforms: eval preprocessing against the official reference, augmentation geometry."""
import cv2
import numpy as np
import pytest

from .conftest import load_npz, shared_path
from mindyolox.data.base import DetectionDataset
from mindyolox.data.mosaic import MosaicMixup
from mindyolox.data.transforms import (TrainTransform, cxcywh2xyxy, mirror, pad_labels, preproc,
                                       random_affine)


@pytest.mark.parametrize("size,ref", [
    (320, "yolox-nano_s0_320_b2_0.3.0_data.npz"),
    (416, "yolox-nano-official_416_b2_data.npz"),
])
def test_preproc_equals_official_reference(size, ref):
    img = cv2.imread(str(shared_path("data", "images", "dog.jpg")))
    out, r = preproc(img, (size, size))
    expected = load_npz("reference", ref)["input/images"][0]
    assert out.dtype == np.float32 and out.shape == (3, size, size)
    assert r == pytest.approx(min(size / img.shape[0], size / img.shape[1]))
    np.testing.assert_array_equal(out, expected)


def test_pad_labels_drops_and_counts_overflow():
    classes = np.arange(5)
    boxes = np.tile([[10.0, 20.0, 4.0, 6.0]], (5, 1))
    out, dropped = pad_labels(classes, boxes, 3)
    assert out.shape == (3, 5) and out.dtype == np.float32
    assert dropped == 2
    np.testing.assert_array_equal(out[:, 0], [0, 1, 2])
    out, dropped = pad_labels(classes[:2], boxes[:2], 4)
    assert dropped == 0 and not out[2:].any()


def test_mirror_flips_boxes():
    img = np.zeros((10, 20, 3), np.uint8)
    img[2:4, 3:7] = 255
    rng = np.random.default_rng(0)
    out, boxes = mirror(img, np.array([[3.0, 2.0, 7.0, 4.0]]), 1.0, rng)
    np.testing.assert_array_equal(boxes, [[13.0, 2.0, 17.0, 4.0]])
    ys, xs = np.nonzero(out[..., 0])
    assert (xs.min(), xs.max() + 1) == (13, 17)


def test_affine_identity_keeps_image_and_boxes():
    img = np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    boxes = np.array([[5.0, 6.0, 30.0, 20.0]])
    out, b = random_affine(img, boxes, (60, 40), np.random.default_rng(0), degrees=0.0,
                           translate=0.0, scales=(1.0, 1.0), shear=0.0)
    np.testing.assert_array_equal(out, img)
    np.testing.assert_allclose(b, boxes)


def test_train_transform_small_boxes_fall_back_to_original():
    """All boxes <= 1 px after resize -> the official fallback keeps every original box."""
    img = np.full((100, 100, 3), 50, np.uint8)
    t = TrainTransform(max_labels=4, flip_prob=0.0, hsv_prob=0.0)
    _, labels, dropped = t(img, np.array([[10.0, 10.0, 11.0, 11.0]]), np.array([3]), (50, 50),
                           np.random.default_rng(0))
    assert dropped == 0
    np.testing.assert_allclose(labels[0], [3, 5.25, 5.25, 0.5, 0.5])


# ----------------------------------------------------------------------------- geometry
class PaintedDataset(DetectionDataset):
    """In-memory images, each with one rectangle (class = image index) on a black background.
    ``only`` paints just the rectangle of that class (the others stay black)."""

    def __init__(self, n=48, only=None, seed=0):
        super().__init__("painted")
        rng = np.random.default_rng(seed)
        self.only = only
        self.class_names = tuple(f"c{i}" for i in range(n))
        for i in range(n):
            h, w = int(rng.integers(120, 200)), int(rng.integers(120, 200))
            x1, y1 = rng.uniform(0, w * 0.5), rng.uniform(0, h * 0.5)
            x2, y2 = x1 + rng.uniform(0.3, 0.5) * w, y1 + rng.uniform(0.3, 0.5) * h
            self.ids.append(i)
            self.paths.append(f"<painted {i}>")
            self.sizes.append((h, w))
            self.boxes.append(np.array([[round(x1), round(y1), round(x2), round(y2)]], np.float32))
            self.classes.append(np.array([i]))

    def load_image(self, index):
        h, w = self.sizes[index]
        img = np.zeros((h, w, 3), np.uint8)
        if self.only is None or self.only == index:
            x1, y1, x2, y2 = self.boxes[index][0].astype(int)
            img[y1:y2, x1:x2] = 255
        return img


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


AUG = dict(mosaic_prob=1.0, mixup_prob=0.5, hsv_prob=0.0, flip_prob=0.5, degrees=10.0,
           translate=0.1, mosaic_scale=[0.5, 1.5], enable_mixup=True, mixup_scale=[0.5, 1.5],
           shear=2.0)


@pytest.mark.parametrize("mosaic", [True, False])
def test_augmented_boxes_frame_their_painted_rectangles(mosaic):
    """Warp painted rectangles through mosaic/affine/mixup/flip: every output box must frame
    the pixels of its rectangle (IoU >= 0.9). The geometry of a sample depends only on the
    rng and the annotations, so re-running it on a dataset where only rectangle k is painted
    shows exactly where rectangle k went."""
    size = (256, 256)
    base = PaintedDataset()
    builder = MosaicMixup(base, size, AUG, max_labels=16)
    checked, ious = 0, []

    def render(only, seed):
        b = MosaicMixup(PaintedDataset(only=only), size, AUG, max_labels=16)
        return b.sample(seed % len(base), size, np.random.default_rng(seed), mosaic=mosaic)[0]

    for seed in range(16):
        _, labels = builder.sample(seed % len(base), size, np.random.default_rng(seed), mosaic=mosaic)
        rows = labels[labels[:, 3] > 0]
        cls, counts = np.unique(rows[:, 0].astype(int), return_counts=True)
        for row in rows:
            k = int(row[0])
            box = cxcywh2xyxy(row[None, 1:5])[0]
            if counts[cls == k][0] > 1 or min(row[3], row[4]) < 12:
                continue  # the same rectangle twice (image drawn twice) or too small to measure
            if box[0] < 0.5 or box[1] < 0.5 or box[2] > size[1] - 0.5 or box[3] > size[0] - 0.5:
                # clipped by the output border: the official box is the clipped bounding box of
                # the whole warped rectangle, which for a rotated one can exceed its visible part
                continue
            diff = render(k, seed).astype(np.int32) - render(-1, seed).astype(np.int32)
            # rectangle k's contribution: 255 x coverage (x 0.5 under mixup); half of it = its edge
            ys, xs = np.nonzero(diff[0] > 0.5 * diff[0].max())
            assert len(xs), f"seed {seed}: box of class {k} but no painted pixels"
            painted = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            ious.append(_iou(box, painted))
            assert ious[-1] >= 0.9, f"seed {seed} class {k}: box {box} vs painted {painted}"
            checked += 1
    assert checked >= 12, f"only {checked} boxes measured"


def test_mixup_blends_half_and_half():
    """Official MixUp: 0.5 * mosaic + 0.5 * partner (not a Beta(8,8) weight)."""
    ds = PaintedDataset(n=4)
    for i in range(4):
        ds.boxes[i] = np.array([[0, 0, ds.sizes[i][1], ds.sizes[i][0]]], np.float32)
    builder = MosaicMixup(ds, (64, 64), dict(AUG, mixup_scale=[1.0, 1.0]), max_labels=8)
    origin = np.full((64, 64, 3), 200, np.uint8)
    out, boxes, classes = builder._mixup(origin, np.zeros((0, 4)), np.zeros(0, np.int64), (64, 64),
                                         np.random.default_rng(3))
    # partner pixels: 255 (painted, whole image) or 114 (letterbox pad) -> 227 or 157
    assert set(np.unique(out)) <= {227, 157}
    assert (out == 227).any()
    assert len(boxes) == 1 and len(classes) == 1
