"""Prediction on images, folders, videos, webcams and streams, shared by ``predict.py`` (a Cell)
and ``deploy/infer.py`` (an exported artifact): one frame source (:mod:`.source`), one loop
(:mod:`.loop`), the Cell predictor (:mod:`.predictor`)."""
from .loop import detections_to_records, plan_source, run_plan
from .predictor import COCO_CLASSES, Predictor, class_names_for, run_prediction
from .source import IMAGE_EXTS, VIDEO_EXTS, read_source

__all__ = ["COCO_CLASSES", "IMAGE_EXTS", "VIDEO_EXTS", "Predictor", "class_names_for", "detections_to_records",
           "plan_source", "read_source", "run_plan", "run_prediction"]
