"""Engine: training, evaluation and prediction.

Public surface:

- training: :class:`Trainer` (+ :class:`TrainHook`, :class:`TrainingDiverged`),
  :class:`TrainStep` (the compiled step), :class:`SGD` / :func:`build_optimizer` /
  :func:`param_groups`, :class:`LRSchedule` / :func:`build_lr_schedule` (yoloxwarmcos),
  :class:`ModelEMA`, :func:`save_training_state` / :func:`load_training_state`,
  :func:`plot_training_curves`;

- :func:`evaluate` (model, dataset or eval Loader -> dict of metrics), :class:`COCOEvaluator`,
  :class:`VOCEvaluator` (build once, call ``.evaluate(model)`` every N epochs: the loader is
  reused and the model, a GRAPH_MODE Cell, compiles once);
- :func:`run_inference` (model over an eval loader -> detections in original pixels + timing);
- :mod:`voc_eval` (``voc_ap``, ``voc_map``: the official VOC metrics);
- :mod:`predictor` (``Predictor``, ``run_prediction``: images / folders / videos, shared by
  ``predict.py`` and ``deploy/infer.py``); :mod:`runtime` (``build_and_load``, ``setup_mindspore``).
"""
from .evaluator import (COCO_STAT_NAMES, COCOEvaluator, VOCEvaluator, evaluate, format_per_class_table,
                        format_timing, run_inference)
from .predictor import COCO_CLASSES, Predictor, class_names_for, run_prediction
from .runtime import build_and_load, parse_img_size, setup_mindspore
from .voc_eval import voc_ap, voc_eval_class, voc_map
from .checkpoint import load_training_state, save_training_state
from .ema import ModelEMA
from .lr import LRSchedule, build_lr_schedule
from .optimizer import SGD, build_optimizer, param_groups
from .plots import plot_training_curves
from .train_step import TrainStep
from .trainer import TrainHook, Trainer, TrainingDiverged

__all__ = ["COCO_STAT_NAMES", "COCOEvaluator", "VOCEvaluator", "evaluate", "run_inference",
           "format_per_class_table", "format_timing", "voc_ap", "voc_eval_class", "voc_map",
           "COCO_CLASSES", "Predictor", "class_names_for", "run_prediction",
           "build_and_load", "parse_img_size", "setup_mindspore",
           "Trainer", "TrainHook", "TrainingDiverged", "TrainStep", "ModelEMA", "SGD",
           "build_optimizer", "param_groups", "LRSchedule", "build_lr_schedule",
           "save_training_state", "load_training_state", "plot_training_curves"]
