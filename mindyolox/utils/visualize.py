"""Drawing detections / ground truth on BGR images and tiling images into one PNG.

Used by ``tools/visualize_dataset.py`` (what the model is fed) and by prediction.
Images are BGR uint8 ``[H, W, 3]``; boxes ``[N, 4]`` ``(x1, y1, x2, y2)`` in pixels of that image.
"""
import os

import cv2
import numpy as np

from ..errors import DataError

__all__ = ["class_color", "draw_boxes", "make_grid", "save_image"]


def class_color(class_id):
    """A stable, well separated BGR colour for ``class_id`` (golden-ratio hue walk)."""
    hue = int((int(class_id) * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 220, 235]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_boxes(img, boxes, classes, scores=None, class_names=None, thickness=2):
    """Return a copy of ``img`` with each box drawn and labelled ``name`` or ``name 0.87``.

    img: BGR uint8 ``[H, W, 3]``; boxes: ``[N, 4]`` xyxy pixels; classes: ``[N]`` class ids;
    scores: optional ``[N]`` in 0..1; class_names: sequence indexed by class id.
    Boxes are drawn in ascending score order so the most confident labels end up on top.
    """
    out = np.ascontiguousarray(img, dtype=np.uint8).copy()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1).astype(np.int64)
    font, fscale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, min(out.shape[:2]) / 900)
    order = np.argsort(np.asarray(scores).reshape(-1), kind="stable") if scores is not None \
        else range(len(boxes))
    for k in order:
        box, c = boxes[k], classes[k]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        color = class_color(c)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
        text = f"{name} {float(scores[k]):.2f}" if scores is not None else str(name)
        (tw, th), base = cv2.getTextSize(text, font, fscale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + 2
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 1), color, -1)
        light = sum(color) > 380
        cv2.putText(out, text, (x1 + 1, ty - 1), font, fscale, (0, 0, 0) if light else (255, 255, 255),
                    1, cv2.LINE_AA)
    return out


def make_grid(images, ncols=4, pad=4, pad_value=255):
    """Tile BGR uint8 images (any sizes) into one ``[rows*(h+pad)-pad, ...]`` image; each cell
    is as large as the largest image, images placed top-left."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    ncols = max(1, min(int(ncols), len(images)))
    nrows = -(-len(images) // ncols)
    ch = max(im.shape[0] for im in images)
    cw = max(im.shape[1] for im in images)
    grid = np.full((nrows * (ch + pad) - pad, ncols * (cw + pad) - pad, 3), pad_value, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        y, x = r * (ch + pad), c * (cw + pad)
        grid[y:y + im.shape[0], x:x + im.shape[1]] = im
    return grid


def save_image(path, img):
    """Write ``img`` (format from the extension, e.g. PNG); creates the folder."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise DataError(f"cannot write image {path} (unknown extension or unwritable folder)")
