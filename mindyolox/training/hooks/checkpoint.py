"""Checkpoints of a run: the run folder claimed under its lock, resume (metadata, best-AP
reconciliation, loading the state), and the saves (``last.ckpt`` with ``last.prev.ckpt``,
``epoch_<N>.ckpt``, ``best.ckpt`` through the evaluation hook), never of NaN/Inf weights.

:class:`ResumeHook` (``VERY_HIGH``) loads a resumed state at ``before_train`` (before the
feeder opens, so the data stream starts from the restored RNG); :class:`CheckpointHook`
(``LOW``, after the user hooks and the evaluation) saves at ``after_epoch``, every
``train.checkpoint_interval`` steps inside an epoch (``after_iter``) and at ``on_stop``; before
every save of a distributed run the BatchNorm statistics are averaged over the ranks
(:func:`agree_bn`), so no checkpoint holds rank 0's statistics alone.
Reading the resume metadata (:func:`read_resume_meta`) and claiming the folder
(:func:`run_folder`) come earlier, in the trainer's set-up: the start position decides what is
built and the compile-cache key.
"""
import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from ...errors import MindYOLOXError, WeightsError
from ...runtime.distributed import all_reduce_norm, broadcast_initial_weights
from ...runtime.run_lock import LOCK_NAME, RunLock
from ..checkpoint import (NonFiniteWeights, good_checkpoint, load_training_state, non_finite, read_meta, rng_state,
                          save_training_state, set_rng_state, stale_temp_files, state_entries)
from .base import LOW, VERY_HIGH, TrainHook

__all__ = ["ResumeHook", "CheckpointHook", "TrainingDiverged", "read_resume_meta", "resume_advice", "run_folder",
           "checkpoint_meta", "save", "diverge", "agree_bn", "NOT_STARTED"]

# what a start writes before its first checkpoint: a run folder holding only these is not started
NOT_STARTED = {"config.yaml", "train_log.txt", "metrics.jsonl", "curves.png", "tensorboard", "STOP"}


class TrainingDiverged(MindYOLOXError):
    """The loss became NaN/Inf; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- resume
def read_resume_meta(tr):
    """Resume metadata of trainer ``tr`` (or None); sets its start position (``start_epoch``,
    ``start_iter``), ``resume_path``, the best AP so far and the patience count."""
    tr.start_epoch, tr.start_iter = 0, 0
    if not tr.resume:
        return None
    tr.resume_path = Path(tr.run_dir / "last.ckpt" if tr.resume is True else tr.resume)
    if tr.resume is True and not tr.resume_path.is_file():
        raise MindYOLOXError(f"nothing to resume: {tr.run_dir} holds no last.ckpt; {resume_advice(tr)}")
    try:
        meta = read_meta(tr.resume_path, tr.notes, ours=tr.resume is True)
    except WeightsError as e:
        if not tr.resume_path.is_file():
            raise
        raise type(e)(f"{e}; {resume_advice(tr)}") from None
    tr.start_epoch, tr.start_iter = int(meta["epoch"]), int(meta["iter"])
    tr.best_ap = tr.prev_best = float(meta.get("best_ap", 0.0))
    _reconcile_best(tr)
    tr.last_ap = meta.get("last_ap")
    tr.stale_evals = int(meta.get("stale_evals", 0))
    if tr.start_epoch >= tr.max_epoch:
        raise MindYOLOXError(f"{tr.resume_path}: the run already finished ({tr.start_epoch} of "
                             f"{tr.max_epoch} epochs); raise train.max_epoch to train longer")
    if int(meta.get("world_size", tr.world_size)) != tr.world_size:
        tr.notes.append(f"note: checkpoint written with {meta['world_size']} devices, resuming on {tr.world_size}")
    return meta


def resume_advice(tr):
    """What to do when ``tr.resume_path`` cannot be resumed: the newest good checkpoint of the
    run folder (:func:`~mindyolox.training.checkpoint.good_checkpoint`), else how to start
    again -- without ``--resume`` when the folder holds only what a start writes before its
    first checkpoint (and temporary files of a save that did not finish, removed by
    :func:`run_folder`), else with ``--exist-ok``."""
    found = good_checkpoint(tr.run_dir, exclude=[tr.resume_path])
    if found:
        return (f"the newest good checkpoint is {found[0]} (step {found[1]['global_step']}): continue with "
                f"--resume {found[0]}")
    d = tr.run_dir
    temps = stale_temp_files(d)
    cut = f" (a save was cut off: {', '.join(p.name for p in temps)})" if temps else ""
    others = [p for p in d.iterdir() if p.name not in NOT_STARTED and p.name != LOCK_NAME
              and p not in temps] if d.is_dir() else []
    if not others:
        return f"no checkpoint was saved yet{cut}: start the run again without --resume"
    return f"no good checkpoint in it{cut}: start the run again with --exist-ok (or choose another --name)"


def _reconcile_best(tr):
    """``best_ap`` at least the AP of the ``best.ckpt`` on disk: a run killed after an
    evaluation wrote best.ckpt but before the next last.ckpt resumes with the older best_ap of
    last.ckpt, and a worse model would then overwrite best.ckpt."""
    best = Path(tr.run_dir) / "best.ckpt"
    if not best.is_file() or Path(tr.resume_path).resolve() == best.resolve():
        return
    try:
        on_disk = float(read_meta(best).get("best_ap", 0.0))
    except MindYOLOXError as e:
        tr.notes.append(f"note: {best} is unreadable ({e}); best AP from {tr.resume_path}")
        return
    if on_disk > tr.best_ap:
        tr.notes.append(f"note: best.ckpt holds AP50:95 {100 * on_disk:.2f}, newer than the "
                        f"{100 * tr.best_ap:.2f} in {Path(tr.resume_path).name}: kept as the best")
        tr.best_ap = tr.prev_best = on_disk


@contextmanager
def run_folder(tr):
    """Claim the run folder of trainer ``tr`` for the ``with`` block (rank 0). It is locked
    first (:mod:`~mindyolox.runtime.run_lock`: a second start into a live run's folder stops
    with one line, touching nothing); then the temporary files of a save that did not finish
    (:func:`~mindyolox.training.checkpoint.stale_temp_files`) are removed; then a folder holding
    only what a start writes before its first checkpoint (a start that failed, or was killed
    during its first save) counts as not started: its files are replaced. The lock is given
    back when the block ends, however it ends."""
    d = tr.run_dir
    with RunLock(d) as lock:
        tr.notes.extend(lock.notes)
        stale = stale_temp_files(d)  # a process killed during a save; we hold the lock: nobody writes them
        for p in stale:
            p.unlink()
        if stale:
            tr.notes.append(f"note: removed {', '.join(p.name for p in stale)} in {d}: temporary file(s) "
                            "of a checkpoint save that did not finish")
        entries = [p for p in d.iterdir() if p.name != LOCK_NAME]
        if entries and not tr.resume and not tr.exist_ok:
            if any(p.name not in NOT_STARTED for p in entries):
                raise MindYOLOXError(f"run directory {d} already exists and is not empty: pass --resume to "
                                     "continue it, --exist-ok to write into it anyway, or another --name")
            for p in entries:
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            tr.notes.append(f"note: {d} held no checkpoint (a start that did not train); its files were replaced")
        d.mkdir(parents=True, exist_ok=True)
        yield d


# ----------------------------------------------------------------------------- saves
def checkpoint_meta(tr):
    """Checkpoint metadata: ``epoch``/``iter`` of the next iteration to run (0-based), taken
    as ``tr.iter`` (the loop advances it past the last iteration run before saving)."""
    epoch, it = tr.epoch, tr.iter
    if it >= tr.steps_per_epoch:
        epoch, it = epoch + 1, 0
    return {"epoch": epoch, "iter": it, "global_step": epoch * tr.steps_per_epoch + it,
            "steps_per_epoch": tr.steps_per_epoch, "world_size": tr.world_size,
            "best_ap": tr.best_ap, "last_ap": tr.last_ap, "stale_evals": tr.stale_evals,
            "rng": rng_state(), "options": tr.options.to_dict(),
            "config": json.loads(json.dumps(tr.cfg, default=str)), "time": time.time()}


def agree_bn(tr):
    """Distributed: average the BatchNorm moving statistics of the model and the EMA model over
    the ranks (the official ``all_reduce_norm``) unless no step ran since they last were
    (``tr.bn_agreed_at == tr.iters_done``: an evaluation or a save of this step did it). Every
    rank calls it at the same points (every save, the evaluation, the end of the run); the
    averages change only the statistics, never a trained weight."""
    if not tr.distributed or tr.bn_agreed_at == tr.iters_done:
        return
    all_reduce_norm(tr.model, tr.world_size)
    if tr.ema_model is not None:  # what best.ckpt / last.ckpt's "ema." entries are evaluated with
        all_reduce_norm(tr.ema_model, tr.world_size)
    tr.bn_agreed_at = tr.iters_done


def save(tr, tag, meta):
    """Write ``<run_dir>/<tag>.ckpt`` (rank 0 only); ``last.ckpt`` keeps the file it replaces as
    ``last.prev.ckpt`` (:func:`~mindyolox.training.checkpoint.save_training_state`). Every rank
    calls it: distributed, the BatchNorm statistics are averaged first (:func:`agree_bn`).

    Weights holding NaN/Inf (a step whose loss was still finite can leave them) are never
    written: the run stops as diverged (:func:`diverge`), the checkpoint on disk untouched.
    With several devices every rank checks (the weights are the same on all of them), so all
    stop at the same save with the same line. Returns the path (None on the other ranks)."""
    what = (f"the weights hold NaN/Inf after {meta.get('global_step', '?')} steps, so {tag}.ckpt was not "
            "written over")
    agree_bn(tr)
    if tr.rank != 0:
        if tr.world_size > 1:
            bad = non_finite(state_entries(tr.model, tr.step, tr.ema_model, tr.optimizer))
            if bad:
                diverge(tr, f"{what} ({', '.join(bad)})")
        return None
    t0 = time.perf_counter()
    try:
        path = save_training_state(tr.run_dir / f"{tag}.ckpt", tr.model, tr.step, tr.ema_model,
                                   tr.optimizer, meta, keep_previous=tag == "last")
    except NonFiniteWeights as e:
        diverge(tr, f"{what} ({', '.join(e.names)})")
    tr.timing["ckpt_s"] += time.perf_counter() - t0
    tr.runlog.event("checkpoint", tag=tag, path=str(path), epoch=meta["epoch"], iter=meta["iter"],
                    seconds=round(time.perf_counter() - t0, 3))
    return path


def diverge(tr, what):
    """Stop the run as diverged: ``TrainingDiverged`` with one line saying ``what`` happened and
    the last good checkpoint -- the newest one in the run folder that loads, passes its CRC
    check and holds no NaN/Inf (:func:`~mindyolox.training.checkpoint.good_checkpoint`;
    ``last.ckpt``, else ``last.prev.ckpt``, ...), never a file merely because it exists."""
    tr.status = "diverged"
    found = good_checkpoint(tr.run_dir)
    kept = (f"{found[0]} (step {found[1]['global_step']}); continue from it with --resume {found[0]}"
            if found else "none written yet")
    msg = f"{what}; stopping. The last good checkpoint is kept: {kept}. Lower the lr or check the data."
    tr.runlog.event("diverged", message=msg)
    raise TrainingDiverged(msg)


# ----------------------------------------------------------------------------- the hooks
class ResumeHook(TrainHook):
    """``before_train``: a resumed run loads model, EMA, optimizer, loss-scale state and RNG
    from ``trainer.resume_path`` (read by :func:`read_resume_meta`); a fresh distributed run
    gives every rank rank 0's initial weights."""

    priority = VERY_HIGH

    def before_train(self, trainer):
        tr = trainer
        if tr.resume_meta is None:
            if tr.distributed:
                broadcast_initial_weights(tr.model, tr.ema_model, tr.rank, tr.world_size)
            return
        try:
            load_training_state(tr.resume_path, tr.model, tr.step, tr.ema_model, tr.optimizer)
        except WeightsError as e:  # e.g. NaN/Inf weights in a file without CRC
            raise type(e)(f"{e}; {resume_advice(tr)}") from None
        if "rng" in tr.resume_meta:
            set_rng_state(tr.resume_meta["rng"])
        tr.log(f"resumed from {tr.resume_path}: epoch {tr.start_epoch + 1} iter {tr.start_iter + 1} "
               f"(step {tr.start_epoch * tr.steps_per_epoch + tr.start_iter}), best AP {100 * tr.best_ap:.2f}")


class CheckpointHook(TrainHook):
    """``after_iter``: ``last.ckpt`` every ``train.checkpoint_interval`` global steps inside an
    epoch (0: epoch ends only; the trainer ends a chunk there); ``after_epoch``: ``last.ckpt``
    (and ``epoch_<N>.ckpt`` every ``train.save_interval`` epochs), after the evaluation so that
    its best AP and patience count are in it; ``on_stop``: ``last.ckpt`` (unless this step's was
    just written) and the line saying why the run stopped."""

    priority = LOW

    def after_iter(self, trainer):
        tr = trainer
        ci = int(tr.tcfg.get("checkpoint_interval", 0) or 0)
        if ci <= 0 or (tr.progress_in_iter + 1) % ci or tr.iter + 1 >= tr.steps_per_epoch:
            return  # (the epoch end saves in after_epoch)
        _save_last(tr)

    def after_epoch(self, trainer):
        meta = checkpoint_meta(trainer)
        save(trainer, "last", meta)
        trainer.saved_at = trainer.iters_done
        ep, si = trainer.epoch + 1, int(trainer.tcfg.save_interval)
        if si > 0 and ep % si == 0:
            save(trainer, f"epoch_{ep}", meta)

    def on_stop(self, trainer):
        tr = trainer
        path, meta = (tr.run_dir / "last.ckpt", None) if tr.saved_at == tr.iters_done else _save_last(tr)
        if meta is None:  # written by after_iter at this very step
            tr.iter += 1
            meta = checkpoint_meta(tr)
            tr.iter -= 1
        if tr.status == "interrupted":
            req = tr.stop_request
            removed = req.file and tr.rank == 0 and tr.stop_requests.remove_file()  # after the save
            tr.runlog.rank_info(f"stopping after step {meta['global_step']}: {req}; last.ckpt holds epoch "
                                f"{meta['epoch'] + 1} iter {meta['iter'] + 1} next, continue with --resume"
                                + (f" (removed {tr.stop_requests.path.name})" if removed else ""))
            tr.runlog.event("interrupted", signal=None if req.signum is None else int(req.signum), request=str(req),
                            epoch=meta["epoch"], iter=meta["iter"], global_step=meta["global_step"])
        else:
            tr.log(f"stopped after {tr.iters_done} iterations (max_iters); saved {path}")


def _save_last(tr):
    """``last.ckpt`` of the state after the current iteration (its metadata names the next one);
    returns ``(path, meta)``."""
    tr.iter += 1  # the metadata names the next iteration to run
    try:
        meta = checkpoint_meta(tr)
        path = save(tr, "last", meta)
    finally:
        tr.iter -= 1
    tr.saved_at = tr.iters_done
    return path or tr.run_dir / "last.ckpt", meta
