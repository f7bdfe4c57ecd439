"""Float16 health at each log window: the loss scale and the overflow-skipped steps on the log
line, a warning when too many of a window's steps were skipped, and a stop after too many
skipped in a row -- so that a run whose steps mostly overflow (Ascend 910A computing float32
matrices in float16, a loss scale too large for them) does not look like a normal run.

Called by :func:`~mindyolox.training.hooks.logging.log_window` once per log line (the window's
device sums are read then, at a chunk boundary). What it reads, per window, from
:meth:`~mindyolox.training.train_step.TrainStep.read_stats`: ``steps``, ``skipped`` (steps whose
update was skipped), ``scale`` (the loss scale after the last step) and ``skip_run``, the
longest run of consecutive skipped optimizer steps any step of the window ended -- counted in
the compiled step at every step (``TrainStep.skip_streak``), so consecutive skips inside a chunk
of device-resident steps, and a run spanning several windows, are all counted.

* **Log line** (:func:`scale_text`): ``| scale 1024 skipped 3/10`` when the step checks for
  overflow (``train.loss_scale`` resolved to ``static`` or ``dynamic``); nothing without a loss
  scale (float32 on CPU/GPU: no step is ever skipped, the scale is 1).
* **Warning** (``train.overflow_warn_share``, default 0.25): one ``warning:`` line when more
  than that share of a window's steps, and more than one, were skipped. A lone skip is what a
  dynamic scale does each time it has grown (every ``scale_window`` good steps), not a
  symptom; a quarter of the steps not learning is. Not while a dynamic scale is still falling
  to its first working value (no window with an applied step yet, scale above 1): PyTorch's
  GradScaler, which the official trainer uses, skips those first steps too by design.
* **Stop** (``train.overflow_stop_steps`` = K, default 100, 0 = never): when a window's
  ``skip_run`` reaches K the run writes ``last.ckpt`` (a skipped step leaves the weights,
  momentum and EMA as they were, so it holds no damage) and stops with
  :class:`OverflowStalled`, one line naming the cause, the step and the fixes (loss scale,
  precision mode, amp level); trainer status ``overflowed``, exit code 2 from ``train.py``
  like ``diverged``. K = 100 is far above a dynamic scale's legitimate run of skips (it halves
  at each: 16 from 65536, 24 from MindSpore's 2**24, 10 from 1024) and costs under a minute of
  910 time (~0.3-0.6 s per yolox-s step). The stop is at the first log line after the K-th
  skip (at most ``train.print_interval`` - 1 steps later).

Every rank decides the same: the skip decision of each step is already one for all ranks (the
overflow flags are all-reduced inside the step, ``TrainStep._shared_finite``;
``tests/test_distributed_agreement.py``), so ``skipped``, ``skip_run`` and the scale derived from
it are equal on every rank, and ``read_stats`` hands every rank the same (all-reduced) window
at the same step; each rank warns and stops at the same log line, rank 0 writing ``last.ckpt``.
"""
from ...errors import MindYOLOXError
from .checkpoint import checkpoint_meta, save

__all__ = ["OverflowStalled", "scale_mode", "scale_text", "check_overflow"]


class OverflowStalled(MindYOLOXError):
    """``train.overflow_stop_steps`` optimizer steps in a row were skipped (float16 overflow);
    ``last.ckpt`` was written."""


def scale_mode(step):
    """The loss-scale mode of the compiled ``step``: ``none`` | ``static`` | ``dynamic``."""
    return getattr(step, "loss_scale_mode", "none")


def scale_text(tr, rec):
    """`` | scale 1024 skipped 3/10`` for the log line of window ``rec`` (a ``type: train``
    record), or ``""`` when the step has no loss scale (module doc)."""
    if scale_mode(tr.step) == "none":
        return ""
    return f" | scale {rec['scale']:g} skipped {rec['skipped']}/{rec['steps']}"


def check_overflow(tr, rec):
    """The warning and the stop for window ``rec`` (module doc); after its log line."""
    mode = scale_mode(tr.step)
    if mode == "none":
        return
    t = tr.tcfg
    n, skipped = rec["steps"], rec["skipped"]
    limit = int(t.overflow_stop_steps)
    if limit > 0 and rec["skip_run"] >= limit:
        _stop(tr, rec, mode, limit)
    calibrating = mode == "dynamic" and not tr.scale_settled and tr.resume_meta is None and rec["scale"] > 1.0
    if skipped < n:
        tr.scale_settled = True
    share = float(t.overflow_warn_share)
    if not calibrating and skipped > 1 and skipped > share * n:
        tr.log(f"warning: {skipped} of {n} steps in this window were skipped (float16 overflow: their gradients "
               f"were not applied), more than train.overflow_warn_share={share:g}; loss scale {rec['scale']:g} "
               f"({mode}); the run stops after train.overflow_stop_steps={limit} skipped in a row")


def fixes(tr, rec, mode):
    """The three settings that decide float16 overflow, with the run's values."""
    o = tr.options
    scale = (f"train.loss_scale=dynamic (now static {rec['scale']:g}: it never drops)" if mode == "static" else
             f"the dynamic loss scale fell to {rec['scale']:g} and the steps still overflow")
    return (f"{scale}; runtime.precision_mode=must_keep_origin_dtype on a chip with float32 matrices "
            f"(now {o.precision_mode}); train.amp_level=O0 (now {o.amp_level})")


def _stop(tr, rec, mode, limit):
    """Write ``last.ckpt`` and raise :class:`OverflowStalled` (module doc)."""
    tr.iter += 1  # the metadata names the next iteration to run
    try:
        meta = checkpoint_meta(tr)
        save(tr, "last", meta)
    finally:
        tr.iter -= 1
    tr.status = "overflowed"
    msg = (f"{rec['skip_run']} steps in a row skipped for float16 overflow (train.overflow_stop_steps={limit}), up "
           f"to epoch {rec['epoch']} iter {rec['iter']} (step {rec['step']}): training has stalled; saved "
           f"{tr.run_dir / 'last.ckpt'} (step {meta['global_step']}), continue with --resume after one of the "
           f"fixes: {fixes(tr, rec, mode)}")
    tr.runlog.event("overflowed", message=msg)
    raise OverflowStalled(msg)
