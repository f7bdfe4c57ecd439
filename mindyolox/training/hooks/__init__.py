"""The trainer's hooks: the interface (:class:`TrainHook`, priorities) and the built-in hooks,
one module per family -- checkpoints and resume, evaluation (best checkpoint, early stopping),
logging (log windows, progress bar, TensorBoard, run summary; float16 overflow health), precompile,
experiment trackers (MLflow, W&B). Their order is the
table in :mod:`mindyolox.training.trainer`."""
from .base import ABOVE_NORMAL, BELOW_NORMAL, HIGH, LOW, NORMAL, POINTS, VERY_HIGH, VERY_LOW, TrainHook, ordered
from .checkpoint import CheckpointHook, ResumeHook, TrainingDiverged
from .evaluation import AnalysisHook, EvalHook, eval_due
from .experiment import ExperimentHook
from .logging import LoggerHook, SummaryHook, progress_postfix
from .overflow import OverflowStalled
from .precompile import PrecompileHook

__all__ = ["TrainHook", "ordered", "POINTS", "VERY_HIGH", "HIGH", "ABOVE_NORMAL", "NORMAL", "BELOW_NORMAL", "LOW",
           "VERY_LOW", "ResumeHook", "PrecompileHook", "LoggerHook", "EvalHook", "AnalysisHook", "CheckpointHook",
           "SummaryHook", "ExperimentHook", "TrainingDiverged", "OverflowStalled", "eval_due", "progress_postfix",
           "builtin_hooks"]


def builtin_hooks():
    """A fresh set of the built-in hooks, in priority order (the trainer's table)."""
    return [ResumeHook(), PrecompileHook(), LoggerHook(), EvalHook(), CheckpointHook(), AnalysisHook(), SummaryHook(),
            ExperimentHook()]
