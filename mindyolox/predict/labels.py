"""The optional outputs of prediction besides the drawings and the JSON: YOLO txt labels
(``--save-txt``) and a COCO result JSON (``--save-coco``), both made from the same detection
records as the per-image JSON (:func:`mindyolox.predict.loop.detections_to_records`).

Decided here (the issue leaves it open):

- **YOLO txt** (``--save-txt``): one ``labels/<stem>.txt`` per image (``dog.jpg`` ->
  ``labels/dog.txt``, the YOLO dataset convention, so a folder of predictions can be used as
  labels) and one ``labels/<stem>_<frame>.txt`` per video / webcam / stream frame (frame
  counted from 0, six digits: ``clip_000012.txt``). One row per detection, ``class cx cy w h
  score``: the box clipped to the image (the JSON's boxes are not clipped, as the official
  demo) and normalised by the image's width / height, ``score`` = obj * cls_conf; six
  decimals. A frame or image without detections gets an empty file (it was predicted). Two
  inputs with the same stem (``dog.jpg`` and ``dog.png``) are refused before anything is
  written.
- **COCO results** (``--save-coco``): ``predictions_coco.json`` in ``--save-dir``, the list of
  ``{"image_id", "category_id", "bbox": [x, y, w, h] px, "score"}`` that pycocotools'
  ``COCO.loadRes`` reads. ``image_id``: when the stem of every image is digits (COCO's own
  ``000000000139.jpg``), ``int(stem)`` (139), so the file scores against the COCO annotation
  of those images; otherwise the image's 1-based position in the source order. Video frames
  get the ids after the largest image id, in order. ``category_id``: the official COCO
  category id (1..90 with gaps) when the model's classes are the 80 COCO classes, else the
  model's class index. Each per-image JSON (and each frame of a video's JSON) records its
  ``image_id``. Boxes are not clipped (the same numbers as the JSON).
"""
import os

import numpy as np

__all__ = ["COCO_CLASSES", "COCO_CATEGORY_IDS", "yolo_rows", "txt_name", "coco_image_ids", "coco_results", "category_ids_for"]

# the 80 COCO class names in class-index order (the models' order; re-exported by .predictor)
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

# the category ids of COCO 2017's 80 classes in class-index order (instances_*.json "categories")
COCO_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
                     28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
                     54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
                     81, 82, 84, 85, 86, 87, 88, 89, 90)


def txt_name(stem, frame=None):
    """``labels/<stem>.txt`` for an image, ``labels/<stem>_<frame:06d>.txt`` for a frame (relative)."""
    return os.path.join("labels", f"{stem}.txt" if frame is None else f"{stem}_{int(frame):06d}.txt")


def yolo_rows(records, width, height):
    """YOLO txt text of detection ``records`` (the JSON's) on a ``width`` x ``height`` px
    image: lines ``class cx cy w h score``, box clipped to the image then normalised to 0..1."""
    lines = []
    for d in records:
        x1, y1, x2, y2 = d["bbox"]
        x1, x2 = np.clip([x1, x2], 0.0, float(width))
        y1, y2 = np.clip([y1, y2], 0.0, float(height))
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{d['class_id']} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f} {d['score']:.6f}\n")
    return "".join(lines)


def coco_image_ids(images):
    """``{image path: image_id}`` (module doc: ``int(stem)`` when every stem is digits and they
    are distinct, else the 1-based position)."""
    stems = [os.path.splitext(os.path.basename(str(p)))[0] for p in images]
    if stems and all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return {p: int(s) for p, s in zip(images, stems)}
    return {p: i + 1 for i, p in enumerate(images)}


def category_ids_for(class_names):
    """Class index -> COCO ``category_id`` (module doc)."""
    if tuple(class_names) == tuple(COCO_CLASSES):
        return COCO_CATEGORY_IDS
    return tuple(range(len(class_names)))


def coco_results(image_id, records, category_ids):
    """COCO result dicts of one image's detection ``records``."""
    out = []
    for d in records:
        x1, y1, x2, y2 = d["bbox"]
        c = d["class_id"]
        out.append({"image_id": int(image_id), "category_id": int(category_ids[c]) if 0 <= c < len(category_ids) else c,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": d["score"]})
    return out
