"""Why detections fail: the TIDE error breakdown (Bolya et al., "TIDE: A General Toolbox for
Identifying Object Detection Errors", ECCV 2020), in plain numpy.

:func:`tide_breakdown` sorts every false positive of a COCO result list into one of TIDE's five
false-positive types and every undetected ground-truth box into "missed", then measures, for each
type alone, the AP gained when an oracle fixes every error of that type on the original detections.
:func:`write_tide` writes ``tide.csv`` and the bar chart ``tide.png``; :func:`tide_summary` is the
one log line. Every AP / dAP is a fraction (0..1), not percent.

Definitions (the paper's, at a foreground IoU ``t_f`` and a background IoU ``t_b``; IoU_max is a
detection's largest IoU with a non-crowd ground-truth box of its image). A detection that is not a
true positive at ``t_f`` is, tested in this order (the precedence of the authors' tidecv 1.0.1,
which the paper leaves open):

=====  ===========================================================  ==========================================
type   condition                                                    oracle fix
=====  ===========================================================  ==========================================
loc    ``t_b <= IoU_max(same class) < t_f``                          move it onto that gt box (-> true positive)
cls    ``IoU_max(other classes) >= t_f``                             give it that gt's class (-> true positive)
dupe   ``IoU_max(same class) >= t_f`` (that gt taken by a higher     suppress it
       scoring detection)
bkg    ``IoU_max(any class) < t_b`` (or the image has no gt)          suppress it
both   anything else (wrong class, ``t_b <= IoU < t_f``)              suppress it
miss   a gt no detection matched and no cls/loc error points at       drop it from the class's gt count
=====  ===========================================================  ==========================================

A cls or loc fix whose gt box is already matched at ``t_f`` would be a duplicate and is suppressed
instead; when several errors of the type being fixed point at the same unmatched gt, the highest
scoring becomes the true positive and the others are suppressed (each type is fixed alone, so a
cls error is not held back by a loc error on the same gt -- tidecv 1.0.1 picks one winner over both
types). A class left with no ground truth by the miss fix leaves the class mean (as pycocotools
treats a class without ground truth); when no class is left, the fixed AP is 1. dAP = AP(fixed) -
AP(original); it is >= 0 by construction. Ground truth without any (non-crowd) box gives nan.

Decisions the issue leaves open:

* AP50:95. The paper defines errors at one ``t_f`` (0.5). Here errors are found and fixed at every
  ``t`` of ``iou_thrs`` (default COCO's 0.50:0.05:0.95) with ``t_f = t`` and ``t_b = bg_thr`` (0.1),
  and ``dAP`` is the mean over them; ``dAP_pos`` / ``counts`` are those at ``t_f = pos_thr`` (0.5,
  the paper's numbers: the CSV's ``dAP50``).
* The AP is COCO's and equals pycocotools' COCOeval bbox AP (maxDets 100, area all) on the same
  detections: per class a greedy match in score order (a detection takes the best-IoU unmatched
  same-class gt with IoU >= t, ties to the later gt), at most 100 detections per image and class,
  101-point interpolated precision (recall thresholds ``linspace(0, 1, 101)``), the mean over the
  classes that have ground truth, then over the thresholds. A fixed AP is the AP pycocotools would
  give the fixed detections / ground truth.
* Against tidecv 1.0.1 (the authors' package; checked by hand, docs/evaluation.md): the same error counts and the
  same bkg/dupe/both dAP up to its recall points (``k/100``, not ``linspace``). It differs by design
  in: 100 detections per image over all classes; a class with detections but no gt counted as AP
  0; crowd-ignored detections at crowd IoU > t (pycocotools >= t) and still typed as errors; one
  cls/loc winner per gt over both types at once; a class the miss fix leaves without gt kept in
  its mean as 0; boundaries ``loc: IoU <= t_f``, ``bkg: IoU <= t_b`` (the paper: ``<``).
* Crowd ground truth (``iscrowd`` 1) is handled as pycocotools and TIDE do: never a gt to find or to
  miss; a detection that matches no real gt but overlaps a same-class crowd region with
  intersection / detection area >= t is ignored (neither true nor false positive, no error type).
"""
import csv
import math
import os

import cv2
import numpy as np

from ..errors import DataError, MindYOLOXError

__all__ = ["ERROR_TYPES", "ERROR_NAMES", "tide_breakdown", "write_tide", "tide_summary"]

ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "miss")
ERROR_NAMES = {"cls": "classification", "loc": "localisation", "both": "both (cls+loc)",
               "dupe": "duplicate", "bkg": "background", "miss": "missed"}
_CLS, _LOC, _BOTH, _DUPE, _BKG = range(5)      # codes of the false-positive types (miss is per gt)
COCO_IOU_THRS = np.linspace(0.5, 0.95, 10)     # pycocotools Params.iouThrs
REC_THRS = np.linspace(0.0, 1.0, 101)          # pycocotools Params.recThrs
MAX_DETS = 100                                 # pycocotools maxDets[-1], per image and class


# ----------------------------------------------------------------------------- inputs
def _box(rec, where):
    b = rec.get("bbox") if isinstance(rec, dict) else None
    try:
        b = [float(v) for v in b]
    except (TypeError, ValueError):
        b = None
    if b is None or len(b) != 4 or not all(map(math.isfinite, b)):
        got = rec.get("bbox") if isinstance(rec, dict) else rec
        raise DataError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {got!r}")
    return b


def _load_gt(gt):
    """(sorted image ids, sorted category ids, annotation list) of a COCO dict or pycocotools COCO."""
    data = getattr(gt, "dataset", gt)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list) or not isinstance(data.get("categories"), list):
        raise DataError("TIDE ground truth: need a COCO dict (or pycocotools COCO) with lists "
                        "'images', 'annotations' and 'categories'")
    try:
        img_ids = sorted({im["id"] for im in data["images"]})
        cat_ids = sorted({c["id"] for c in data["categories"]})
    except (KeyError, TypeError) as e:
        raise DataError(f"TIDE ground truth: an image or category without 'id' ({e})") from None
    return img_ids, cat_ids, data["annotations"]


def _prepare(gt, dets):
    """Flat arrays of the ground truth and of the detections (per image and class the first
    ``MAX_DETS`` by score), detections in pycocotools' accumulate order: image id, then score."""
    img_ids, cat_ids, anns = _load_gt(gt)
    img_index = {i: k for k, i in enumerate(img_ids)}
    cat_index = {c: k for k, c in enumerate(cat_ids)}
    g_img, g_cls, g_box, g_crowd = [], [], [], []
    for n, a in enumerate(anns):
        where = f"TIDE ground truth annotation {n} (id {a.get('id') if isinstance(a, dict) else '?'})"
        box = _box(a, where)
        if a.get("image_id") not in img_index:
            raise DataError(f"{where}: image_id {a.get('image_id')!r} is not in 'images'")
        if a.get("category_id") not in cat_index:
            raise DataError(f"{where}: category_id {a.get('category_id')!r} is not in 'categories'")
        g_img.append(img_index[a["image_id"]])
        g_cls.append(cat_index[a["category_id"]])
        g_box.append(box)
        g_crowd.append(bool(a.get("iscrowd", 0)))
    if not isinstance(dets, (list, tuple)):
        raise DataError(f"TIDE detections: need a list of COCO result records, got {type(dets).__name__}")
    d_img, d_cls, d_box, d_score = [], [], [], []
    for n, d in enumerate(dets):
        where = f"TIDE detection {n}"
        if not isinstance(d, dict):
            raise DataError(f"{where}: not a dict (image_id, category_id, bbox, score)")
        box = _box(d, where)
        if d.get("image_id") not in img_index:
            raise DataError(f"{where}: image_id {d.get('image_id')!r} is not in the ground truth's 'images'")
        if d.get("category_id") not in cat_index:
            raise DataError(f"{where}: category_id {d.get('category_id')!r} is not in the ground truth's 'categories'")
        try:
            score = float(d["score"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: 'score' must be a number, got {d.get('score')!r}") from None
        d_img.append(img_index[d["image_id"]])
        d_cls.append(cat_index[d["category_id"]])
        d_box.append(box)
        d_score.append(score)
    g = {"img": np.asarray(g_img, np.int64), "cls": np.asarray(g_cls, np.int64),
         "box": np.asarray(g_box, np.float64).reshape(-1, 4), "crowd": np.asarray(g_crowd, bool)}
    d_img, d_cls = np.asarray(d_img, np.int64), np.asarray(d_cls, np.int64)
    d_score = np.asarray(d_score, np.float64)
    # pycocotools: per (image, class) a stable sort by -score, the first maxDets kept; accumulate
    # concatenates the images in id order and sorts stably by -score again (done in _class_ap)
    order = np.lexsort((-d_score, d_img))
    keep = np.zeros(len(order), bool)
    seen = {}
    for k in order:
        key = (d_img[k], d_cls[k])
        seen[key] = seen.get(key, 0) + 1
        keep[k] = seen[key] <= MAX_DETS
    order = order[keep[order]]
    d = {"img": d_img[order], "cls": d_cls[order], "score": d_score[order],
         "box": np.asarray(d_box, np.float64).reshape(-1, 4)[order]}
    return g, d, len(img_ids), len(cat_ids)


def _iou(dt, gt, crowd=False):
    """IoU [D, G] of xywh boxes as pycocotools' bbIou (float64; ``crowd``: intersection / det area)."""
    dx2, dy2 = dt[:, 0] + dt[:, 2], dt[:, 1] + dt[:, 3]
    gx2, gy2 = gt[:, 0] + gt[:, 2], gt[:, 1] + gt[:, 3]
    w = np.minimum(dx2[:, None], gx2[None]) - np.maximum(dt[:, None, 0], gt[None, :, 0])
    h = np.minimum(dy2[:, None], gy2[None]) - np.maximum(dt[:, None, 1], gt[None, :, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    da, ga = dt[:, 2] * dt[:, 3], gt[:, 2] * gt[:, 3]
    union = np.broadcast_to(da[:, None], inter.shape) if crowd else (da[:, None] + ga[None]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


# ----------------------------------------------------------------------------- matching / errors
def _classify(g, d, thrs, bg_thr):
    """Match and classify at every threshold. Returns per threshold ``tp`` [T, D], ``ignored``
    [T, D] (crowd), ``etype`` [T, D] (error code or -1), ``target`` [D, 2] (gt index of the loc and
    the cls candidate, -1 none) and ``gt_used`` [T, G] (non-crowd gts matched)."""
    T, D, G = len(thrs), len(d["score"]), len(g["cls"])
    tp = np.zeros((T, D), bool)
    ign = np.zeros((T, D), bool)
    etype = np.full((T, D), -1, np.int8)
    target = np.full((D, 2), -1, np.int64)
    gt_used = np.zeros((T, G), bool)
    real = np.flatnonzero(~g["crowd"])
    crowd = np.flatnonzero(g["crowd"])
    d_bounds = np.searchsorted(d["img"], np.arange(d["img"].max() + 2 if D else 1))
    for im in np.unique(d["img"]):
        di = np.arange(d_bounds[im], d_bounds[im + 1])
        gi = real[g["img"][real] == im]
        ci = crowd[g["img"][crowd] == im]
        if len(gi) == 0:
            same_iou = np.zeros((len(di), 0))
        else:
            iou = _iou(d["box"][di], g["box"][gi])
            same = d["cls"][di][:, None] == g["cls"][gi][None]
            same_iou = np.where(same, iou, -1.0)
        crowd_hit = np.zeros((len(di), T), bool)
        if len(ci):
            ciou = np.where(d["cls"][di][:, None] == g["cls"][ci][None], _iou(d["box"][di], g["box"][ci], True), -1.0)
            crowd_hit = ciou.max(1)[:, None] >= thrs[None]
        used = np.zeros((T, len(gi)), bool)
        can_match = same_iou.max(1, initial=-1.0) >= thrs.min()  # the others match at no threshold
        for k in np.flatnonzero(can_match):   # score order: greedy, every threshold at once
            row = same_iou[k]
            vals = np.where((row[None] >= thrs[:, None]) & ~used, row[None], -1.0)   # [T, g]
            j = vals.shape[1] - 1 - np.argmax(vals[:, ::-1], axis=1)   # the last best (pycocotools)
            hit = vals[np.arange(T), j] >= 0
            used[np.flatnonzero(hit), j[hit]] = True
            tp[hit, di[k]] = True
        ign[:, di] = ~tp[:, di] & crowd_hit.T
        gt_used[:, gi] = used
        fp = ~tp[:, di] & ~ign[:, di]                                        # [T, n]
        if len(gi) == 0:
            etype[:, di] = np.where(fp, _BKG, -1)
            continue
        o_iou = np.where(same, -1.0, iou)            # -1: no gt of that kind
        s_max, o_max = same_iou.max(1), o_iou.max(1)
        target[di, 0] = gi[np.argmax(same_iou, 1)]   # IoU_max gt (tidecv: the first of equals)
        target[di, 1] = gi[np.argmax(o_iou, 1)]
        t, s_max, o_max = thrs[:, None], s_max[None], o_max[None]
        code = np.full(fp.shape, _BOTH, np.int8)    # later rules take precedence over earlier ones
        code[np.broadcast_to(np.maximum(s_max, o_max) < bg_thr, fp.shape)] = _BKG
        code[np.broadcast_to(s_max >= t, fp.shape)] = _DUPE
        code[np.broadcast_to(o_max >= t, fp.shape)] = _CLS
        code[(s_max >= bg_thr) & (s_max < t)] = _LOC
        etype[:, di] = np.where(fp, code, -1)
    return tp, ign, etype, target, gt_used


# ----------------------------------------------------------------------------- AP
def _class_ap(tp, npos):
    """COCO 101-point AP of one class from its detections' true-positive flags, sorted by score
    (descending; ties in pycocotools' accumulate order); ``npos`` > 0 gts."""
    if len(tp) == 0:
        return 0.0
    tps, fps = np.cumsum(tp).astype(float), np.cumsum(~tp).astype(float)
    rc = tps / npos
    pr = tps / (fps + tps + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    idx = np.searchsorted(rc, REC_THRS, side="left")
    q = np.zeros(len(REC_THRS))
    ok = idx < len(pr)
    q[ok] = pr[idx[ok]]
    return float(q.mean())


def _mean_ap(cls, score, tp, keep, npos):
    """Mean AP over the classes with ``npos`` > 0 (nan when none) of the detections ``keep``
    (arrays in accumulate order: per class a stable sort by -score reproduces pycocotools)."""
    idx = np.flatnonzero(keep)
    idx = idx[np.lexsort((idx, -score[idx], cls[idx]))]        # by class, then score, then order
    bounds = np.searchsorted(cls[idx], np.arange(len(npos) + 1))
    aps = [_class_ap(tp[idx[bounds[c]:bounds[c + 1]]], npos[c]) for c in np.flatnonzero(npos > 0)]
    return float(np.mean(aps)) if aps else float("nan")


def _fix_to_tp(err, tgt, gt_used, score):
    """(winners, losers) of the errors ``err`` (det indices) pointing at gts ``tgt``: per unmatched
    gt the highest-scoring error (earliest on ties) becomes a true positive; the rest are suppressed."""
    free = ~gt_used[tgt]
    cand = err[free]
    order = np.lexsort((cand, -score[cand]))
    _, first = np.unique(tgt[free][order], return_index=True)
    win = cand[order][first]
    return win, np.setdiff1d(err, win)


def _threshold_result(g, d, n_cls, tp, ign, etype, target, gt_used):
    """AP, dAP per type and counts at one threshold (rows of :func:`_classify`'s arrays)."""
    real = ~g["crowd"]
    npos = np.bincount(g["cls"][real], minlength=n_cls)
    keep = ~ign
    base = _mean_ap(d["cls"], d["score"], tp, keep, npos)
    out = {"ap": base, "dAP": {}, "counts": {}}
    for name, code in (("cls", _CLS), ("loc", _LOC)):
        err = np.flatnonzero(etype == code)
        tgt = target[err, 1 if code == _CLS else 0]
        win, lose = _fix_to_tp(err, tgt, gt_used, d["score"])
        cls, tp2, keep2 = d["cls"].copy(), tp.copy(), keep.copy()
        tp2[win] = True
        keep2[lose] = False
        if code == _CLS:
            cls[win] = g["cls"][tgt[np.searchsorted(err, win)]]
        out["dAP"][name] = _mean_ap(cls, d["score"], tp2, keep2, npos) - base
        out["counts"][name] = int(len(err))
    for name, code in (("both", _BOTH), ("dupe", _DUPE), ("bkg", _BKG)):
        err = etype == code
        out["dAP"][name] = _mean_ap(d["cls"], d["score"], tp, keep & ~err, npos) - base
        out["counts"][name] = int(err.sum())
    covered = np.zeros(len(real), bool)
    for code, col in ((_CLS, 1), (_LOC, 0)):
        tg = target[etype == code, col]
        covered[tg[~gt_used[tg]]] = True
    missed = real & ~gt_used & ~covered
    npos_fixed = npos - np.bincount(g["cls"][missed], minlength=n_cls)
    fixed = _mean_ap(d["cls"], d["score"], tp, keep, npos_fixed)
    # every gt was missed: nothing is left to find, the fixed AP is 1 (nan stays nan: no gt at all)
    out["dAP"]["miss"] = (1.0 if np.isnan(fixed) else fixed) - base
    out["counts"]["miss"] = int(missed.sum())
    return out


def tide_breakdown(gt, dets, pos_thr=0.5, bg_thr=0.1, iou_thrs=None):
    """TIDE error breakdown of COCO detections (see the module docstring for the definitions).

    Args:
        gt: COCO ground truth: a dict with ``images`` (``id``), ``annotations`` (``image_id``,
            ``category_id``, ``bbox`` [x, y, w, h] px, ``iscrowd``) and ``categories`` (``id``), or a
            pycocotools ``COCO`` index (its ``.dataset``).
        dets: the COCO result list the evaluator writes: dicts with ``image_id``, ``category_id``,
            ``bbox`` [x, y, w, h] px of the original image and ``score``.
        pos_thr: the foreground IoU ``t_f`` of the paper's numbers (``counts``, ``dAP_pos``).
        bg_thr: the background IoU ``t_b``; must be below every threshold.
        iou_thrs: the ``t_f`` values averaged into ``ap`` / ``dAP`` (default 0.50:0.05:0.95).

    Returns:
        dict (fractions, not percent): ``ap`` (AP averaged over ``iou_thrs`` = COCO AP50:95 for the
        default), ``dAP`` {type: mean over ``iou_thrs`` of the AP gained by fixing that type alone},
        ``ap_pos`` / ``dAP_pos`` / ``counts`` {type: errors} at ``pos_thr``, ``per_thr`` (the same
        per threshold), ``iou_thrs``, ``pos_thr``, ``bg_thr``, ``num_detections`` (after the 100 per
        image and class), ``num_gt`` (non-crowd). Types: :data:`ERROR_TYPES`.

    Raises:
        DataError: a malformed record (named by its index); MindYOLOXError: bad thresholds.
    """
    thrs = COCO_IOU_THRS if iou_thrs is None else np.asarray(iou_thrs, np.float64).reshape(-1)
    if len(thrs) == 0 or not np.all((thrs > 0) & (thrs <= 1)) or not 0 < pos_thr <= 1:
        raise MindYOLOXError(f"TIDE: IoU thresholds must be in (0, 1], got iou_thrs={list(thrs)} pos_thr={pos_thr}")
    if not 0 <= bg_thr < min(thrs.min(), pos_thr):
        raise MindYOLOXError(f"TIDE: bg_thr {bg_thr} must be >= 0 and below every foreground threshold "
                             f"(iou_thrs {thrs.min():.2f}.., pos_thr {pos_thr})")
    g, d, _, n_cls = _prepare(gt, dets)
    pos_in = np.flatnonzero(np.isclose(thrs, pos_thr, rtol=0, atol=1e-9))
    all_thrs = thrs if len(pos_in) else np.append(thrs, pos_thr)
    pos_k = int(pos_in[0]) if len(pos_in) else len(thrs)
    tp, ign, etype, target, gt_used = _classify(g, d, all_thrs, float(bg_thr))
    per = [_threshold_result(g, d, n_cls, tp[k], ign[k], etype[k], target, gt_used[k]) for k in range(len(all_thrs))]
    main = per[:len(thrs)]
    return {"ap": float(np.mean([r["ap"] for r in main])),
            "dAP": {e: float(np.mean([r["dAP"][e] for r in main])) for e in ERROR_TYPES},
            "ap_pos": per[pos_k]["ap"], "dAP_pos": dict(per[pos_k]["dAP"]), "counts": dict(per[pos_k]["counts"]),
            "per_thr": [{"iou": float(t), **r} for t, r in zip(thrs, main)],
            "iou_thrs": [float(t) for t in thrs], "pos_thr": float(pos_thr), "bg_thr": float(bg_thr),
            "num_detections": int(len(d["score"])), "num_gt": int((~g["crowd"]).sum())}


# ----------------------------------------------------------------------------- outputs
def tide_summary(result):
    """One log line: AP and the dAP50:95 (dAP at ``pos_thr``) of each type, in AP points."""
    parts = ", ".join(f"{e} {100 * result['dAP'][e]:.2f} ({100 * result['dAP_pos'][e]:.2f})" for e in ERROR_TYPES)
    return (f"TIDE errors, AP points gained if fixed, AP50:95 (AP{100 * result['pos_thr']:.0f}): {parts}; "
            f"AP50:95 {100 * result['ap']:.2f}")


def _draw_chart(result, path):
    """Horizontal bars of dAP50:95 (filled) and dAP at ``pos_thr`` (outline) per type, AP points."""
    w, h, left, top, row = 620, 60 + 34 * len(ERROR_TYPES), 150, 46, 34
    img = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    pos = f"dAP{100 * result['pos_thr']:.0f}"
    cv2.putText(img, f"TIDE: AP gained if fixed (points); filled dAP50:95, outline {pos}", (8, 18), font,
                0.42, (0, 0, 0), 1, cv2.LINE_AA)
    vals = [(100 * result["dAP"][e], 100 * result["dAP_pos"][e]) for e in ERROR_TYPES]
    top_val = max([1.0] + [max(a, b) for a, b in vals])
    span = w - left - 130                     # room for the value labels right of the longest bar
    for k, (e, (a, b)) in enumerate(zip(ERROR_TYPES, vals)):
        y = top + k * row
        cv2.putText(img, ERROR_NAMES[e], (8, y + 17), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(img, (left, y + 4), (left + int(round(span * max(a, 0) / top_val)), y + 24), (200, 120, 40), -1)
        cv2.rectangle(img, (left, y + 2), (left + int(round(span * max(b, 0) / top_val)), y + 26), (30, 60, 200), 1)
        cv2.putText(img, f"{a:.2f} ({b:.2f})", (left + int(span * max(a, b, 0) / top_val) + 4, y + 19), font, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(img, (left, top - 4), (left, top + row * len(ERROR_TYPES)), (0, 0, 0), 1)
    if not cv2.imwrite(str(path), img):
        raise DataError(f"cannot write {path} (unwritable folder)")


TIDE_FILES = ("tide.csv", "tide.png")   # what write_tide writes into its folder


def write_tide(result, out_dir):
    """Write ``tide.csv`` (type, name, count, dAP50:95, dAP at ``pos_thr``: fractions; a last row
    ``AP`` with the base AP) and ``tide.png`` (bar chart, AP points) into ``out_dir`` (created);
    returns the two paths."""
    os.makedirs(out_dir, exist_ok=True)
    csv_path, png_path = (os.path.join(out_dir, n) for n in TIDE_FILES)
    pos = f"dAP{100 * result['pos_thr']:.0f}"
    with open(csv_path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["type", "name", "count", "dAP50:95", pos])
        for e in ERROR_TYPES:
            wr.writerow([e, ERROR_NAMES[e], result["counts"][e], f"{result['dAP'][e]:.6f}",
                         f"{result['dAP_pos'][e]:.6f}"])
        wr.writerow(["AP", "base AP (no fix)", "", f"{result['ap']:.6f}", f"{result['ap_pos']:.6f}"])
    _draw_chart(result, png_path)
    return [csv_path, png_path]


def tide_report(gt, dets, out_dir, log=print):
    """The analysis folder's TIDE report (:data:`mindyolox.evaluation.analysis.REPORTS`):
    :func:`tide_breakdown` of ``dets`` against ``gt``, ``tide.csv`` / ``tide.png`` in ``out_dir``
    and the :func:`tide_summary` line in the log. Returns the two paths."""
    result = tide_breakdown(gt, dets)
    log(tide_summary(result))
    return write_tide(result, out_dir)
