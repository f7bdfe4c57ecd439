"""Learning-rate schedules, evaluated per iteration on the host (official ``yolox/utils/lr_scheduler.py``).

The official trainer builds SGD with ``lr = warmup_lr`` and, after the step of global
iteration ``i`` (``epoch * iters_per_epoch + iter``), sets the lr to ``f(i + 1)``; so global
iteration ``k`` runs with ``f(k)`` (``f(0) = warmup_lr``). :meth:`LRSchedule.__call__` returns
exactly that value for ``k``.

``yoloxwarmcos`` (the YOLOX default), with ``base = basic_lr_per_img * total batch size``,
``W = iters_per_epoch * warmup_epochs``, ``T = iters_per_epoch * max_epoch``,
``N = iters_per_epoch * no_aug_epochs``, ``min_lr = base * min_lr_ratio``::

    k <= W        : (base - warmup_lr) * (k / W) ** 2 + warmup_lr          (quadratic warmup)
    k >= T - N    : min_lr                                                (flat no-aug tail)
    otherwise     : min_lr + 0.5 * (base - min_lr) * (1 + cos(pi * (k - W) / (T - W - N)))

``warmcos`` (linear warmup then cosine to 0 over ``T - W``) and ``cos`` are also provided.
Units: learning rates in the optimizer's units (per-step SGD step size); ``k`` in iterations.

Short runs (:func:`fit_short_schedule`): when ``warmup_epochs + no_aug_epochs >= max_epoch``
the recipe leaves no cosine phase (the official formula then runs a cut-off warm-up and a flat
tail, and its no-aug switch never fires when ``no_aug_epochs >= max_epoch``). Such a schedule
is clipped, not refused: the no-aug tail to ``max_epoch // 4`` whole epochs, the warm-up to
``max_epoch / 4`` epochs (each only when larger), so ``max_epoch=1`` on any recipe trains a
quarter-epoch warm-up and a cosine over the rest (the single epoch without Mosaic/MixUp, with
L1: the official switch covers the last ``no_aug_epochs + 1`` epochs). Schedules with room for
a cosine phase (every shipped recipe at its own ``max_epoch``) are unchanged.
"""
import json
import math

from mindspore import dtype as mstype
from mindspore import nn, ops

from ..config import Config
from ..errors import ConfigError

__all__ = ["yolox_warm_cos_lr", "warm_cos_lr", "cos_lr", "LRSchedule", "build_lr_schedule", "SCHEDULERS",
           "ScheduleCell", "fit_short_schedule", "fit_recipe"]


def yolox_warm_cos_lr(lr, min_lr_ratio, total_iters, warmup_total_iters, warmup_lr_start, no_aug_iter, iters):
    """The official ``yoloxwarmcos`` value at iteration ``iters`` (see the module doc)."""
    min_lr = lr * min_lr_ratio
    if iters <= warmup_total_iters:
        if warmup_total_iters == 0:
            return lr
        return (lr - warmup_lr_start) * (iters / float(warmup_total_iters)) ** 2 + warmup_lr_start
    if iters >= total_iters - no_aug_iter:
        return min_lr
    span = total_iters - warmup_total_iters - no_aug_iter
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * (iters - warmup_total_iters) / span))


def warm_cos_lr(lr, total_iters, warmup_total_iters, warmup_lr_start, iters):
    """Official ``warmcos``: linear warmup over ``warmup_total_iters``, then cosine to 0."""
    if iters <= warmup_total_iters:
        if warmup_total_iters == 0:
            return lr
        return (lr - warmup_lr_start) * iters / float(warmup_total_iters) + warmup_lr_start
    return lr * 0.5 * (1.0 + math.cos(math.pi * (iters - warmup_total_iters) / (total_iters - warmup_total_iters)))


def cos_lr(lr, total_iters, iters):
    """Official ``cos``: cosine from ``lr`` to 0 over ``total_iters``."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * iters / total_iters))


SCHEDULERS = ("yoloxwarmcos", "warmcos", "cos")


class LRSchedule:
    """Per-iteration schedule: ``schedule(k)`` is the lr of global iteration ``k`` (0-based).

    Args:
        name: ``yoloxwarmcos`` | ``warmcos`` | ``cos``.
        lr: peak lr (``basic_lr_per_img * total batch size``).
        iters_per_epoch, max_epoch, warmup_epochs, no_aug_epochs: in iterations / epochs.
        warmup_lr: lr at iteration 0; min_lr_ratio: final lr as a fraction of ``lr``.
    """

    def __init__(self, name, lr, iters_per_epoch, max_epoch, warmup_epochs=5, warmup_lr=0.0,
                 no_aug_epochs=15, min_lr_ratio=0.05):
        if name not in SCHEDULERS:
            raise ConfigError(f"train.scheduler: unknown scheduler '{name}' (use {', '.join(SCHEDULERS)})")
        if iters_per_epoch <= 0 or max_epoch <= 0:
            raise ConfigError(f"LR schedule needs iters_per_epoch > 0 and train.max_epoch > 0, "
                              f"got {iters_per_epoch} and {max_epoch}")
        if name == "yoloxwarmcos" and warmup_epochs + no_aug_epochs >= max_epoch:
            raise ConfigError(f"train.warmup_epochs ({warmup_epochs}) + train.no_aug_epochs ({no_aug_epochs}) "
                              f"must be smaller than train.max_epoch ({max_epoch}) (build_lr_schedule clips a "
                              "short run's schedule to fit: fit_short_schedule)")
        self.name, self.lr = name, float(lr)
        self.iters_per_epoch, self.max_epoch = int(iters_per_epoch), int(max_epoch)
        self.total_iters = self.iters_per_epoch * self.max_epoch
        self.warmup_iters = int(round(self.iters_per_epoch * warmup_epochs))
        self.no_aug_iters = self.iters_per_epoch * int(no_aug_epochs)
        self.warmup_lr, self.min_lr_ratio = float(warmup_lr), float(min_lr_ratio)

    def __call__(self, k):
        k = int(k)
        if self.name == "yoloxwarmcos":
            return yolox_warm_cos_lr(self.lr, self.min_lr_ratio, self.total_iters, self.warmup_iters,
                                     self.warmup_lr, self.no_aug_iters, k)
        if self.name == "warmcos":
            return warm_cos_lr(self.lr, self.total_iters, self.warmup_iters, self.warmup_lr, k)
        return cos_lr(self.lr, self.total_iters, k)

    def graph(self):
        """This schedule as a Cell for the compiled train step: ``cell(k)`` (int32 scalar
        Tensor) -> float32 lr, the same values as ``self(k)`` to float32 rounding."""
        return ScheduleCell(self)

    def __repr__(self):
        return (f"LRSchedule({self.name}, lr={self.lr:g}, {self.iters_per_epoch} it/epoch x {self.max_epoch}, "
                f"warmup {self.warmup_iters} it from {self.warmup_lr:g}, no-aug {self.no_aug_iters} it, "
                f"min {self.min_lr_ratio:g}x)")


def fit_short_schedule(train_cfg):
    """``(warmup_epochs, no_aug_epochs, note)`` for a recipe's ``train`` section: unchanged and
    ``note=None`` when ``warmup_epochs + no_aug_epochs < max_epoch``; else clipped to
    ``max_epoch / 4`` (warm-up, epochs, may be fractional) and ``max_epoch // 4`` (no-aug,
    whole epochs), and ``note`` is the one line saying so (module doc)."""
    max_epoch = int(train_cfg["max_epoch"])
    warmup, no_aug = float(train_cfg["warmup_epochs"]), int(train_cfg["no_aug_epochs"])
    if warmup + no_aug < max_epoch:
        return warmup, no_aug, None
    new_warmup, new_no_aug = min(warmup, max_epoch / 4), min(no_aug, max_epoch // 4)
    note = (f"note: train.max_epoch={max_epoch} leaves no cosine phase after train.warmup_epochs={warmup:g} + "
            f"train.no_aug_epochs={no_aug}; short schedule: warm-up clipped to {new_warmup:g} epoch(s), no-aug "
            f"tail to {new_no_aug} (each at most a quarter of the run; a warm-up + no-aug tail shorter than "
            f"train.max_epoch is kept as given)")
    return new_warmup, new_no_aug, note


def fit_recipe(cfg):
    """``(cfg, note)``: the recipe with its short-schedule clip applied once
    (:func:`fit_short_schedule`), for everything the run derives from ``warmup_epochs`` and
    ``no_aug_epochs`` (schedule, no-aug switch of the loader, L1, evaluations); ``cfg`` itself
    (not copied) and ``note=None`` when nothing is clipped, else a copy. The trainer calls it
    once; :func:`build_lr_schedule` of the clipped recipe then finds nothing more to clip."""
    warmup, no_aug, note = fit_short_schedule(cfg.train)
    if note is None:
        return cfg, None
    cfg = Config(json.loads(json.dumps(cfg, default=str)))
    cfg.train.warmup_epochs, cfg.train.no_aug_epochs = warmup, no_aug
    return cfg, note


def build_lr_schedule(train_cfg, iters_per_epoch):
    """The schedule of a recipe's ``train`` section: peak lr = basic_lr_per_img x batch_size
    (total) x accumulate (the effective batch); ``iters_per_epoch`` counts batches, the
    schedule optimizer steps (``iters_per_epoch // train.accumulate`` per epoch)."""
    acc = max(1, int(train_cfg.get("accumulate", 1)))
    lr = float(train_cfg["basic_lr_per_img"]) * int(train_cfg["batch_size"]) * acc
    iters_per_epoch = max(1, int(iters_per_epoch) // acc)
    warmup, no_aug, _ = fit_short_schedule(train_cfg)
    return LRSchedule(str(train_cfg["scheduler"]), lr, iters_per_epoch, int(train_cfg["max_epoch"]),
                      warmup_epochs=warmup, warmup_lr=float(train_cfg["warmup_lr"]),
                      no_aug_epochs=no_aug, min_lr_ratio=float(train_cfg["min_lr_ratio"]))


class ScheduleCell(nn.Cell):
    """:class:`LRSchedule` computed inside a graph (the formulas of the module doc, branch-free
    with ``select``): ``construct(k)`` int32 scalar global iteration -> float32 scalar lr."""

    def __init__(self, schedule):
        super().__init__()
        s = schedule
        self.name = s.name
        self.lr, self.warmup_lr = s.lr, s.warmup_lr
        self.min_lr = s.lr * s.min_lr_ratio
        self.total, self.warmup, self.no_aug = float(s.total_iters), float(s.warmup_iters), float(s.no_aug_iters)

    def construct(self, k):
        k = k.astype(mstype.float32)
        if self.name == "cos":
            return self.lr * 0.5 * (1.0 + ops.cos(math.pi * k / self.total))
        if self.warmup > 0:
            frac = k / self.warmup
            warm = (self.lr - self.warmup_lr) * (frac * frac if self.name == "yoloxwarmcos" else frac) + self.warmup_lr
        else:
            warm = k * 0.0 + self.lr
        if self.name == "yoloxwarmcos":
            span = self.total - self.warmup - self.no_aug
            cos = self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + ops.cos(math.pi * (k - self.warmup) / span))
            tail = ops.select(k >= self.total - self.no_aug, k * 0.0 + self.min_lr, cos)
        else:
            tail = self.lr * 0.5 * (1.0 + ops.cos(math.pi * (k - self.warmup) / (self.total - self.warmup)))
        return ops.select(k <= self.warmup, warm, tail)
