"""Training samples: Mosaic + random affine + MixUp + ``TrainTransform``, the official
``yolox/data/datasets/mosaicdetection.py`` of YOLOX 0.3.0.

Per sample, with ``S = (H, W)`` the input size chosen for its batch:

1. with probability ``mosaic_prob`` (and mosaic enabled, i.e. not in the no-aug epochs):
   four images (this one + 3 uniform random ones), each already resized for the recipe's
   ``input_size`` (the official ``load_resized_img``) and resized again by ``min(H/h, W/w)``,
   are pasted around a random centre ``(xc, yc)`` in ``[0.5, 1.5] * S`` of a ``2H x 2W`` canvas
   filled with 114; boxes are shifted and clipped to the canvas;
2. ``random_affine`` (rotation ``+-degrees``, scale ``mosaic_scale``, shear ``+-shear``,
   translation ``+-translate * S``, all about the canvas origin, as 0.3.0 does) warps the
   canvas into the ``H x W`` output; boxes are warped and clipped;
3. with probability ``mixup_prob`` (if ``enable_mixup`` and boxes remain): a random image
   with boxes is letterboxed to ``S``, scaled by ``uniform(mixup_scale)``, flipped with
   probability 1/2, randomly cropped/padded to ``S`` and blended 0.5/0.5 with the mosaic;
   its boxes are appended;
4. ``TrainTransform``: HSV, flip, letterbox (identity here), drop boxes with a side <= 1 px,
   pad to ``max_labels``.

Without mosaic the image goes straight to ``TrainTransform``.

``S`` is the recipe's ``input_size`` with ``data.multiscale_resize: batch`` (the official
way: the compiled step resizes the finished batch to its size,
:class:`~mindyolox.training.preprocess.BatchPreprocess`) and the step's multiscale
size with ``sample`` (built at that size directly: sharper, no second resampling).
"""
import cv2
import numpy as np

from ..errors import DataError
from .transforms import PAD_VALUE, TrainTransform, random_affine

__all__ = ["MosaicMixup", "mosaic_coordinates"]


def mosaic_coordinates(index, xc, yc, w, h, input_h, input_w):
    """Where tile ``index`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of size
    ``w x h`` lands around centre ``(xc, yc)`` on the ``2H x 2W`` canvas.

    Returns ``((x1, y1, x2, y2) on the canvas, (x1, y1, x2, y2) in the tile)``, equal sizes.
    """
    if index == 0:
        x1, y1, x2, y2 = max(xc - w, 0), max(yc - h, 0), xc, yc
        small = w - (x2 - x1), h - (y2 - y1), w, h
    elif index == 1:
        x1, y1, x2, y2 = xc, max(yc - h, 0), min(xc + w, input_w * 2), yc
        small = 0, h - (y2 - y1), min(w, x2 - x1), h
    elif index == 2:
        x1, y1, x2, y2 = max(xc - w, 0), yc, xc, min(input_h * 2, yc + h)
        small = w - (x2 - x1), 0, w, min(y2 - y1, h)
    else:
        x1, y1, x2, y2 = xc, yc, min(xc + w, input_w * 2), min(input_h * 2, yc + h)
        small = 0, 0, min(w, x2 - x1), min(y2 - y1, h)
    return (x1, y1, x2, y2), small


class MosaicMixup:
    """Builds one training sample. Picklable (it is sent to the loader's worker processes).

    Args:
        dataset: a :class:`~mindyolox.data.base.DetectionDataset`.
        input_size: the recipe's ``data.input_size`` ``(H, W)``; images are first resized for
            it (and cached at it when ``data.cache``), as the official dataset does.
        aug: the recipe's ``aug`` section (dict-like): mosaic_prob, mixup_prob, hsv_prob,
            flip_prob, degrees, translate, mosaic_scale, enable_mixup, mixup_scale, shear.
        max_labels: rows of the label array.

    ``sample(index, size, rng, mosaic=True)`` -> ``(image uint8 [3, H, W], labels float32
    [max_labels, 5] (class, cx, cy, w, h) pixels)``.
    """

    def __init__(self, dataset, input_size, aug, max_labels=120):
        self.dataset = dataset
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.mosaic_prob = float(aug["mosaic_prob"])
        self.mixup_prob = float(aug["mixup_prob"])
        self.enable_mixup = bool(aug["enable_mixup"])
        self.degrees = _num_or_pair(aug["degrees"])
        self.translate = _num_or_pair(aug["translate"])
        self.mosaic_scale = _num_or_pair(aug["mosaic_scale"])
        self.mixup_scale = tuple(float(v) for v in aug["mixup_scale"])
        self.shear = _num_or_pair(aug["shear"])
        self.max_labels = int(max_labels)
        self.transform = TrainTransform(max_labels, aug["flip_prob"], aug["hsv_prob"])
        self.labeled = np.asarray(dataset.labeled_indices(), dtype=np.int64)
        self.n = len(dataset)
        if self.n == 0:
            raise DataError(f"dataset {dataset.name} has no images")

    # ------------------------------------------------------------------ image access
    def _pull(self, index, rng, pool=None):
        """Resized image + boxes of ``index``; an unreadable one (recorded by the dataset) is
        replaced by a random readable one from ``pool`` (all images by default)."""
        for _ in range(32):
            item = self.dataset.load_resized(int(index), self.input_size)
            if item is not None:
                return item
            index = rng.integers(0, self.n) if pool is None or not len(pool) else rng.choice(pool)
        raise DataError(f"dataset {self.dataset.name}: 32 images in a row could not be read "
                        f"(see the skipped-image warnings)")

    # ------------------------------------------------------------------ one sample
    def sample(self, index, size, rng, mosaic=True):
        input_h, input_w = int(size[0]), int(size[1])
        if mosaic and rng.random() < self.mosaic_prob:
            img, boxes, classes = self._mosaic(index, input_h, input_w, rng)
            if self.enable_mixup and len(boxes) and len(self.labeled) and rng.random() < self.mixup_prob:
                img, boxes, classes = self._mixup(img, boxes, classes, (input_h, input_w), rng)
        else:
            img, boxes, classes = self._pull(index, rng)
        image, labels, dropped = self.transform(img, boxes, classes, (input_h, input_w), rng)
        if dropped:
            self.dataset.events.labels_dropped(
                f"{self.dataset.name} sample of image {self.dataset.ids[int(index)]!r}", dropped,
                self.max_labels)
        return image, labels

    def _mosaic(self, index, input_h, input_w, rng):
        yc = int(rng.uniform(0.5 * input_h, 1.5 * input_h))
        xc = int(rng.uniform(0.5 * input_w, 1.5 * input_w))
        indices = [index] + [int(rng.integers(0, self.n)) for _ in range(3)]
        canvas = np.full((input_h * 2, input_w * 2, 3), PAD_VALUE, dtype=np.uint8)
        all_boxes, all_classes = [], []
        for k, idx in enumerate(indices):
            img, boxes, classes = self._pull(idx, rng)
            h0, w0 = img.shape[:2]
            scale = min(input_h / h0, input_w / w0)
            img = cv2.resize(img, (int(w0 * scale), int(h0 * scale)), interpolation=cv2.INTER_LINEAR)
            h, w = img.shape[:2]
            (lx1, ly1, lx2, ly2), (sx1, sy1, sx2, sy2) = mosaic_coordinates(k, xc, yc, w, h, input_h, input_w)
            canvas[ly1:ly2, lx1:lx2] = img[sy1:sy2, sx1:sx2]
            padw, padh = lx1 - sx1, ly1 - sy1
            if len(boxes):
                boxes = boxes * scale
                boxes[:, 0::2] += padw
                boxes[:, 1::2] += padh
            all_boxes.append(boxes.reshape(-1, 4))
            all_classes.append(classes)
        boxes = np.concatenate(all_boxes, 0)
        classes = np.concatenate(all_classes, 0)
        np.clip(boxes[:, 0::2], 0, 2 * input_w, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, 2 * input_h, out=boxes[:, 1::2])
        img, boxes = random_affine(canvas, boxes, (input_w, input_h), rng, degrees=self.degrees,
                                   translate=self.translate, scales=self.mosaic_scale, shear=self.shear)
        return img, boxes, classes

    def _mixup(self, origin_img, origin_boxes, origin_classes, input_dim, rng):
        jit = rng.uniform(*self.mixup_scale)
        flip = rng.uniform(0, 1) > 0.5
        img, cp_boxes, cp_classes = self._pull(rng.choice(self.labeled), rng, pool=self.labeled)
        cp_img = np.full((input_dim[0], input_dim[1], 3), PAD_VALUE, dtype=np.uint8)
        ratio = min(input_dim[0] / img.shape[0], input_dim[1] / img.shape[1])
        nh, nw = int(img.shape[0] * ratio), int(img.shape[1] * ratio)
        cp_img[:nh, :nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        cp_img = cv2.resize(cp_img, (int(cp_img.shape[1] * jit), int(cp_img.shape[0] * jit)))
        ratio *= jit
        if flip:
            cp_img = cp_img[:, ::-1, :]
        origin_h, origin_w = cp_img.shape[:2]
        target_h, target_w = origin_img.shape[:2]
        padded = np.zeros((max(origin_h, target_h), max(origin_w, target_w), 3), dtype=np.uint8)
        padded[:origin_h, :origin_w] = cp_img
        x_off = y_off = 0
        if padded.shape[0] > target_h:
            y_off = int(rng.integers(0, padded.shape[0] - target_h))
        if padded.shape[1] > target_w:
            x_off = int(rng.integers(0, padded.shape[1] - target_w))
        cropped = padded[y_off:y_off + target_h, x_off:x_off + target_w]

        boxes = cp_boxes.astype(np.float64) * ratio
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, origin_w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, origin_h)
        if flip:
            boxes[:, 0::2] = origin_w - boxes[:, 0::2][:, ::-1]
        boxes[:, 0::2] = np.clip(boxes[:, 0::2] - x_off, 0, target_w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2] - y_off, 0, target_h)

        blended = 0.5 * origin_img.astype(np.float32) + 0.5 * cropped.astype(np.float32)
        return (blended.astype(np.uint8), np.concatenate([origin_boxes, boxes], 0),
                np.concatenate([origin_classes, cp_classes], 0))


def _num_or_pair(v):
    if isinstance(v, (int, float)):
        return float(v)
    return tuple(float(x) for x in v)
