"""The one hook interface of the trainer: :class:`TrainHook` and the priorities that order it.

Built-in behaviours (resume, precompile, logging, evaluation, checkpoints, the run summary)
and the hooks a user passes (``Trainer(hooks=...)``) are all :class:`TrainHook` objects in
one list, called at each point in order of ``priority`` (lower first; mmengine's scale,
``mmengine/hooks/hook.py`` ``Priority``); hooks of equal priority keep the order they were
given in (built-ins first). A user hook has ``NORMAL`` (50) unless its class or instance
sets another ``priority``. The table of the built-ins is in :mod:`mindyolox.training.trainer`.
"""

__all__ = ["TrainHook", "ordered", "VERY_HIGH", "HIGH", "ABOVE_NORMAL", "NORMAL", "BELOW_NORMAL", "LOW", "VERY_LOW",
           "POINTS"]

VERY_HIGH, HIGH, ABOVE_NORMAL, NORMAL, BELOW_NORMAL, LOW, VERY_LOW = 10, 30, 40, 50, 60, 70, 90

# the points of a run, in the order the trainer reaches them (wrap_step: once, before before_train)
POINTS = ("wrap_step", "before_train", "before_epoch", "before_iter", "after_iter", "on_stop", "after_epoch",
          "after_train")


class TrainHook:
    """Base class of trainer hooks: override any of these; each gets the trainer.

    ``priority`` (int, default ``NORMAL`` = 50): the place among the other hooks at every
    point, lower first (module doc; the built-ins' priorities are in the trainer's table)."""

    priority = NORMAL

    def before_train(self, trainer):
        """After the model, data and compiled step are built (and a resumed state loaded),
        before the first epoch."""

    def after_train(self, trainer):
        """After the last step, on every end of the run that got past ``before_train``:
        finished, stopped, early-stopped, interrupted, diverged or failed (``trainer.status``)."""

    def before_epoch(self, trainer):
        pass

    def after_epoch(self, trainer):
        """After the epoch's last step (``trainer.iter == steps_per_epoch``)."""

    def before_iter(self, trainer):
        """Before each chunk of steps (``trainer.iter``: its first iteration)."""

    def after_iter(self, trainer):
        """After each chunk (``trainer.iter``: its last iteration; ``trainer.last``: the means of
        the last logged window)."""

    def on_stop(self, trainer):
        """The run stops inside an epoch (``trainer.status``: ``interrupted`` by a stop request, or
        ``stopped`` at ``max_iters``), right after ``after_iter`` (``trainer.iter``: the last
        iteration run). No ``after_epoch`` follows; ``after_train`` does."""

    def after_record(self, trainer, record):
        """Each record rank 0 writes to ``metrics.jsonl`` (``record``: the dict written -- a
        ``type: train`` log window, ``eval``, ``time``, ``data`` or ``event``), right after it is
        written (:meth:`~mindyolox.training.run_log.RunLog.record`, the one place records are
        written); never on the other ranks. Not a point of the loop (not in ``POINTS``): it comes
        whenever a hook or the trainer writes a record. The experiment trackers read it
        (:mod:`~mindyolox.training.hooks.experiment`)."""

    def wrap_step(self, trainer, step):
        """The callable the feeder launches once per training step (called once, before the
        first step, in hook order; each hook gets what the previous one returned). It receives
        exactly what the feeder hands the step -- with data sink, the device queue's tensors --
        and must call ``step`` with them and return its result. Default: ``step`` unchanged.
        (``bench/check_device.py`` checksums every batch the step receives this way.)"""
        return step


def ordered(hooks):
    """``hooks`` sorted by ``priority`` (lower first), stable for equal priorities."""
    return sorted(hooks, key=lambda h: int(getattr(h, "priority", NORMAL)))
