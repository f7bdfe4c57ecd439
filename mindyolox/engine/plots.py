"""Training curves as a PNG, drawn with OpenCV (matplotlib is not a dependency).

:func:`plot_training_curves` reads the trainer's ``metrics.jsonl`` (records with
``"type": "train"`` carry ``step`` and loss terms, ``"type": "eval"`` carry ``epoch`` and
``AP50_95`` / ``AP50`` fractions) and draws two panels: the loss terms against the global
iteration, and COCO AP (percent) against the epoch.
"""
import json
from pathlib import Path

import cv2
import numpy as np

__all__ = ["read_metrics", "plot_training_curves"]

LOSS_TERMS = ("total", "iou", "obj", "cls", "l1")
COLORS = {"total": (40, 40, 40), "iou": (200, 80, 30), "obj": (40, 160, 40), "cls": (30, 60, 220),
          "l1": (160, 40, 160), "AP50_95": (200, 80, 30), "AP50": (30, 60, 220)}


def read_metrics(path):
    """List of dict records of a JSONL metrics file (lines that are not JSON are skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _nice(v):
    return f"{v:.3g}"


def _panel(img, x0, y0, w, h, series, title, xlabel):
    """Draw ``series`` ({name: (xs, ys)}) in the box (x0, y0, w, h) with axes and a legend."""
    cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), (0, 0, 0), 1)
    cv2.putText(img, title, (x0, y0 - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, xlabel, (x0 + w // 2 - 30, y0 + h + 38), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    pts = [(np.asarray(xs, float), np.asarray(ys, float)) for xs, ys in series.values() if len(xs)]
    if not pts:
        cv2.putText(img, "no data", (x0 + w // 2 - 35, y0 + h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (120, 120, 120), 1, cv2.LINE_AA)
        return
    xmin = min(float(x.min()) for x, _ in pts)
    xmax = max(float(x.max()) for x, _ in pts)
    ymin = min(0.0, min(float(np.nanmin(y)) for _, y in pts))
    ymax = max(float(np.nanmax(y)) for _, y in pts)
    if xmax <= xmin:
        xmax = xmin + 1
    if ymax <= ymin:
        ymax = ymin + 1
    for i in range(5):  # grid and tick labels
        fy = i / 4
        yy = int(y0 + h - fy * h)
        cv2.line(img, (x0, yy), (x0 + w, yy), (225, 225, 225), 1)
        cv2.putText(img, _nice(ymin + fy * (ymax - ymin)), (x0 - 55, yy + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
        xx = int(x0 + fy * w)
        cv2.putText(img, _nice(xmin + fy * (xmax - xmin)), (xx - 12, y0 + h + 18), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (name, (xs, ys)) in enumerate(series.items()):
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        ok = np.isfinite(ys)
        if not ok.any():
            continue
        px = (x0 + (xs[ok] - xmin) / (xmax - xmin) * w).astype(np.int32)
        py = (y0 + h - (ys[ok] - ymin) / (ymax - ymin) * h).astype(np.int32)
        color = COLORS.get(name, (0, 0, 0))
        if len(px) == 1:
            cv2.circle(img, (int(px[0]), int(py[0])), 4, color, -1)
        else:
            cv2.polylines(img, [np.stack([px, py], 1)], False, color, 2, cv2.LINE_AA)
        ly = y0 + 18 + 18 * k
        cv2.line(img, (x0 + w - 110, ly - 4), (x0 + w - 85, ly - 4), color, 2)
        cv2.putText(img, name, (x0 + w - 80, ly), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)


def plot_training_curves(metrics_path, out_path):
    """Write ``out_path`` (PNG, 1200x500): loss terms vs iteration and AP (%) vs epoch.
    Returns the output path."""
    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("type") == "train"]
    evals = [r for r in records if r.get("type") == "eval"]
    loss_series = {t: ([r["step"] for r in train if t in r], [r[t] for r in train if t in r]) for t in LOSS_TERMS}
    loss_series = {k: v for k, v in loss_series.items() if v[0] and not (k == "l1" and max(v[1]) == 0)}
    ap_series = {k: ([r["epoch"] for r in evals if k in r], [100.0 * r[k] for r in evals if k in r])
                 for k in ("AP50_95", "AP50")}
    img = np.full((500, 1200, 3), 255, np.uint8)
    _panel(img, 80, 50, 480, 380, loss_series, "training loss", "iteration")
    _panel(img, 690, 50, 480, 380, ap_series, "COCO AP (%), EMA weights", "epoch")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_path), img):
        raise OSError(f"could not write {out_path}")
    return out_path
