"""A dataset's statistics (:func:`dataset_stats`), as text (:func:`report_text`), one PNG
(:func:`draw_report`, drawn with OpenCV: matplotlib is not a dependency) and a JSON
(:func:`write_report`): ``mindyolox-tools dataset-report`` and, when training starts, the
run folder's ``dataset_report.json`` / ``.png`` of the training set (:func:`dataset_as_split`).

What is counted (decisions):

- boxes: the non-crowd annotations (crowd regions are counted apart; training ignores them);
- box sizes: COCO's small / medium / large by the **box** area ``w * h`` in pixels of the
  original image (< 32², < 96², larger). COCO's evaluator buckets by the annotation's
  ``area`` (the mask area for COCO itself); YOLO and VOC carry no mask, so the box area is
  the one measure every format has. The scatter shows ``w / image width`` against
  ``h / image height`` (at most :data:`MAX_SCATTER` boxes drawn, a seeded sample);
- labels outside the image: boxes reaching past an image side (``x < 0``, ``y < 0``,
  ``x + w > width``, ``y + h > height``, by more than :data:`OUTSIDE_TOLERANCE` px: float
  noise of normalised coordinates is not counted) or of zero size; training clips or drops them;
- duplicate images: files with identical bytes (SHA-1), grouped; files are first grouped by
  size, then by a hash of their first and last 4 KiB, and only files still together are read
  in full -- so a 118k-image set is not read through for the usual no-duplicate case;
- images missing on disk are counted (and not hashed).
"""
import hashlib
import json
import os
from collections import Counter, defaultdict

import cv2
import numpy as np

from ..utils.files import file_digest

__all__ = ["dataset_stats", "report_text", "draw_report", "write_report", "dataset_as_split", "duplicate_groups",
           "MAX_SCATTER", "SMALL", "MEDIUM"]

SMALL, MEDIUM = 32 ** 2, 96 ** 2     # COCO's area limits, px²
MAX_SCATTER = 20000
OUTSIDE_TOLERANCE = 1e-3   # px: a box edge on the border read back from normalised floats is not "outside"
EXAMPLES = 10
_CHUNK = 4096


def _partial_hash(path, size):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        h.update(f.read(_CHUNK))
        if size > 2 * _CHUNK:
            f.seek(size - _CHUNK)
        h.update(f.read())
    return h.hexdigest()


def duplicate_groups(paths):
    """Groups (lists, each of >= 2 paths in input order) of files with identical content;
    ``paths`` must exist. Size first, then the first/last 4 KiB, then the whole file."""
    by_size = defaultdict(list)
    for p in dict.fromkeys(paths):
        by_size[os.path.getsize(p)].append(p)
    out = []
    for size, group in by_size.items():
        if len(group) < 2:
            continue
        by_part = defaultdict(list)
        for p in group:
            by_part[_partial_hash(p, size)].append(p)
        for part in by_part.values():
            if len(part) < 2:
                continue
            by_full = defaultdict(list)
            for p in part:
                by_full[file_digest(p, "sha1")].append(p)
            out += [g for g in by_full.values() if len(g) > 1]
    order = {p: i for i, p in enumerate(paths)}
    return sorted(out, key=lambda g: order[g[0]])


def dataset_stats(split, name=None, hash_images=True, split_sizes=None, seed=0):
    """Statistics of ``split`` (a :class:`~mindyolox.data.convert.DataSplit`): a JSON-ready dict
    (module doc for the rules). ``split_sizes``: ``{split name: images}`` to show when
    ``split`` merges several; ``hash_images``: look for duplicate files (reads them)."""
    coco = split.coco
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    cat_name = {c["id"]: str(c.get("name", c["id"])) for c in cats}
    images = coco["images"]
    pos = {im["id"]: i for i, im in enumerate(images)}
    per_image = np.zeros(len(images), np.int64)
    boxes_per_class, images_per_class = Counter(), defaultdict(set)
    sizes, wh, outside = Counter(), [], []
    crowd = 0
    for a in coco["annotations"]:
        i = pos.get(a["image_id"])
        if i is None:
            continue
        if a.get("iscrowd", 0):
            crowd += 1
            continue
        im = images[i]
        x, y, w, h = (float(v) for v in a["bbox"])
        W, H = float(im["width"]), float(im["height"])
        per_image[i] += 1
        boxes_per_class[a["category_id"]] += 1
        images_per_class[a["category_id"]].add(i)
        area = max(w, 0.0) * max(h, 0.0)
        sizes["small" if area < SMALL else "medium" if area < MEDIUM else "large"] += 1
        wh.append((w / W if W else 0.0, h / H if H else 0.0))
        e = OUTSIDE_TOLERANCE
        if w <= 0 or h <= 0 or x < -e or y < -e or x + w > W + e or y + h > H + e:
            outside.append(f"{im['file_name']}: box [{x:g}, {y:g}, {w:g}, {h:g}] in a {W:g}x{H:g} image")
    paths = [split.image_path(im) for im in images]
    exists = [os.path.isfile(p) for p in paths]
    dups = duplicate_groups([p for p, e in zip(paths, exists) if e]) if hash_images else None
    hist = np.bincount(np.minimum(per_image, 20), minlength=21) if len(images) else np.zeros(21, np.int64)
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    if len(wh) > MAX_SCATTER:
        wh = wh[np.sort(np.random.default_rng(seed).choice(len(wh), MAX_SCATTER, replace=False))]
    return {
        "name": name or split.name,
        "splits": dict(split_sizes or {split.name: len(images)}),
        "images": len(images), "boxes": int(per_image.sum()), "crowd_boxes": crowd, "classes": len(cats),
        "boxes_per_image": {"mean": float(per_image.mean()) if len(images) else 0.0,
                            "median": float(np.median(per_image)) if len(images) else 0.0,
                            "max": int(per_image.max()) if len(images) else 0,
                            "histogram_0_to_20plus": hist.tolist()},
        "class_histogram": [{"id": c["id"], "name": cat_name[c["id"]], "boxes": boxes_per_class[c["id"]],
                             "images": len(images_per_class[c["id"]])} for c in cats],
        "box_sizes": {k: sizes[k] for k in ("small", "medium", "large")},
        "images_without_boxes": int((per_image == 0).sum()),
        "images_without_boxes_examples": [str(images[i]["file_name"]) for i in np.flatnonzero(per_image == 0)[:EXAMPLES]],
        "labels_outside_image": len(outside), "labels_outside_image_examples": outside[:EXAMPLES],
        "images_missing": int(len(paths) - sum(exists)),
        "images_missing_examples": [p for p, e in zip(paths, exists) if not e][:EXAMPLES],
        "duplicate_groups": None if dups is None else len(dups),
        "duplicate_images": None if dups is None else sum(len(g) - 1 for g in dups),
        "duplicate_examples": [] if dups is None else dups[:EXAMPLES],
        "wh_scatter": wh.round(5).tolist(),
    }


def report_text(s):
    """The report as text lines (one string)."""
    bpi = s["boxes_per_image"]
    top = sorted(s["class_histogram"], key=lambda c: -c["boxes"])
    empty = [c["name"] for c in s["class_histogram"] if c["boxes"] == 0]
    dup = ("not checked" if s["duplicate_groups"] is None else
           f"{s['duplicate_images']} (in {s['duplicate_groups']} group(s) of identical files)")
    lines = [f"dataset {s['name']}: " + ", ".join(f"{k} {v} images" for k, v in s["splits"].items()),
             f"  images {s['images']}, boxes {s['boxes']} (+{s['crowd_boxes']} crowd), classes {s['classes']}",
             f"  boxes per image: mean {bpi['mean']:.2f}, median {bpi['median']:g}, max {bpi['max']}",
             "  box sizes (box area w*h, COCO limits 32^2, 96^2 px): " + ", ".join(f"{k} {v}" for k, v in s["box_sizes"].items()),
             "  classes by boxes: " + ", ".join(f"{c['name']} {c['boxes']}" for c in top[:10])
             + (f", ... ({len(top) - 10} more)" if len(top) > 10 else ""),
             f"  classes without boxes: {len(empty)}" + (f" ({', '.join(empty[:10])}{', ...' if len(empty) > 10 else ''})"
                                                        if empty else ""),
             f"  images without boxes: {s['images_without_boxes']}",
             f"  labels outside the image (or zero size): {s['labels_outside_image']}",
             f"  duplicate images: {dup}",
             f"  images missing on disk: {s['images_missing']}"]
    for key, what in (("labels_outside_image_examples", "outside"), ("duplicate_examples", "duplicates"),
                      ("images_missing_examples", "missing")):
        for e in s[key]:
            lines.append(f"    {what}: {' = '.join(e) if isinstance(e, list) else e}")
    return "\n".join(lines)


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK, _GREY, _BLUE = (40, 40, 40), (150, 150, 150), (200, 120, 40)
_SIZE_COLORS = {"small": (60, 60, 220), "medium": (40, 160, 40), "large": (200, 120, 40)}


def _text(img, text, org, scale=0.45, color=_INK, thick=1):
    cv2.putText(img, str(text), (int(org[0]), int(org[1])), _FONT, scale, color, thick, cv2.LINE_AA)


def _bars_h(img, x0, y0, w, h, items, title):
    """Horizontal bars ``[(label, value)]`` with the labels left of them."""
    _text(img, title, (x0, y0 - 10), 0.55, thick=1)
    if not items:
        _text(img, "no boxes", (x0 + 10, y0 + 20), 0.5, _GREY)
        return
    step = h / len(items)
    vmax = max(v for _, v in items) or 1
    lab_w = 120
    for k, (label, v) in enumerate(items):
        y = int(y0 + k * step)
        bw = int((w - lab_w - 50) * v / vmax)
        cv2.rectangle(img, (x0 + lab_w, y + 1), (x0 + lab_w + max(bw, 1), y + max(int(step) - 2, 2)), _BLUE, -1)
        scale = min(0.4, step / 30)
        _text(img, label[:16], (x0, y + step * 0.8), scale)
        _text(img, v, (x0 + lab_w + bw + 4, y + step * 0.8), scale, _GREY)


def _bars_v(img, x0, y0, w, h, values, labels, title, colors=None):
    _text(img, title, (x0, y0 - 10), 0.55)
    cv2.line(img, (x0, y0 + h), (x0 + w, y0 + h), _INK, 1)
    vmax = max(values) if len(values) and max(values) > 0 else 1
    step = w / max(len(values), 1)
    for k, v in enumerate(values):
        bh = int((h - 18) * v / vmax)
        x = int(x0 + k * step)
        color = colors[k] if colors else _BLUE
        cv2.rectangle(img, (x + 2, y0 + h - bh), (int(x + step) - 2, y0 + h), color, -1)
        if labels[k]:
            _text(img, labels[k], (x + 2, y0 + h + 16), 0.38)
        if v:
            _text(img, v, (x + 2, y0 + h - bh - 4), 0.35, _GREY)


def _scatter(img, x0, y0, w, h, pts, title):
    """Points ``pts`` (``[n, 2]`` in 0..1) in a unit square, y up."""
    _text(img, title, (x0, y0 - 10), 0.55)
    cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), _INK, 1)
    for t in (0.25, 0.5, 0.75, 1.0):
        xx, yy = int(x0 + t * w), int(y0 + h - t * h)
        cv2.line(img, (xx, y0), (xx, y0 + h), (225, 225, 225), 1)
        cv2.line(img, (x0, yy), (x0 + w, yy), (225, 225, 225), 1)
        _text(img, f"{t:g}", (xx - 10, y0 + h + 16), 0.38)
        _text(img, f"{t:g}", (x0 - 32, yy + 4), 0.38)
    _text(img, "x: box w / image w, y: box h / image h", (x0, y0 + h + 36), 0.42)
    if len(pts):
        p = np.clip(np.asarray(pts, np.float64), 0, 1)
        xs = np.round(x0 + p[:, 0] * w).astype(int)
        ys = np.round(y0 + h - p[:, 1] * h).astype(int)
        for x, y in zip(xs, ys):
            cv2.circle(img, (int(x), int(y)), 2, _BLUE, -1)


def draw_report(s):
    """The report as one BGR image (uint8 ``[900, 1400, 3]``): the numbers, the class
    histogram (the 40 largest classes), boxes per image, box sizes and the w/h scatter."""
    img = np.full((900, 1400, 3), 255, np.uint8)
    _text(img, f"dataset report: {s['name']}", (20, 34), 0.8, thick=2)
    bpi, sz = s["boxes_per_image"], s["box_sizes"]
    dup = "not checked" if s["duplicate_groups"] is None else s["duplicate_images"]
    lines = [", ".join(f"{k} {v}" for k, v in s["splits"].items())[:64] + " images",
             f"{s['images']} images, {s['boxes']} boxes (+{s['crowd_boxes']} crowd), {s['classes']} classes",
             f"boxes per image: mean {bpi['mean']:.2f}, median {bpi['median']:g}, max {bpi['max']}",
             f"box sizes (w*h): small {sz['small']}, medium {sz['medium']}, large {sz['large']}",
             f"classes without boxes: {sum(1 for c in s['class_histogram'] if c['boxes'] == 0)}",
             f"images without boxes: {s['images_without_boxes']}",
             f"labels outside the image (or zero size): {s['labels_outside_image']}",
             f"duplicate images (same bytes): {dup}",
             f"images missing on disk: {s['images_missing']}"]
    for k, line in enumerate(lines):
        warn = k >= 6 and not line.endswith(": 0")
        _text(img, line, (20, 70 + 22 * k), 0.45, (30, 30, 200) if warn else _INK)
    top = sorted(s["class_histogram"], key=lambda c: -c["boxes"])[:40]
    more = len(s["class_histogram"]) - len(top)
    _bars_h(img, 620, 70, 760, 800, [(c["name"], c["boxes"]) for c in top],
            "boxes per class" + (f" (40 largest of {len(s['class_histogram'])})" if more > 0 else ""))
    hist = s["boxes_per_image"]["histogram_0_to_20plus"]
    _bars_v(img, 30, 310, 560, 150, hist, [str(k) if k % 5 == 0 else "" for k in range(20)] + ["20+"],
            "images by number of boxes")
    sz = s["box_sizes"]
    _bars_v(img, 30, 540, 150, 150, [sz[k] for k in ("small", "medium", "large")], ["S", "M", "L"],
            "box sizes", [_SIZE_COLORS[k] for k in ("small", "medium", "large")])
    for k, t in enumerate(("S: w*h < 32x32 px", "M: < 96x96 px", "L: larger")):
        _text(img, t, (30, 740 + 20 * k), 0.4, _GREY)
    _scatter(img, 260, 540, 300, 280, s["wh_scatter"], "box w/h (fraction of the image)")
    return img


def write_report(s, out_dir, stem="dataset_report"):
    """Write ``<out_dir>/<stem>.json`` (the stats) and ``<stem>.png``; returns both paths."""
    os.makedirs(out_dir, exist_ok=True)
    js, png = os.path.join(out_dir, stem + ".json"), os.path.join(out_dir, stem + ".png")
    with open(js, "w") as f:
        json.dump(s, f, indent=1)
    if not cv2.imwrite(png, draw_report(s), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {png}")
    return js, png


def dataset_as_split(dataset):
    """A :class:`~mindyolox.data.convert.DataSplit` of a built
    :class:`~mindyolox.data.base.DetectionDataset` (its cleaned boxes: clipped, zero-size and
    crowd ones gone; absolute image paths; category ids ``class_ids``)."""
    from .convert import DataSplit
    ids = list(getattr(dataset, "class_ids", range(len(dataset.class_names))))
    images, anns = [], []
    for i, (path, (h, w), boxes, classes) in enumerate(zip(dataset.paths, dataset.sizes, dataset.boxes,
                                                          dataset.classes)):
        images.append({"id": i + 1, "file_name": os.path.abspath(path), "width": int(w), "height": int(h)})
        for (x1, y1, x2, y2), c in zip(np.asarray(boxes, np.float64).tolist(), np.asarray(classes).tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": ids[int(c)],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
    cats = [{"id": cid, "name": str(n)} for cid, n in zip(ids, dataset.class_names)]
    return DataSplit(str(dataset.name), {"images": images, "annotations": anns, "categories": cats}, "/")
