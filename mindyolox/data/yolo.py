"""YOLO-format datasets (ultralytics / mindyolo txt labels) read into the shared in-memory COCO
dict, and ultralytics dataset YAMLs.

Everything trains and evaluates through :class:`~mindyolox.data.coco.COCODataset` built from
the dict :func:`read_yolo` returns (same reading rules, id checks and COCO evaluator as a COCO
JSON): ``{"images": [{id, file_name, width, height}], "annotations": [{id, image_id,
category_id, bbox [x, y, w, h] pixels, area, iscrowd}], "categories": [{id, name}]}``.

Where the images are (``images``: a folder, a .txt list of image paths, or a list of either;
the rules of ultralytics ``BaseDataset.get_img_files`` / ``img2label_paths``):

- a folder: every file below it (recursively) whose suffix is an image format
  (:data:`IMG_FORMATS`), sorted by path;
- a .txt list (any other file is read as a list too): one image path a line. ``./x`` is
  relative to the list's folder (ultralytics' rule; mindyolo's ``train2017.txt`` lists
  ``./images/train2017/x.jpg``); decision for other relative lines: the list's folder when
  the file is there, else ``root`` (the dataset YAML's ``path``); absolute lines as they are;
- the label of ``.../images/.../x.jpg`` is ``.../labels/.../x.txt`` (the LAST ``/images/`` of the
  path becomes ``/labels/``, the suffix ``.txt``); a path without ``/images/`` has its label
  beside it (``x.jpg`` -> ``x.txt``);
- an image listed twice is used once (named); image ids are ``1..N`` in sorted path order,
  ``file_name`` the path relative to ``root`` when under it, else absolute; width and height
  from the file header, in the frame ``cv2.imread`` shows (EXIF turn applied, as ultralytics'
  ``exif_size``; :func:`~mindyolox.data.verify.probe_image`).

Label lines (one per object, whitespace separated, normalised to the image's width/height):
``class cx cy w h``, or a polygon ``class x1 y1 x2 y2 ... xn yn`` (n >= 3, the YOLO
segmentation format) read as the polygon's bounding box (ultralytics ``segments2boxes``).
Category id = class id (0-based; ``names[i]`` is class ``i``).

Bad input, decided: every problem is one line ``file:line: what`` (``file: what`` for a whole
file) in ``problems``, the box is left out, nothing is raised, and reading goes on:

- wrong number of fields (not 5 and not an odd count >= 7), a field that is not a finite
  number, a class id that is not an integer in ``0..len(names)-1``, a zero-size box, an exact
  duplicate of an earlier line of the same file (ultralytics drops those too);
- coordinates: a value outside ``0..1`` by at most :data:`TOLERANCE` (1 % of the side, what
  rounding and sloppy exporters produce) is kept and the box clipped to the image (counted as
  ``boxes_clipped_to_image`` when it moves an edge by more than :data:`NOISE`, not named); a value further out (e.g. pixel coordinates) drops
  the box and names the line; a box whose edges only cross the image border is clipped as
  COCO boxes are; one that lies outside it entirely is dropped and named;
- an image without a label file is a background image (counted as
  ``images_without_label_file``, not a problem); an empty label file too;
- a label file without an image (looked for when a split is a folder: its labels folder
  mirrors it; with a .txt list the other files are other splits'; ``classes.txt``, which
  labelImg writes there, is not a label file): named, counted;
- an unreadable image (missing, empty, truncated, not decodable): named, counted, left out
  (its size, and so its boxes, are unknown).
"""
import logging
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import yaml

from ..errors import DataError
from .coco import COCODataset
from .verify import probe_image

__all__ = ["read_yolo", "load_dataset_yaml", "label_path", "image_files", "YOLODataset", "build_yolo_dataset",
           "dataset_yaml_overrides", "IMG_FORMATS", "TOLERANCE"]

logger = logging.getLogger("mindyolox.data")

IMG_FORMATS = frozenset({"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm"})
TOLERANCE = 0.01        # normalised coordinates in [-TOLERANCE, 1 + TOLERANCE] are clipped, further out dropped
NOISE = 1e-6           # clipping by at most this much (a txt's float rounding) is not counted
SHOW_PROBLEMS = 20      # problems named one by one in the log; the rest in one line (all in dataset.label_problems)


# ----------------------------------------------------------------------------- dataset YAML
def _resolve_split(root, value, key, where):
    """Absolute path(s) of a YAML split entry: ``root/value``; ``../x`` that is not there is
    tried as ``root/x`` (ultralytics ``check_det_dataset``: a Roboflow export's ``data.yaml``
    sits in the dataset folder and says ``train: ../train/images``)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if not value:
            raise DataError(f"{where}: '{key}' is an empty list")
        return [_resolve_split(root, v, key, where) for v in value]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: '{key}' must be a path or a list of paths, got {value!r}")
    value = os.path.expanduser(value.strip())
    path = os.path.normpath(os.path.join(root, value))
    if not os.path.exists(path) and value.startswith("../"):
        alt = os.path.normpath(os.path.join(root, value[3:]))
        if os.path.exists(alt):
            return alt
    return path


def _names(data, where):
    """Class names (index = class id) from ``names`` (a list, or an ``{id: name}`` map with ids
    ``0..n-1``) checked against ``nc`` when both are given; ``nc`` alone: ``class_0 ...``
    (as ultralytics does)."""
    names, nc = data.get("names"), data.get("nc")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc <= 0):
        raise DataError(f"{where}: 'nc' must be a positive integer, got {nc!r}")
    if names is None:
        if nc is None:
            raise DataError(f"{where}: no 'names' (the class names, a list or an {{id: name}} map)")
        return [f"class_{i}" for i in range(nc)]
    if isinstance(names, dict):
        try:
            by_id = {int(k): v for k, v in names.items()}
        except (TypeError, ValueError):
            raise DataError(f"{where}: 'names' map keys must be class ids 0..n-1, got {list(names)[:10]}") from None
        if sorted(by_id) != list(range(len(by_id))):
            raise DataError(f"{where}: 'names' map must have the class ids 0..{len(by_id) - 1}, "
                            f"got {sorted(by_id)[:10]}")
        names = [by_id[i] for i in range(len(by_id))]
    if not isinstance(names, (list, tuple)) or not names:
        raise DataError(f"{where}: 'names' must be a non-empty list or an {{id: name}} map, got {names!r}")
    names = [str(n) for n in names]
    if nc is not None and nc != len(names):
        raise DataError(f"{where}: 'nc' is {nc} but 'names' lists {len(names)} classes")
    return names


def load_dataset_yaml(path):
    """An ultralytics dataset YAML as ``dict(root, train, val, test, names, yaml)``.

    ``root``: the ``path`` key (absolute, or relative to the YAML's folder -- decision: an
    export carries its YAML along; if it is not there but is relative to the working directory,
    that one, as ultralytics resolves it); no ``path``: the YAML's folder. ``train``/``val``
    (required) and ``test`` (optional, None): absolute paths (a str or a list), each relative to
    ``root`` (and the ``../`` rule of :func:`_resolve_split`); existence is checked when a split
    is read. ``names``: list of str (index = class id). mindyolo's layout of the keys (a ``data``
    section with ``train_set`` / ``val_set`` / ``test_set`` relative to the working directory,
    ``nc``, ``names``) is read too. Other keys (``download``, ...) are ignored.
    Raises :class:`DataError` naming the file and key."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.isfile(path):
        raise DataError(f"dataset YAML {path} not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise DataError(f"dataset YAML {path} is not valid YAML ({problem})") from None
    where = f"dataset YAML {path}"
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a mapping with train, val, names; got {type(data).__name__}")
    here = os.path.dirname(path)
    if isinstance(data.get("data"), dict) and "train_set" in data["data"]:    # mindyolo's recipe layout
        section = data["data"]
        names = _names(section, where)
        cwd = os.getcwd()
        out = {k: _resolve_split(cwd, section.get(f"{k}_set"), f"data.{k}_set", where) for k in ("train", "val", "test")}
        if out["val"] is None:
            raise DataError(f"{where}: no 'data.val_set'")
        return dict(root=cwd, names=names, yaml=path, **out)
    root = data.get("path")
    if root is None or root == "":
        root = here
    elif not isinstance(root, str):
        raise DataError(f"{where}: 'path' must be a folder, got {root!r}")
    else:
        root = os.path.expanduser(root)
        if not os.path.isabs(root):
            beside = os.path.join(here, root)
            root = beside if os.path.exists(beside) or not os.path.exists(root) else os.path.abspath(root)
        root = os.path.normpath(root)
    names = _names(data, where)
    for key in ("train", "val"):
        if data.get(key) in (None, ""):
            raise DataError(f"{where}: no '{key}' (images of the {key} split: a folder, a .txt list, or a list)")
    out = {k: _resolve_split(root, data.get(k) or None, k, where) for k in ("train", "val", "test")}
    return dict(root=root, names=names, yaml=path, **out)


# ----------------------------------------------------------------------------- image lists
def label_path(image_path):
    """The label file of an image: the last ``/images/`` -> ``/labels/``, suffix -> ``.txt``
    (ultralytics ``img2label_paths``)."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    p = str(image_path)
    if sa in p:
        p = sb.join(p.rsplit(sa, 1))
    return os.path.splitext(p)[0] + ".txt"


def _is_image(path):
    return os.path.splitext(path)[1][1:].lower() in IMG_FORMATS


def image_files(images, root=None):
    """``(paths, folders, problems)``: the image paths of ``images`` (module doc; absolute,
    normalised, sorted, each once), the folders among the sources (labels-without-image check)
    and the problems met (a listed line that is not an image, a path listed twice). A source
    that does not exist raises :class:`DataError`."""
    base = os.path.abspath(root) if root else os.getcwd()
    sources = images if isinstance(images, (list, tuple)) else [images]
    found, folders, problems = [], [], []
    for src in sources:
        p = os.path.normpath(os.path.join(base, os.path.expanduser(str(src))))
        if os.path.isdir(p):
            folders.append(p)
            for d, subdirs, files in os.walk(p, followlinks=True):   # linked image folders, as a converter makes
                subdirs.sort()
                found += [(os.path.join(d, f), None) for f in sorted(files) if _is_image(f)]
        elif os.path.isfile(p):
            where = os.path.dirname(p)
            with open(p, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
            for n, line in enumerate(lines, 1):
                x = line.strip()
                if not x:
                    continue
                if x.startswith("./"):
                    x = os.path.join(where, x[2:])
                elif not os.path.isabs(x):
                    beside = os.path.join(where, x)
                    x = beside if os.path.exists(beside) or not os.path.exists(os.path.join(base, x)) \
                        else os.path.join(base, x)
                if not _is_image(x):
                    problems.append(f"{p}:{n}: {line.strip()!r} is not an image file "
                                    f"(suffix not one of {', '.join(sorted(IMG_FORMATS))}); left out")
                    continue
                found.append((os.path.normpath(x), f"{p}:{n}"))
        else:
            raise DataError(f"images {p} not found (a folder or a .txt list of image paths)")
    seen, paths = {}, []
    for path, origin in found:
        if path in seen:
            problems.append(f"{origin or path}: {path} is listed more than once (also at {seen[path] or path}); "
                            "used once")
            continue
        seen[path] = origin
        paths.append(path)
    return sorted(paths), folders, problems


# ----------------------------------------------------------------------------- labels
def _parse_labels(path, num_classes, width, height, counts):
    """Boxes ``[(class, [x, y, w, h] pixels)]`` of one label file and its problems (module doc);
    ``counts`` (Counter) gets ``boxes_clipped_to_image`` and ``boxes_dropped_<why>``."""
    boxes, problems, seen = [], [], {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        counts["label_files_unreadable"] += 1
        return boxes, [f"{path}: label file cannot be read ({' '.join(str(e).split())}); image kept without boxes"]

    def bad(n, why, what):
        counts[f"boxes_dropped_{why}"] += 1
        problems.append(f"{path}:{n}: {what}; box left out")

    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        k = len(fields)
        if k != 5 and not (k >= 7 and k % 2 == 1):
            bad(n, "malformed_line", f"{k} fields, expected 5 (class cx cy w h) or a polygon (class x1 y1 ... xn yn, "
                                     "n >= 3)")
            continue
        try:
            vals = [float(v) for v in fields]
        except ValueError:
            word = next(v for v in fields if not _is_float(v))
            bad(n, "malformed_line", f"{word!r} is not a number")
            continue
        if not all(np.isfinite(vals)):
            bad(n, "malformed_line", "a field is not a finite number")
            continue
        c = vals[0]
        if not (c.is_integer() and 0 <= c < num_classes):
            bad(n, "unknown_class", f"class id {fields[0]} is not one of 0..{num_classes - 1} "
                                    f"(the dataset names {num_classes} classes)")
            continue
        coords = vals[1:]
        far = [v for v in coords if not -TOLERANCE <= v <= 1 + TOLERANCE]
        if far:
            bad(n, "out_of_range", f"coordinate {far[0]:g} is outside 0..1 (normalised; pixel coordinates?)")
            continue
        key = tuple(vals)
        if key in seen:
            bad(n, "duplicate", f"duplicate of line {seen[key]}")
            continue
        seen[key] = n
        if k == 5:
            cx, cy, w, h = coords
            if w <= 0 or h <= 0:
                bad(n, "zero_size", f"zero-size box (w {w:g}, h {h:g})")
                continue
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        else:
            xs, ys = coords[0::2], coords[1::2]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
            if x2 <= x1 or y2 <= y1:
                bad(n, "zero_size", "polygon with a zero-size bounding box")
                continue
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, 1.0), min(y2, 1.0)
        if cx2 <= cx1 or cy2 <= cy1:
            bad(n, "outside_image", "box outside the image")
            continue
        if max(cx1 - x1, cy1 - y1, x2 - cx2, y2 - cy2) > NOISE:
            counts["boxes_clipped_to_image"] += 1
        boxes.append((int(c), _pixels(cx1, cy1, cx2, cy2, width, height)))
    return boxes, problems


def _pixels(x1, y1, x2, y2, width, height):
    """``[x, y, w, h]`` pixels of the normalised corners, with ``x + w`` and ``y + h`` not past the
    right/bottom edge by a float rounding (COCODataset would count that as a clipped box)."""
    px1, py1, px2, py2 = x1 * width, y1 * height, x2 * width, y2 * height
    w, h = px2 - px1, py2 - py1
    while px1 + w > px2:
        w = math.nextafter(w, 0.0)
    while py1 + h > py2:
        h = math.nextafter(h, 0.0)
    return [px1, py1, w, h]


def _is_float(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def _orphan_labels(folders, labels):
    """Label files under the labels folder of each image folder that no image claims."""
    out = []
    for folder in folders:
        lab = os.path.dirname(label_path(os.path.join(folder, "x.jpg")))
        if not os.path.isdir(lab):
            continue
        for d, subdirs, files in os.walk(lab):
            subdirs.sort()
            out += [p for f in sorted(files) if f.endswith(".txt") and f != "classes.txt"
                    and (p := os.path.normpath(os.path.join(d, f))) not in labels]
    return sorted(set(out))


# ----------------------------------------------------------------------------- reader
def _read(images, names, root=None, workers=8):
    """``(coco_dict, problems, counts, unreadable)``: :func:`read_yolo` plus a Counter of what
    was cleaned (``boxes_dropped_*``, ``boxes_clipped_to_image``, ``images_without_label_file``,
    ``label_files_without_image``, ...) and ``[(path, reason)]`` of the unreadable images."""
    names = [str(n) for n in names]
    if not names:
        raise DataError("read_yolo: no class names")
    root_abs = os.path.abspath(root) if root else None
    paths, folders, problems = image_files(images, root)
    counts, unreadable = Counter(), []
    with ThreadPoolExecutor(max(1, min(int(workers), len(paths) or 1))) as pool:   # I/O bound
        probed = list(pool.map(probe_image, paths))
    coco = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in enumerate(names)]}
    labels = set()
    for path, (reason, _, shown) in zip(paths, probed):
        lab = os.path.normpath(label_path(path))
        labels.add(lab)
        if reason is not None:
            unreadable.append((path, reason))
            problems.append(f"{path}: unreadable image ({reason}); left out")
            continue
        h, w = shown
        image_id = len(coco["images"]) + 1
        rel = os.path.relpath(path, root_abs) if root_abs else None
        name = rel if rel is not None and not rel.startswith(os.pardir + os.sep) and rel != os.pardir else path
        coco["images"].append({"id": image_id, "file_name": name, "width": w, "height": h})
        if not os.path.isfile(lab):
            counts["images_without_label_file"] += 1
            continue
        boxes, bad = _parse_labels(lab, len(names), w, h, counts)
        problems += bad
        for c, bbox in boxes:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": c,
                                        "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
    for orphan in _orphan_labels(folders, labels):
        counts["label_files_without_image"] += 1
        problems.append(f"{orphan}: label file without an image; not used")
    counts["images_unreadable"] = len(unreadable)
    return coco, problems, counts, unreadable


def read_yolo(images, names, root=None):
    """Read a YOLO-format split into the shared COCO dict.

    Args:
        images: a folder, a .txt list of image paths, or a list of either (relative to
            ``root``, else to the working directory; module doc for the rules).
        names: class names, index = class id (= the COCO category id).
        root: the dataset root (a dataset YAML's ``path``): ``file_name`` is relative to it
            for images under it, absolute otherwise (absolute for all when None).

    Returns ``(coco_dict, problems)``: the COCO dict (module doc; boxes ``[x, y, w, h]`` in
    pixels of the image as ``cv2.imread`` shows it) and one line per problem, ``file:line:
    what`` (``file: what`` for a whole file), in reading order. Never raises for bad label
    content; a split path that does not exist raises :class:`DataError`.
    """
    coco, problems, _, _ = _read(images, names, root)
    return coco, problems


# ----------------------------------------------------------------------------- dataset
class YOLODataset(COCODataset):
    """A YOLO-format split as a :class:`COCODataset` (the dict of :func:`read_yolo`; the COCO
    evaluator scores it against that dict). ``label_problems``: every problem line;
    ``stats`` also counts ``boxes_dropped_*`` per reason, ``boxes_clipped_to_image``,
    ``images_without_label_file``, ``label_files_without_image``; unreadable images are in
    ``events`` (named once, counted in the data summary's ``images_skipped``)."""

    def __init__(self, images, names, root=None, name=None):
        coco, problems, counts, unreadable = _read(images, names, root)
        label = name or f"YOLO {images if isinstance(images, str) else '+'.join(map(str, images))}"
        super().__init__(coco, root or os.getcwd(), name=label)
        self.label_problems = problems
        for path, reason in unreadable:
            self.events.bad_image(path, reason)             # names it once, counts it
        named = {f"{p}: unreadable image ({r}); left out" for p, r in unreadable}   # events named them
        shown = [p for p in problems if p not in named]
        self.stats["label_problems"] = len(shown)
        for line in shown[:SHOW_PROBLEMS]:
            logger.warning("%s", line)
        if len(shown) > SHOW_PROBLEMS:
            logger.warning("%s: %d more label problems like these (dataset.label_problems lists them all)",
                           self.name, len(shown) - SHOW_PROBLEMS)
        for k, v in counts.items():
            if v and k != "images_unreadable":
                self.stats[k] += v
        if counts["images_without_label_file"]:
            logger.info("%s: %d images without a label file (background images, no boxes)", self.name,
                        counts["images_without_label_file"])
        if shown:
            what = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(counts.items())
                             if v and k not in ("images_without_label_file", "images_unreadable"))
            logger.warning("%s: %d label problems (%s)", self.name, len(shown), what)


def build_yolo_dataset(data_cfg, split):
    """The ``split`` (``"train"``/``"val"``) of the dataset YAML ``data.yaml`` (recipe ``data``
    section, ``data.format: yolo``; a relative path resolves from the working directory)."""
    path = str(data_cfg.get("yaml") or "")
    if not path:
        raise DataError("data.format=yolo needs data.yaml: the dataset YAML (ultralytics: path, train, val, names), "
                        "e.g. --data my.yaml or data.yaml=my.yaml")
    spec = load_dataset_yaml(path)
    images = spec[split]
    if images is None:
        raise DataError(f"dataset YAML {spec['yaml']}: no '{split}' split")
    try:
        return YOLODataset(images, spec["names"], spec["root"], name=f"{os.path.basename(path)} {split}")
    except DataError as e:
        raise DataError(f"dataset YAML {spec['yaml']} ({split}): {e}") from None


def dataset_yaml_overrides(path):
    """``(overrides, names)``: the recipe overrides that train / evaluate on the dataset YAML
    ``path`` (``--data``): ``data.format=yolo``, ``data.yaml=<absolute path>``,
    ``model.num_classes`` and ``data.classes`` (the names, so predict/export name them) from it."""
    import json
    spec = load_dataset_yaml(path)
    names = spec["names"]
    return ["data.format=yolo", f"data.yaml={spec['yaml']}", f"model.num_classes={len(names)}",
            f"data.classes={json.dumps(names)}"], names
