"""Exponential moving average of the model, updated inside the compiled train step.

Official ``yolox/utils/ema.py`` (``ModelEMA``): after every iteration ``updates += 1``,
``d = decay * (1 - exp(-updates / 2000))`` and for every floating-point entry of the state
dict -- trainable weights AND BatchNorm running mean/var -- ``ema = d * ema + (1 - d) * model``.
The EMA starts as a copy of the model (``updates = 0``).

The update per tensor is ``ema -= (1 - d) * (ema - model)``: a ``Sub`` and an in-place
``ApplyGradientDescent`` (``var -= alpha * delta``). It replaced ``Assign(ema, Lerp(ema, model,
1 - d))``, whose ``Assign`` copies every tensor once more: nano's 538 tensors 25.7 -> 16.0 ms
per update on CPU (``bench/bench_fusion.py update``; values equal to float32 rounding,
``tests/test_ema_update.py``). The cost is the number of tensors, not their size: the same
values as one flat tensor take 5.6 ms, but MindSpore 2.10 has no contiguous parameter buffer
(``nn.Optimizer.flatten_gradients`` returns the gradients unchanged,
``mindspore/nn/optim/optimizer.py:381-395``), and gathering the tensors into one each step is
a copy of its own (a ``Concat`` of the ~540 tensors does not even compile: the graph front end
recurses past its depth limit).

CPU (``runtime.cpu_kernels`` on, :meth:`ModelEMA.use_kernel`): no EMA graph. After the step the
host computes ``d`` (float64, as the official code does) and one compiled function
(``EmaLerp`` in ``ops/cpu_kernels.cc``, called through ``ctypes``) updates every tensor in one
pass, in place, at the Parameters' addresses (``Tensor.data_ptr()``: "for CPU is host
address", ``mindspore/common/tensor.py:4116-4131``; the compiled graphs read and write that
same memory, and a ``set_data`` -- a checkpoint load -- moves it, so the addresses are read at
every call). The EMA graph's compile (nano 2.9 s, yolox-s 3.5-5.5 s of the first call: ~1,080
nodes through the front end and one backend kernel each) is gone, and an update costs 0.7 ms
(nano) / 4.2 ms (yolox-s) instead of the graph's 9 / 15 ms (``python -m bench.bench_fusion
update``, AMD EPYC). Sound because a compiled graph's call on CPU returns after its last kernel
ran (a 1.8 s graph blocks its call for 1.8 s), so the step has finished writing the model when
the update reads it, and the update has finished when anything else runs. ``tests/test_ema_update.py`` runs both paths against the exact update
and reads the kernel's result back through ``asnumpy`` and through a compiled graph.
GPU/Ascend keep the graph (``cpu_kernels`` is off there; their memory is the device's).

Here the EMA weights are the parameters of a second model instance (``ema_model``, the same
architecture, names prefixed ``ema.``), so evaluation runs ``ema_model`` directly and a
training checkpoint stores them under ``ema.<name>``. ``updates`` is a Parameter so that
resuming restores it exactly.
"""
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops
from mindspore import dtype as mstype

__all__ = ["ModelEMA", "ema_decay"]

_ema_update = ops.MultitypeFuncGraph("ema_update")
_descend = ops.ApplyGradientDescent()


@_ema_update.register("Tensor", "Tensor", "Tensor")
def _ema_update_impl(weight, ema, value):
    # ema - (1 - d) * (ema - value) == d * ema + (1 - d) * value, updated in place
    return _descend(ema, weight, ema - ops.stop_gradient(value))


def ema_decay(updates, decay=0.9998, tau=2000.0):
    """The official decay after ``updates`` updates: ``decay * (1 - exp(-updates / tau))``."""
    return decay * (1.0 - np.exp(-float(updates) / tau))


class ModelEMA(nn.Cell):
    """EMA of every float parameter of ``model`` (BN moving statistics included).

    Args:
        model: the trained Cell; ema_model: a Cell of the same architecture whose parameters
        become the EMA (they are overwritten with ``model``'s values and renamed ``ema.*``;
        keep ``ema_model`` yourself to evaluate it).
        decay: 0.9998 (official); tau: 2000 iterations; updates: initial update count.
    ``construct(on=None)`` performs one update and returns the decay used (scalar float32);
    ``on`` (float32 scalar Tensor, 1 or 0): 0 leaves the EMA and the update count exactly as
    they are (gradient accumulation between optimizer steps).
    """

    UPDATE = _ema_update  # per-tensor update (weight, ema, value); bench/bench_fusion.py swaps it

    def __init__(self, model, ema_model, decay=0.9998, tau=2000.0, updates=0):
        super().__init__()
        src = [p for _, p in model.parameters_and_names()]
        dst_named = list(ema_model.parameters_and_names())
        names = [n for n, _ in model.parameters_and_names()]
        if [n for n, _ in dst_named] != names:
            raise ValueError("ModelEMA: ema_model does not have the model's parameters")
        ema_model.update_parameters_name("ema.")
        for (_, e), p in zip(dst_named, src):
            e.set_data(p.data.copy())
            e.requires_grad = False
        self.src = ParameterTuple(src)
        self.ema = ParameterTuple([e for _, e in dst_named])
        self.decay, self.tau = float(decay), float(tau)
        self.updates = Parameter(Tensor(float(updates), mstype.float32), name="ema_updates", requires_grad=False)
        self.hyper_map = ops.HyperMap()
        self.kernel = None

    def use_kernel(self, on=True):
        """Update through the CPU function (module doc) when ``on`` and every tensor is float32,
        else through the graph. Returns self."""
        self.kernel = None
        if on and all(p.dtype == mstype.float32 for p in tuple(self.ema) + tuple(self.src)):
            import ctypes
            from ..ops.cpu_kernels import library
            fn = ctypes.CDLL(str(library())).EmaLerp
            fn.restype = None
            fn.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float]
            n = len(self.ema)
            self.kernel = (fn, ctypes.c_void_p * n, (ctypes.c_int64 * n)(*[int(p.size) for p in self.ema]))
        return self

    def __call__(self, on=None):
        if self.kernel is None:
            return super().__call__(on)
        fn, addresses, sizes = self.kernel
        on = 1.0 if on is None else float(on.asnumpy() if isinstance(on, Tensor) else on)
        updates = float(self.updates.asnumpy()) + on
        d = ema_decay(updates, self.decay, self.tau)
        if on:
            self.updates.set_data(Tensor(updates, mstype.float32))
            fn(len(sizes), addresses(*[p.data_ptr() for p in self.ema]), addresses(*[p.data_ptr() for p in self.src]),
               sizes, (1.0 - d) * on)
        return Tensor(d, mstype.float32)

    def construct(self, on=None):
        if on is None:
            on = ops.ones((), mstype.float32)
        updates = self.updates + on
        d = self.decay * (1.0 - ops.exp(-updates / self.tau))
        ops.assign(self.updates, updates)
        self.hyper_map(ops.partial(self.UPDATE, (1.0 - d) * on), self.ema, self.src)
        return d
