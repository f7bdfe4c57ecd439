"""Dataset conversion between COCO JSON, Pascal VOC XML and the YOLO txt layout.

Every format is read into the shared in-memory **COCO dict** (``{"images": [{id, file_name,
width, height}], "annotations": [{id, image_id, category_id, bbox [x, y, w, h] px, area,
iscrowd}], "categories": [{id, name}]}``, ``file_name`` relative to the split's image root or
absolute), one :class:`DataSplit` per split; the writers of :mod:`.writers` write such splits
in any of the three formats. The split tool (:mod:`.split`) and the dataset report
(:mod:`.report`) work on the same splits.

Readers (decisions):

- **COCO** (:func:`read_coco`): one instances JSON = one split, as read: crowd annotations
  kept (``iscrowd`` 1), segmentation kept, category ids as they are. The split's name is
  ``--split`` or the JSON's stem without ``instances_`` (``instances_train2017.json`` ->
  ``train2017``); the image folder is ``image_dir`` or, in COCO's own layout
  (``<root>/annotations/instances_<split>.json``), ``<root>/<split>/``.
- **VOC** (:func:`read_voc`): the root holding ``Annotations/``, ``JPEGImages/``,
  ``ImageSets/Main/<split>.txt``; every split list there (the one-column files; VOC's
  per-class ``<class>_<split>.txt`` lists have two columns and are skipped), or all
  ``Annotations/*.xml`` as split ``all`` when there is none. Coordinates follow the
  project's VOC reader (:mod:`.voc`, the official ``xmin - 1``; kept as floats here, nothing
  truncated): ``bbox = [xmin - 1, ymin - 1, xmax - xmin, ymax - ymin]``; the writer adds the 1
  back, so VOC -> COCO -> VOC gives the same numbers. Classes: ``classes`` when given, else
  the names found, sorted alphabetically (the 20 Pascal VOC classes come out in their usual
  order); category ids ``1..C``. ``<difficult>1`` and ``<truncated>1`` are kept as
  ``"difficult": 1`` / ``"truncated": 1`` on the annotation (COCO JSON carries them; training
  on such a JSON uses the difficult boxes, as the official VOC reader's ``keep_difficult``).
- **YOLO** (:func:`read_yolo_source`): a dataset YAML (``load_dataset_yaml`` of :mod:`.yolo`),
  a folder holding one (``data.yaml`` first), or a folder with ``images/<split>/`` and the
  class names in ``classes.txt`` or ``classes``; labels are read by :func:`.yolo.read_yolo`.

:func:`convert` = read, :func:`check_destination`, write, and one summary line
(:func:`summary_line`) that counts what the target format cannot carry.
"""
import json
import os
from collections import Counter
from dataclasses import dataclass, field

from ..errors import DataError
from .coco import check_coco_dict
from .voc import read_voc_xml
from .writers import class_table, write_splits

__all__ = ["FORMATS", "DataSplit", "read_coco", "read_voc", "read_yolo_source", "read_source", "check_destination",
           "convert", "summary_line", "merge_splits", "class_table"]

FORMATS = ("coco", "voc", "yolo")
# what a writer may count as not carried over, in the summary line's order
LOSS_ORDER = ("images missing in the source", "boxes of missing images", "crowd boxes", "segmentation masks",
              "difficult flags", "truncated flags", "zero-size or outside boxes", "boxes clipped to the image",
              "classes without boxes")


@dataclass
class DataSplit:
    """One split of a dataset: ``name`` (``train2017``, ``trainval``, ...), ``coco`` (the COCO
    dict, boxes in pixels ``[x, y, w, h]``), ``image_root`` (folder the relative ``file_name``
    s are under), ``sources`` (folders read: a writer never writes into them)."""
    name: str
    coco: dict
    image_root: str
    sources: list = field(default_factory=list)

    def image_path(self, im):
        """Absolute path of image record ``im``."""
        fn = str(im["file_name"])
        return fn if os.path.isabs(fn) else os.path.join(self.image_root, fn)


def read_coco(ann_file, image_dir=None, split=None):
    """``([DataSplit], problems)`` of a COCO instances JSON (module doc: as read, crowd kept)."""
    ann_file = str(ann_file)
    if not os.path.isfile(ann_file):
        raise DataError(f"COCO annotation file {ann_file} not found")
    try:
        with open(ann_file, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"COCO annotation file {ann_file} is not valid JSON ({e})") from None
    check_coco_dict(data, ann_file)
    stem = os.path.splitext(os.path.basename(ann_file))[0]
    name = split or (stem[len("instances_"):] if stem.startswith("instances_") and len(stem) > 10 else stem)
    if image_dir is None:
        d = os.path.dirname(os.path.abspath(ann_file))
        guess = os.path.join(os.path.dirname(d), name)
        if os.path.basename(d) != "annotations" or not os.path.isdir(guess):
            raise DataError(f"COCO annotation file {ann_file}: give its image folder (--image-dir); it is not in "
                            "COCO's layout <root>/annotations/instances_<split>.json with images in <root>/<split>/")
        image_dir = guess
    if not os.path.isdir(image_dir):
        raise DataError(f"COCO image folder {image_dir} not found")
    problems = []
    known = {im["id"] for im in data["images"]}
    orphans = [a for a in data["annotations"] if a["image_id"] not in known]
    if orphans:
        problems.append(f"{ann_file}: {len(orphans)} annotation(s) of image ids not in 'images' (e.g. annotation id "
                        f"{orphans[0].get('id')}, image_id {orphans[0]['image_id']!r}): left out")
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in known]
    sources = [os.path.dirname(os.path.abspath(ann_file)), os.path.abspath(image_dir)]
    if os.path.basename(sources[0]) == "annotations":      # COCO's layout: the whole root is the source
        sources.append(os.path.dirname(sources[0]))
    return [DataSplit(name, data, os.path.abspath(image_dir), sources)], problems


def _voc_lists(root):
    """``{split: list file}`` of the one-column lists in ``root/ImageSets/Main``."""
    main = os.path.join(root, "ImageSets", "Main")
    out = {}
    if os.path.isdir(main):
        for fn in sorted(os.listdir(main)):
            if not fn.endswith(".txt"):
                continue
            path = os.path.join(main, fn)
            with open(path) as f:
                first = next((ln.split() for ln in f if ln.strip()), None)
            if first is not None and len(first) == 1:
                out[fn[:-4]] = path
    return out


def _voc_object(obj, xml_path, k):
    name_el = obj.find("name")
    name = name_el.text.strip() if name_el is not None and name_el.text else ""
    if not name:
        raise DataError(f"VOC annotation {xml_path}: object {k} has no <name>")
    try:
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax"))
    except (AttributeError, TypeError, ValueError):
        raise DataError(f"VOC annotation {xml_path}: object {k} has a missing or non-numeric <bndbox>") from None
    flags = {}
    for tag in ("difficult", "truncated"):
        el = obj.find(tag)
        try:
            if el is not None and el.text is not None and int(float(el.text)) == 1:
                flags[tag] = 1
        except ValueError:
            raise DataError(f"VOC annotation {xml_path}: object {k} has <{tag}>{el.text}</{tag}>, expected 0 or 1") \
                from None
    return name, [x1 - 1, y1 - 1, x2 - x1, y2 - y1], flags


def read_voc(root, splits=None, classes=None):
    """``([DataSplit], problems)`` of a VOC folder (module doc). ``splits``: names of the lists
    to read (None: all); ``classes``: class names in order (None: the names found, sorted)."""
    root = os.path.abspath(str(root))
    if not os.path.isdir(os.path.join(root, "Annotations")):
        raise DataError(f"VOC folder {root} has no Annotations/ folder")
    lists = _voc_lists(root)
    if splits:
        missing = [s for s in splits if s not in lists]
        if missing:
            raise DataError(f"VOC folder {root}: split list(s) {missing} not in ImageSets/Main "
                            f"(found: {sorted(lists) or 'none'})")
        lists = {s: lists[s] for s in splits}
    if lists:
        stems = {}
        for s, path in lists.items():
            with open(path) as f:
                stems[s] = [ln.split()[0] for ln in f if ln.strip()]
    else:
        stems = {"all": sorted(fn[:-4] for fn in os.listdir(os.path.join(root, "Annotations")) if fn.endswith(".xml"))}
    parsed, problems = {}, []
    for s, names in stems.items():
        for stem in names:
            if stem not in parsed:
                parsed[stem] = _parse_voc_xml(root, stem)
    found = sorted({o[0] for rec in parsed.values() for o in rec["objects"]})
    names = list(classes) if classes else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        stem = next(st for st, rec in parsed.items() if any(o[0] in unknown for o in rec["objects"]))
        raise DataError(f"VOC annotation {os.path.join(root, 'Annotations', stem + '.xml')}: class "
                        f"'{next(o[0] for o in parsed[stem]['objects'] if o[0] in unknown)}' not in the class list "
                        f"{names} ({len(unknown)} unknown name(s): {unknown[:10]})")
    cat = {n: i + 1 for i, n in enumerate(names)}
    categories = [{"id": cat[n], "name": n} for n in names]
    out = []
    for s, ids in stems.items():
        images, anns, seen = [], [], set()
        for stem in ids:
            if stem in seen:
                problems.append(f"{lists.get(s, root)}: image {stem} listed twice: read once")
                continue
            seen.add(stem)
            rec = parsed[stem]
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": rec["file_name"], "width": rec["width"],
                           "height": rec["height"]})
            for name, bbox, flags in rec["objects"]:
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat[name], "bbox": bbox,
                             "area": bbox[2] * bbox[3], "iscrowd": 0, **flags})
        out.append(DataSplit(s, {"images": images, "annotations": anns, "categories": categories},
                             os.path.join(root, "JPEGImages"), [root]))
    return out, problems


def _parse_voc_xml(root, stem):
    xml_path, tree, w, h = read_voc_xml(root, stem)
    file_name = stem + ".jpg"
    fn = tree.find("filename")
    if not os.path.exists(os.path.join(root, "JPEGImages", file_name)) and fn is not None and fn.text \
            and os.path.exists(os.path.join(root, "JPEGImages", fn.text.strip())):
        file_name = fn.text.strip()
    objects = [_voc_object(obj, xml_path, k) for k, obj in enumerate(tree.iter("object"))]
    return {"file_name": file_name, "width": w, "height": h, "objects": objects}


def _read_classes_txt(path):
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip()]


def read_yolo_source(src, splits=None, classes=None):
    """``([DataSplit], problems)`` of a YOLO dataset: a dataset YAML, a folder holding one
    (``data.yaml``, else the only ``*.yaml``), or a folder with ``images/<split>/`` (class
    names from ``classes``, else its ``classes.txt``). ``splits``: the YAML keys / folder
    names to read (None: every one present)."""
    from .yolo import load_dataset_yaml, read_yolo
    src = os.path.abspath(str(src))
    yaml_path = None
    if os.path.isfile(src):
        yaml_path = src
    elif os.path.isdir(src):
        found = sorted(fn for fn in os.listdir(src) if fn.endswith((".yaml", ".yml")))
        if "data.yaml" in found:
            yaml_path = os.path.join(src, "data.yaml")
        elif len(found) == 1:
            yaml_path = os.path.join(src, found[0])
    else:
        raise DataError(f"YOLO dataset {src} not found (a dataset YAML or a folder)")
    if yaml_path is not None:
        d = load_dataset_yaml(yaml_path)
        root, names = d["root"], list(classes or d["names"])
        entries = {k: d[k] for k in ("train", "val", "test") if d.get(k)}
        sources = [os.path.dirname(yaml_path), root]
    else:
        root = src
        img = os.path.join(src, "images")
        if not os.path.isdir(img):
            raise DataError(f"YOLO folder {src}: no dataset YAML and no images/ folder in it")
        entries = {s: os.path.join(img, s) for s in sorted(os.listdir(img)) if os.path.isdir(os.path.join(img, s))}
        if not entries:
            entries = {"all": img}
        if classes:
            names = list(classes)
        elif os.path.isfile(os.path.join(src, "classes.txt")):
            names = _read_classes_txt(os.path.join(src, "classes.txt"))
        else:
            raise DataError(f"YOLO folder {src}: no dataset YAML and no classes.txt: give the class names (--classes)")
        sources = [src]
    if splits:
        missing = [s for s in splits if s not in entries]
        if missing:
            raise DataError(f"YOLO dataset {yaml_path or src}: split(s) {missing} not found (found: {sorted(entries)})")
        entries = {s: entries[s] for s in splits}
    out, problems, seen = [], [], {}
    for s, images in entries.items():
        key = repr(images)
        if key in seen:       # val: the train images (a YAML written for a set without a val split)
            problems.append(f"{yaml_path or src}: split '{s}' lists the same images as '{seen[key]}': read once")
            continue
        seen[key] = s
        coco, probs = read_yolo(images, names, root=root)
        problems += list(probs)
        image_root = root
        if isinstance(images, str) and os.path.isdir(images):   # names relative to the split's folder
            image_root = os.path.abspath(images)
            for im in coco["images"]:
                path = os.path.normpath(os.path.join(root, str(im["file_name"])))
                if path.startswith(image_root + os.sep):
                    im["file_name"] = os.path.relpath(path, image_root)
        out.append(DataSplit(s, coco, image_root, sources))
    return out, problems


def read_source(fmt, src, image_dir=None, splits=None, classes=None):
    """``([DataSplit], problems)`` of ``src`` in format ``fmt`` (``coco|voc|yolo``)."""
    if fmt == "coco":
        if splits and len(splits) > 1:
            raise DataError("a COCO JSON is one split: give one --split name (or none)")
        return read_coco(src, image_dir, splits[0] if splits else None)
    if fmt == "voc":
        return read_voc(src, splits, classes)
    if fmt == "yolo":
        return read_yolo_source(src, splits, classes)
    raise DataError(f"unknown dataset format '{fmt}' (choose from {', '.join(FORMATS)})")


def merge_splits(splits, name="all"):
    """One :class:`DataSplit` holding every image of ``splits`` once (an image file in two
    splits -- VOC's ``train`` and ``trainval`` -- kept once); file names made absolute, image
    and annotation ids renumbered ``1..N``. The splits must share their categories (by name)."""
    cats = splits[0].coco["categories"]
    _, names0 = class_table(cats)
    images, anns, seen = [], [], set()
    for sp in splits:
        ids, names = class_table(sp.coco["categories"])
        if names != names0:
            raise DataError(f"splits {splits[0].name} and {sp.name} have different classes: cannot merge them")
        to_cat = dict(zip(ids, class_table(cats)[0]))
        per_image = {}
        for a in sp.coco["annotations"]:
            per_image.setdefault(a["image_id"], []).append(a)
        for im in sp.coco["images"]:
            path = os.path.abspath(sp.image_path(im))
            if path in seen:
                continue
            seen.add(path)
            new = dict(im, id=len(images) + 1, file_name=path)
            images.append(new)
            for a in per_image.get(im["id"], ()):
                anns.append(dict(a, id=len(anns) + 1, image_id=new["id"], category_id=to_cat[a["category_id"]]))
    sources = sorted({s for sp in splits for s in sp.sources})
    return DataSplit(name, {"images": images, "annotations": anns, "categories": [dict(c) for c in cats]}, "/",
                     sources)


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_destination(dst, splits, exist_ok=False):
    """Refuse (one DataError line) a ``dst`` equal to or inside a source folder, or holding
    one, and a ``dst`` that exists and is not empty unless ``exist_ok``."""
    for src in sorted({s for sp in splits for s in sp.sources}):
        if _inside(dst, src) or _inside(src, dst):
            raise DataError(f"destination {dst} overlaps the source folder {src}: write the converted dataset "
                            "elsewhere (the source is never written to)")
    if os.path.exists(dst):
        if not os.path.isdir(dst):
            raise DataError(f"destination {dst} exists and is not a folder")
        if os.listdir(dst) and not exist_ok:
            raise DataError(f"destination {dst} exists and is not empty (choose another, or --exist-ok to write "
                            "into it)")


def convert(src_format, src, dst_format, dst, image_dir=None, splits=None, classes=None, images="link",
            exist_ok=False, progress=False):
    """Read ``src`` (``src_format``), write ``dst`` (``dst_format``). Returns the result dict of
    :func:`.writers.write_splits` plus ``problems`` (the reader's one-line notes) and
    ``from``/``to``; :func:`summary_line` makes its one line."""
    data, problems = read_source(src_format, src, image_dir, splits, classes)
    check_destination(dst, data, exist_ok)
    result = write_splits(data, dst, dst_format, images=images, progress=progress)
    result.update(problems=problems, **{"from": src_format, "to": dst_format})
    return result


def summary_line(result):
    """``converted coco -> yolo: 128 images, 929 boxes, 80 classes in 1 split(s) (train2017) at
    DST; not carried over: 10 crowd boxes, 939 segmentation masks`` (only what was lost,
    ``nothing`` when nothing was)."""
    lost = Counter(result["lost"])
    order = [k for k in LOSS_ORDER if lost[k]] + sorted(k for k in lost if k not in LOSS_ORDER and lost[k])
    what = ", ".join(f"{lost[k]} {k}" for k in order) or "nothing"
    probs = f"; {len(result['problems'])} problem(s) in the source (listed above)" if result.get("problems") else ""
    return (f"converted {result['from']} -> {result['to']}: {result['images']} images, {result['boxes']} boxes, "
            f"{result['classes']} classes in {len(result['splits'])} split(s) ({', '.join(result['splits'])}) at "
            f"{result['dst']}; not carried over: {what}{probs}")
