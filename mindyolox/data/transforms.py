"""Image/box transforms of the official YOLOX 0.3.0 data path (``yolox/data/data_augment.py``).

Conventions used throughout ``mindyolox.data``:

- images are BGR ``uint8`` arrays ``[H, W, 3]`` (OpenCV layout) until the very end, where
  they become ``[3, H, W]`` (CHW) with values 0..255, no mean/std;
- sizes are ``(height, width)`` in pixels, except the OpenCV-style ``target_size=(w, h)``
  of :func:`random_affine` (kept as in the official code and named explicitly);
- boxes are ``float`` arrays ``[N, 4]`` ``(x1, y1, x2, y2)`` in pixels of the image they
  belong to; classes are ``[N]`` contiguous ids ``0..C-1``;
- training labels are ``float32 [max_labels, 5]`` rows ``(class, cx, cy, w, h)`` in input
  pixels, zero rows are padding (exactly what the loss consumes);
- randomness comes from an explicit ``numpy.random.Generator`` (``rng``) so a sample is a
  pure function of its seed; the official code draws from the global ``random`` /
  ``np.random`` state with the same distributions.
"""
import math

import cv2
import numpy as np

__all__ = [
    "PAD_VALUE", "preproc", "letterbox", "augment_hsv", "mirror", "get_aug_params",
    "get_affine_matrix", "apply_affine_to_boxes", "random_affine", "xyxy2cxcywh",
    "cxcywh2xyxy", "pad_labels", "TrainTransform"]

PAD_VALUE = 114  # grey of the letterbox canvas and of the affine border


def letterbox(img, input_size):
    """Resize ``img`` by ``r = min(H/h, W/w)`` (cv2 INTER_LINEAR) onto a 114 canvas, top-left.

    img: uint8 ``[h, w, 3]``; input_size: ``(H, W)``.
    Returns ``(canvas uint8 [H, W, 3], r)``; a box in ``img`` pixels maps to ``box * r``.
    """
    h, w = img.shape[:2]
    r = min(input_size[0] / h, input_size[1] / w)
    nw, nh = int(w * r), int(h * r)
    canvas = np.full((int(input_size[0]), int(input_size[1]), 3), PAD_VALUE, dtype=np.uint8)
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas[:nh, :nw] = resized
    return canvas, r


def resize_to(img, size):
    """``img`` resized by ``r = min(H/h, W/w)`` for ``size = (H, W)`` (bilinear, the official
    ``load_resized_img``)."""
    h, w = img.shape[:2]
    r = min(size[0] / h, size[1] / w)
    return cv2.resize(img, (int(w * r), int(h * r)), interpolation=cv2.INTER_LINEAR)


def preproc(img, input_size):
    """Evaluation/prediction preprocessing, the official ``ValTransform``.

    img: BGR uint8 ``[h, w, 3]`` (as read by ``cv2.imread``); input_size: ``(H, W)``.
    Returns ``(chw float32 [3, H, W] with values 0..255 in BGR order, r)`` where
    ``r = min(H/h, W/w)``: a detection ``box`` on the input maps back by ``box / r``.
    """
    canvas, r = letterbox(img, input_size)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32), r


def augment_hsv(img, rng, hgain=5, sgain=30, vgain=30):
    """Official 0.3.0 HSV jitter, in place on BGR uint8 ``img`` ``[H, W, 3]``.

    Each of H, S, V is shifted (additively, in OpenCV's 0..179 / 0..255 units) by
    ``uniform(-gain, gain)`` truncated to an integer, each channel selected with probability 1/2.
    """
    augs = rng.uniform(-1, 1, 3) * [hgain, sgain, vgain]
    augs *= rng.integers(0, 2, 3)
    augs = augs.astype(np.int16)
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + augs[0]) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] + augs[1], 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + augs[2], 0, 255)
    cv2.cvtColor(hsv.astype(img.dtype), cv2.COLOR_HSV2BGR, dst=img)
    return img


def mirror(img, boxes, prob, rng):
    """Horizontal flip with probability ``prob``: ``x1' = W - x2``, ``x2' = W - x1``.

    img: ``[H, W, 3]``; boxes: ``[N, 4]`` xyxy pixels. Returns ``(img, boxes)`` (new arrays
    when flipped, the inputs otherwise).
    """
    if rng.random() < prob:
        width = img.shape[1]
        img = img[:, ::-1]
        boxes = boxes.copy()
        boxes[:, 0::2] = width - boxes[:, 2::-2]
    return img, boxes


def get_aug_params(value, rng, center=0.0):
    """A scalar ``v`` draws ``uniform(center - v, center + v)``; a pair ``(a, b)`` draws ``uniform(a, b)``."""
    if isinstance(value, (int, float)):
        return rng.uniform(center - value, center + value)
    if len(value) == 2:
        return rng.uniform(value[0], value[1])
    raise ValueError(f"affine parameter must be a number or a pair (min, max), got {value!r}")


def get_affine_matrix(target_size, rng, degrees=10.0, translate=0.1, scales=0.1, shear=10.0):
    """Official 0.3.0 random affine matrix (rotation+scale about the origin, shear, translation).

    target_size: ``(width, height)`` of the output in pixels; degrees/shear in degrees;
    translate: fraction of the output size; scales: number (1 +- v) or pair (min, max).
    Returns ``(M float64 [2, 3], scale)``.
    """
    twidth, theight = target_size
    angle = get_aug_params(degrees, rng)
    scale = get_aug_params(scales, rng, center=1.0)
    if scale <= 0.0:
        raise ValueError(f"affine scale must be positive, drew {scale} from {scales!r}")
    R = cv2.getRotationMatrix2D(angle=angle, center=(0, 0), scale=scale)
    M = np.ones([2, 3])
    shear_x = math.tan(get_aug_params(shear, rng) * math.pi / 180)
    shear_y = math.tan(get_aug_params(shear, rng) * math.pi / 180)
    M[0] = R[0] + shear_y * R[1]
    M[1] = R[1] + shear_x * R[0]
    M[0, 2] = get_aug_params(translate, rng) * twidth
    M[1, 2] = get_aug_params(translate, rng) * theight
    return M, scale


def apply_affine_to_boxes(boxes, target_size, M):
    """Warp the 4 corners of each xyxy box through ``M`` ``[2, 3]``; take their bounding box,
    clipped to ``target_size = (width, height)``. boxes: ``[N, 4]`` -> new ``[N, 4]`` float64."""
    n = len(boxes)
    if n == 0:
        return np.zeros((0, 4), dtype=np.float64)
    twidth, theight = target_size
    corners = np.ones((4 * n, 3))
    corners[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(4 * n, 2)  # x1y1 x2y2 x1y2 x2y1
    corners = (corners @ M.T).reshape(n, 8)
    xs, ys = corners[:, 0::2], corners[:, 1::2]
    out = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)
    out[:, 0::2] = out[:, 0::2].clip(0, twidth)
    out[:, 1::2] = out[:, 1::2].clip(0, theight)
    return out


def random_affine(img, boxes, target_size, rng, degrees=10.0, translate=0.1, scales=0.1, shear=10.0):
    """Official 0.3.0 ``random_affine``: warp ``img`` into a ``target_size=(w, h)`` output
    (border 114) and its xyxy ``boxes`` ``[N, 4]`` accordingly (clipped, not filtered: the
    final ``TrainTransform`` drops boxes whose shorter side is <= 1 px).
    Returns ``(img uint8 [h, w, 3], boxes [N, 4])``."""
    M, _ = get_affine_matrix(target_size, rng, degrees, translate, scales, shear)
    img = cv2.warpAffine(img, M, dsize=tuple(int(v) for v in target_size),
                         borderValue=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    return img, apply_affine_to_boxes(boxes, target_size, M)


def xyxy2cxcywh(boxes):
    """``[N, 4]`` (x1, y1, x2, y2) -> (cx, cy, w, h), same units."""
    boxes = np.asarray(boxes, dtype=np.float64).copy()
    boxes[:, 2] = boxes[:, 2] - boxes[:, 0]
    boxes[:, 3] = boxes[:, 3] - boxes[:, 1]
    boxes[:, 0] = boxes[:, 0] + boxes[:, 2] * 0.5
    boxes[:, 1] = boxes[:, 1] + boxes[:, 3] * 0.5
    return boxes


def cxcywh2xyxy(boxes):
    """``[N, 4]`` (cx, cy, w, h) -> (x1, y1, x2, y2), same units."""
    boxes = np.asarray(boxes, dtype=np.float64)
    half = boxes[:, 2:4] * 0.5
    return np.concatenate([boxes[:, 0:2] - half, boxes[:, 0:2] + half], axis=1)


def pad_labels(classes, boxes_cxcywh, max_labels):
    """Pack labels into ``float32 [max_labels, 5]`` rows ``(class, cx, cy, w, h)``, zero padded.

    Returns ``(padded, n_dropped)``: rows beyond ``max_labels`` are dropped (in order) and
    counted so the caller can report them.
    """
    n = len(classes)
    keep = min(n, max_labels)
    out = np.zeros((max_labels, 5), dtype=np.float32)
    if keep:
        out[:keep, 0] = np.asarray(classes[:keep], dtype=np.float32)
        out[:keep, 1:] = np.asarray(boxes_cxcywh[:keep], dtype=np.float32)
    return out, n - keep


class TrainTransform:
    """Official 0.3.0 ``TrainTransform``: HSV jitter, flip, letterbox, drop boxes whose shorter
    side is <= 1 px (if none survive, fall back to the un-augmented image with all its boxes),
    pad to ``max_labels``.

    Call with ``image`` uint8 ``[h, w, 3]``, ``boxes`` ``[N, 4]`` xyxy pixels, ``classes`` ``[N]``,
    ``input_dim=(H, W)``, ``rng``. Returns ``(image uint8 [3, H, W], labels float32
    [max_labels, 5], n_dropped)``; the image stays uint8 (lossless, 4x less to move between
    processes); the loader casts it to float32.
    """

    def __init__(self, max_labels=120, flip_prob=0.5, hsv_prob=1.0):
        self.max_labels = int(max_labels)
        self.flip_prob = float(flip_prob)
        self.hsv_prob = float(hsv_prob)

    def __call__(self, image, boxes, classes, input_dim, rng):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        classes = np.asarray(classes).reshape(-1)
        if len(boxes) == 0:
            canvas, _ = letterbox(image, input_dim)
            return _chw(canvas), np.zeros((self.max_labels, 5), dtype=np.float32), 0

        image_t = image
        if rng.random() < self.hsv_prob:
            image_t = augment_hsv(np.ascontiguousarray(image).copy(), rng)
        image_t, boxes_t = mirror(image_t, boxes, self.flip_prob, rng)
        canvas, r = letterbox(np.ascontiguousarray(image_t), input_dim)
        boxes_t = xyxy2cxcywh(boxes_t) * r
        keep = np.minimum(boxes_t[:, 2], boxes_t[:, 3]) > 1
        classes_t = classes[keep]
        boxes_t = boxes_t[keep]
        if len(boxes_t) == 0:  # official fallback: the original image, every box
            canvas, r = letterbox(image, input_dim)
            boxes_t = xyxy2cxcywh(boxes) * r
            classes_t = classes
        labels, dropped = pad_labels(classes_t, boxes_t, self.max_labels)
        return _chw(canvas), labels, dropped


def _chw(canvas):
    return np.ascontiguousarray(canvas.transpose(2, 0, 1))
