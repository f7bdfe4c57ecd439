"""Drawing detections / ground truth on BGR images and tiling images into one PNG.

Used by ``tools/visualize_dataset.py`` (what the model is fed) and by prediction.
Images are BGR uint8 ``[H, W, 3]``; boxes ``[N, 4]`` ``(x1, y1, x2, y2)`` in pixels of that image.

Drawing never raises on the numbers it is given: a box with a NaN coordinate is left out,
infinite or huge coordinates are clipped to a band of one image size around the image
(:func:`finite_boxes`), so the rectangle runs off the edge as far as OpenCV can draw it. An
early model can output such boxes (``exp`` of a large raw width); the TensorBoard samples,
``predict.py`` and the dataset previews all draw through :func:`draw_boxes`.
"""
import os

import cv2
import numpy as np

from ..errors import DataError

__all__ = ["class_color", "finite_boxes", "draw_boxes", "place_labels", "make_grid", "save_image"]


def class_color(class_id):
    """A stable, well separated BGR colour for ``class_id`` (golden-ratio hue walk)."""
    hue = int((int(class_id) * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 220, 235]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _overlap(a, b):
    """Intersection area of two ``(x, y, w, h)`` rectangles."""
    return max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])) * \
        max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))


def place_labels(boxes, sizes, img_w, img_h):
    """Where each box's label tag goes: ``[(x, y, w, h), ...]`` in pixels, inside the image.

    boxes: ``[N, 4]`` xyxy in priority order (the first gets its preferred place); sizes:
    ``[(w, h), ...]`` of the tags. Candidates, in order: above the box's top-left corner,
    inside it under the top edge, below the bottom edge, inside above the bottom edge -- each
    shifted into the image. The first candidate that overlaps no tag placed so far wins,
    else the one overlapping least.
    """
    placed = []
    for (x1, y1, x2, y2), (w, h) in zip(boxes, sizes):
        w, h = min(int(w), img_w), min(int(h), img_h)
        x = min(max(int(round(x1)), 0), img_w - w)
        cands = [(x, min(max(y, 0), img_h - h)) for y in
                 (int(round(y1)) - h, int(round(y1)), int(round(y2)), int(round(y2)) - h)]
        best = min(cands, key=lambda c: sum(_overlap((c[0], c[1], w, h), r) for r in placed))
        first_free = next((c for c in cands if all(_overlap((c[0], c[1], w, h), r) == 0 for r in placed)), None)
        placed.append((*(first_free or best), w, h))
    return placed


def finite_boxes(boxes, img_w, img_h):
    """``(boxes float64 [M, 4], keep bool [N])``: the rows of ``boxes [N, 4]`` without NaN,
    each coordinate clipped to ``[-W, 2W]`` (x) / ``[-H, 2H]`` (y) so that ``int(round(v))``
    is defined (``inf`` becomes the band's edge). ``keep`` marks the rows kept."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    keep = ~np.isnan(boxes).any(axis=1)
    out = boxes[keep].copy()
    out[:, 0::2] = np.clip(out[:, 0::2], -img_w, 2 * img_w)
    out[:, 1::2] = np.clip(out[:, 1::2], -img_h, 2 * img_h)
    return out, keep


def draw_boxes(img, boxes, classes, scores=None, class_names=None, thickness=2):
    """Return a copy of ``img`` with each box drawn and labelled ``name`` or ``name 0.87``.

    img: BGR uint8 ``[H, W, 3]``; boxes: ``[N, 4]`` xyxy pixels; classes: ``[N]`` class ids;
    scores: optional ``[N]`` in 0..1; class_names: sequence indexed by class id.
    Boxes with a NaN coordinate or a NaN score are left out, infinite coordinates clipped
    (:func:`finite_boxes`). All boxes are drawn first, then the tags (:func:`place_labels`: inside the image, the most
    confident placed first and drawn last, tags kept off each other where there is room).
    """
    out = np.ascontiguousarray(img, dtype=np.uint8).copy()
    img_h, img_w = out.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1)
    keep = ~np.isnan(boxes).any(axis=1) & np.isfinite(classes.astype(np.float64))
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        keep &= ~np.isnan(scores)
        scores = scores[keep]
    boxes, _ = finite_boxes(boxes[keep], img_w, img_h)
    classes = classes[keep].astype(np.int64)
    font, fscale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, min(out.shape[:2]) / 900)
    order = np.argsort(-np.asarray(scores).reshape(-1), kind="stable") if scores is not None \
        else np.arange(len(boxes))
    texts, heights, sizes = [], [], []
    for k in order:
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[k])
        cv2.rectangle(out, (x1, y1), (x2, y2), class_color(classes[k]), thickness)
        c = classes[k]
        name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
        texts.append(f"{name} {float(scores[k]):.2f}" if scores is not None else str(name))
        (tw, th), base = cv2.getTextSize(texts[-1], font, fscale, 1)
        heights.append(th)
        sizes.append((tw + 2, th + base + 2))
    rects = place_labels(boxes[order], sizes, img_w, img_h)
    for i in reversed(range(len(order))):
        (x, y, w, h), color = rects[i], class_color(classes[order[i]])
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color, -1)
        text_color = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(out, texts[i], (x + 1, y + 1 + heights[i]), font, fscale, text_color, 1, cv2.LINE_AA)
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
