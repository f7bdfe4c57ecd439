"""The PNGs of the analysis folder (:mod:`.analysis`), drawn with OpenCV (matplotlib is not a
dependency), and the worst images drawn predictions | ground truth.

- ``pr_curve.png``: precision (envelope) against recall at IoU 0.5, one thin grey line per
  class with true boxes, their mean in bold (legend: the mean of the 101-point AP50 of these
  curves);
- ``f1_curve.png``, ``p_curve.png``, ``r_curve.png``: F1 / precision / recall against the
  confidence, per class (thin) and the mean (bold); the F1 figure marks the confidence of the
  best mean F1;
- ``confusion_matrix.png``: rows predicted, columns true, last = background; colour = the
  row-normalised value (share of that row's predictions), number = count. Classes with no
  true box and no prediction are left out of the picture (the CSV holds every class), so 80
  COCO classes on a small set stay readable; cells shrink to at least 9 px and the counts are
  written when a cell is 20 px or more.
"""
import os

import cv2
import numpy as np

__all__ = ["PLOTS", "plot_all", "plot_curves", "plot_confusion", "draw_worst_images"]

PLOTS = ("pr_curve.png", "f1_curve.png", "p_curve.png", "r_curve.png", "confusion_matrix.png")
FONT = cv2.FONT_HERSHEY_SIMPLEX
MEAN_COLOR = (200, 90, 20)   # BGR
THIN_COLOR = (190, 190, 190)


def _text(img, text, org, scale=0.45, color=(0, 0, 0)):
    cv2.putText(img, str(text), (int(org[0]), int(org[1])), FONT, scale, color, 1, cv2.LINE_AA)


def _write(path, img):
    if not cv2.imwrite(str(path), img):
        from ..errors import MindYOLOXError
        raise MindYOLOXError(f"cannot write {path} (unwritable folder?)")
    return str(path)


def plot_curves(path, xs, per_class, mean, title, xlabel, ylabel, legend, mark_x=None):
    """One 0..1 x 0..1 line chart (``per_class`` ``[len(xs), N]`` thin, NaN columns skipped;
    ``mean`` ``[len(xs)]`` bold, labelled ``legend``; ``mark_x``: a dashed vertical line).
    640x520 PNG at ``path``."""
    img = np.full((520, 640, 3), 255, np.uint8)
    x0, y0, w, h = 70, 60, 540, 390
    px = (lambda x: np.round(x0 + np.asarray(x, float) * w).astype(np.int32))
    py = (lambda y: np.round(y0 + h - np.clip(np.asarray(y, float), 0, 1) * h).astype(np.int32))
    for t in np.linspace(0, 1, 6):
        cv2.line(img, (x0, int(py(t))), (x0 + w, int(py(t))), (230, 230, 230), 1)
        cv2.line(img, (int(px(t)), y0), (int(px(t)), y0 + h), (230, 230, 230), 1)
        _text(img, f"{t:.1f}", (x0 - 32, int(py(t)) + 4), 0.4)
        _text(img, f"{t:.1f}", (int(px(t)) - 10, y0 + h + 18), 0.4)
    cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), (0, 0, 0), 1)
    per_class = np.asarray(per_class, float)
    for c in range(per_class.shape[1] if per_class.ndim == 2 else 0):
        y = per_class[:, c]
        if np.isfinite(y).all():
            cv2.polylines(img, [np.stack([px(xs), py(y)], 1)], False, THIN_COLOR, 1, cv2.LINE_AA)
    if mark_x is not None:
        for yy in range(y0, y0 + h, 10):
            cv2.line(img, (int(px(mark_x)), yy), (int(px(mark_x)), yy + 5), (60, 60, 220), 1)
    mean = np.asarray(mean, float)
    if len(mean) and np.isfinite(mean).all():
        cv2.polylines(img, [np.stack([px(xs), py(mean)], 1)], False, MEAN_COLOR, 3, cv2.LINE_AA)
    _text(img, title, (x0, 25), 0.6)
    cv2.line(img, (x0, 42), (x0 + 24, 42), MEAN_COLOR, 3)
    _text(img, legend, (x0 + 30, 47), 0.45, MEAN_COLOR)
    cv2.line(img, (x0 + w - 150, 42), (x0 + w - 126, 42), THIN_COLOR, 1)
    _text(img, "each class", (x0 + w - 120, 47), 0.45, (120, 120, 120))
    _text(img, xlabel, (x0 + w // 2 - 30, y0 + h + 45), 0.5)
    label = np.full((24, 200, 3), 255, np.uint8)
    _text(label, ylabel, (5, 17), 0.5)
    label = np.rot90(label)
    img[y0 + h // 2 - 100:y0 + h // 2 + 100, 5:29] = label
    return _write(path, img)


def plot_confusion(path, matrix, names):
    """``confusion_matrix.png`` (module doc); ``matrix`` ``[N+1, N+1]`` counts."""
    m = np.asarray(matrix, np.int64)
    n = len(names)
    used = (m[:n].sum(axis=1) + m[:, :n].sum(axis=0)) > 0
    keep = np.append(np.flatnonzero(used), n)
    sub = m[np.ix_(keep, keep)]
    labels = [names[k] if k < n else "background" for k in keep]
    norm = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1)
    k = len(keep)
    cell = int(np.clip(900 // max(k, 1), 9, 40))
    fs = 0.3 if cell < 14 else 0.4
    lab_w = max(cv2.getTextSize(s, FONT, fs, 1)[0][0] for s in labels) + 10
    top, left = lab_w + 60, lab_w + 40
    img = np.full((top + k * cell + 20, left + k * cell + 20, 3), 255, np.uint8)
    for i in range(k):
        for j in range(k):
            v = float(norm[i, j])
            shade = int(round(255 * (1 - v)))
            x, y = left + j * cell, top + i * cell
            cv2.rectangle(img, (x, y), (x + cell - 1, y + cell - 1), (255, shade, shade) if v > 0 else (250, 250, 250), -1)
            if cell >= 20 and sub[i, j]:
                s = str(int(sub[i, j]))
                (tw, th), _ = cv2.getTextSize(s, FONT, fs, 1)
                _text(img, s, (x + (cell - tw) // 2, y + (cell + th) // 2), fs, (255, 255, 255) if v > 0.5 else (0, 0, 0))
    cv2.rectangle(img, (left, top), (left + k * cell, top + k * cell), (0, 0, 0), 1)
    for i, s in enumerate(labels):
        (tw, th), _ = cv2.getTextSize(s, FONT, fs, 1)
        _text(img, s, (left - tw - 6, top + i * cell + (cell + th) // 2), fs)
        strip = np.full((cell, lab_w, 3), 255, np.uint8)
        _text(strip, s, (lab_w - tw - 4, (cell + th) // 2), fs)
        img[top - lab_w - 4:top - 4, left + i * cell:left + (i + 1) * cell] = np.rot90(strip)
    _text(img, "confusion matrix: rows predicted, columns true (colour: row share, number: count)", (10, 20), 0.45)
    _text(img, f"{k - 1} of {n} classes shown (those with boxes); all in confusion_matrix.csv", (10, 40), 0.4,
          (90, 90, 90))
    return _write(path, img)


def plot_all(a, out_dir):
    """The PNGs of :data:`PLOTS` for analysis ``a``; returns their paths."""
    cv_, pr = a["curves"], a["pr"]
    has = a["per_class"]["instances"] > 0
    ap = float(np.mean(pr["ap50"][has])) if has.any() else 0.0
    out = [plot_curves(os.path.join(out_dir, "pr_curve.png"), pr["recall"], pr["precision"][:, has], pr["mean"],
                       "precision-recall (IoU 0.5)", "recall", "precision", f"all classes, AP50 {ap:.3f}")]
    best = f"all classes, best F1 {cv_['best_f1']:.2f} at conf {cv_['best_conf']:.2f}"
    for name, key, label, mark in (("f1_curve.png", "F1", best, cv_["best_conf"]),
                                   ("p_curve.png", "P", "all classes (mean)", None),
                                   ("r_curve.png", "R", "all classes (mean)", None)):
        out.append(plot_curves(os.path.join(out_dir, name), cv_["conf"], cv_[key][:, has], cv_["mean_" + key],
                               f"{ {'F1': 'F1', 'P': 'precision', 'R': 'recall'}[key]} against confidence",
                               "confidence", key, label, mark))
    out.append(plot_confusion(os.path.join(out_dir, "confusion_matrix.png"), a["matrix"], a["names"]))
    return out


def _fit(img, width):
    if img.shape[1] == width:
        return img
    s = width / img.shape[1]
    return cv2.resize(img, (width, max(1, int(round(img.shape[0] * s)))), interpolation=cv2.INTER_AREA)


def draw_worst_images(a, image_paths, folder, log=print, width=640):
    """``folder/NN_<stem>.jpg`` for each of ``a["worst"]``: predictions at the operating
    confidence (left) | ground truth (right; crowd regions in grey), each side ``width`` px
    wide, a caption with the counts. ``image_paths``: {image id: path}; an image that cannot
    be read is left out with one line. An output that would replace its input image is
    refused (:func:`mindyolox.runtime.outputs.check_outputs`). Returns the paths written."""
    from ..runtime.outputs import check_outputs
    from ..utils.visualize import draw_boxes
    g, conf, names = a["ground_truth"], a["conf"], a["names"]
    os.makedirs(folder, exist_ok=True)
    written = []
    for rank, (img_id, fp, missed) in enumerate(a["worst"], 1):
        src = image_paths.get(img_id)
        img = cv2.imread(str(src)) if src else None
        if img is None:
            log(f"analysis: worst image {src or img_id} cannot be read; left out")
            continue
        stem = os.path.splitext(os.path.basename(g.files[img_id]))[0]
        out = os.path.join(folder, f"{rank:02d}_{stem}.jpg")
        check_outputs([(out, "the worst images (analysis)")], [src])
        db, dc, ds = g.det[img_id]
        k = ds >= conf
        left = draw_boxes(img, db[k], dc[k], ds[k], names)
        gb, gc, crowd = g.gt[img_id]
        right = draw_boxes(img, gb[~crowd], gc[~crowd], None, names)
        for b in gb[crowd]:
            cv2.rectangle(right, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (128, 128, 128), 2)
        left, right = _fit(left, width), _fit(right, width)
        bar = np.full((28, 2 * width + 8, 3), 255, np.uint8)
        _text(bar, f"predictions (conf >= {conf:g}): {fp} false positive(s)", (6, 19), 0.5)
        _text(bar, f"ground truth: {missed} missed", (width + 14, 19), 0.5)
        body = np.full((left.shape[0], 2 * width + 8, 3), 255, np.uint8)
        body[:, :width], body[:, width + 8:] = left, right
        written.append(_write(out, np.concatenate([bar, body])))
    return written
