"""Evaluation during training, the best checkpoint and early stopping (``train.patience``).

:class:`EvalHook` (``BELOW_NORMAL``): at ``after_epoch``, after the user hooks (which may
change the model first) and before :class:`~mindyolox.training.hooks.checkpoint.CheckpointHook`
(whose ``last.ckpt`` then holds this epoch's AP: a kill at any point leaves ``best_ap`` and
``best.ckpt`` consistent).
"""
import time

from ...data.loader import no_aug_start
from .base import BELOW_NORMAL, LOW, TrainHook
from .checkpoint import agree_bn, checkpoint_meta, save

__all__ = ["EvalHook", "AnalysisHook", "eval_due", "evaluate_and_save", "eval_network", "keep_best_detections",
           "BEST_DETECTIONS"]


def eval_due(epoch, train_cfg):
    """Whether the trainer evaluates after ``epoch`` (1-based): every ``train.eval_interval``
    epochs (0: never), the last epoch, and each epoch from the no-aug switch on (the official
    trainer sets ``eval_interval = 1`` there)."""
    ei, max_epoch = int(train_cfg.eval_interval), int(train_cfg.max_epoch)
    start = no_aug_start(max_epoch, train_cfg.no_aug_epochs)
    return ei > 0 and (epoch % ei == 0 or epoch - 1 >= start or epoch == max_epoch)


def eval_network(tr):
    """The network trainer ``tr`` evaluates: the EMA model (the model without EMA) with its
    BatchNorm folded as ``test.py`` folds it -- a copy built once (``tr.eval_model``, its graph
    compiled once) whose weights are refolded from the current ones at every call
    (:func:`~mindyolox.models.fold.refold_from`; the fused eval kernels on CPU) -- so an
    in-training AP is the AP ``test.py`` gives that checkpoint. Without ``options.fold_bn``
    (mixed precision) the EMA model itself, BN in float32."""
    source = tr.ema_model if tr.ema_model is not None else tr.model
    if not tr.options.fold_bn:
        return source
    from ...models import build_model
    from ...models.fold import fold_batchnorms, refold_from
    if tr.eval_model is None:
        tr.eval_model = fold_batchnorms(build_model(tr.cfg, tr.options))
    return refold_from(tr.eval_model, source)


def evaluate_and_save(tr):
    """Evaluate the EMA weights (the model without EMA) of trainer ``tr``; write ``best.ckpt``
    on a new best. Distributed: every rank evaluates its shard and receives the AP
    (``evaluator`` module doc); each rank prints its line with the time it waited for the
    others. Returns the evaluator's result (None without an evaluator)."""
    if tr.evaluator is None:
        return None
    if tr.timing["eval_s"] == 0 and not tr.precompile_sizes:   # its graph compiles now, in silence
        tr.log(f"evaluating epoch {tr.epoch + 1}; the first evaluation also compiles the evaluation graph "
               "(about 5-10 s for yolox-nano on a 2-core CPU)")
    t0 = time.perf_counter()
    model = eval_network(tr)
    res = tr.evaluator.evaluate(model, progress=False)
    model.set_train(False)
    tr.model.set_train(True)
    ap, ap50 = float(res["AP50_95"]), float(res["AP50"])
    eval_s = time.perf_counter() - t0
    wait_s = float(res["timing"].get("wait_s", 0.0))
    tr.timing["eval_s"] += eval_s
    tr.last_ap = ap
    best = ap > tr.best_ap
    tr.best_ap = max(tr.best_ap, ap)
    line = (f"eval epoch {tr.epoch + 1}: AP50:95 {100 * ap:.2f} AP50 {100 * ap50:.2f} "
            f"(best {100 * tr.best_ap:.2f}) in {eval_s:.1f} s")
    if tr.world_size > 1:
        line += f"; {res['timing']['images']} images on this rank, {wait_s:.1f} s of it waiting for the other ranks"
    tr.runlog.rank_info(line)
    step = (tr.epoch + 1) * tr.steps_per_epoch
    tr.runlog.record({"type": "eval", "epoch": tr.epoch + 1, "step": step, "AP50_95": ap, "AP50": ap50,
                      "eval_s": eval_s, "wait_s": wait_s, "stats": [float(s) for s in res.get("stats", [])]})
    if tr.runlog.tb is not None and res.get("samples"):
        tr.runlog.tb.detections(res["samples"], tr.evaluator.dataset, step)
    if best:
        save(tr, "best", checkpoint_meta(tr))
        keep_best_detections(tr, res)
    return res


BEST_DETECTIONS = "best_detections.json"


def keep_best_detections(tr, res):
    """Rank 0, COCO evaluation: the detections of the evaluation that produced ``best.ckpt``
    written as ``<run>/best_detections.json`` (COCO result list, atomic) and its per-class AP
    kept as ``tr.best_eval`` for :class:`AnalysisHook` (no second inference pass)."""
    if tr.rank != 0 or "detections" not in res:
        return
    from ...runtime.outputs import save_json
    save_json(tr.run_dir / BEST_DETECTIONS, res["detections"], indent=None)   # compact, as detections.json
    tr.best_eval = {"epoch": tr.epoch + 1, "per_class_AP": res.get("per_class_AP"),
                    "per_class_AP50": res.get("per_class_AP50")}


class EvalHook(TrainHook):
    """``after_epoch`` when :func:`eval_due` (and evaluation is on): BatchNorm statistics
    averaged over the ranks (distributed), :func:`evaluate_and_save`, then early stopping:
    ``trainer.status = "early_stopped"`` after ``train.patience`` evaluations in a row without a
    new best (every rank decides the same: they all hold the AP)."""

    priority = BELOW_NORMAL

    def after_epoch(self, trainer):
        tr = trainer
        if not (tr.do_eval and eval_due(tr.epoch + 1, tr.tcfg)):
            return
        agree_bn(tr)  # distributed: one model (and EMA) evaluated on every shard; the save after reuses it
        evaluate_and_save(tr)
        patience = int(tr.tcfg.get("patience", 0) or 0)
        if patience <= 0 or tr.evaluator is None:
            return
        tr.stale_evals = 0 if tr.best_ap > tr.prev_best else tr.stale_evals + 1
        tr.prev_best = tr.best_ap
        if tr.stale_evals >= patience:
            tr.status = "early_stopped"
            tr.log(f"early stop after epoch {tr.epoch + 1}: {patience} evaluation(s) without a better AP50:95 "
                   f"than {100 * tr.best_ap:.2f} (train.patience={patience}); last.ckpt and best.ckpt kept")
            tr.runlog.event("early_stop", epoch=tr.epoch + 1, best_ap=tr.best_ap, patience=patience)


class AnalysisHook(TrainHook):
    """``after_train`` (rank 0): the analysis folder of ``best.ckpt`` -- ``<run>/analysis/``
    (:mod:`mindyolox.evaluation.analysis`) from ``best_detections.json`` (written by
    :func:`keep_best_detections` at the evaluation that produced ``best.ckpt``; no second
    inference pass), at ``test.analysis_conf`` / ``test.analysis_iou``. Skipped when no
    evaluation produced the file (``--no-eval``, VOC metric, a run that failed) or with
    ``test.analysis=false``. The per-class AP is the one kept in memory, or after a resume
    recomputed from the file (COCOeval, no inference). A write that fails (disk full) is
    logged, not fatal. Priority 80 (after ``CheckpointHook``, 70; before ``SummaryHook``, 90:
    the summary line and the ``end`` event stay the last records)."""

    priority = LOW + 10

    def after_train(self, trainer):
        tr = trainer
        det_file = tr.run_dir / BEST_DETECTIONS
        test = tr.cfg.get("test", {}) or {}
        if tr.rank != 0 or tr.status == "failed" or getattr(tr, "evaluator", None) is None or not bool(test.get("analysis", True)):
            return
        if not det_file.is_file():
            tr.log("analysis: skipped (no COCO evaluation produced best.ckpt in this run folder)")
            return
        import json
        from ...evaluation.analysis import analysis_files, run_analysis
        from ...evaluation.evaluator import coco_eval
        from ...runtime.outputs import check_outputs
        ds = tr.evaluator.dataset
        out = tr.run_dir / "analysis"
        dets = json.loads(det_file.read_text())
        best = getattr(tr, "best_eval", None)
        if best is None and getattr(ds, "coco", None) is not None:
            _, ap, ap50, _, _ = coco_eval(ds.coco, dets)
            best = {"per_class_AP": dict(zip(ds.class_names, ap)), "per_class_AP50": dict(zip(ds.class_names, ap50))}
        check_outputs([(p, "the analysis of best.ckpt", "train.output_dir") for p in analysis_files(out, True)],
                      [getattr(ds, "ann_file", None)])
        tr.log(f"analysis of best.ckpt (its evaluation's detections, {det_file.name}):")
        try:
            run_analysis(ds, dets, str(out), (best or {}).get("per_class_AP"), (best or {}).get("per_class_AP50"),
                         float(test.get("analysis_conf", 0.25)), float(test.get("analysis_iou", 0.45)),
                         int(test.get("analysis_worst", 6)), log=tr.log)
        except OSError as e:   # disk full: the run's result is best.ckpt, not a picture
            tr.log(f"analysis not written ({e})")
