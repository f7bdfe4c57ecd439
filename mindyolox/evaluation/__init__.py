"""Evaluation: COCO AP (official evaluator) and Pascal VOC mAP of a Cell or of an exported
artifact. :func:`evaluate` (model, dataset or eval Loader -> dict of metrics),
:class:`COCOEvaluator` / :class:`VOCEvaluator` (build once, ``.evaluate(model)`` every N epochs),
:func:`run_inference` (detections in original pixels + timing), :mod:`voc_eval`, and
:mod:`.analysis` (P/R at an operating confidence, confusion matrix, curves, worst images)."""
from .evaluator import (COCO_STAT_NAMES, COCOEvaluator, VOCEvaluator, evaluate, format_per_class_table,
                        format_timing, run_inference)
from .voc_eval import voc_ap, voc_eval_class, voc_map

__all__ = ["COCO_STAT_NAMES", "COCOEvaluator", "VOCEvaluator", "evaluate", "run_inference",
           "format_per_class_table", "format_timing", "voc_ap", "voc_eval_class", "voc_map"]
