"""What a COCO evaluation's detections say beyond AP: precision / recall at the confidence a
user deploys at, a confusion matrix, PR and confidence curves, the worst images.

Input is format-neutral (no model, no loader): the ground truth as a COCO dict or a
pycocotools ``COCO`` index (``images``; ``annotations`` with ``bbox`` ``[x, y, w, h]`` pixels
and ``iscrowd``; ``categories``) and the detections as the COCO result list the evaluator
writes (``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]`` pixels, ``score``). Classes
are the categories sorted by id (the dataset's class order, ``dataset.class_ids``). VOC data
has no COCO index: the analysis is for COCO and YOLO-format data (``test.py`` says so and
skips it for VOC; convert VOC with ``mindyolox-tools convert``).

Definitions (``conf``: the operating confidence, default 0.25 -- ``test.py --analysis-conf``,
separate from the low ``--conf`` AP needs; IoU is the usual intersection over union of two
xyxy boxes, ``w = x2 - x1`` without the old ``+1``):

- **Confusion matrix** ``[N+1, N+1]`` counts, **rows = predicted class, columns = true class,
  index N = background** -- the YOLOv5 / ultralytics definition (``utils/metrics.py``
  ``ConfusionMatrix.process_batch``; ultralytics issue 1325 and its docs ``guides/yolo-performance-metrics``):
  per image, the detections with ``score >= conf`` and the non-crowd true boxes; every
  (true, detection) pair with ``IoU >= iou`` (default 0.45, ``--analysis-iou``), class-agnostic,
  sorted by IoU descending (ties: true box, then detection in file order), taken greedily so
  that each true box and each detection is used at most once. A matched pair adds 1 to
  ``[pred, true]``; an unmatched detection to ``[pred, background]``; an unmatched true box to
  ``[background, true]``. (Ultralytics de-duplicates with two ``np.unique`` passes, which can
  drop a pair a greedy one-to-one matching keeps; the greedy matching is what the issue
  states, "each true box matched to at most one prediction, highest IoU first".)
- **Crowd boxes** (decided, as COCOeval treats them): a crowd region is never a true box (not
  counted in instances, never "missed"); a detection left unmatched whose intersection over
  its own area with a crowd box is ``>= iou`` is ignored -- neither a false positive nor a
  background row entry. Confusion matrix: any crowd box (class-agnostic, like the matching);
  P/R: a crowd box of the detection's class (per class, like COCOeval).
- **Per class** (``per_class.csv``): ``images`` with at least one non-crowd true box of the
  class, ``instances`` (non-crowd true boxes), and at ``conf``: ``P = TP / (TP + FP)``,
  ``R = TP / instances``, ``F1 = 2PR / (P + R)``; a detection is a TP when matched to a true box
  of its class at ``IoU >= 0.5``, COCO-style: per image and class, detections in descending
  score order each take the unmatched true box of highest IoU (COCOeval ``evaluateImg`` with
  one IoU threshold). ``AP50`` / ``AP50:95``: pycocotools' per-class numbers from the
  evaluator (``per_class_AP50`` / ``per_class_AP``). A class with no detection at ``conf`` has
  ``P = 0``; no true box: ``R`` and ``F1`` empty (NaN).
- **Curves** (IoU 0.5, the same TP flags; greedy by score, so the flags of the detections
  above any threshold do not depend on those below it): per class ``P(c)``, ``R(c)``,
  ``F1(c)`` at 1001 confidences ``c`` in ``[0, 1]`` (``P = 1`` above the highest score, the
  ultralytics convention), their mean over the classes with true boxes (no smoothing); the
  best mean F1 is taken at the highest confidence that reaches it; the PR curve per class
  is the precision envelope (COCO's interpolation) on 101 recall points, and their mean. The
  confidence maximising mean F1 is the one to deploy at (printed). Below the evaluation's own
  ``--conf`` there are no detections: the curves there are those of ``--conf``.
- **Worst images**: at ``conf``, false positives (detections not TP and not ignored) plus
  missed true boxes per image, the ``worst`` (default 6) largest with at least one error,
  ties by file name; drawn predictions | ground truth (:mod:`.analysis_plots`).

Outputs (:func:`write_analysis`): ``per_class.csv``, ``confusion_matrix.csv`` (counts),
``confusion_matrix_normalized.csv`` (each row divided by its sum), ``curves.csv``, the PNGs of
:mod:`.analysis_plots`, and whatever the writers in :data:`REPORTS` add.
"""
import csv
import os

import numpy as np

from .tide import TIDE_FILES, tide_report

__all__ = ["REPORTS", "GroundTruth", "box_iou", "confusion_matrix", "match_coco", "per_class_stats",
           "conf_curves", "pr_curves", "worst_images", "analyse", "format_analysis_table", "write_analysis"]

# Other reports of the analysis folder: callables ``report(gt_coco_dict, detections, out_dir,
# log)`` returning the paths they wrote, called by :func:`write_analysis` after its own files.
# Built in: the TIDE error breakdown (tide.csv / tide.png, :mod:`.tide`). Append yours, or pass
# ``reports=`` to :func:`write_analysis`.
REPORTS = [tide_report]

CONF_POINTS = np.linspace(0.0, 1.0, 1001)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(a, b):
    """IoU ``[len(a), len(b)]`` of xyxy boxes ``a [M, 4]``, ``b [K, 4]`` (float64)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _ioa(dets, crowd):
    """Intersection over the detection's area ``[len(dets), len(crowd)]`` (COCO's crowd IoU)."""
    lt = np.maximum(dets[:, None, :2], crowd[None, :, :2])
    rb = np.minimum(dets[:, None, 2:], crowd[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.prod(np.clip(dets[:, 2:] - dets[:, :2], 0, None), axis=1)[:, None]
    return np.where(area > 0, inter / np.where(area > 0, area, 1.0), 0.0)


def _xyxy(xywh):
    b = np.asarray(xywh, np.float64).reshape(-1, 4).copy()
    b[:, 2:] += b[:, :2]
    return b


class GroundTruth:
    """Per image arrays of a COCO ground truth and of a COCO result list.

    ``gt``: COCO dict or pycocotools ``COCO`` (its ``.dataset``); ``dets``: result dicts.
    Attributes: ``names`` (class names, categories sorted by id), ``cat_ids``, ``image_ids``
    (file order), ``files`` {image id: file_name}, ``gt[img] = (boxes xyxy [G, 4] float64,
    cls [G] int64, crowd [G] bool)``, ``det[img] = (boxes xyxy [D, 4], cls [D], score [D])``
    sorted by descending score (stable), and ``coco`` (the dict)."""

    def __init__(self, gt, dets):
        data = getattr(gt, "dataset", gt)
        self.coco = data
        cats = sorted(data.get("categories", []), key=lambda c: c["id"])
        self.cat_ids = [c["id"] for c in cats]
        self.names = [str(c.get("name", c["id"])) for c in cats]
        index = {c: k for k, c in enumerate(self.cat_ids)}
        self.image_ids = [im["id"] for im in data.get("images", [])]
        self.files = {im["id"]: str(im.get("file_name", im["id"])) for im in data.get("images", [])}
        rows = {i: ([], [], []) for i in self.image_ids}
        for a in data.get("annotations", []):
            if a["image_id"] in rows and a["category_id"] in index:
                r = rows[a["image_id"]]
                r[0].append(a["bbox"])
                r[1].append(index[a["category_id"]])
                r[2].append(bool(a.get("iscrowd", 0)))
        self.gt = {i: (_xyxy(b), np.asarray(c, np.int64), np.asarray(k, bool)) for i, (b, c, k) in rows.items()}
        drows = {i: ([], [], []) for i in self.image_ids}
        for d in dets:
            if d["image_id"] in drows and d["category_id"] in index:
                r = drows[d["image_id"]]
                r[0].append(d["bbox"])
                r[1].append(index[d["category_id"]])
                r[2].append(float(d["score"]))
        self.det = {}
        for i, (b, c, s) in drows.items():
            s = np.asarray(s, np.float64)
            order = np.argsort(-s, kind="stable")
            self.det[i] = (_xyxy(b)[order], np.asarray(c, np.int64)[order], s[order])

    @property
    def num_classes(self):
        return len(self.names)


def confusion_matrix(g, conf=0.25, iou=0.45):
    """``[N+1, N+1]`` int64 counts, rows predicted, columns true, N = background (module doc)."""
    n = g.num_classes
    m = np.zeros((n + 1, n + 1), np.int64)
    for img in g.image_ids:
        gb, gc, crowd = g.gt[img]
        db, dc, ds = g.det[img]
        keep = ds >= conf
        db, dc = db[keep], dc[keep]
        tb, tc, cb = gb[~crowd], gc[~crowd], gb[crowd]
        ious = box_iou(tb, db)
        ti, di = np.nonzero(ious >= iou)
        order = np.lexsort((di, ti, -ious[ti, di]))
        used_t, used_d = np.zeros(len(tb), bool), np.zeros(len(db), bool)
        for t, d in zip(ti[order], di[order]):
            if not used_t[t] and not used_d[d]:
                used_t[t] = used_d[d] = True
                m[dc[d], tc[t]] += 1
        free = ~used_d
        if len(cb) and free.any():
            free &= ~(_ioa(db, cb) >= iou).any(axis=1)
        np.add.at(m, (dc[free], n), 1)
        np.add.at(m, (n, tc[~used_t]), 1)
    return m


def match_coco(g, iou=0.5):
    """COCO-style TP flags at one IoU: ``(scores [D], classes [D], tp [D] bool, ignored [D]
    bool, image ids [D])`` over every detection, and ``instances [N]`` (non-crowd true boxes
    per class). Per image and class, detections in score order each take the unmatched
    non-crowd true box of highest IoU ``>= iou``; an unmatched one overlapping a crowd box of
    its class (intersection over its area ``>= iou``) is ignored."""
    n = g.num_classes
    out_s, out_c, out_tp, out_ig, out_img = [], [], [], [], []
    instances = np.zeros(n, np.int64)
    for img in g.image_ids:
        gb, gc, crowd = g.gt[img]
        db, dc, ds = g.det[img]
        np.add.at(instances, gc[~crowd], 1)
        tp, ig = np.zeros(len(db), bool), np.zeros(len(db), bool)
        for c in np.unique(dc):
            dk = np.flatnonzero(dc == c)            # already in descending score order
            tk = np.flatnonzero((gc == c) & ~crowd)
            ck = np.flatnonzero((gc == c) & crowd)
            ious = box_iou(db[dk], gb[tk])
            used = np.zeros(len(tk), bool)
            for j in range(len(dk)):
                cand = np.where(used, -1.0, ious[j])
                if len(tk) and cand.max() >= iou:
                    t = int(np.argmax(cand))
                    used[t] = tp[dk[j]] = True
                elif len(ck) and (_ioa(db[dk[j]:dk[j] + 1], gb[ck]) >= iou).any():
                    ig[dk[j]] = True
        out_s.append(ds)
        out_c.append(dc)
        out_tp.append(tp)
        out_ig.append(ig)
        out_img.append(np.full(len(db), img, dtype=object))
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
    return (cat(out_s, np.float64), cat(out_c, np.int64), cat(out_tp, bool), cat(out_ig, bool),
            cat(out_img, object), instances)


def _counts_at(scores, classes, tp, ignored, n, thresholds):
    """``(TP, FP)`` ``[len(thresholds), n]`` of the detections with ``score >= threshold``."""
    tps, fps = np.zeros((len(thresholds), n)), np.zeros((len(thresholds), n))
    for c in range(n):
        k = (classes == c) & ~ignored
        s = np.sort(scores[k])
        s_tp = np.sort(scores[k & tp])
        tps[:, c] = len(s_tp) - np.searchsorted(s_tp, thresholds, side="left")
        fps[:, c] = (len(s) - np.searchsorted(s, thresholds, side="left")) - tps[:, c]
    return tps, fps


def _prf(tp, fp, instances, empty_p):
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), empty_p)
        r = np.where(instances > 0, tp / np.maximum(instances, 1), np.nan)
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
        f1 = np.where(instances > 0, f1, np.nan)
    return p, r, f1


def per_class_stats(g, match, conf=0.25):
    """Dict of arrays ``[N]``: ``images``, ``instances``, ``tp``, ``fp``, ``P``, ``R``, ``F1`` at ``conf``."""
    scores, classes, tp, ignored, _img, instances = match
    tps, fps = _counts_at(scores, classes, tp, ignored, g.num_classes, np.array([conf]))
    p, r, f1 = _prf(tps[0], fps[0], instances, 0.0)
    images = np.zeros(g.num_classes, np.int64)
    for img in g.image_ids:
        gb, gc, crowd = g.gt[img]
        images[np.unique(gc[~crowd])] += 1
    return {"images": images, "instances": instances, "tp": tps[0].astype(np.int64),
            "fp": fps[0].astype(np.int64), "P": p, "R": r, "F1": f1}


def conf_curves(g, match):
    """``{"conf" [1001], "P", "R", "F1" [1001, N], "mean_P", "mean_R", "mean_F1" [1001]
    (over classes with true boxes), "best_conf", "best_f1"}`` (module doc)."""
    scores, classes, tp, ignored, _img, instances = match
    tps, fps = _counts_at(scores, classes, tp, ignored, g.num_classes, CONF_POINTS)
    p, r, f1 = _prf(tps, fps, instances[None, :], 1.0)
    has = instances > 0
    mean = {k: (v[:, has].mean(axis=1) if has.any() else np.zeros(len(CONF_POINTS))) for k, v in
            (("P", p), ("R", r), ("F1", f1))}
    mf1 = mean["F1"]   # the highest confidence reaching the best mean F1 (ties: fewer detections, same F1)
    best = int(np.flatnonzero(mf1 >= mf1.max() - 1e-12)[-1])
    return {"conf": CONF_POINTS, "P": p, "R": r, "F1": f1, "mean_P": mean["P"], "mean_R": mean["R"],
            "mean_F1": mean["F1"], "best_conf": float(CONF_POINTS[best]), "best_f1": float(mean["F1"][best])}


def pr_curves(g, match):
    """``{"recall" [101], "precision" [101, N] (NaN for a class without true boxes), "mean"
    [101], "ap50" [N] (mean of the envelope, COCO's 101-point AP at IoU 0.5 from these flags)}``."""
    scores, classes, tp, ignored, _img, instances = match
    prec = np.full((len(RECALL_POINTS), g.num_classes), np.nan)
    for c in range(g.num_classes):
        if instances[c] == 0:
            continue
        k = (classes == c) & ~ignored
        order = np.argsort(-scores[k], kind="mergesort")
        t = tp[k][order]
        ctp, cfp = np.cumsum(t), np.cumsum(~t)
        rec = ctp / instances[c]
        pre = ctp / np.maximum(ctp + cfp, 1)
        env = np.maximum.accumulate(pre[::-1])[::-1] if len(pre) else pre
        idx = np.searchsorted(rec, RECALL_POINTS, side="left")   # first point reaching each recall
        ok = idx < len(env)
        prec[:, c] = 0.0
        prec[ok, c] = env[idx[ok]]
    has = instances > 0
    mean = np.nanmean(prec[:, has], axis=1) if has.any() else np.zeros(len(RECALL_POINTS))
    ap50 = np.full(g.num_classes, np.nan)
    ap50[has] = prec[:, has].mean(axis=0)
    return {"recall": RECALL_POINTS, "precision": prec, "mean": mean, "ap50": ap50}


def worst_images(g, match, conf=0.25, count=6):
    """``[(image id, false positives, missed)]``: the ``count`` images with the most errors
    (FP + missed, at least 1) at ``conf``, most first, ties by file name."""
    scores, classes, tp, ignored, imgs, _inst = match
    fp, hit = {i: 0 for i in g.image_ids}, {i: 0 for i in g.image_ids}
    keep = scores >= conf
    for img, t, ig in zip(imgs[keep], tp[keep], ignored[keep]):
        hit[img] += int(t)
        fp[img] += int(not t and not ig)
    rows = [(i, fp[i], int((~g.gt[i][2]).sum()) - hit[i]) for i in g.image_ids]
    rows = [r for r in rows if r[1] + r[2] > 0]
    rows.sort(key=lambda r: (-(r[1] + r[2]), g.files[r[0]]))
    return rows[:max(0, int(count))]


def analyse(gt, dets, conf=0.25, iou=0.45, per_class_ap=None, per_class_ap50=None, worst=6):
    """Every number of the analysis folder (module doc) as a dict: ``names``, ``conf``,
    ``iou``, ``matrix`` ``[N+1, N+1]``, ``per_class`` (:func:`per_class_stats` plus ``AP50``,
    ``AP50_95`` ``[N]`` from ``per_class_ap50`` / ``per_class_ap`` -- {name: fraction} -- or
    NaN), ``curves`` (:func:`conf_curves`), ``pr`` (:func:`pr_curves`), ``worst``
    (:func:`worst_images`) and ``ground_truth`` (:class:`GroundTruth`)."""
    if not 0.0 <= float(conf) <= 1.0 or not 0.0 < float(iou) <= 1.0:
        from ..errors import ConfigError
        raise ConfigError(f"analysis confidence must be in [0, 1] and IoU in (0, 1], got {conf} / {iou}")
    g = GroundTruth(gt, dets)
    match = match_coco(g, 0.5)
    pc = per_class_stats(g, match, conf)
    pc["AP50"] = np.array([(per_class_ap50 or {}).get(n, np.nan) for n in g.names], np.float64)
    pc["AP50_95"] = np.array([(per_class_ap or {}).get(n, np.nan) for n in g.names], np.float64)
    return {"names": g.names, "conf": float(conf), "iou": float(iou), "matrix": confusion_matrix(g, conf, iou),
            "per_class": pc, "curves": conf_curves(g, match), "pr": pr_curves(g, match),
            "worst": worst_images(g, match, conf, worst), "ground_truth": g}


def _f(v, digits=3):
    return "" if v is None or not np.isfinite(v) else f"{float(v):.{digits}f}"


def format_analysis_table(a):
    """The per-class table of the log (percent like the AP tables; ``all``: sums and means over
    the classes with true boxes), one string."""
    pc, names = a["per_class"], a["names"]
    has = pc["instances"] > 0
    head = ("class", "images", "instances", "P", "R", "F1", "AP50", "AP50:95")
    rows = []
    mean = (lambda v: float(np.nanmean(v[has])) if has.any() and np.isfinite(v[has]).any() else np.nan)
    pct = (lambda v: "" if not np.isfinite(v) else f"{100 * v:.1f}")
    n_img = len(a["ground_truth"].image_ids)
    rows.append(("all", str(n_img), str(int(pc["instances"].sum())),
                 *(pct(mean(pc[k])) for k in ("P", "R", "F1", "AP50", "AP50_95"))))
    for k, n in enumerate(names):
        if pc["instances"][k] == 0 and pc["tp"][k] + pc["fp"][k] == 0:
            continue
        rows.append((n, str(pc["images"][k]), str(pc["instances"][k]),
                     *(pct(pc[key][k]) for key in ("P", "R", "F1", "AP50", "AP50_95"))))
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = (lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join([fmt(head)] + [fmt(r) for r in rows])


def _write_csv(path, header, rows):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def analysis_files(out_dir, with_reports=False):
    """The paths :func:`write_analysis` writes itself (the worst images' folder excluded); with
    ``with_reports`` also those of the built-in report (TIDE's), for the output-safety check."""
    from .analysis_plots import PLOTS
    names = ["per_class.csv", "confusion_matrix.csv", "confusion_matrix_normalized.csv", "curves.csv", *PLOTS]
    names += list(TIDE_FILES) if with_reports else []
    return [os.path.join(str(out_dir), n) for n in names]


def write_analysis(a, out_dir, image_paths=None, reports=None, log=print, dets=None):
    """Write the analysis ``a`` (:func:`analyse`) into ``out_dir`` (created): the CSVs, the
    PNGs, ``worst_images/NN_<file>.jpg`` (when ``image_paths`` {image id: path} is given), then
    each report of ``reports`` (default :data:`REPORTS`) as ``report(gt_dict, dets, out_dir, log)``
    (``dets``: the COCO result list ``a`` was made from). ``log``: one line per file group
    and the "best F1" line. Returns the paths written."""
    from .analysis_plots import draw_worst_images, plot_all
    os.makedirs(out_dir, exist_ok=True)
    names, pc, m = a["names"], a["per_class"], a["matrix"]
    written = []
    p = os.path.join(out_dir, "per_class.csv")
    _write_csv(p, ["class", "images", "instances", "P", "R", "F1", "AP50", "AP50_95"],
               [[n, int(pc["images"][k]), int(pc["instances"][k]), _f(pc["P"][k], 4), _f(pc["R"][k], 4),
                 _f(pc["F1"][k], 4), _f(pc["AP50"][k], 4), _f(pc["AP50_95"][k], 4)] for k, n in enumerate(names)])
    written.append(p)
    labels = list(names) + ["background"]
    p = os.path.join(out_dir, "confusion_matrix.csv")
    _write_csv(p, ["predicted \\ true"] + labels, [[labels[i]] + [int(v) for v in m[i]] for i in range(len(labels))])
    written.append(p)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    p = os.path.join(out_dir, "confusion_matrix_normalized.csv")
    _write_csv(p, ["predicted \\ true"] + labels, [[labels[i]] + [f"{v:.4f}" for v in norm[i]] for i in range(len(labels))])
    written.append(p)
    cv_ = a["curves"]
    p = os.path.join(out_dir, "curves.csv")
    _write_csv(p, ["conf", "mean_P", "mean_R", "mean_F1"],
               [[f"{c:.3f}", _f(x, 4), _f(y, 4), _f(z, 4)] for c, x, y, z in
                zip(cv_["conf"], cv_["mean_P"], cv_["mean_R"], cv_["mean_F1"])])
    written.append(p)
    written += plot_all(a, out_dir)
    if image_paths is not None and a["worst"]:
        written += draw_worst_images(a, image_paths, os.path.join(out_dir, "worst_images"), log=log)
    for report in (REPORTS if reports is None else reports):
        written += list(report(a["ground_truth"].coco, dets if dets is not None else [], out_dir, log) or [])
    log(f"best F1 {cv_['best_f1']:.2f} at conf {cv_['best_conf']:.2f}: deploy at --conf {cv_['best_conf']:.2f}")
    log(f"analysis (conf {a['conf']:g}, IoU {a['iou']:g}): {len(written)} files written to {out_dir} "
        f"({', '.join(sorted({os.path.relpath(w, out_dir).split(os.sep)[0] for w in written}))})")
    return written


def run_analysis(dataset, dets, out_dir, per_class_ap=None, per_class_ap50=None, conf=0.25, iou=0.45, worst=6,
                 log=print):
    """The analysis folder of one evaluation: ``dataset`` (its ``coco`` index, ``image_id`` and
    ``paths``), ``dets`` the COCO result list, the evaluator's ``per_class_AP`` /
    ``per_class_AP50``; prints the per-class table, writes ``out_dir``
    (:func:`write_analysis`). A dataset without a COCO index (VOC) gets one line and nothing
    written. Returns the paths written."""
    coco = getattr(dataset, "coco", None)
    if coco is None:
        log(f"analysis: skipped for {dataset.name} (COCO and YOLO-format data only; convert VOC to COCO "
            f"with `mindyolox-tools convert`)")
        return []
    a = analyse(coco, dets, conf, iou, per_class_ap, per_class_ap50, worst)
    log(f"per class at conf {a['conf']:g} (P, R, F1 at IoU 0.5; AP from COCOeval; %):")
    log(format_analysis_table(a))
    paths = {dataset.image_id(i): dataset.paths[i] for i in range(len(dataset))}
    return write_analysis(a, out_dir, paths, log=log, dets=dets)
