"""Pascal VOC detection mAP, as the official ``yolox/evaluators/voc_eval.py`` computes it.

Conventions (the official ones):

- a detection matches the unmatched ground truth of its class with the highest IoU if that
  IoU is ``> iou_thr``; IoU uses the VOC "+1 pixel" areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``;
- difficult ground truths are not counted in the recall and a detection matched to one is
  neither a true nor a false positive; a second detection of an already matched box is false;
- AP is the 11-point interpolation of VOC2007 (``use_07_metric=True``) or the area under the
  monotone precision envelope (VOC2010+, ``use_07_metric=False``);
- classes without any non-difficult ground truth are left out of the mean (the official code
  would divide by zero there).

Boxes are ``(x1, y1, x2, y2)`` in the same pixel convention for detections and ground truth
(mindyolox's VOC dataset stores the XML's 1-based coordinates minus 1, and detections are
0-based, which is the official "+1 when writing results" convention seen from the other side).
"""
import numpy as np

__all__ = ["voc_ap", "voc_eval_class", "voc_map"]


def voc_ap(rec, prec, use_07_metric=False):
    """AP from recall and precision arrays ``[D]`` (cumulative, by descending score)."""
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = float(np.max(prec[rec >= t])) if np.any(rec >= t) else 0.0
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]     # precision envelope
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_eval_class(dets, gts, iou_thr=0.5, use_07_metric=False):
    """AP of one class.

    dets: list of ``(image_key, score, box[4])`` detections of this class;
    gts: dict ``image_key -> (boxes [G, 4], difficult bool [G])`` of this class.
    Returns ``(ap, npos)``; ``ap`` is NaN when ``npos == 0`` (no non-difficult ground truth).
    """
    npos = int(sum(int((~np.asarray(d, bool)).sum()) for _, d in gts.values()))
    if npos == 0:
        return float("nan"), 0
    if not dets:
        return 0.0, npos
    scores = np.array([d[1] for d in dets], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    used = {k: np.zeros(len(b), dtype=bool) for k, (b, _) in gts.items()}
    tp = np.zeros(len(dets))
    fp = np.zeros(len(dets))
    for rank, j in enumerate(order):
        key, _, bb = dets[j]
        bb = np.asarray(bb, dtype=np.float64)
        gt_boxes, difficult = gts.get(key, (np.zeros((0, 4)), np.zeros(0, bool)))
        ovmax, jmax = -np.inf, -1
        if len(gt_boxes):
            g = np.asarray(gt_boxes, dtype=np.float64)
            iw = np.maximum(np.minimum(g[:, 2], bb[2]) - np.maximum(g[:, 0], bb[0]) + 1.0, 0.0)
            ih = np.maximum(np.minimum(g[:, 3], bb[3]) - np.maximum(g[:, 1], bb[1]) + 1.0, 0.0)
            inter = iw * ih
            union = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                     + (g[:, 2] - g[:, 0] + 1.0) * (g[:, 3] - g[:, 1] + 1.0) - inter)
            ious = inter / union
            jmax = int(np.argmax(ious))
            ovmax = ious[jmax]
        if ovmax > iou_thr:
            if not difficult[jmax]:
                if not used[key][jmax]:
                    tp[rank] = 1.0
                    used[key][jmax] = True
                else:
                    fp[rank] = 1.0
        else:
            fp[rank] = 1.0
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(rec, prec, use_07_metric), npos


def voc_map(detections, ground_truth, num_classes, iou_thrs=(0.5,), use_07_metric=False):
    """Per-class AP and mAP over several IoU thresholds.

    detections: list of ``(image_key, class_id, score, box[4])``;
    ground_truth: dict ``image_key -> (boxes [G, 4], classes [G], difficult [G])``.
    Returns ``{"per_iou": {thr: mAP}, "per_class": [[AP per class] per thr], "npos": [G_c]}``;
    mAP is the mean over classes with ground truth (0.0 when there is none at all).
    """
    by_class_dets = [[] for _ in range(num_classes)]
    for key, c, s, b in detections:
        by_class_dets[int(c)].append((key, float(s), b))
    by_class_gt = [dict() for _ in range(num_classes)]
    for key, (boxes, classes, difficult) in ground_truth.items():
        boxes = np.asarray(boxes).reshape(-1, 4)
        classes = np.asarray(classes).reshape(-1)
        difficult = np.asarray(difficult, bool).reshape(-1)
        for c in range(num_classes):
            m = classes == c
            by_class_gt[c][key] = (boxes[m], difficult[m])
    out = {"per_iou": {}, "per_class": [], "npos": []}
    for thr in iou_thrs:
        aps, npos = zip(*(voc_eval_class(by_class_dets[c], by_class_gt[c], thr, use_07_metric)
                          for c in range(num_classes)))
        valid = [a for a in aps if not np.isnan(a)]
        out["per_iou"][float(thr)] = float(np.mean(valid)) if valid else 0.0
        out["per_class"].append(list(aps))
        out["npos"] = list(npos)
    return out
