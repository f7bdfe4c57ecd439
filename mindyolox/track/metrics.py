"""How good a tracking result is: MOTA, IDF1, HOTA (+ MOTP, ID switches, FP, FN) of a
MOTChallenge text file against the ground truth.

- Files: MOTChallenge text, one box a line ``frame,id,x,y,w,h[,conf[,class[,visibility]]...]``
  (frames 1-based, px). Ground-truth rows whose 7th field (the "consider" flag) is 0 are left
  out, as the MOTChallenge benchmark does; nothing else is filtered (no distractor classes: the
  synthetic sequence has none). A bad line is one :class:`~mindyolox.errors.DataError` naming
  the file and line.
- CLEAR MOT and identity metrics: ``motmetrics`` (py-motmetrics 1.4.0, the ``track`` extra),
  IoU matching with a distance limit of 0.5 (``1 - IoU < 0.5``: the MOTChallenge setting):
  ``mota``, ``motp`` (mean ``1 - IoU`` of matches, motmetrics' convention: lower is better),
  ``idf1``, ``num_switches``, ``num_false_positives``, ``num_misses``.
- HOTA (Luiten et al., "HOTA: A Higher Order Metric for Evaluating Multi-Object Tracking",
  IJCV 2021): :func:`hota`, written here from the paper because the one package computing it,
  TrackEval 1.3.0, requires NumPy >= 2.3 on Python 3.11 and MindSpore 2.10 needs NumPy 1.x
  (py-motmetrics 1.4.0 has none). Per frame the ground-truth and predicted boxes are matched by
  the Hungarian algorithm maximising ``A_max(g, p) * IoU`` (``A_max`` the global alignment score
  of the two ids over the sequence, the paper's matching that favours consistent ids), pairs
  with IoU >= alpha counting as true positives; ``DetA = |TP| / (|TP| + |FN| + |FP|)``,
  ``AssA = mean over TP of |TPA| / (|TPA| + |FNA| + |FPA|)``, ``HOTA_alpha = sqrt(DetA *
  AssA)``, and HOTA the mean over alpha = 0.05, 0.10, ..., 0.95.

All metrics are returned as fractions (0..1); the command prints them in percent.
"""
import os

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import DataError, MindYOLOXError
from .bytetrack import box_iou

__all__ = ["read_mot", "evaluate_mot", "hota", "ALPHAS"]

ALPHAS = np.arange(1, 20) * 0.05


def read_mot(path, gt=False):
    """Rows of a MOTChallenge text file as float64 ``[N, 6]`` (frame, id, x, y, w, h); ``gt``:
    rows whose consider flag (7th field) is 0 are dropped. DataError naming the file and line
    for a missing file or a malformed line."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.replace(" ", "").split(",")
            try:
                values = [float(v) for v in parts]
            except ValueError:
                values = None
            if values is None or len(values) < 6:
                raise DataError(f"{path} line {n}: expected frame,id,x,y,w,h,... numbers, got '{line[:60]}'")
            if values[0] < 1 or values[4] < 0 or values[5] < 0:
                raise DataError(f"{path} line {n}: frame must be >= 1 and w, h >= 0, got '{line[:60]}'")
            if gt and len(values) >= 7 and values[6] == 0:
                continue
            rows.append(values[:6])
    return np.asarray(rows, np.float64).reshape(-1, 6)


def _frames(gt, pred):
    """``[(gt ids, gt xyxy, pred ids, pred xyxy)]`` per frame from 1 to the last of either."""
    last = int(max(gt[:, 0].max(initial=0), pred[:, 0].max(initial=0)))
    out = []
    for f in range(1, last + 1):
        g, p = gt[gt[:, 0] == f], pred[pred[:, 0] == f]
        out.append((g[:, 1].astype(np.int64), _xyxy(g[:, 2:6]), p[:, 1].astype(np.int64), _xyxy(p[:, 2:6])))
    return out


def _xyxy(xywh):
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)


def hota(frames):
    """HOTA, DetA, AssA, LocA (mean over :data:`ALPHAS`) of ``frames`` (:func:`_frames`' list),
    as the module doc defines them. Returns a dict of floats in 0..1."""
    gt_ids = sorted({int(i) for g, *_ in frames for i in g})
    pr_ids = sorted({int(i) for _, _, p, _ in frames for i in p})
    gi, pi = {v: k for k, v in enumerate(gt_ids)}, {v: k for k, v in enumerate(pr_ids)}
    ious = [box_iou(gb, pb) for _, gb, _, pb in frames]
    # global alignment: per id pair, the frames where they are matched in a soft sense
    potential = np.zeros((len(gt_ids), len(pr_ids)))
    g_count, p_count = np.zeros(len(gt_ids)), np.zeros(len(pr_ids))
    for (g, _, p, _), iou in zip(frames, ious):
        gx, px = [gi[int(i)] for i in g], [pi[int(i)] for i in p]
        g_count[gx] += 1
        p_count[px] += 1
        if len(g) and len(p):
            denom = iou.sum(0)[None, :] + iou.sum(1)[:, None] - iou
            soft = np.where(denom > 1e-12, iou / np.maximum(denom, 1e-12), 0.0)
            potential[np.ix_(gx, px)] += soft
    align = potential / np.maximum(g_count[:, None] + p_count[None, :] - potential, 1e-12)
    tp, fn, fp, loc = (np.zeros(len(ALPHAS)) for _ in range(4))
    pair_tp = np.zeros((len(ALPHAS), len(gt_ids), len(pr_ids)))
    for (g, _, p, _), iou in zip(frames, ious):
        if not len(g) or not len(p):
            fn += len(g)
            fp += len(p)
            continue
        gx, px = np.array([gi[int(i)] for i in g]), np.array([pi[int(i)] for i in p])
        rows, cols = linear_sum_assignment(-(align[np.ix_(gx, px)] * iou))
        for a, alpha in enumerate(ALPHAS):
            ok = iou[rows, cols] >= alpha - 1e-9
            r, c = rows[ok], cols[ok]
            tp[a] += len(r)
            fn[a] += len(g) - len(r)
            fp[a] += len(p) - len(r)
            loc[a] += iou[r, c].sum()
            np.add.at(pair_tp[a], (gx[r], px[c]), 1)
    det_a = tp / np.maximum(tp + fn + fp, 1)
    ass_a = np.zeros(len(ALPHAS))
    for a in range(len(ALPHAS)):
        m = pair_tp[a]
        per_pair = m / np.maximum(g_count[:, None] + p_count[None, :] - m, 1)   # |TPA| / (|TPA|+|FNA|+|FPA|)
        ass_a[a] = (m * per_pair).sum() / max(tp[a], 1)
    loc_a = np.where(tp > 0, loc / np.maximum(tp, 1), 0.0)
    h = np.sqrt(det_a * ass_a)
    return {"hota": float(h.mean()), "deta": float(det_a.mean()), "assa": float(ass_a.mean()),
            "loca": float(loc_a.mean())}


def evaluate_mot(gt_path, pred_path):
    """MOTA, IDF1, HOTA, ... of ``pred_path`` against ``gt_path`` (both MOTChallenge text;
    module doc). Returns a dict: ``mota``, ``motp``, ``idf1``, ``hota``, ``deta``, ``assa``,
    ``loca`` (fractions), ``id_switches``, ``false_positives``, ``misses`` (counts),
    ``gt_boxes``, ``pred_boxes``, ``frames``."""
    try:
        import motmetrics as mm
    except ImportError:
        raise MindYOLOXError("track-eval needs py-motmetrics: pip install motmetrics==1.4.0 "
                             "(the optional extra 'track')") from None
    gt, pred = read_mot(gt_path, gt=True), read_mot(pred_path)
    if not len(gt):
        raise DataError(f"{gt_path}: no ground-truth boxes")
    frames = _frames(gt, pred)
    acc = mm.MOTAccumulator(auto_id=False)
    for f, (g, gb, p, pb) in enumerate(frames, 1):
        dist = 1.0 - box_iou(gb, pb)
        dist[dist >= 0.5] = np.nan
        acc.update(g.tolist(), p.tolist(), dist, frameid=f)
    mh = mm.metrics.create()
    names = ["mota", "motp", "idf1", "num_switches", "num_false_positives", "num_misses"]
    s = mh.compute(acc, metrics=names, name="seq").iloc[0]
    out = {"mota": float(s["mota"]), "motp": float(s["motp"]), "idf1": float(s["idf1"]),
           "id_switches": int(s["num_switches"]), "false_positives": int(s["num_false_positives"]),
           "misses": int(s["num_misses"]), "gt_boxes": int(len(gt)), "pred_boxes": int(len(pred)),
           "frames": len(frames)}
    out.update(hota(frames))
    return out
