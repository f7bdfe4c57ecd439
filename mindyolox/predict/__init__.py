"""Prediction on images, folders, videos and streams, shared by ``predict.py`` (a Cell) and
``deploy/infer.py`` (an exported artifact)."""
from .predictor import COCO_CLASSES, Predictor, class_names_for, run_prediction

__all__ = ["COCO_CLASSES", "Predictor", "class_names_for", "run_prediction"]
