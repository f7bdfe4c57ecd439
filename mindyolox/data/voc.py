"""Pascal VOC detection dataset (``Annotations/*.xml``, ``ImageSets/Main/<split>.txt``,
``JPEGImages/*.jpg``), as the official ``yolox/data/datasets/voc.py`` reads it.

- Split entries: ``"trainval"`` reads ``<data_dir>/ImageSets/Main/trainval.txt``;
  ``"VOC2007/trainval"`` reads ``<data_dir>/VOC2007/ImageSets/Main/trainval.txt`` (that year's
  ``Annotations/`` and ``JPEGImages/``). A list merges its entries in order, so one ``data_dir``
  = ``VOCdevkit`` serves VOC0712: ``["VOC2007/trainval", "VOC2012/trainval"]`` -- in a recipe
  ``data.train_split: [VOC2007/trainval, VOC2012/trainval]`` (or the same override;
  ``tests/test_data_datasets.py`` reads two roots this way).
- Class list from the recipe (``data.classes``), the 20 VOC classes when empty; an object
  whose name is not in it is an error naming the XML file and the name.
- Coordinates: ``int(float(v)) - 1`` as the official code (VOC is 1-based); boxes are then
  clipped to the image, zero-size ones dropped; both counted. Difficult objects are kept (the
  official default ``keep_difficult=True``), flagged in ``difficult[i]``.
- Decision: an image listed twice (the same stem twice in a split file, or in two splits of
  the same folder) or two images with one id (the same stem in two year folders: the id is
  the stem, and the evaluator indexes ground truth by id) is refused with one line naming the
  split files and stems: it would train twice and be scored against one set of boxes.
"""
import os
import xml.etree.ElementTree as ET

import numpy as np

from ..errors import DataError
from .base import DetectionDataset

__all__ = ["VOCDataset", "VOC_CLASSES", "read_voc_xml"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def read_voc_xml(root, stem):
    """``(xml_path, parsed root element, width px, height px)`` of ``<root>/Annotations/<stem>.xml``;
    a missing file, bad XML or a missing / non-numeric ``<size>`` is one ``DataError`` naming it."""
    xml_path = os.path.join(root, "Annotations", stem + ".xml")
    if not os.path.isfile(xml_path):
        raise DataError(f"VOC annotation {xml_path} not found (listed in a split file)")
    try:
        tree = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise DataError(f"VOC annotation {xml_path} is not valid XML ({e})") from None
    try:
        w = int(float(tree.find("size").find("width").text))
        h = int(float(tree.find("size").find("height").text))
    except (AttributeError, TypeError, ValueError):
        raise DataError(f"VOC annotation {xml_path}: missing or bad <size><width>/<height>") from None
    return xml_path, tree, w, h


class VOCDataset(DetectionDataset):
    """Pascal VOC dataset; ``image_id`` is the file stem (a string such as ``"2007_000063"``).

    Args:
        data_dir: VOC year folder (holding ``Annotations/``) or a VOCdevkit (see module doc).
        splits: a split name or a list of them.
        classes: class names (index = class id); empty/None -> the 20 VOC classes.
    """

    def __init__(self, data_dir, splits="trainval", classes=None):
        splits = [splits] if isinstance(splits, str) else list(splits)
        super().__init__(f"VOC {data_dir} {'+'.join(splits)}")
        self.data_dir = str(data_dir)
        self.class_names = tuple(classes) if classes else VOC_CLASSES
        self.class_ids = list(range(len(self.class_names)))
        to_class = {n: i for i, n in enumerate(self.class_names)}
        self.difficult = []
        listed = {}                  # stem -> (split file, image root) where it was first listed
        for split in splits:
            sub, _, name = split.rpartition("/")
            root = os.path.join(self.data_dir, sub) if sub else self.data_dir
            list_file = os.path.join(root, "ImageSets", "Main", name + ".txt")
            if not os.path.isfile(list_file):
                raise DataError(f"VOC split file {list_file} not found (data.data_dir / split '{split}')")
            with open(list_file) as f:
                stems = [ln.split()[0] for ln in f if ln.strip()]
            for stem in stems:
                if stem in listed:
                    first, first_root = listed[stem]
                    same = os.path.normpath(first_root) == os.path.normpath(root)
                    raise DataError(f"VOC split file {list_file}: image {stem} is already listed in {first}"
                                    + ("" if same else f" (another image with the same id, in {first_root})")
                                    + "; list each image once (it would train twice and be scored once)")
                listed[stem] = (list_file, root)
                self._add(root, stem, to_class)
        self.verify_images()
        self.log_stats()

    def _add(self, root, stem, to_class):
        xml_path, tree, w, h = read_voc_xml(root, stem)
        boxes, classes, difficult = [], [], []
        for k, obj in enumerate(tree.iter("object")):
            name_el = obj.find("name")
            name = name_el.text.strip() if name_el is not None and name_el.text else ""
            if name not in to_class:
                raise DataError(f"VOC annotation {xml_path}: object {k} has class '{name}', "
                                f"not in data.classes")
            try:
                bb = obj.find("bndbox")
                x1, y1, x2, y2 = (int(float(bb.find(t).text)) - 1 for t in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError):
                raise DataError(f"VOC annotation {xml_path}: object {k} has a missing or "
                                f"non-numeric <bndbox>") from None
            cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            if cx2 <= cx1 or cy2 <= cy1:
                self.stats["boxes_dropped_zero_size_or_outside"] += 1
                continue
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                self.stats["boxes_clipped_to_image"] += 1
            d = obj.find("difficult")
            difficult.append(d is not None and d.text is not None and int(d.text) == 1)
            boxes.append([cx1, cy1, cx2, cy2])
            classes.append(to_class[name])
        img_path = os.path.join(root, "JPEGImages", stem + ".jpg")
        if not os.path.exists(img_path):
            fn = tree.find("filename")
            if fn is not None and fn.text and os.path.exists(os.path.join(root, "JPEGImages", fn.text.strip())):
                img_path = os.path.join(root, "JPEGImages", fn.text.strip())
        self.ids.append(stem)
        self.paths.append(img_path)
        self.sizes.append((h, w))
        self.boxes.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        self.classes.append(np.asarray(classes, dtype=np.int64))
        self.difficult.append(np.asarray(difficult, dtype=bool))
        if not boxes:
            self.stats["images_without_boxes"] += 1
