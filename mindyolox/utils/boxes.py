"""Box helpers in pure MindSpore ops (graph-compilable, static shapes).

Boxes are ``(cx, cy, w, h)`` in input pixels, float32. The formulas follow the official
YOLOX 0.3.0 ``bboxes_iou(..., xyxy=False)`` (pairwise IoU used by SimOTA) and ``IOUloss``
(element-wise IoU of aligned boxes), including where the official code adds epsilons.
"""
from mindspore import ops


def _tile_to(x, shape):
    """``x`` repeated along its size-1 axes to ``shape`` (same rank)."""
    reps = []
    for have, want in zip(x.shape, shape):
        reps.append(want // have)
    return ops.tile(x, tuple(reps))


def bcast_minimum(a, b):
    """``ops.minimum`` of two tensors of the same rank that broadcast against each other.

    MindSpore 2.10's CPU Minimum/Maximum kernels are ~30x slower on broadcast operands than
    on equal shapes (310 ms vs 9 ms for [8, 120, 1] vs [1, 1, 8400]); tiling both operands
    first costs one copy each (17 ms in all). Gradients are those of ``ops.minimum``."""
    shape = []
    for p, q in zip(a.shape, b.shape):
        shape.append(max(p, q))
    return ops.minimum(_tile_to(a, shape), _tile_to(b, shape))


def bcast_maximum(a, b):
    """``ops.maximum`` of broadcasting operands, see :func:`bcast_minimum`."""
    shape = []
    for p, q in zip(a.shape, b.shape):
        shape.append(max(p, q))
    return ops.maximum(_tile_to(a, shape), _tile_to(b, shape))


def _corners(boxes):
    """(top-left, bottom-right) corners [..., 2] of cxcywh boxes [..., 4]."""
    half = boxes[..., 2:4] / 2
    return boxes[..., 0:2] - half, boxes[..., 0:2] + half


def pairwise_iou_cxcywh(boxes_a, boxes_b, tile=True):
    """IoU of every box of ``boxes_a`` with every box of ``boxes_b``, batched.

    Args:
        boxes_a: [B, G, 4] cxcywh px (the ground truths in SimOTA).
        boxes_b: [B, A, 4] cxcywh px (the predictions).
    Returns:
        [B, G, A] float32 IoU in [0, 1]; 0 where the boxes do not overlap. As in the
        official code there is no epsilon in the denominator (two empty boxes give NaN;
        predictions have w, h = exp(.) * stride > 0, so this never happens in SimOTA).
        ``tile=False``: broadcasting ``ops.minimum`` / ``ops.maximum`` (the same values;
        for shapes unknown at compile time, where :func:`bcast_minimum` cannot size its tiles).
    """
    a_tl, a_br = _corners(boxes_a)
    b_tl, b_br = _corners(boxes_b)
    lo, hi = (bcast_minimum, bcast_maximum) if tile else (ops.minimum, ops.maximum)
    # per axis on [B, G, A] (no [B, G, A, 2] intermediates): overlap extent w, h
    w = lo(a_br[..., 0:1], b_br[..., 0].expand_dims(1)) - hi(a_tl[..., 0:1], b_tl[..., 0].expand_dims(1))
    h = lo(a_br[..., 1:2], b_br[..., 1].expand_dims(1)) - hi(a_tl[..., 1:2], b_tl[..., 1].expand_dims(1))
    overlap = ops.logical_and(w > 0, h > 0).astype(w.dtype)
    inter = w * h * overlap
    area_a = (boxes_a[..., 2] * boxes_a[..., 3]).expand_dims(2)
    area_b = (boxes_b[..., 2] * boxes_b[..., 3]).expand_dims(1)
    return inter / (area_a + area_b - inter)


def aligned_iou_cxcywh(pred, target):
    """Element-wise IoU of aligned boxes, the official ``IOUloss`` formula.

    Args:
        pred: [..., 4] cxcywh px (differentiable).
        target: [..., 4] cxcywh px, same shape.
    Returns:
        [...] float32 IoU = inter / (union + 1e-16).
    """
    p_tl, p_br = _corners(pred)
    t_tl, t_br = _corners(target)
    tl = ops.maximum(p_tl, t_tl)
    br = ops.minimum(p_br, t_br)
    overlap = ops.logical_and(tl[..., 0] < br[..., 0], tl[..., 1] < br[..., 1]).astype(pred.dtype)
    wh = br - tl
    inter = wh[..., 0] * wh[..., 1] * overlap
    area_p = pred[..., 2] * pred[..., 3]
    area_t = target[..., 2] * target[..., 3]
    return inter / (area_p + area_t - inter + 1e-16)
