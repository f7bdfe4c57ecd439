"""Training: the loop (:class:`Trainer`, :class:`TrainHook`), the compiled step
(:class:`TrainStep`), feeding, learning-rate schedule, optimizer, EMA, checkpoints, run logs."""
from .checkpoint import load_training_state, save_training_state
from .ema import ModelEMA
from .lr import LRSchedule, build_lr_schedule
from .optimizer import SGD, build_optimizer, param_groups
from .plots import plot_training_curves
from .train_step import TrainStep
from .hooks import OverflowStalled
from .trainer import TrainHook, Trainer, TrainingDiverged

__all__ = ["Trainer", "TrainHook", "TrainingDiverged", "OverflowStalled", "TrainStep", "ModelEMA", "SGD",
           "build_optimizer", "param_groups", "LRSchedule", "build_lr_schedule",
           "save_training_state", "load_training_state", "plot_training_curves"]
