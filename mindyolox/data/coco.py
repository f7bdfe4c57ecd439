"""COCO-format detection dataset (instances JSON + image folder), as the official
``yolox/data/datasets/coco.py`` reads it.

- Images in JSON order (pycocotools ``getImgIds()``); images without annotations are kept
  (negatives); file names are taken from ``file_name`` (any name, numeric or not).
- Category ids are mapped to contiguous classes ``0..C-1`` by sorted id:
  ``class_ids[c]`` is the JSON category id of class ``c`` (use it when writing detections
  for COCO evaluation), ``class_names[c]`` its name.
- Crowd annotations (``iscrowd=1``) are left out, as the official ``getAnnIds(iscrowd=False)``.
- Boxes ``[x, y, w, h]`` become ``(x1, y1, x2, y2)`` clipped to the image; boxes with zero or
  negative size (before or after clipping) or zero ``area`` are dropped; both are counted in
  ``stats`` and logged once. (The official code clips ``x1`` before adding ``w``, which only
  differs for boxes starting left of/above the image: none in COCO.)
- Ids (decisions; nothing trains or is scored twice or half): an image ``id`` listed twice in
  ``images``, or one image file (``file_name``) under two ids, is refused with one line naming
  the ids and files -- pycocotools keeps one ``images`` record per id and merges both images'
  annotations into it, and one file under two ids trains twice with part of its boxes each
  time. Duplicate (or missing) annotation ``id`` s are renumbered ``1..N`` in file order with one
  warning naming them: the ids mean nothing to training, but pycocotools' index keeps one
  annotation per id, so the evaluator would score against fewer (and doubled) ground truths
  than the trainer learns from. The renumbered annotations are what both the training index
  and the evaluator's ``coco`` index are built from, so they agree.
"""
import contextlib
import io
import json
import logging
import os
from collections import Counter, defaultdict
from numbers import Number

import numpy as np

from ..errors import DataError
from .base import DetectionDataset

__all__ = ["COCODataset", "check_coco_dict"]

logger = logging.getLogger("mindyolox.data")

_IMAGE_KEYS = ("id", "file_name", "height", "width")
_ANN_KEYS = ("image_id", "category_id", "bbox")


def check_coco_dict(data, where):
    """One ``DataError`` line naming ``where`` and the record, for a COCO instances dict that
    the dataset and the format tools (``data/convert.py``) cannot use: not an object of
    ``images`` / ``annotations`` / ``categories`` lists, a record without its keys, a bbox that
    is not 4 finite numbers, a category id not in ``categories``."""
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object with 'images', "
                        f"'annotations', 'categories', got {type(data).__name__}")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise DataError(f"{where}: missing required key(s) {missing}")
    for k in ("images", "annotations", "categories"):
        if not isinstance(data[k], list):
            raise DataError(f"{where}: '{k}' must be a list, "
                            f"got {type(data[k]).__name__}")
    for i, im in enumerate(data["images"]):
        lack = [k for k in _IMAGE_KEYS if not isinstance(im, dict) or k not in im]
        if lack:
            raise DataError(f"{where}: images[{i}] lacks {lack}")
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or "id" not in c:
            raise DataError(f"{where}: categories[{i}] lacks 'id'")
    known = {c["id"] for c in data["categories"]}
    unknown = {}
    for i, ann in enumerate(data["annotations"]):
        lack = [k for k in _ANN_KEYS if not isinstance(ann, dict) or k not in ann]
        if lack:
            raise DataError(f"{where}: annotations[{i}] "
                            f"(id {ann.get('id') if isinstance(ann, dict) else None}) lacks {lack}")
        bbox = ann["bbox"]
        if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                or not all(isinstance(v, Number) and np.isfinite(v) for v in bbox)):
            raise DataError(f"{where}: annotations[{i}] (id {ann.get('id')}) "
                            f"has bbox {bbox!r}, expected 4 finite numbers [x, y, w, h]")
        if ann["category_id"] not in known:
            unknown.setdefault(ann["category_id"], ann.get("id", i))
    if unknown:
        listed = ", ".join(f"{c!r} (e.g. annotation id {a})" for c, a in sorted(
            unknown.items(), key=lambda kv: str(kv[0]))[:10])
        raise DataError(f"{where}: category ids not in 'categories': {listed}")


class COCODataset(DetectionDataset):
    """COCO instances dataset.

    Args:
        ann_file: path of the instances JSON, or such a COCO dict already in memory (every
            other format is read into one: :func:`mindyolox.data.yolo.read_yolo`); a dict is
            used as it is (not copied: duplicate annotation ids are renumbered in it).
        image_dir: folder holding the images named by ``file_name`` (an absolute
            ``file_name`` is used as it is).
        name: label used in messages (default: the JSON file name; ``"COCO dict"`` for a dict).

    Attributes (besides :class:`DetectionDataset`'s): ``coco`` (a ``pycocotools.coco.COCO``
    built from the same JSON, for ``COCOeval``), ``class_ids`` (sorted JSON category ids).
    """

    def __init__(self, ann_file, image_dir, name=None):
        in_memory = isinstance(ann_file, dict)
        super().__init__(name or ("COCO dict" if in_memory else os.path.basename(str(ann_file))))
        self.ann_file = None if in_memory else str(ann_file)
        self.image_dir = str(image_dir)
        self._where = f"annotations of {self.name}" if in_memory else f"annotation file {self.ann_file}"
        data = ann_file if in_memory else _read_json(self.ann_file)
        check_coco_dict(data, self._where)
        self._check_ids(data)
        self.coco = _make_coco(data)

        cats = {c["id"]: c for c in data["categories"]}
        self.class_ids = sorted(cats)
        self.class_names = tuple(str(cats[i].get("name", i)) for i in self.class_ids)
        cat_to_class = {cid: c for c, cid in enumerate(self.class_ids)}

        per_image = defaultdict(list)
        for ann in data["annotations"]:
            per_image[ann["image_id"]].append(ann)
        known_images = {im["id"] for im in data["images"]}
        orphans = sum(len(v) for k, v in per_image.items() if k not in known_images)
        if orphans:
            self.stats["annotations_of_unknown_images_ignored"] += orphans

        for im in data["images"]:
            h, w = int(im["height"]), int(im["width"])
            boxes, classes = [], []
            for ann in per_image.get(im["id"], ()):
                if ann.get("iscrowd", 0):
                    self.stats["crowd_boxes_ignored"] += 1
                    continue
                box = self._clean_box(ann, w, h)
                if box is not None:
                    boxes.append(box)
                    classes.append(cat_to_class[ann["category_id"]])
            self.ids.append(im["id"])
            self.paths.append(os.path.join(self.image_dir, str(im["file_name"])))
            self.sizes.append((h, w))
            self.boxes.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
            self.classes.append(np.asarray(classes, dtype=np.int64))
            if not boxes:
                self.stats["images_without_boxes"] += 1
        self.verify_images()
        self.log_stats()

    def _clean_box(self, ann, width, height):
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        if bw <= 0 or bh <= 0 or ("area" in ann and float(ann["area"]) <= 0):
            self.stats["boxes_dropped_zero_size"] += 1
            return None
        x1, y1 = max(0.0, x), max(0.0, y)
        x2, y2 = min(float(width), x + bw), min(float(height), y + bh)
        if x2 <= x1 or y2 <= y1:
            self.stats["boxes_dropped_outside_image"] += 1
            return None
        if (x1, y1, x2, y2) != (x, y, x + bw, y + bh):
            self.stats["boxes_clipped_to_image"] += 1
        return [x1, y1, x2, y2]

    def _check_ids(self, data):
        """Refuse duplicate image ids and files listed twice; renumber duplicate or missing
        annotation ids (module doc). ``data`` is changed in place."""
        where, images = self._where, data["images"]
        seen = defaultdict(list)
        for i, im in enumerate(images):
            seen[_hashable(im["id"])].append(i)
        dup = [(k, v) for k, v in seen.items() if len(v) > 1]
        if dup:
            listed = "; ".join(f"id {images[v[0]]['id']!r} at images{v}" for _, v in dup[:5])
            more = f" (and {len(dup) - 5} more)" if len(dup) > 5 else ""
            raise DataError(f"{where}: {len(dup)} image id(s) listed more than once: {listed}{more}; "
                            "each image needs its own id (their annotations would be merged)")
        files = defaultdict(list)
        for im in images:
            files[os.path.normpath(os.path.join(self.image_dir, str(im["file_name"])))].append(im["id"])
        dup = [(f, ids) for f, ids in files.items() if len(ids) > 1]
        if dup:
            listed = "; ".join(f"{f} as ids {ids!r}" for f, ids in dup[:5])
            more = f" (and {len(dup) - 5} more)" if len(dup) > 5 else ""
            raise DataError(f"{where}: {len(dup)} image file(s) listed under more than one id: "
                            f"{listed}{more}; list each file once with all its annotations")
        anns = data["annotations"]
        counts = Counter(_hashable(a.get("id")) for a in anns)
        dup = sorted((k for k, n in counts.items() if n > 1 and k is not None), key=str)
        missing = counts.get(None, 0)
        if dup or missing:
            what = []
            if dup:
                what.append(f"{len(dup)} id(s) used more than once ({', '.join(repr(k) for k in dup[:10])}"
                            f"{', ...' if len(dup) > 10 else ''})")
            if missing:
                what.append(f"{missing} without an id")
            logger.warning("%s: annotation ids not unique: %s; all %d annotations renumbered 1..%d "
                           "in file order (training and evaluation use every box)", where, " and ".join(what),
                           len(anns), len(anns))
            for n, a in enumerate(anns, 1):
                a["id"] = n


def _hashable(v):
    """A JSON value usable as a dict key (lists become tuples)."""
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def _read_json(path):
    if not os.path.isfile(path):
        raise DataError(f"annotation file {path} not found")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"annotation file {path} is not valid JSON ({e})") from None


def _make_coco(data):
    """A pycocotools COCO index over ``data`` without re-reading the file (quietly)."""
    from pycocotools.coco import COCO
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
