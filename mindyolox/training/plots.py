"""Training curves as a PNG, drawn with OpenCV (matplotlib is not a dependency).

:func:`plot_training_curves` reads the trainer's ``metrics.jsonl`` (records with
``"type": "train"`` carry ``step`` and loss terms, ``"type": "eval"`` carry ``epoch`` and
``AP50_95`` / ``AP50`` fractions) and draws two panels: the loss terms against the global
iteration, and COCO AP (percent) against the epoch (a dot at each evaluation). The AP axis is
always 0-100 %: an axis scaled to the data drew an AP that collapsed to 0.00-0.008 % as a
rising curve (issue 33). Axis labels are round numbers without exponents; legends sit above
the plots, off the data.
"""
import json
from pathlib import Path

import cv2
import numpy as np

__all__ = ["read_metrics", "nice_ticks", "plot_training_curves"]

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


FONT = cv2.FONT_HERSHEY_SIMPLEX


def nice_ticks(lo, hi, n=5, integer=False):
    """Tick values covering ``[lo, hi]`` on a 1-2-2.5-5 x 10^k step (about ``n`` of them) and
    their labels, written without exponents (``1500``, ``3.5``, ``0.25``); ``integer``: steps
    of at least 1 (iterations, epochs). Returns ``(ticks, labels)``; ``ticks[0] <= lo`` and
    ``ticks[-1] >= hi``."""
    lo, hi = float(lo), float(hi)
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10.0 ** np.floor(np.log10(raw))
    steps = [m * mag for m in (1, 2, 2.5, 5, 10)]
    if integer:
        steps = [max(1.0, c) for c in steps if c >= 1 or 1 / c == round(1 / c)]
        steps = [c for c in steps if c == round(c)]
    step = next(c for c in steps if c >= raw * (1 - 1e-9))
    first, last = np.floor(lo / step + 1e-9) * step, np.ceil(hi / step - 1e-9) * step
    ticks = first + step * np.arange(int(round((last - first) / step)) + 1)
    decimals = 0 if step >= 1 else int(-np.floor(np.log10(step) + 1e-9)) + (1 if round(step / mag, 6) == 2.5 else 0)
    return ticks, [f"{t:.{decimals}f}" for t in ticks]


def _text(img, text, org, scale=0.45, color=(0, 0, 0)):
    cv2.putText(img, text, org, FONT, scale, color, 1, cv2.LINE_AA)


def _panel(img, x0, y0, w, h, series, title, xlabel, markers=False, y_range=None):
    """Draw ``series`` ({name: (xs, ys)}) in the plot box (x0, y0, w, h): grid, axes with
    :func:`nice_ticks` labels, lines (``markers``: a dot at every point too), the title and a
    legend in one row above the box (never on the data). ``y_range``: ``(lo, hi)`` fixed y
    axis (values outside are clipped to the box) instead of one fitted to the data. Returns
    the legend entries' boxes ``[(x, y, w, h), ...]``."""
    cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), (0, 0, 0), 1)
    _text(img, title, (x0, y0 - 12), 0.6)
    _text(img, xlabel, (x0 + w // 2 - 30, y0 + h + 40))
    pts = [(np.asarray(xs, float), np.asarray(ys, float)) for xs, ys in series.values() if len(xs)]
    if not pts:
        _text(img, "no data", (x0 + w // 2 - 35, y0 + h // 2), 0.6, (120, 120, 120))
        return []
    xt, xl = nice_ticks(min(0.0, min(float(x.min()) for x, _ in pts)), max(float(x.max()) for x, _ in pts),
                        integer=True)
    finite = [y[np.isfinite(y)] for _, y in pts if np.isfinite(y).any()]
    if y_range is not None:
        yt, yl = nice_ticks(*y_range)
    else:
        yt, yl = nice_ticks(min([0.0] + [float(y.min()) for y in finite]),
                            max([1e-9] + [float(y.max()) for y in finite]))
    (xmin, xmax), (ymin, ymax) = (xt[0], xt[-1]), (yt[0], yt[-1])
    for t, label in zip(yt, yl):
        yy = int(round(y0 + h - (t - ymin) / (ymax - ymin) * h))
        cv2.line(img, (x0, yy), (x0 + w, yy), (225, 225, 225), 1)
        (tw, _), _ = cv2.getTextSize(label, FONT, 0.4, 1)
        _text(img, label, (x0 - 8 - tw, yy + 4), 0.4)
    for t, label in zip(xt, xl):
        xx = int(round(x0 + (t - xmin) / (xmax - xmin) * w))
        cv2.line(img, (xx, y0 + h), (xx, y0 + h + 4), (0, 0, 0), 1)
        (tw, _), _ = cv2.getTextSize(label, FONT, 0.4, 1)
        _text(img, label, (xx - tw // 2, y0 + h + 20), 0.4)
    legend, lx = [], x0 + w
    for name, (xs, ys) in reversed(list(series.items())):
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        ok = np.isfinite(ys)
        if not ok.any():
            continue
        px = np.round(x0 + (xs[ok] - xmin) / (xmax - xmin) * w).astype(np.int32)
        py = np.round(y0 + h - (np.clip(ys[ok], ymin, ymax) - ymin) / (ymax - ymin) * h).astype(np.int32)
        color = COLORS.get(name, (0, 0, 0))
        if len(px) > 1:
            cv2.polylines(img, [np.stack([px, py], 1)], False, color, 2, cv2.LINE_AA)
        if markers or len(px) == 1:
            for x, y in zip(px, py):
                cv2.circle(img, (int(x), int(y)), 4, color, -1, cv2.LINE_AA)
        (tw, th), _ = cv2.getTextSize(name, FONT, 0.45, 1)
        lx -= tw + 34
        cv2.line(img, (lx, y0 - 16), (lx + 24, y0 - 16), color, 2)
        _text(img, name, (lx + 28, y0 - 12), 0.45, color)
        legend.append((lx, y0 - 12 - th, tw + 28, th + 4))
    return legend


def plot_training_curves(metrics_path, out_path):
    """Write ``out_path`` (PNG, 1200x500): loss terms vs iteration and AP (%, axis 0-100) vs epoch.
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
    _panel(img, 690, 50, 480, 380, ap_series, "COCO AP (%), EMA weights", "epoch", markers=True, y_range=(0.0, 100.0))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_path), img):
        raise OSError(f"could not write {out_path}")
    return out_path
