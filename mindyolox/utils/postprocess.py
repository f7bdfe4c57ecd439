"""Detection postprocessing: score threshold + NMS, the official YOLOX 0.3.0 ``postprocess``.

Runs in numpy, outside the compiled graph (its output size depends on the data). The NMS is
vectorised: IoUs are computed as whole matrices, per class (class-aware, the default) or over
all boxes (class-agnostic); only the greedy walk over the *kept* boxes is a Python loop.

Official semantics reproduced exactly:

- ``score = obj * max(cls)``, the class is the argmax; a row is kept when ``score >= conf``;
- boxes ``(cx, cy, w, h)`` become ``(x1, y1, x2, y2) = (cx - w/2, cy - h/2, cx + w/2, cy + h/2)``
  in float32;
- greedy NMS by descending score; a box is suppressed by a kept box whose IoU with it is
  ``> nms`` (strictly); IoU = inter / (area_a + area_b - inter), areas ``(x2-x1)*(y2-y1)``,
  float32 like torchvision's CPU kernel; class-aware NMS never compares different classes;
- output rows ``(x1, y1, x2, y2, obj, cls_conf, cls)`` float32, ordered by descending score.
"""
import numpy as np

__all__ = ["level_sizes", "decode_outputs", "cxcywh_to_xyxy", "nms", "multiclass_nms", "postprocess", "postprocess_image"]


def level_sizes(img_size, strides=(8, 16, 32)):
    """Feature-map ``(h, w)`` per stride for an input ``(H, W)``: each stride-2 step of the
    backbone rounds up, so level ``s`` has ``ceil``-halved sizes ``log2(s)`` times."""
    out = []
    for s in strides:
        h, w = int(img_size[0]), int(img_size[1])
        for _ in range(int(round(np.log2(s)))):
            h, w = -(-h // 2), -(-w // 2)
        out.append((h, w))
    return out


def decode_outputs(raw, img_size, strides=(8, 16, 32)):
    """Decode raw head outputs (``decode_in_inference=False``) like ``YOLOXHead`` does.

    raw: ``[B, A, 5+C]`` rows (dx, dy, log w, log h, obj prob, cls probs) with anchors ordered
    stride 8, 16, 32 and row-major inside a level; img_size: network input ``(H, W)`` px.
    Returns float32 ``[B, A, 5+C]`` rows (cx, cy, w, h px, obj, cls):
    ``xy = (raw + grid) * stride``, ``wh = exp(raw) * stride`` (exp in float64, as the head on CPU).
    """
    raw = np.asarray(raw, dtype=np.float32)
    grids, strd = [], []
    for (h, w), s in zip(level_sizes(img_size, strides), strides):
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        grids.append(np.stack([xs.reshape(-1), ys.reshape(-1)], 1))
        strd.append(np.full((h * w, 1), s, dtype=np.float32))
    grid, stride = np.concatenate(grids), np.concatenate(strd)
    if raw.ndim != 3 or raw.shape[1] != len(grid):
        raise ValueError(f"raw outputs {raw.shape} do not fit input size {tuple(img_size)} with strides "
                         f"{tuple(strides)} ({len(grid)} anchors expected)")
    out = raw.copy()
    out[..., 0:2] = (raw[..., 0:2] + grid) * stride
    out[..., 2:4] = np.exp(raw[..., 2:4].astype(np.float64)).astype(np.float32) * stride
    return out


def cxcywh_to_xyxy(boxes):
    """``[N, 4]`` (cx, cy, w, h) -> (x1, y1, x2, y2), float32, same units (pixels)."""
    b = np.asarray(boxes, dtype=np.float32)
    half = b[:, 2:4] / np.float32(2)
    return np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)


def _iou_matrix(boxes):
    """Pairwise IoU ``[N, N]`` float32 of xyxy boxes ``[N, 4]`` (float32, as torchvision)."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    w = np.maximum(np.float32(0), np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]))
    h = np.maximum(np.float32(0), np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]))
    inter = w * h
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (areas[:, None] + areas[None] - inter)


def _greedy(boxes, iou_thr):
    """Greedy NMS over boxes ``[N, 4]`` already sorted by descending score.
    Returns the kept positions (ascending, i.e. by descending score)."""
    n = len(boxes)
    if n <= 1:
        return np.arange(n)
    over = _iou_matrix(boxes) > np.float32(iou_thr)   # NaN (empty boxes) compares False
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    i = 0
    while i < n:
        keep.append(i)
        suppressed |= over[i]
        rest = np.flatnonzero(~suppressed[i + 1:])     # next survivor after i
        if not len(rest):
            break
        i = i + 1 + int(rest[0])
    return np.asarray(keep, dtype=np.int64)


def nms(boxes, scores, iou_thr):
    """Single-class greedy NMS.

    boxes: ``[N, 4]`` xyxy pixels; scores: ``[N]``; iou_thr: suppress when IoU > iou_thr.
    Returns indices ``[K]`` into the inputs, by descending score (ties keep input order).
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")
    return order[_greedy(boxes[order], iou_thr)]


def multiclass_nms(boxes, scores, classes, iou_thr, class_agnostic=False):
    """Greedy NMS per class (or over all boxes when ``class_agnostic``).

    boxes: ``[N, 4]`` xyxy pixels; scores: ``[N]``; classes: ``[N]`` class ids.
    Returns indices ``[K]`` into the inputs, ordered by descending score over all classes.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if class_agnostic:
        return nms(boxes, scores, iou_thr)
    classes = np.asarray(classes).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    # group by class, keeping the score order inside each group (stable sort on class)
    grouped = order[np.argsort(classes[order], kind="stable")]
    cls_sorted = classes[grouped]
    starts = np.flatnonzero(np.r_[True, cls_sorted[1:] != cls_sorted[:-1]])
    ends = np.r_[starts[1:], len(grouped)]
    kept = [grouped[s:e][_greedy(boxes[grouped[s:e]], iou_thr)] for s, e in zip(starts, ends)]
    kept = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return kept[np.argsort(-scores[kept], kind="stable")]


def postprocess_image(pred, conf_thre=0.01, nms_thre=0.65, class_agnostic=False):
    """Official postprocess of one image.

    pred: ``[A, 5 + C]`` decoded rows (cx, cy, w, h in input pixels, obj prob, C class probs).
    Returns float32 ``[K, 7]`` rows (x1, y1, x2, y2, obj, cls_conf, cls) in input pixels,
    by descending ``obj * cls_conf``; ``K = 0`` gives a ``[0, 7]`` array.
    """
    pred = np.asarray(pred, dtype=np.float32)
    if pred.ndim != 2 or pred.shape[1] < 6:
        raise ValueError(f"postprocess expects [A, 5 + num_classes] rows, got shape {pred.shape}")
    cls_prob = pred[:, 5:]
    cls_id = cls_prob.argmax(1)
    cls_conf = np.take_along_axis(cls_prob, cls_id[:, None], 1)[:, 0]
    score = pred[:, 4] * cls_conf
    m = score >= np.float32(conf_thre)
    if not m.any():
        return np.zeros((0, 7), dtype=np.float32)
    dets = np.concatenate([cxcywh_to_xyxy(pred[m, :4]), pred[m, 4:5], cls_conf[m, None],
                           cls_id[m, None].astype(np.float32)], axis=1)
    keep = multiclass_nms(dets[:, :4], score[m], cls_id[m], nms_thre, class_agnostic)
    return dets[keep]


def postprocess(prediction, conf_thre=0.01, nms_thre=0.65, class_agnostic=False):
    """Official ``yolox.utils.postprocess`` over a batch.

    prediction: ``[B, A, 5 + C]`` (numpy or MindSpore Tensor), decoded as in
    :func:`postprocess_image`. Returns a list of ``B`` float32 arrays ``[K_i, 7]`` (the official
    code returns ``None`` for an image without detections; here it is a ``[0, 7]`` array).
    """
    if hasattr(prediction, "asnumpy"):
        prediction = prediction.asnumpy()
    prediction = np.asarray(prediction, dtype=np.float32)
    if prediction.ndim != 3:
        raise ValueError(f"postprocess expects [B, A, 5 + num_classes], got shape {prediction.shape}")
    return [postprocess_image(p, conf_thre, nms_thre, class_agnostic) for p in prediction]
