"""Build everything a training run needs from a recipe (the role of the official
``Exp.get_model / get_data_loader / get_optimizer / get_lr_scheduler / get_evaluator``).

:func:`build_training` returns a :class:`TrainParts`; the :class:`~mindyolox.training.trainer.Trainer`
only runs the loop, hooks, checkpoints and logging around them.
"""
import os
from dataclasses import dataclass

from ..errors import MindYOLOXError

__all__ = ["TrainParts", "build_training", "build_evaluator"]


@dataclass
class TrainParts:
    """``model``: the trained YOLOX Cell (float32 parameters); ``net``: what the step calls
    (``model`` under mixed precision, :func:`~mindyolox.models.amp.mixed_precision`);
    ``ema_model``: float32 EMA copy or None; ``loader``: training
    :class:`~mindyolox.data.loader.Loader` (all epochs from the start point as one stream);
    ``lr_schedule``: host :class:`~mindyolox.training.lr.LRSchedule` (the step computes the same
    values in its graph); ``optimizer``, ``step``: :class:`~mindyolox.training.train_step.TrainStep`;
    ``evaluator`` (with evaluation: rank 0, or every rank when distributed) or None;
    ``weights_report``: fine-tuning load report; ``frozen``: ``(tensors, BN layers)`` frozen
    by ``train.freeze`` (:mod:`~mindyolox.training.freeze`) or None; ``bn_note``: the log line
    of the folded-BatchNorm re-inflation (:mod:`~mindyolox.training.bn_reinflate`) or None."""
    options: object
    model: object
    net: object
    ema_model: object
    loader: object
    lr_schedule: object
    optimizer: object
    step: object
    evaluator: object = None
    weights_report: object = None
    frozen: object = None
    bn_note: object = None


def _load_finetune_weights(model, weights):
    from ..convert.weights import load_weights
    report = load_weights(model, weights, strict=False, skip_mismatched=True)
    other = [n for n, _, _ in report.mismatched if not n.startswith("head.cls_preds.")]
    if other or report.missing:
        raise MindYOLOXError(f"--weights {weights} does not fit the model: {report.summary()}")
    return report


def build_evaluator(cfg, rank=0, world_size=1):
    """COCO or VOC evaluator over the recipe's val split at ``data.test_size`` (this rank's
    shard of a distributed evaluation)."""
    from ..data.loader import build_dataset
    from ..evaluation.evaluator import COCOEvaluator, VOCEvaluator
    try:
        ds = build_dataset(cfg.data, "val")
    except MindYOLOXError as e:
        raise MindYOLOXError(f"evaluation dataset: {e} (set data.val_ann / data.val_images, or pass --no-eval)") from None
    cls = COCOEvaluator if getattr(ds, "coco", None) is not None else VOCEvaluator
    tc = cfg.test
    return cls(ds, tuple(cfg.data.test_size), int(tc.batch_size), float(tc.conf), float(tc.nms),
               bool(tc.class_agnostic), 0, rank, world_size)


def data_workers(flag, key):
    """Data loader processes: ``--workers`` (``flag``, None when not given) else
    ``data.num_workers`` (``key``), capped alike at the CPU count -- mindspore.dataset refuses
    more parallel workers than cores (``num_parallel_workers`` check,
    mindspore/dataset/core/validator_helpers.py:648 ``check_num_parallel_workers``)."""
    return max(0, min(int(key if flag is None else flag), os.cpu_count() or 1))


def build_training(cfg, options, *, rank=0, world_size=1, distributed=False, start_epoch=0, start_iter=0,
                   num_workers=None, weights=None, evaluate=True):
    """All parts of a training run of recipe ``cfg`` under ``options``
    (:class:`~mindyolox.options.DeviceOptions`).

    ``start_epoch`` / ``start_iter``: where the data stream starts (resuming);
    ``weights``: fine-tuning weights loaded into the model before the EMA copies it (the
    head's class layers keep their initialisation when ``num_classes`` differs); BatchNorm
    layers folded into their convolutions in that file are re-inflated on
    ``train.bn_calibration_images`` training images right after the load
    (:mod:`~mindyolox.training.bn_reinflate`), before freezing, mixed precision and the EMA copy.
    """
    from ..models import build_model
    from ..data.loader import create_train_loader
    from ..losses import YOLOXLoss, YOLOXWithLoss
    from ..models.amp import mixed_precision
    from .ema import ModelEMA
    from .lr import build_lr_schedule
    from .optimizer import build_optimizer
    from ..options import float_status_mode
    from .train_step import TrainStep, resolve_loss_scale

    t = cfg.train
    model = build_model(cfg, options)
    report = _load_finetune_weights(model, weights) if weights else None
    train_set, bn_note = None, None
    if report is not None and report.folded_bn:
        from ..data.loader import build_dataset
        from .bn_reinflate import reinflate_folded
        train_set = build_dataset(cfg.data, "train")
        bn_note = reinflate_folded(model, train_set, tuple(cfg.data.input_size), int(t.bn_calibration_images),
                                   int(t.batch_size) // max(1, int(world_size)), source=weights)
    frozen = None
    if t.freeze:
        from .freeze import freeze
        frozen = freeze(model, list(t.freeze))
    ema_model = build_model(cfg, options) if bool(t.ema) else None
    model.set_train(True)
    # on Ascend TopK/ArgMin may run in float16 (precision_mode): SimOTA's float16-safe keys
    loss = YOLOXLoss(int(cfg.model.num_classes), tuple(cfg.model.strides), tiered_keys=options.device == "Ascend")
    loss.use_kernels(options.cpu_kernels)   # CPU: SimOTA over the real labels only, one compiled kernel
    net = YOLOXWithLoss(mixed_precision(model, options.amp_level), loss)
    workers = data_workers(num_workers, cfg.data.num_workers)
    loader = create_train_loader(cfg.data, cfg.aug, t, rank=rank, world_size=world_size, start_epoch=start_epoch,
                                 num_workers=workers, start_iter=start_iter, end_epoch=int(t.max_epoch),
                                 dataset=train_set)
    if loader.dataset.num_classes != int(cfg.model.num_classes):  # before training, not at the first evaluation
        from ..errors import ConfigError
        raise ConfigError(f"{loader.dataset.name} has {loader.dataset.num_classes} classes but model.num_classes is "
                          f"{cfg.model.num_classes}: set model.num_classes={loader.dataset.num_classes}")
    lr_schedule = build_lr_schedule(t, loader.steps_per_epoch)
    optimizer = build_optimizer(model, t)
    ema = None
    if ema_model is not None:  # CPU: one kernel after the step, no EMA graph (training/ema.py)
        ema = ModelEMA(model, ema_model, decay=float(t.ema_decay), tau=float(t.ema_tau)).use_kernel(options.cpu_kernels)
    scale_mode, scale_value = resolve_loss_scale(str(t.loss_scale), options.amp_level, options.device,
                                                 float(t.loss_scale_value))
    step = TrainStep(net, optimizer, ema, loss_scale=scale_mode,
                     scale_value=scale_value, distributed=distributed, group_size=world_size,
                     lr_schedule=lr_schedule, accumulate=int(t.accumulate),
                     float_status=float_status_mode(options.device))
    step.set_global_step((start_epoch * loader.steps_per_epoch + start_iter) // int(t.accumulate))
    evaluator = build_evaluator(cfg, rank, world_size) if evaluate and (rank == 0 or distributed) else None
    return TrainParts(options, model, net, ema_model, loader, lr_schedule, optimizer, step, evaluator, report,
                      frozen, bn_note)
