"""The YOLOX loss (official 0.3.0 ``YOLOXHead.get_losses``) as a graph-compilable Cell.

Terms, each summed and divided by ``max(total fg anchors in the batch, 1)``:

* iou: ``5 * sum_fg (1 - IoU(pred, gt)^2)`` (already weighted, as the official dict);
* obj: ``sum_all BCEWithLogits(obj, fg)`` over every anchor;
* cls: ``sum_fg sum_c BCEWithLogits(cls_c, onehot(c_gt) * IoU)``;
* l1: ``sum_fg |raw_reg - (cx/s - gx, cy/s - gy, log(w/s + 1e-8), log(h/s + 1e-8))|``,
  multiplied by the ``use_l1`` graph input (0 or 1) so one compiled graph serves both.

total = iou + obj + cls + l1. Everything is dense over [B, A]: masked sums replace the
official boolean indexing, so shapes are static and one Cell serves every input size.
"""
from mindspore import nn, ops
from mindspore import dtype as mstype

from ..utils.boxes import aligned_iou_cxcywh
from .simota import SimOTAAssigner, gt_valid_mask

IOU_WEIGHT = 5.0
LOSS_KEYS = ("total", "iou", "obj", "cls", "l1", "num_fg")


def decode_boxes(raw_reg, grids, strides):
    """raw [B, A, 4] (dx, dy, log w, log h) -> cxcywh px: xy = (raw + grid) * stride,
    wh = exp(raw) * stride. grids [A, 2] cells, strides [A] px."""
    s = strides.reshape(1, -1, 1)
    return ops.concat(((raw_reg[..., 0:2] + grids) * s, ops.exp(raw_reg[..., 2:4]) * s), 2)


def bce_with_logits(logits, targets):
    """Element-wise BCE with logits, stable form max(x, 0) - x * t + log(1 + exp(-|x|))."""
    return ops.relu(logits) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))


class YOLOXLoss(nn.Cell):
    """SimOTA + YOLOX loss.

    Inputs:
        raw: [B, A, 5 + C] train-mode head output (raw reg dx, dy, log w, log h; obj logit;
            class logits).
        grids: [A, 2] (x, y) cell index of each anchor; strides: [A] px (from the head).
        labels: [B, G, 5] rows (class, cx, cy, w, h) in input pixels; zero rows = padding
            (the first ``count(row sum > 0)`` rows are the objects, official rule).
        use_l1: scalar float32 Tensor, 1.0 to add the L1 term, 0.0 to leave it out.
        img_hw: optional ``(h, w)`` input size in px (ints): with it the assignment's
            candidate tests use the anchor layout of ``strides`` (faster, same result).
    Returns:
        dict of scalar float32 Tensors: total, iou (already x5), obj, cls, l1, num_fg
        (= total fg / max(total gts, 1), the official logged value) and fg (the foreground
        anchors of the batch; every term is divided by max(fg, 1)).
    """

    def __init__(self, num_classes, strides=(8, 16, 32), tiered_keys=False):
        super().__init__()
        self.num_classes = num_classes
        self.level_strides = tuple(int(s) for s in strides)
        # tiered_keys: SimOTA ranking keys that survive float16 (Ascend), see losses/simota.py
        self.assigner = SimOTAAssigner(num_classes, tiered=tiered_keys)
        self.kernel = None

    def use_kernels(self, on):
        """``on`` (the CPU kernels are on, ``DeviceOptions.cpu_kernels``): the assignment runs as
        one compiled CPU kernel over each image's real labels and candidate anchors
        (:func:`mindyolox.ops.cpu_kernels.simota`; the dense [B, G, A] graph costs every padding
        slot of ``max_labels``) -- the same assignment (``tests/test_simota.py``). Float32
        outputs only; not with the float16-safe tiered keys."""
        from ..ops import cpu_kernels
        self.kernel = cpu_kernels.simota() if on and not self.assigner.tiered else None

    def construct(self, raw, grids, strides, labels, use_l1, img_hw=None):
        raw_reg = raw[..., 0:4]
        obj_logits = raw[..., 4]
        cls_logits = raw[..., 5:]
        boxes = decode_boxes(raw_reg, grids, strides)                               # [B,A,4]

        gt_valid = gt_valid_mask(labels)                                           # [B,G]
        gt_classes = labels[..., 0].astype(mstype.int32)
        gt_boxes = labels[..., 1:5]
        levels = None
        if img_hw is not None:
            levels = ()
            for s in self.level_strides:
                levels = levels + ((img_hw[0] // s, img_hw[1] // s, s),)
        if self.kernel is not None and raw.dtype == mstype.float32:
            out = self.kernel(ops.stop_gradient(boxes), ops.stop_gradient(obj_logits),
                              ops.stop_gradient(cls_logits), labels, grids, strides)   # [B,A,4]
            fg_mask, matched_gt = out[..., 0] > 0.5, out[..., 1].astype(mstype.int32)
            matched_classes, matched_ious = out[..., 2].astype(mstype.int32), out[..., 3]
        else:
            assign = self.assigner(boxes, obj_logits, cls_logits, grids, strides, gt_boxes,
                                   gt_classes, gt_valid, levels)
            fg_mask, matched_gt = assign["fg_mask"], assign["matched_gt"]
            matched_classes, matched_ious = assign["matched_classes"], assign["matched_ious"]
        fg = fg_mask.astype(mstype.float32)                                         # [B,A]
        slot = ops.maximum(matched_gt, 0)                                 # [B,A]
        n_gt = gt_boxes.shape[1]
        flat_index = slot + (ops.arange(gt_boxes.shape[0], dtype=mstype.int32) * n_gt).expand_dims(1)
        targets = ops.gather(gt_boxes.reshape(-1, 4), flat_index.reshape(-1), 0)
        targets = ops.stop_gradient(targets.reshape(boxes.shape))                    # [B,A,4]
        iou_target = ops.stop_gradient(matched_ious)                      # [B,A]
        cls_index = ops.stop_gradient(matched_classes).expand_dims(2)     # [B,A,1]

        num_fg = ops.maximum(fg.sum(), 1.0)
        num_gts = ops.maximum(gt_valid.astype(mstype.float32).sum(), 1.0)

        iou = aligned_iou_cxcywh(boxes, targets)
        loss_iou = ((1.0 - iou * iou) * fg).sum() / num_fg * IOU_WEIGHT

        loss_obj = bce_with_logits(obj_logits, fg).sum() / num_fg

        # sum_c BCE(x_c, onehot * IoU) = sum_c softplus(x_c) - x_{c_gt} * IoU
        softplus_sum = bce_with_logits(cls_logits, ops.zeros_like(cls_logits)).sum(2)
        gt_logit = ops.gather_elements(cls_logits, 2, cls_index).squeeze(2)
        loss_cls = ((softplus_sum - gt_logit * iou_target) * fg).sum() / num_fg

        s = strides.reshape(1, -1)
        # the logs only of foreground targets (the official computes them for fg anchors only):
        # a background anchor's target may be a padding row of width 0, whose log(0 + 1e-8)
        # is log(0) once 1e-8 flushes to zero in float16; there log(1) is taken instead
        is_fg = fg > 0.5
        one = ops.ones_like(fg)
        l1_target = ops.stack((targets[..., 0] / s - grids[:, 0],
                               targets[..., 1] / s - grids[:, 1],
                               ops.log(ops.select(is_fg, targets[..., 2] / s + 1e-8, one)),
                               ops.log(ops.select(is_fg, targets[..., 3] / s + 1e-8, one))), 2)
        l1_per_anchor = ops.abs(raw_reg - ops.stop_gradient(l1_target)).sum(2)
        loss_l1 = (l1_per_anchor * fg).sum() / num_fg * use_l1.astype(mstype.float32)

        total = loss_iou + loss_obj + loss_cls + loss_l1
        return {"total": total, "iou": loss_iou, "obj": loss_obj, "cls": loss_cls,
                "l1": loss_l1, "num_fg": fg.sum() / num_gts, "fg": fg.sum()}


class YOLOXWithLoss(nn.Cell):
    """Model + loss, the network a train step differentiates.

    Inputs: images [B, 3, S, S] float32 (BGR 0..255), labels [B, G, 5] (see ``YOLOXLoss``),
    use_l1 scalar float32 Tensor (0.0 / 1.0; a graph input, so switching it takes effect in
    an already compiled step).
    Returns the tuple ``(total, iou, obj, cls, l1, num_fg)`` (order of ``LOSS_KEYS``) of
    scalar float32 Tensors; differentiate the first one (e.g.
    ``mindspore.value_and_grad(net, None, params, has_aux=True)``). The model must be in
    train mode (``net.set_train(True)``) so its head returns raw outputs and BN uses batch
    statistics. The model's parameter names are kept (no ``model.`` prefix), so checkpoints
    of a wrapped model load into a bare one.
    """

    def __init__(self, model, loss):
        super().__init__(auto_prefix=False)
        self.model = model
        self.loss = loss
        self.return_fg = False  # True: a 7th output, the batch's foreground anchor count
        self.dynamic_hw = False  # True: no img_hw for SimOTA (mindyolox.training.dynamic_shape)

    def construct(self, images, labels, use_l1):
        raw, grids, strides = self.model(images)
        out = self.loss(raw, grids, strides, labels, use_l1, None if self.dynamic_hw else images.shape[2:])
        if self.return_fg:
            return out["total"], out["iou"], out["obj"], out["cls"], out["l1"], out["num_fg"], out["fg"]
        return out["total"], out["iou"], out["obj"], out["cls"], out["l1"], out["num_fg"]
