"""The compiled training step: forward + SimOTA loss + backward + (all-reduce) + SGD + EMA.

:class:`TrainStep` is an ``nn.Cell`` run in GRAPH_MODE (``mindspore.jit`` semantics: the
whole ``construct`` is one compiled graph). Per call ``step(images, labels, size)``, for a batch
``images`` ``[B, 3, H0, W0]`` (BGR 0..255; uint8 from the training pipeline, or float32),
``labels`` float32 ``[B, max_labels, 5]`` and the step's multiscale input size ``size``
``(H, W)`` (a tuple: a compile-time constant, one graph per size; None = ``(H0, W0)``):

0. :class:`~mindyolox.training.preprocess.BatchPreprocess`: the images cast to float32 on the
   device and, when ``size`` differs, the batch resized to it with the labels scaled (the
   official ``Exp.preprocess``);
1. ``value_and_grad`` of ``YOLOXWithLoss`` with the total loss multiplied by the loss scale
   (``has_aux``: the other loss terms are returned, not differentiated);
2. data parallel: ``DistributedGradReducer`` averages the gradients over the ranks;
3. gradients divided by the scale; if any rank saw an overflow the optimizer update is
   skipped on every rank (the ``overflows`` counter goes up; ``loss_scale="none"``: no
   scaling, no check, ``finite`` is always True). One decision for all ranks (see
   "Overflow: one decision for all ranks" below). The
   skip is branch-free (zero gradients and weight decay, lr 0, momentum 1: parameters and
   momentum buffers
   stay bit-identical), which compiles ~10 s faster on CPU than an ``if`` around SGD;
4. dynamic loss scaling: scale / 2 on overflow (not below 1), x 2 after ``scale_window``
   good steps (static: fixed; none: 1);
5. SGD with ``lr`` (official order: optimizer then EMA; the EMA update runs every step like
   the official ``ModelEMA.update`` after ``scaler.step``).
6. the EMA update, a second compiled graph (:class:`~mindyolox.training.ema.ModelEMA`) that
   ``__call__`` launches right after the step graph, also under ``mindspore.data_sink``
   (which calls the cell per step). Inside the step graph its update per parameter cost
   ~10 s more compile time on CPU (nano 416 b8: first step 41 -> 28 s, the EMA graph
   compiling in 3 s of it) and 0.2 GB more memory; on its own it takes about as long per
   step (yolox-s: 89 ms against 127 ms of its kernels inside the step graph; nano: 30 ms
   against ~20 ms), and in data-sink mode it is one more launch per step. With the CPU
   kernels it is no graph but one compiled function over all tensors (``ema.py``).

Device-resident state, so that a run of steps needs nothing from the host:

* ``global_step`` (int32 Parameter) counts calls; with an ``lr_schedule``
  (:class:`~mindyolox.training.lr.LRSchedule`) the step's lr is ``schedule(global_step)``
  computed in the graph (the host sets ``global_step`` once, when training starts or
  resumes); without one, the ``lr`` Parameter (``set_lr``) is used.
* ``stats`` (float32 Parameter ``[10]``): sums since the last :meth:`read_stats` of the six
  loss terms, of skipped (overflow) steps and of steps, then the current loss scale and
  ``skip_run``, the longest run of consecutive skipped optimizer steps seen by a step of the
  window (a run that began in an earlier window counts from its start). The trainer reads it
  once per ``print_interval`` (one device-to-host copy) and resets it.
* ``skip_streak`` (float32 Parameter): consecutive skipped optimizer steps up to the last
  one (0 after a step that was applied). Counted in the graph at every step, so the skips
  inside a chunk of device-resident steps are all counted, and never reset by
  :meth:`read_stats`, so a run of skips spanning log windows is one run. It derives only
  from the shared overflow decision (below), so it is equal on every rank. Not
  checkpointed: a resumed run counts afresh.

``use_l1`` is a Parameter too (``set_use_l1``, once per epoch). None of these recompile, and
the same cell works in data-sink mode, where the dataset supplies only images and labels. A
new multiscale ``size`` (or input shape) compiles one more graph, cached by MindSpore per size;
``compiled_graphs`` counts them.

Returns ``(total, iou, obj, cls, l1, num_fg, finite, scale, lr)``: the loss terms (unscaled
float32 scalars), ``finite`` bool scalar (False = step skipped), the loss scale and the lr used.

Overflow: one decision for all ranks. Each rank's own flag is
``1 - mindspore.amp.all_finite(grads)`` on the all-reduced gradients (:meth:`_local_overflow`).
On CPU/GPU (and Ascend 910B in its default INF_NAN mode) that flag is already the same on
every rank, because an Inf/NaN in one rank's gradient reaches every rank through the
all-reduce. On Ascend 910A (and 910B with ``MS_ASCEND_CHECK_OVERFLOW_MODE=SATURATION_MODE``)
it is not: overflowing float16 values saturate to +-65504, the all-reduced gradients stay
finite, and ``all_finite`` reads this device's float-status register instead
(``mindspore/amp.py:124-137``: ``NPUGetFloatStatusV2`` then ``NPUClearFloatStatusV2``), so one
rank could skip a step that the others apply. So, as MindSpore's own loss-scale cell does
("sum overflow flag over devices", ``mindspore/nn/wrap/loss_scale.py:492-502`` and
``:527-549``), the flag is summed over the group with an ``AllReduce`` inside the compiled
step, before the update is selected (:meth:`_shared_finite`); the skip, the overflow count
and the dynamic loss-scale update all read that shared flag, so the loss scales of all ranks
stay equal. In the status mode the register is also cleared before the forward
(``float_status``, :meth:`_clear_float_status`, MindSpore's ``start_overflow_check``,
``loss_scale.py:450-482``): an overflow in an evaluation or the EMA graph launched between
two steps would otherwise be read by the next step and skip it. Known gap (not run on a
device): with gradient accumulation in the status mode, the register is read at every
micro-batch and only the last micro-batch's reading decides the optimizer step.

Divergence: :meth:`read_stats` of a distributed step returns the loss sums all-reduced over
the ranks (mean per rank), so a NaN/Inf loss on one rank is seen by every rank at the same
log line and every rank stops there (the trainer's check reads these statistics).

Gradient accumulation (``accumulate=N > 1``, ``train.accumulate``): each call adds the
gradient of its micro-batch's loss *sum* (the loss times its normaliser ``max(fg, 1)``) and
its foreground count to buffers; every N-th call divides the sums by ``max(total fg, 1)`` --
the gradient of the loss of the N micro-batches as one batch, normalised as the official loss
normalises a batch -- and runs SGD and the EMA once (branch-free: in between, SGD runs with
zero gradient, lr 0, momentum 1 and the EMA with weight 0, which leave every value exactly
as it is). ``global_step`` and so the lr schedule count optimizer steps. Only BatchNorm's
batch statistics still see micro-batches. The buffers are not checkpointed: a resumed run
starts a fresh accumulation.
"""
import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype

from ..runtime.heap import release_free_memory
from .preprocess import BatchPreprocess

__all__ = ["TrainStep", "ScaledLoss", "LOSS_SCALES", "resolve_loss_scale", "STAT_NAMES"]

# what TrainStep.stats holds: sums of the loss terms, skipped steps and steps; the last scale;
# the longest run of consecutive skipped steps the window saw
STAT_NAMES = ("total", "iou", "obj", "cls", "l1", "num_fg", "skipped", "steps", "scale", "skip_run")

LOSS_SCALES = ("none", "static", "dynamic")


# ``loss_scale: auto`` at O0 on Ascend: a dynamic scale starting at mindyolo's 1024 (a power of
# two, so scaling, unscaling, halving and doubling are exact in float32: float32 results are
# unchanged while nothing overflows, tests/test_ascend_choices.py)
ASCEND_O0_SCALE = 1024.0


def resolve_loss_scale(loss_scale, amp_level, device="CPU", scale_value=65536.0):
    """``(mode, scale)`` for the recipe's ``train.loss_scale`` / ``train.loss_scale_value``.

    ``auto``: ``dynamic`` from ``scale_value`` under mixed precision (O1-O3: float16
    gradients can overflow); at O0 ``dynamic`` from 1024 on Ascend and ``none`` elsewhere
    (float32: no gradient overflows, no per-step check). Explicit values win.

    Decision (issue 35), O0 on Ascend: dynamic, not static. There float32 operators may
    compute in float16 anyway -- on 910A the matrix unit is float16 only and
    ``runtime.precision_mode`` resolves to ``allow_fp32_to_fp16`` (:mod:`mindyolox.options`)
    -- so the run is in effect a mixed-precision run, and both references scale those
    dynamically: the official trainer builds ``torch.cuda.amp.GradScaler(enabled=args.fp16)``
    (``yolox/core/trainer.py:46``; ``scaler.scale(loss).backward()``, ``scaler.step``,
    ``scaler.update()`` at ``:110-112``), enabled exactly when float16 computes, and PyTorch's
    GradScaler is dynamic (halves on an overflow, grows after 2000 good steps); MindSpore's
    own amp gives its float16 level O2 a ``DynamicLossScaleManager``
    (``mindspore/train/amp.py:579-599``, wrapped in ``TrainOneStepWithLossScaleCell`` at
    ``:764-778``; the update rule in ``mindspore/nn/wrap/loss_scale.py:181-196``). A static
    scale (``FixedLossScaleManager``, ``train/loss_scale_manager.py:48-118``) never drops: when
    1024 is too large for a float16 gradient every later step overflows and is skipped, the
    silent stall of issue 35. It starts at 1024 (mindyolo's static value) rather than 65536 so
    that it does not skip the first steps while it falls; where matrices are float32 (910B's
    default ``must_keep_origin_dtype``) it behaves like the static 1024 until a real overflow.
    The trainer stops a run whose steps keep overflowing anyway
    (:mod:`~mindyolox.training.hooks.overflow`)."""
    if loss_scale == "auto":
        if amp_level != "O0":
            return "dynamic", float(scale_value)
        return ("dynamic", ASCEND_O0_SCALE) if device == "Ascend" else ("none", 1.0)
    return loss_scale, float(scale_value)


_unscale = ops.MultitypeFuncGraph("unscale")


@_unscale.register("Tensor", "Tensor", "Tensor")
def _unscale_impl(finite, inv_scale, grad):
    return ops.select(finite, grad * inv_scale.astype(grad.dtype), ops.zeros_like(grad))


_keep_or_clear = ops.MultitypeFuncGraph("keep_or_clear")


@_keep_or_clear.register("Tensor", "Tensor", "Tensor")
def _keep_or_clear_impl(keep, buf, value):
    return ops.assign(buf, ops.select(keep, value, ops.zeros_like(value)))


class ScaledLoss(nn.Cell):
    """``YOLOXWithLoss`` whose first output (the differentiated one) is ``total * scale``;
    ``summed``: ``total * max(fg, 1) * scale`` (the loss sum; gradient accumulation) and the
    foreground count ``fg`` as an eighth output."""

    def __init__(self, net, summed=False):
        super().__init__(auto_prefix=False)
        self.net = net
        self.summed = bool(summed)
        net.return_fg = self.summed

    def construct(self, images, labels, use_l1, scale):
        if self.summed:
            total, iou, obj, cls, l1, num_fg, fg = self.net(images, labels, use_l1)
            norm = ops.stop_gradient(ops.maximum(fg, 1.0))
            return total * norm * scale, total, iou, obj, cls, l1, num_fg, fg
        total, iou, obj, cls, l1, num_fg = self.net(images, labels, use_l1)
        return total * scale, total, iou, obj, cls, l1, num_fg


class TrainStep(nn.Cell):
    """One training iteration (see the module doc).

    Args:
        net_with_loss: ``YOLOXWithLoss`` (model in train mode).
        optimizer: :class:`~mindyolox.training.optimizer.SGD` over the model's trainable params.
        ema: :class:`~mindyolox.training.ema.ModelEMA` or None.
        loss_scale: ``none`` | ``static`` | ``dynamic``; scale_value: initial / static scale;
        scale_factor, scale_window: dynamic-scaling growth factor and good-step window.
        distributed: average gradients over ``group_size`` ranks (``mindspore.communication``
        must be initialised).
        lr_schedule: :class:`~mindyolox.training.lr.LRSchedule` evaluated in the graph at
        ``global_step`` (None: the ``lr`` Parameter, see ``set_lr``).
        accumulate: micro-batches per optimizer step (module doc).
        float_status: the device reports overflow through its float-status register
        (:func:`mindyolox.options.float_status_mode`): clear it before each forward.
    """

    def __init__(self, net_with_loss, optimizer, ema=None, loss_scale="none", scale_value=65536.0,
                 scale_factor=2.0, scale_window=2000, distributed=False, group_size=1, lr_schedule=None,
                 accumulate=1, float_status=False):
        super().__init__(auto_prefix=False)
        if loss_scale not in LOSS_SCALES:
            raise ValueError(f"loss_scale must be one of {LOSS_SCALES}, got {loss_scale!r}")
        self.accumulate = int(accumulate)
        self.net = ScaledLoss(net_with_loss, summed=self.accumulate > 1)
        self.optimizer = optimizer
        self.weights = optimizer.params
        self.ema = ema
        self.use_ema = ema is not None
        self.grad_fn = ms.value_and_grad(self.net, None, self.weights, has_aux=True)
        self.dynamic = loss_scale == "dynamic"
        self.check_overflow = loss_scale != "none"
        init_scale = 1.0 if loss_scale == "none" else float(scale_value)
        self.scale = Parameter(Tensor(init_scale, mstype.float32), name="state.loss_scale", requires_grad=False)
        self.good_steps = Parameter(Tensor(0, mstype.int32), name="state.good_steps", requires_grad=False)
        self.overflows = Parameter(Tensor(0, mstype.int32), name="state.overflows", requires_grad=False)
        self.lr = Parameter(Tensor(0.0, mstype.float32), name="state.lr", requires_grad=False)
        self.use_l1 = Parameter(Tensor(0.0, mstype.float32), name="state.use_l1", requires_grad=False)
        self.global_step = Parameter(Tensor(0, mstype.int32), name="state.global_step", requires_grad=False)
        self.stats = Parameter(Tensor(np.zeros(len(STAT_NAMES), np.float32)), name="state.stats",
                               requires_grad=False)
        self.skip_streak = Parameter(Tensor(0.0, mstype.float32), name="state.skip_streak", requires_grad=False)
        self.loss_scale_mode = loss_scale
        self.lr_fn = lr_schedule.graph() if lr_schedule is not None else None
        self.scale_factor = float(scale_factor)
        self.scale_window = int(scale_window)
        self.distributed = bool(distributed)
        self.group_size = int(group_size)
        if self.distributed:
            self.reducer = nn.DistributedGradReducer(self.weights, mean=True, degree=int(group_size))
            self.flag_reduce = ops.AllReduce()  # sum of the ranks' overflow flags
        self.status_mode = self.check_overflow and bool(float_status)
        self.hyper_map = ops.HyperMap()
        self.preprocess = BatchPreprocess()
        # 1.0 when this call ran the optimizer (always, without accumulation): gates the EMA
        self.applied = Parameter(Tensor(1.0, mstype.float32), name="accum.applied", requires_grad=False)
        self.compiled_keys = set()   # the arguments' shapes / dtypes / constants compiled (__call__)
        if self.accumulate > 1:
            self.acc_grads = self.weights.clone(prefix="accum", init="zeros")
            self.acc_fg = Parameter(Tensor(0.0, mstype.float32), name="accum.fg", requires_grad=False)
            self.micro = Parameter(Tensor(0, mstype.int32), name="accum.micro", requires_grad=False)

    # ------------------------------------------------------------------ host-side setters
    def __call__(self, *args, **kwargs):
        key = tuple((tuple(a.shape), a.dtype) if isinstance(a, Tensor) else a for a in args)
        if key not in self.compiled_keys:   # a new input shape: compile, then free the compile's heap
            self.compile(*args, **kwargs)
            self.compiled_keys.add(key)
            release_free_memory()
        out = super().__call__(*args, **kwargs)
        if self.use_ema:
            self.ema(self.applied)
        return out

    def set_lr(self, lr):
        """Learning rate of the next call (float, no recompilation)."""
        self.lr.set_data(Tensor(float(lr), mstype.float32))

    def set_global_step(self, k):
        """The global iteration of the next call (the lr schedule's ``k``)."""
        self.global_step.set_data(Tensor(int(k), mstype.int32))

    def read_stats(self, reset=True):
        """The ``stats`` sums as a dict (``STAT_NAMES``; one device-to-host copy), then zeroed.

        Distributed: every rank must call it at the same step (the trainer does, at each log
        line); the sums are all-reduced and divided by the number of ranks, so every rank
        holds the same values: the loss terms averaged over the ranks' batches (a NaN/Inf on
        any rank makes them NaN/Inf everywhere); skipped steps, steps and the loss scale
        unchanged (they are equal on all ranks)."""
        values = self.stats.asnumpy().astype(np.float64)
        if reset:
            self.stats.set_data(Tensor(np.zeros(len(STAT_NAMES), np.float32)))
        if self.distributed:
            from ..runtime.distributed import all_reduce_sum
            values = all_reduce_sum(values.astype(np.float32)).astype(np.float64) / self.group_size
        return dict(zip(STAT_NAMES, values.tolist()))

    def set_use_l1(self, on):
        """Switch the L1 loss term on/off for the next calls (no recompilation)."""
        self.use_l1.set_data(Tensor(1.0 if on else 0.0, mstype.float32))

    @property
    def ema_graph(self):
        """True when the EMA update is a graph of its own to compile (not on CPU with the kernels,
        where it is one compiled function: :mod:`~mindyolox.training.ema`)."""
        return self.use_ema and self.ema.kernel is None

    @property
    def compiled_graphs(self):
        """Number of graphs compiled for this cell so far (one per multiscale size / input shape)."""
        return len(self.compile_cache)

    # ------------------------------------------------------------------ the graph
    def _clear_float_status(self, images):
        """Float-status mode (``float_status``): clear the device's overflow register
        before the forward reads ``images`` (MindSpore's ``start_overflow_check``,
        ``nn/wrap/loss_scale.py:450-482``). Elsewhere ``images`` unchanged."""
        if not self.status_mode:
            return images
        from mindspore.ops.operations.math_ops import NPUClearFloatStatusV2
        status = ops.depend(Tensor([0] * 8, mstype.int32), images)
        cleared = NPUClearFloatStatusV2()(status)
        return ops.depend(images, cleared)

    def _local_overflow(self, grads):
        """This rank's overflow flag, float32 ``[1]``: 1.0 when ``all_finite(grads)`` is False
        (on CPU/GPU the gradient values; in float-status mode the device's register, read
        and cleared by ``all_finite``), else 0.0."""
        return (1.0 - ms.amp.all_finite(grads).astype(mstype.float32)).reshape(1)

    def _shared_finite(self, grads):
        """bool scalar, True when no rank overflowed: the local flags summed over the group
        (``AllReduce``) inside the graph, so every rank selects the same update."""
        bad = self._local_overflow(grads)
        if self.distributed:
            bad = self.flag_reduce(bad)
        return (bad < 0.5).reshape(())

    def _record(self, terms, finite, scale, applied=None):
        """Add this step's loss terms, skip flag and count to ``stats``; store the scale; count
        the run of consecutive skips (``skip_streak``, module doc) and keep its longest length
        in the window. ``applied``: bool, this call ended an optimizer step (gradient
        accumulation: only those count for the streak; None = always)."""
        skipped = 1.0 - finite.astype(mstype.float32)
        inc = ops.stack(terms + (skipped, ops.ones((), mstype.float32)))
        streak = (self.skip_streak + 1.0) * skipped  # 0 after an applied step
        if applied is not None:
            streak = ops.select(applied, streak, self.skip_streak * 1.0)
        ops.assign(self.skip_streak, streak)
        longest = ops.maximum(self.stats[9], streak).reshape(1)
        return ops.assign(self.stats, ops.concat((self.stats[:8] + inc, scale.reshape(1), longest)))

    def _construct_accumulate(self, images, labels, size):
        """One micro-batch of gradient accumulation (module doc)."""
        images, labels = self.preprocess(images, labels, size)
        scale = self.scale * 1.0
        k = self.global_step * 1
        step_lr = self.lr_fn(k) if self.lr_fn is not None else self.lr * 1.0
        images = self._clear_float_status(images)
        (_, total, iou, obj, cls, l1, num_fg, fg), grads = self.grad_fn(images, labels, self.use_l1, scale)
        terms = (total, iou, obj, cls, l1, num_fg)
        if self.distributed:
            grads = self.reducer(grads)
        micro = self.micro + 1
        apply = micro >= self.accumulate
        sums = self.hyper_map(ops.add, self.acc_grads, grads)
        total_fg = self.acc_fg + fg
        inv = 1.0 / (ops.maximum(total_fg, 1.0) * scale)
        finite = self._shared_finite(sums) if self.check_overflow else ops.ones((), mstype.bool_)
        go = ops.logical_and(apply, finite)
        self._sgd_if(go, self.hyper_map(ops.partial(_unscale, go, inv), sums), step_lr)
        keep = ops.logical_not(apply)
        self.hyper_map(ops.partial(_keep_or_clear, keep), self.acc_grads, sums)
        ops.assign(self.acc_fg, ops.select(keep, total_fg, ops.zeros_like(total_fg)))
        ops.assign(self.micro, ops.select(keep, micro, ops.zeros_like(micro)))
        ops.assign(self.applied, go.astype(mstype.float32))
        ops.assign_add(self.global_step, apply.astype(mstype.int32))
        step_finite = ops.logical_or(keep, finite)
        self._count_and_rescale(step_finite, apply.astype(mstype.int32), scale)
        self._record(terms, step_finite, scale, apply)
        return total, iou, obj, cls, l1, num_fg, step_finite, scale, step_lr

    def _sgd_if(self, go, grads, step_lr):
        """SGD with ``grads`` at ``step_lr`` when ``go``, else a call that changes nothing
        (zero gradients expected, lr 0, momentum 1, no weight decay): no graph control flow."""
        lr = ops.select(go, step_lr, ops.zeros_like(step_lr))
        momentum = ops.select(go, self.optimizer.momentum, ops.ones_like(self.optimizer.momentum))
        weight_decay = ops.select(go, self.optimizer.weight_decay, ops.zeros_like(self.optimizer.weight_decay))
        self.optimizer(grads, lr, momentum, weight_decay)

    def _count_and_rescale(self, finite, good_inc, scale):
        """Count a skipped (overflowed) step; dynamic scaling: halve on overflow, double after
        ``scale_window`` good optimizer steps (``good_inc``: 1 when this call was one)."""
        ops.assign_add(self.overflows, 1 - finite.astype(mstype.int32))
        if self.dynamic:
            good = ops.select(finite, self.good_steps + good_inc, ops.zeros_like(self.good_steps))
            grow = good >= self.scale_window
            new_scale = ops.select(finite, ops.select(grow, scale * self.scale_factor, scale),
                                   ops.maximum(scale / self.scale_factor, 1.0))
            ops.assign(self.scale, new_scale)
            ops.assign(self.good_steps, ops.select(grow, ops.zeros_like(good), good))

    def construct(self, images, labels, size=None):
        if self.accumulate > 1:
            return self._construct_accumulate(images, labels, size)
        images, labels = self.preprocess(images, labels, size)
        # without a loss scale the gradients are not unscaled: scale 1 whatever ``scale`` holds
        # (a run resumed with loss_scale none from a checkpoint of a scaled run loads its scale)
        scale = self.scale * 1.0
        if not self.check_overflow:
            scale = ops.ones((), mstype.float32)
        k = self.global_step * 1
        step_lr = self.lr_fn(k) if self.lr_fn is not None else self.lr * 1.0
        ops.assign_add(self.global_step, ops.ones((), mstype.int32))
        images = self._clear_float_status(images)
        (_, total, iou, obj, cls, l1, num_fg), grads = self.grad_fn(images, labels, self.use_l1, scale)
        terms = (total, iou, obj, cls, l1, num_fg)
        if self.distributed:
            grads = self.reducer(grads)
        if not self.check_overflow:
            self.optimizer(grads, step_lr)
            finite = ops.ones((), mstype.bool_)
            self._record(terms, finite, scale)
            return total, iou, obj, cls, l1, num_fg, finite, scale, step_lr
        finite = self._shared_finite(grads)
        # skip without graph control flow: zero grads, lr 0, momentum 1 leave all state as is
        self._sgd_if(finite, self.hyper_map(ops.partial(_unscale, finite, 1.0 / scale), grads), step_lr)
        self._count_and_rescale(finite, ops.ones((), mstype.int32), scale)
        self._record(terms, finite, scale)
        return total, iou, obj, cls, l1, num_fg, finite, scale, step_lr
