"""Data pipeline: COCO / VOC datasets, the official YOLOX 0.3.0 augmentations, MindSpore loaders.

Public surface:

- :func:`build_dataset` (recipe ``data`` section -> dataset), :class:`COCODataset`,
  :class:`VOCDataset`; items are dicts (BGR uint8 image, xyxy boxes, classes, image id,
  original size); ``dataset.class_ids[c]`` maps class ``c`` back to the annotation's
  category id (COCO evaluation), ``dataset.coco`` is the pycocotools index (COCO only);
- :func:`preproc` (evaluation/prediction letterbox), :class:`TrainTransform`, :class:`MosaicMixup`;
- :func:`create_train_loader`, :func:`create_eval_loader` (``mindspore.dataset`` pipelines).
"""
from .base import DetectionDataset, EventLog, ImageUnreadable
from .coco import COCODataset
from .loader import Loader, build_dataset, create_eval_loader, create_train_loader, size_for_step
from .mosaic import MosaicMixup
from .transforms import TrainTransform, cxcywh2xyxy, letterbox, preproc
from .voc import VOC_CLASSES, VOCDataset

__all__ = [
    "DetectionDataset", "EventLog", "ImageUnreadable", "COCODataset", "VOCDataset", "VOC_CLASSES",
    "build_dataset", "create_train_loader", "create_eval_loader", "Loader", "size_for_step",
    "MosaicMixup", "TrainTransform", "preproc", "letterbox", "cxcywh2xyxy",
]
