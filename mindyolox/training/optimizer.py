"""SGD with momentum / Nesterov and the official YOLOX parameter groups.

Official ``Exp.get_optimizer`` (YOLOX 0.3.0) puts BatchNorm weights (pg0) and all biases
(pg2) in groups without weight decay and every other ``weight`` -- convolution and linear
weights (pg1) -- in the group with ``weight_decay``. :func:`param_groups` reproduces that
split by Cell type: ``nn.Conv2d`` / ``nn.Dense`` weights decay; BN ``gamma``/``beta`` and
every ``bias`` do not. BN moving statistics are not trainable and not optimised.

:class:`SGD` is PyTorch's ``torch.optim.SGD`` (dampening 0) written with the fused
``ApplyMomentum`` kernel, per parameter ``p`` with gradient ``g``::

    d   = g + wd * p                 (wd = weight_decay for decayed params, else 0)
    buf = momentum * buf + d         (buf starts at 0, so the first buf = d as in torch)
    p  -= lr * (d + momentum * buf)  if nesterov   else   p -= lr * buf

It runs on the fused ``ops.SGD`` kernel (dampening 0): one kernel with the recipe's weight
decay for the decayed parameters and one without for the rest, or, when a call overrides
momentum / weight decay (the train step's branch-free skip of an overflowed step), the
decay added here and the kernel's left at 0. ``ops.ApplyMomentum``
is not used: its CPU kernel ignores ``use_nesterov``. ``lr`` is a scalar float32 Tensor
argument of ``construct``, so a compiled train step takes a new lr every iteration without
recompiling.
"""
from mindspore import ParameterTuple, Tensor, nn, ops
from mindspore import dtype as mstype

__all__ = ["param_groups", "SGD", "build_optimizer"]

_decay_grad = ops.MultitypeFuncGraph("decay_grad")
_apply_momentum = ops.MultitypeFuncGraph("apply_momentum")


@_decay_grad.register("Bool", "Tensor", "Tensor", "Tensor")
def _decay_grad_impl(decay, weight_decay, param, grad):
    if decay:
        return grad + weight_decay * param
    return grad


@_apply_momentum.register("Function", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _apply_momentum_impl(opt, lr, momentum, grad, param, moment, stat):
    return opt(param, grad, lr, moment, momentum, stat)


@_apply_momentum.register("Function", "Function", "Tensor", "Tensor", "Bool", "Tensor", "Tensor", "Tensor", "Tensor")
def _apply_momentum_decay_impl(opt_decay, opt, lr, momentum, decay, grad, param, moment, stat):
    if decay:
        return opt_decay(param, grad, lr, moment, momentum, stat)
    return opt(param, grad, lr, moment, momentum, stat)


def param_groups(model):
    """Split ``model``'s trainable parameters like the official ``get_optimizer``.

    Returns ``(decay, no_decay)``: two lists of ``Parameter`` -- conv/linear weights, and
    BN gamma/beta plus biases. Every trainable parameter is in exactly one list.
    """
    decay_ids = set()
    for _, cell in model.cells_and_names():
        if isinstance(cell, (nn.Conv2d, nn.Dense)) and getattr(cell, "weight", None) is not None:
            decay_ids.add(id(cell.weight))
    decay, no_decay = [], []
    for p in model.trainable_params():
        (decay if id(p) in decay_ids else no_decay).append(p)
    return decay, no_decay


class SGD(nn.Cell):
    """SGD (momentum, optional Nesterov, decoupled per-parameter weight-decay flags).

    Args:
        params: list of ``Parameter`` to optimise (order fixed; state follows it).
        decay_flags: list of bool, same length: add ``weight_decay * p`` to the gradient.
        momentum, weight_decay: floats; nesterov: bool.
    Inputs: ``grads`` tuple of Tensors (same order and shapes as ``params``), ``lr`` scalar
    float32 Tensor. State: ``moments`` (one zero-initialised buffer per parameter, named
    ``moments.<param name>``); ``stats`` are the kernel's first-step flags, kept at 0 (with
    zero-initialised buffers and dampening 0 the first step is the same either way).
    """

    def __init__(self, params, decay_flags, momentum=0.9, weight_decay=5e-4, nesterov=True):
        super().__init__()
        if len(params) != len(decay_flags):
            raise ValueError(f"SGD: {len(params)} params but {len(decay_flags)} decay flags")
        self.params = ParameterTuple(params)
        self.moments = self.params.clone(prefix="moments", init="zeros")
        self.stats = self.params.clone(prefix="sgd_stat", init="zeros")
        self.decay_flags = tuple(bool(f) for f in decay_flags)
        self.weight_decay = Tensor(float(weight_decay), mstype.float32)
        self.momentum = Tensor(float(momentum), mstype.float32)
        self.opt = ops.SGD(dampening=0.0, weight_decay=0.0, nesterov=bool(nesterov))
        self.opt_decay = ops.SGD(dampening=0.0, weight_decay=float(weight_decay), nesterov=bool(nesterov))
        self.hyper_map = ops.HyperMap()
        self.num_decay = sum(self.decay_flags)

    def construct(self, grads, lr, momentum=None, weight_decay=None):
        """``momentum`` / ``weight_decay`` (scalar Tensors) override the configured ones for
        this call; with momentum 1, lr 0, weight decay 0 and zero gradients the call leaves
        every parameter and buffer exactly unchanged (how the train step skips an
        overflowed step without graph control flow)."""
        if momentum is None and weight_decay is None:
            return self.hyper_map(ops.partial(_apply_momentum, self.opt_decay, self.opt, lr, self.momentum),
                                  self.decay_flags, grads, self.params, self.moments, self.stats)
        if momentum is None:
            momentum = self.momentum
        if weight_decay is None:
            weight_decay = self.weight_decay
        grads = self.hyper_map(ops.partial(_decay_grad), self.decay_flags,
                               (weight_decay,) * len(self.decay_flags), self.params, grads)
        return self.hyper_map(ops.partial(_apply_momentum, self.opt, lr, momentum),
                              grads, self.params, self.moments, self.stats)


def build_optimizer(model, train_cfg):
    """SGD of the recipe's ``train`` section (momentum, nesterov, weight_decay) over the
    official parameter groups of ``model``."""
    decay, no_decay = param_groups(model)
    params = decay + no_decay
    flags = [True] * len(decay) + [False] * len(no_decay)
    return SGD(params, flags, momentum=float(train_cfg["momentum"]),
               weight_decay=float(train_cfg["weight_decay"]), nesterov=bool(train_cfg["nesterov"]))
