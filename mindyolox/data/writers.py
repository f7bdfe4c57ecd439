"""Writers of :class:`~mindyolox.data.convert.DataSplit` s (the shared COCO dict) as COCO JSON,
Pascal VOC or the YOLO txt layout, with the images linked, hard-linked or copied.

Layouts written under ``dst`` (one block per split ``<s>``):

- **coco**: ``annotations/instances_<s>.json`` and the images in ``<s>/`` (COCO's own layout;
  recipe keys ``data.train_ann: annotations/instances_<s>.json``, ``data.train_images: <s>``).
  Everything read is kept (crowd, segmentation, VOC's difficult/truncated flags as extra keys).
- **voc**: ``Annotations/<stem>.xml``, ``JPEGImages/<file>``, ``ImageSets/Main/<s>.txt``.
  ``xmin = x + 1``, ``xmax = x + w + 1`` (the inverse of the VOC reader); numbers written as
  integers when whole, else with the digits that give them back (:func:`_num`). Crowd boxes, segmentation and classes
  without a box (VOC names a class only in its objects) are not carried;
  ``difficult``/``truncated`` are.
- **yolo**: ``images/<s>/<file>``, ``labels/<s>/<stem>.txt`` (an empty file for an image
  without boxes) and ``data.yaml`` (``train``/``val``/``test`` relative to the YAML's folder,
  no ``path`` key: ultralytics and :func:`~mindyolox.data.yolo.load_dataset_yaml` then use the
  YAML's folder, so the dataset can be moved; ``names`` as ``{id: name}``). Lines are ``class
  cx cy w h`` normalised to 0..1 with 6 decimals: a coordinate read back is within
  ``0.75e-6 * image side`` px (a centre's and half a size's rounding) of the box written.
  Class ``c`` is the ``c``-th smallest category id. Boxes are clipped to the image first (a
  YOLO coordinate outside 0..1 makes ultralytics skip the whole label file), zero-size ones
  dropped; crowd boxes, segmentation, the difficult and truncated flags are not carried.

Image file names: a relative ``file_name`` keeps its sub-folders (``images/<s>/a/b.jpg``,
labels in ``labels/<s>/a/b.txt``); an absolute one (or one with ``..``) is put by its base name.
VOC puts every image flat in ``JPEGImages``. Two different source files meeting at one
destination name is one DataError line naming both. An image missing in the source is left
out with its boxes and counted.
"""
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import yaml
from tqdm import tqdm

from ..errors import DataError

__all__ = ["IMAGE_MODES", "write_splits", "place_image", "yolo_line", "class_table"]

IMAGE_MODES = ("link", "hardlink", "copy")


def class_table(categories):
    """``(category ids sorted, names)``: the class order every writer uses -- YOLO class ``c``
    is the ``c``-th smallest COCO category id (as :class:`~mindyolox.data.coco.COCODataset`
    numbers classes); a category without a name is named by its id."""
    ids = sorted(c["id"] for c in categories)
    by_id = {c["id"]: c for c in categories}
    return ids, [str(by_id[i].get("name", i)) for i in ids]


def place_image(src, dst, mode):
    """Put image ``src`` at ``dst``: ``link`` a symbolic link to its real path (links
    followed: a link to a converted dataset's link points at the original file), ``hardlink``
    a hard link (same file system only), ``copy`` a copy (with its time stamps)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.lexists(dst):
        os.remove(dst)
    try:
        if mode == "link":
            os.symlink(os.path.realpath(src), dst)
        elif mode == "hardlink":
            os.link(src, dst)
        elif mode == "copy":
            shutil.copy2(src, dst)
        else:
            raise DataError(f"--images must be one of {', '.join(IMAGE_MODES)}, got '{mode}'")
    except OSError as e:
        hint = " (a hard link needs one file system: use --images link or copy)" if mode == "hardlink" else ""
        raise DataError(f"cannot {mode} {src} to {dst}: {e.strerror}{hint}") from None


def _num(v):
    """A VOC coordinate: an integer when whole; else 6 decimals when they give the number back
    within 1e-9 (``359.29``, not ``359.29000000000002``), else every digit (``repr``): the
    value read back is the value written."""
    v = float(v)
    if v.is_integer():
        return str(int(v))
    short = f"{v:.6f}".rstrip("0").rstrip(".")
    return short if abs(float(short) - v) <= 1e-9 else repr(v)


def yolo_line(cls, bbox, width, height):
    """``"c cx cy w h"`` (6 decimals, 0..1) of pixel box ``bbox = [x, y, w, h]`` in a
    ``width x height`` image (already clipped)."""
    x, y, w, h = (float(v) for v in bbox)
    return (f"{cls} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} "
            f"{w / width:.6f} {h / height:.6f}")


def _rel(file_name):
    fn = str(file_name).replace("\\", "/")
    if os.path.isabs(fn) or ".." in fn.split("/"):
        return os.path.basename(fn)
    return os.path.normpath(fn)


class _Placer:
    """Places each image once per destination path; two sources at one path -> DataError."""

    def __init__(self, mode):
        self.mode, self.placed = mode, {}

    def __call__(self, src, dst):
        src, dst = os.path.realpath(src), os.path.abspath(dst)
        have = self.placed.get(dst)
        if have is not None:
            if have != src:
                raise DataError(f"two images would be written to {dst}: {have} and {src} (rename one, or convert "
                                "their splits separately)")
            return
        place_image(src, dst, self.mode)
        self.placed[dst] = src


def _clip(bbox, width, height):
    x, y, w, h = (float(v) for v in bbox)
    x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    moved = max(abs(x1 - x), abs(y1 - y), abs(x2 - x - w), abs(y2 - y - h))
    return [x1, y1, x2 - x1, y2 - y1], moved > 1e-4     # float noise of a box on the border is not counted


def _lose(lost, ann, fmt):
    """Count what ``fmt`` cannot carry of annotation ``ann``; True when the box is dropped."""
    if fmt == "coco":
        return False
    if ann.get("segmentation"):
        lost["segmentation masks"] += 1
    if fmt == "yolo":
        for flag in ("difficult", "truncated"):
            if ann.get(flag):
                lost[f"{flag} flags"] += 1
    if ann.get("iscrowd", 0):
        lost["crowd boxes"] += 1
        return True
    return False


def _present_images(sp, lost, bar, per=None):
    """``(image record, source path)`` of each image of split ``sp`` whose file exists, the
    progress bar advanced for every one; a missing file is counted in ``lost`` (with its boxes
    when ``per``, the annotations by image id, is given) and skipped."""
    for im in sp.coco["images"]:
        src = sp.image_path(im)
        bar.update(1)
        if not os.path.isfile(src):
            lost["images missing in the source"] += 1
            if per is not None:
                lost["boxes of missing images"] += len(per.get(im["id"], ()))
            continue
        yield im, src


def _write_coco(sp, dst, place, lost, bar):
    images = []
    for im, src in _present_images(sp, lost, bar):
        rel = _rel(im["file_name"])
        place(src, os.path.join(dst, sp.name, rel))
        images.append(dict(im, file_name=rel))
    kept = {im["id"] for im in images}
    anns = [dict(a) for a in sp.coco["annotations"] if a["image_id"] in kept]
    lost["boxes of missing images"] += len(sp.coco["annotations"]) - len(anns)
    out = {k: v for k, v in sp.coco.items() if k not in ("images", "annotations")}
    out.update(images=images, annotations=anns, categories=sp.coco["categories"])
    path = os.path.join(dst, "annotations", f"instances_{sp.name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f)
    return len(images), len(anns)


def _per_image(sp):
    per = {}
    for a in sp.coco["annotations"]:
        per.setdefault(a["image_id"], []).append(a)
    return per


def _write_yolo(sp, dst, place, lost, bar):
    ids, _ = class_table(sp.coco["categories"])
    to_class = {cid: c for c, cid in enumerate(ids)}
    per = _per_image(sp)
    n_img = n_box = 0
    for im, src in _present_images(sp, lost, bar, per):
        rel = _rel(im["file_name"])
        place(src, os.path.join(dst, "images", sp.name, rel))
        w, h = float(im["width"]), float(im["height"])
        lines = []
        for a in per.get(im["id"], ()):
            if _lose(lost, a, "yolo"):
                continue
            box, clipped = _clip(a["bbox"], w, h)
            if box[2] <= 0 or box[3] <= 0:
                lost["zero-size or outside boxes"] += 1
                continue
            lost["boxes clipped to the image"] += clipped
            lines.append(yolo_line(to_class[a["category_id"]], box, w, h))
        label = os.path.join(dst, "labels", sp.name, os.path.splitext(rel)[0] + ".txt")
        os.makedirs(os.path.dirname(label), exist_ok=True)
        with open(label, "w") as f:
            f.write("".join(ln + "\n" for ln in lines))
        n_img, n_box = n_img + 1, n_box + len(lines)
    return n_img, n_box


def _voc_xml(file_name, im, objects):
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for tag, v in (("width", im["width"]), ("height", im["height"]), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(v))
    ET.SubElement(root, "segmented").text = "0"
    for name, (x, y, w, h), a in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "1" if a.get("truncated") else "0"
        ET.SubElement(obj, "difficult").text = "1" if a.get("difficult") else "0"
        bb = ET.SubElement(obj, "bndbox")
        for tag, v in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w + 1), ("ymax", y + h + 1)):
            ET.SubElement(bb, tag).text = _num(v)
    ET.indent(root, "\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _write_voc(sp, dst, place, lost, bar, stems):
    ids, names = class_table(sp.coco["categories"])
    if len(set(names)) != len(names) or not all(names):
        raise DataError(f"split {sp.name}: VOC names classes by name, and these are empty or repeated: {names}")
    name_of = dict(zip(ids, names))
    per = _per_image(sp)
    listed, n_box = [], 0
    for im, src in _present_images(sp, lost, bar, per):
        base = os.path.basename(str(im["file_name"]))
        stem = os.path.splitext(base)[0]
        if stems.setdefault(stem, os.path.abspath(src)) != os.path.abspath(src):
            raise DataError(f"two images have the VOC id (file stem) {stem}: {stems[stem]} and {src} (VOC keeps "
                            "every image in one folder; rename one)")
        place(src, os.path.join(dst, "JPEGImages", base))
        objects = [(name_of[a["category_id"]], [float(v) for v in a["bbox"]], a)
                   for a in per.get(im["id"], ()) if not _lose(lost, a, "voc")]
        with open(os.path.join(dst, "Annotations", stem + ".xml"), "w") as f:
            f.write(_voc_xml(base, im, objects))
        listed.append(stem)
        n_box += len(objects)
    main = os.path.join(dst, "ImageSets", "Main")
    with open(os.path.join(main, f"{sp.name}.txt"), "w") as f:
        f.write("".join(s + "\n" for s in listed))
    return len(listed), n_box


def _yaml_keys(names):
    """``{train|val|test: split name}``: exact names first, then by prefix (``train2017``)."""
    keys = {}
    for k in ("train", "val", "test"):
        if k in names:
            keys[k] = k
    for k in ("train", "val", "test"):
        if k not in keys:
            n = next((n for n in names if n.startswith(k) and n not in keys.values()), None)
            if n is not None:
                keys[k] = n
    return keys


def _write_data_yaml(dst, splits):
    names = [sp.name for sp in splits]
    keys = _yaml_keys(names)
    left = [n for n in names if n not in keys.values()]
    if "train" not in keys and left:
        keys["train"] = left.pop(0)
    lines = ["# written by mindyolox-tools (dataset YAML, ultralytics layout); paths relative to this file's folder"]
    doc = {k: f"images/{keys[k]}" for k in ("train", "val", "test") if k in keys}
    if "val" not in doc and "train" in doc:
        doc["val"] = doc["train"]
        lines.append(f"# no validation split: val is the train split ({keys['train']})")
    doc = {k: doc[k] for k in ("train", "val", "test") if k in doc}
    if left:
        lines.append(f"# other splits (not used by train/val/test): {', '.join('images/' + n for n in left)}")
    _, class_names = class_table(splits[0].coco["categories"])
    doc["names"] = dict(enumerate(class_names))
    with open(os.path.join(dst, "data.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def write_splits(splits, dst, fmt, images="link", progress=False):
    """Write ``splits`` under ``dst`` in ``fmt`` (module doc); ``images``: one of
    :data:`IMAGE_MODES`. Returns ``{images, boxes, classes, splits (names), dst, lost (a
    Counter of what was not carried over)}``."""
    if images not in IMAGE_MODES:
        raise DataError(f"--images must be one of {', '.join(IMAGE_MODES)}, got '{images}'")
    if fmt not in ("coco", "voc", "yolo"):
        raise DataError(f"unknown dataset format '{fmt}' (choose from coco, voc, yolo)")
    names = [sp.name for sp in splits]
    if len(set(names)) != len(names):
        raise DataError(f"split names repeated: {names}")
    os.makedirs(dst, exist_ok=True)
    if fmt == "voc":
        for d in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(dst, d), exist_ok=True)
    lost, place, stems = Counter(), _Placer(images), {}
    n_img = n_box = 0
    total = sum(len(sp.coco["images"]) for sp in splits)
    with tqdm(total=total, desc=f"writing {fmt}", disable=not progress, file=sys.stderr, leave=False) as bar:
        for sp in splits:
            if fmt == "coco":
                i, b = _write_coco(sp, dst, place, lost, bar)
            elif fmt == "yolo":
                i, b = _write_yolo(sp, dst, place, lost, bar)
            else:
                i, b = _write_voc(sp, dst, place, lost, bar, stems)
            n_img, n_box = n_img + i, n_box + b
    if fmt == "yolo":
        _write_data_yaml(dst, splits)
    if fmt == "voc" and splits:   # VOC names a class only in its objects
        used = {a["category_id"] for sp in splits for a in sp.coco["annotations"] if not a.get("iscrowd", 0)}
        lost["classes without boxes"] += sum(1 for c in splits[0].coco["categories"] if c["id"] not in used)
    classes = len(splits[0].coco["categories"]) if splits else 0
    return {"images": n_img, "boxes": n_box, "classes": classes, "splits": names, "dst": str(dst),
            "lost": +lost}
