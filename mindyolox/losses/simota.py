"""SimOTA label assignment (official YOLOX 0.3.0 rules) on dense static tensors.

Shapes: B images, G = ``max_labels`` ground-truth slots (padding included), A anchors,
C classes. Everything is [B, G, A] or smaller; the class cost is obtained by gathering the
predicted probability of each ground truth's class, so no [B, G, A, C] tensor exists.

Rules (official ``get_in_boxes_info`` / ``get_assignments`` / ``dynamic_k_matching``):

* anchor centre = (grid + 0.5) * stride; candidate anchors of an image = anchors whose
  centre is strictly inside some gt box OR strictly within 2.5 strides (per axis) of its
  centre ("in box or centre"). Only candidates take part in the matching.
* cost[g, a] = sum_c BCE(sqrt(sigmoid(cls_c) * sigmoid(obj)), onehot(c_g)) (logs clamped at
  -100 like ``F.binary_cross_entropy``) + 3 * -log(IoU + 1e-8)
  + 1e5 * not(in box AND in centre of g).
* dynamic_k[g] = max(1, int(sum of the top min(10, #candidates) IoUs of g)); gt g takes
  its dynamic_k lowest-cost candidates.
* an anchor taken by several gts goes to the gt of lowest cost (first on ties).
* padding rows (row index >= number of rows whose sum is > 0, as in the official
  ``nlabel``) are ignored everywhere.

The whole assignment is wrapped in ``ops.stop_gradient``.

Reduced precision (Ascend). The official cost carries a penalty of 1e5 and the assigner
a sentinel of 1e10 for excluded pairs: both are beyond float16's largest value (65504), so
if TopK / ArgMin run in float16 on a device (Ascend's operator ``precision_mode``
``allow_fp32_to_fp16`` casts them) they become inf and the candidate order is lost; and
``max(log(x), -100)`` takes ``log(0)`` when a sigmoid saturates, which raises the overflow
flag in Ascend 910A's saturation mode (and would skip the step). Therefore:

* every log is taken of a clamped value (:func:`_bce_log`: ``log`` of ``x`` where ``x > 0``,
  of 1 elsewhere, then -100 there): in float32 the same numbers as the official clamp,
  and no ``log(0)`` anywhere;
* ``tiered=True`` (``YOLOXLoss(tiered_keys=True)``, used on Ascend): the ranking keys carry
  no penalty. The lowest-cost candidates of a gt are taken first among its "in box AND in
  centre" anchors, then among the others (two TopK on the real cost, merged), and a
  conflict goes to the lowest-cost gt among those that hold the anchor "in box and centre"
  if any, else among all (two ArgMin). This is the official order (the 1e5 penalty only
  puts the first tier before the second) without any value above float16's range: the
  sentinel for excluded pairs is 65504, real costs stay below ~8100 (80 classes x 100 +
  3 x 18.4). ``key_dtype=float16`` casts the keys before TopK/ArgMin, as a device would;
  ``tests/test_simota_fp16.py`` checks that the float16 assignment equals the float32 one
  on the official reference cases and demo batches up to ties of the float16 keys.
  ``tiered=False`` (default, CPU/GPU) keeps the official single float32 key, including its
  rounding of ``cost + 1e5``.
"""
from mindspore import nn, ops
from mindspore import dtype as mstype

from ..utils.boxes import pairwise_iou_cxcywh

CENTER_RADIUS = 2.5
TOPK_IOU = 10
OUTSIDE_COST = 100000.0
IOU_COST_WEIGHT = 3.0
# cost given to anchors that are no candidate (or padding gts): above any real cost
# (real costs stay below ~2e5: 1e5 penalty + 3 * 18.4 + 80 * 100).
_EXCLUDED = 1e10
# the tiered keys' sentinel: float16's largest finite value (real costs < ~8100 without penalty)
_EXCLUDED_FP16 = 65504.0


def gt_valid_mask(labels):
    """Official ``nlabel`` rule: [B, G, 5] labels -> [B, G] bool, True for the first
    ``count(row sum > 0)`` rows of each image."""
    nlabel = (labels.sum(2) > 0).astype(mstype.int32).sum(1, keepdims=True)  # [B, 1]
    slots = ops.arange(labels.shape[1], dtype=mstype.int32).expand_dims(0)   # [1, G]
    return slots < nlabel


def candidate_masks(gt_boxes, gt_valid, grids, strides, levels=None):
    """In-box / in-centre tests of every anchor against every gt.

    Args:
        gt_boxes: [B, G, 4] cxcywh px. gt_valid: [B, G] bool.
        grids: [A, 2] (x, y) cell index per anchor. strides: [A] px.
        levels: None, or the anchor layout ``((h, w, stride), ...)`` per level (anchors
            row-major inside a level, levels in order, as the head makes them): the tests
            are then made per axis ([B, G, w] and [B, G, h]) and combined by one outer
            product per level, 7x faster than the eight [B, G, A] comparisons and six
            logical ops of the generic path (same comparisons, so the same result).
    Returns:
        in_both [B, G, A] bool (in box AND in centre region of g, valid g only) and
        candidate [B, A] bool (in box OR in centre region of some valid g).
    """
    gx = gt_boxes[..., 0:1]                              # [B, G, 1]
    gy = gt_boxes[..., 1:2]
    hw = 0.5 * gt_boxes[..., 2:3]
    hh = 0.5 * gt_boxes[..., 3:4]
    if levels is not None:
        return _factored_masks(gx, gy, hw, hh, gt_valid, levels)
    xy_px = grids * strides.expand_dims(1)
    half_stride = 0.5 * strides
    cx = (xy_px[:, 0] + half_stride).reshape(1, 1, -1)   # [1, 1, A]
    cy = (xy_px[:, 1] + half_stride).reshape(1, 1, -1)
    # official: min(cx - left, right - cx, cy - top, bottom - cy) > 0, i.e. (IEEE: a - b > 0
    # exactly when a > b) four strict comparisons; no broadcast Minimum (slow on CPU)
    in_box = ops.logical_and(ops.logical_and(cx > gx - hw, cx < gx + hw),
                             ops.logical_and(cy > gy - hh, cy < gy + hh))
    radius = (CENTER_RADIUS * strides).reshape(1, 1, -1)
    in_ctr = ops.logical_and(ops.logical_and(cx > gx - radius, cx < gx + radius),
                             ops.logical_and(cy > gy - radius, cy < gy + radius))
    valid = gt_valid.expand_dims(2)
    in_both = ops.logical_and(ops.logical_and(in_box, in_ctr), valid)
    in_any = ops.logical_and(ops.logical_or(in_box, in_ctr), valid)
    candidate = in_any.any(1)
    return in_both, candidate


_OUTER = ops.BatchMatMul()  # [N, h, 1] x [N, 1, w] -> [N, h, w]


def _inside(centres, lo, hi):
    """[1, 1, n] centres strictly inside ([B, G, 1] lo, hi) -> [B, G, n] float32 0/1."""
    return ops.logical_and(centres > lo, centres < hi).astype(mstype.float32)


def _factored_masks(gx, gy, hw, hh, gt_valid, levels):
    """:func:`candidate_masks` per level: in_box[g, y, x] = in_box_y[g, y] * in_box_x[g, x]
    (the same for the centre region), the x factors zeroed for padding gts."""
    b, g = gt_valid.shape
    valid = gt_valid.astype(mstype.float32).expand_dims(2)
    both, any_ = [], []
    for h, w, stride in levels:
        xs = (ops.arange(w, dtype=mstype.float32) * stride + 0.5 * stride).reshape(1, 1, -1)
        ys = (ops.arange(h, dtype=mstype.float32) * stride + 0.5 * stride).reshape(1, 1, -1)
        radius = CENTER_RADIUS * stride
        box_x = _inside(xs, gx - hw, gx + hw) * valid                       # [B, G, w]
        box_y = _inside(ys, gy - hh, gy + hh)                               # [B, G, h]
        ctr_x = _inside(xs, gx - radius, gx + radius) * valid
        ctr_y = _inside(ys, gy - radius, gy + radius)
        in_box = _OUTER(box_y.reshape(b * g, h, 1), box_x.reshape(b * g, 1, w)).reshape(b, g, h * w)
        in_ctr = _OUTER(ctr_y.reshape(b * g, h, 1), ctr_x.reshape(b * g, 1, w)).reshape(b, g, h * w)
        both.append(in_box * in_ctr)
        any_.append(ops.amax(ops.maximum(in_box, in_ctr), 1))             # [B, h*w]
    return ops.concat(both, 2) > 0.5, ops.concat(any_, 1) > 0.5


def _bce_log(x):
    """max(log(x), -100), the clamped log of ``F.binary_cross_entropy``, without ever taking
    ``log(0)``: ``x == 0`` gives -100 directly (the official value, ``max(-inf, -100)``).
    ``x`` >= 0 (a probability or its complement)."""
    positive = x > 0
    logs = ops.log(ops.select(positive, x, ops.ones_like(x)))
    return ops.select(positive, ops.maximum(logs, -100.0), ops.full_like(x, -100.0))


def class_cost(cls_logits, obj_logits, gt_classes):
    """Pairwise class cost without a [B, G, A, C] tensor.

    cost[b, g, a] = sum_c BCE(p[b, a, c], c == c_g) with p = sqrt(sigmoid(cls) * sigmoid(obj))
                  = S[b, a] - neg[b, a, c_g] + pos[b, a, c_g],
    S = sum_c -log(1 - p_c), neg = -log(1 - p), pos = -log(p) (logs clamped at -100).

    Args:
        cls_logits: [B, A, C]; obj_logits: [B, A]; gt_classes: [B, G] int32 in [0, C).
    Returns:
        [B, G, A] float32.
    """
    prob = ops.sqrt(ops.sigmoid(cls_logits) * ops.sigmoid(obj_logits).expand_dims(2))  # [B,A,C]
    neg_all = -_bce_log(1.0 - prob)                                               # [B,A,C]
    total_neg = neg_all.sum(2).expand_dims(1)                                     # [B,1,A]
    b, g = gt_classes.shape
    a = prob.shape[1]
    index = ops.broadcast_to(gt_classes.expand_dims(2), (b, g, a))                # [B,G,A]
    prob_g = ops.gather_elements(prob.transpose(0, 2, 1), 1, index)               # [B,G,A]
    return total_neg + _bce_log(1.0 - prob_g) - _bce_log(prob_g)


def _take_along_g(values, index):
    """values [B, G, A], index [B, A] int32 -> values[b, index[b, a], a] as [B, A]."""
    return ops.gather_elements(values, 1, index.expand_dims(1)).squeeze(1)


class SimOTAAssigner(nn.Cell):
    """Dense, static-shape SimOTA (official YOLOX 0.3.0).

    Inputs:
        boxes: [B, A, 4] decoded predictions cxcywh px.
        obj_logits: [B, A] objectness logits. cls_logits: [B, A, C] class logits.
        grids: [A, 2] (x, y) cell index of each anchor. strides: [A] stride px.
        gt_boxes: [B, G, 4] cxcywh px. gt_classes: [B, G] int32. gt_valid: [B, G] bool.
        levels: optional anchor layout ``((h, w, stride), ...)`` (see :func:`candidate_masks`).
    Returns a dict (all stop-gradient):
        fg_mask [B, A] bool; matched_gt [B, A] int32 (gt slot, -1 for background);
        matched_classes [B, A] int32 (0 for background); matched_ious [B, A] float32 IoU
        between the prediction and its gt (0 for background); num_fg [B] int32;
        dynamic_ks [B, G] int32 (0 for padding slots); candidate [B, A] bool;
        in_both [B, G, A] bool; cost [B, G, A] float32 and ious [B, G, A] float32 (valid
        on candidate anchors of valid gts).
    """

    def __init__(self, num_classes, tiered=False, key_dtype=mstype.float32):
        super().__init__()
        self.num_classes = num_classes
        self.tiered = bool(tiered)
        self.key_dtype = key_dtype
        # True (mindyolox.training.dynamic_shape): A unknown when compiling, top-k width 10
        # (TOPK_IOU; A >= 21 from 32 px) and broadcasting IoU min/max instead of tiles
        self.dynamic_hw = False

    def construct(self, boxes, obj_logits, cls_logits, grids, strides, gt_boxes, gt_classes,
                  gt_valid, levels=None):
        boxes = ops.stop_gradient(boxes)
        obj_logits = ops.stop_gradient(obj_logits)
        cls_logits = ops.stop_gradient(cls_logits)
        num_anchors = boxes.shape[1]
        in_both, candidate = candidate_masks(gt_boxes, gt_valid, grids, strides, levels)
        ious = pairwise_iou_cxcywh(gt_boxes, boxes, tile=not self.dynamic_hw)                                # [B,G,A]
        real_cost = class_cost(cls_logits, obj_logits, gt_classes) + IOU_COST_WEIGHT * -ops.log(ious + 1e-8)
        cost = real_cost + OUTSIDE_COST * ops.logical_not(in_both).astype(mstype.float32)
        usable = ops.logical_and(candidate.expand_dims(1), gt_valid.expand_dims(2))  # [B,G,A]

        # dynamic k: sum of the top-10 candidate IoUs (non-candidates count as IoU 0).
        k_max = TOPK_IOU if self.dynamic_hw else min(TOPK_IOU, num_anchors)
        cand_ious = ops.where(usable, ious, ops.zeros_like(ious))
        top_ious, _ = ops.topk(cand_ious, k_max)
        dynamic_ks = ops.maximum(ops.floor(top_ious.sum(2)), 1.0).astype(mstype.int32)
        dynamic_ks = dynamic_ks * gt_valid.astype(mstype.int32)                     # [B,G]

        # each gt takes its dynamic_k lowest-cost candidates (dynamic_k <= 10 <= k_max).
        ranks = ops.arange(k_max, dtype=mstype.int32).reshape(1, 1, -1)
        if self.tiered:
            order, best_gt = self._tiered_ranking(real_cost, in_both, usable, k_max, ranks)
        else:
            masked_cost = ops.where(usable, cost, ops.full_like(cost, _EXCLUDED))
            _, order = ops.topk(-masked_cost, k_max)                                # [B,G,K]
            # (only candidate anchors can be claimed twice; there masked_cost = cost for valid gts)
            best_gt = ops.argmin(masked_cost, 1).astype(mstype.int32)               # [B,A]
        take = (ranks < dynamic_ks.expand_dims(2)).astype(mstype.float32)
        matching = ops.tensor_scatter_elements(ops.zeros_like(cost), order, take, axis=2)
        matching = matching * usable.astype(mstype.float32)                         # [B,G,A]

        # conflicts: an anchor matched by several gts goes to the lowest-cost gt.
        n_match = matching.sum(1)                                                   # [B,A]
        only_gt = ops.argmax(matching, 1).astype(mstype.int32)
        assigned = ops.where(n_match > 1.0, best_gt, only_gt)
        fg_mask = n_match > 0.0
        matched_gt = ops.where(fg_mask, assigned, ops.full_like(assigned, -1))
        matched_ious = _take_along_g(ious, assigned) * fg_mask.astype(mstype.float32)
        gathered_cls = ops.gather_elements(gt_classes, 1, assigned)
        matched_classes = gathered_cls * fg_mask.astype(mstype.int32)
        out = {
            "fg_mask": fg_mask,
            "matched_gt": matched_gt,
            "matched_classes": matched_classes,
            "matched_ious": matched_ious,
            "num_fg": fg_mask.astype(mstype.int32).sum(1),
            "dynamic_ks": dynamic_ks,
            "candidate": candidate,
            "in_both": in_both,
            "cost": cost,
            "ious": ious,
            "matching": matching > 0.5,
        }
        return out

    def _tiered_ranking(self, real, in_both, usable, k_max, ranks):
        """Float16-safe ranking (module doc): ``order`` [B, G, K] int32, each gt's candidates by
        (not in_both, real cost) -- the official order -- and ``best_gt`` [B, A] int32, the
        conflict winner. ``real`` [B, G, A] float32: the cost without the 1e5 penalty; the
        keys are ``real`` and the sentinel 65504."""
        inner = ops.logical_and(in_both, usable)
        key_in, key_out, key_any = self.ranking_keys(real, in_both, usable)
        _, order_in = ops.topk(-key_in, k_max)                                      # [B,G,K]
        _, order_out = ops.topk(-key_out, k_max)
        n_in = inner.astype(mstype.int32).sum(2, keepdims=True)                      # [B,G,1]
        from_out = ops.clip_by_value(ranks - n_in, 0, k_max - 1)
        order = ops.where(ranks < n_in, order_in, ops.gather_elements(order_out, 2, from_out))
        win_in = ops.argmin(key_in, 1).astype(mstype.int32)                          # [B,A]
        win_any = ops.argmin(key_any, 1).astype(mstype.int32)
        best_gt = ops.where(inner.any(1), win_in, win_any)
        return order, best_gt

    def ranking_keys(self, real, in_both, usable):
        """The three keys the tiered ranking sorts (TopK) and takes the minimum of (ArgMin), each
        [B, G, A] in ``key_dtype``: ``key_in`` (real cost of in-box-and-centre candidates),
        ``key_out`` (of the other candidates), ``key_any`` (of every candidate); every other
        pair holds the sentinel 65504, float16's largest finite value, so no key is inf in
        float16 (``tests/test_ascend_backend.py`` checks it; the official 1e10 would be)."""
        inner = ops.logical_and(in_both, usable)
        outer = ops.logical_and(ops.logical_not(in_both), usable)
        sentinel = ops.full_like(real, _EXCLUDED_FP16)
        return (ops.where(inner, real, sentinel).astype(self.key_dtype),
                ops.where(outer, real, sentinel).astype(self.key_dtype),
                ops.where(usable, real, sentinel).astype(self.key_dtype))
