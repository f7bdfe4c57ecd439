"""The fused-convolution model variant used for every export and for evaluation / prediction
(``build_and_load``: test.py, predict.py, track.py): BatchNorm folded into the convolution
weights once, in numpy, so that no BN / Sqrt / Div op reaches the graph.

For each :class:`~mindyolox.models.blocks.BaseConv` (conv without bias -> BN -> act), in eval
mode ``bn(conv(x)) = conv(x; w * s) + (beta - mean * s)`` with ``s = gamma / sqrt(var + eps)``
per output channel. :func:`fold_batchnorms` computes ``w * s`` and ``beta - mean * s`` in float64,
stores them as float32 in a new :class:`~mindyolox.models.conv.Conv2d` with a bias (same
geometry and implementation), replaces the BN by ``nn.Identity`` and marks the block
``folded``, so its eval ``construct`` is ``act(bias_add(convolve(x, w), b))`` with constant
weights (on CPU with the kernels on, one kernel per layer:
:meth:`~mindyolox.models.blocks.BaseConv.use_fused_kernels`).

oneDNN's convolution (the dense layers' eval kernel on CPU) is used by folded models only: its
sums (blocked, JIT) and its SiLU post-op round differently from the Im2Col + GEMM path, which
is harmless on trained weights (coco_tiny AP identical to the last digit, ``tests/test_evaluate.py``)
but on the ill-conditioned reference networks of ``tests/test_model_parity.py`` (random
BatchNorm, where one float32 ULP of input moves a box by up to ~1 px) put yolox-s's junk-anchor
boxes 5.2e-3 (relative) from the official ones, 5.7x the float32 floor that test allows; the
unfolded model, which those parity tests check, keeps the Im2Col + GEMM path. (Training runs
oneDNN's convolutions, :mod:`mindyolox.ops.dnnl_conv`: its train-mode BatchNorm renormalises
every layer, and ``tests/test_loss.py`` holds its losses and gradients to the official ones.)
(The in-graph folding of ``BaseConv`` recomputes the scale inside the graph on every call,
which the MindSpore ONNX exporter writes as ``Sqrt``/``Div``/``Mul``/``Sub`` nodes: 1,208
nodes for nano against 369 in the official ONNX.)

The model is changed in place and must not be trained afterwards. Parameter names are
re-assigned from the cell tree (``backbone....conv.weight`` / ``.bias``).
"""
import numpy as np
from mindspore import Parameter, Tensor, nn

from .blocks import BaseConv
from .conv import Conv2d

__all__ = ["fold_batchnorms", "refold_from", "count_batchnorms"]


def _folded(block):
    """``(weight [O, C/g, k, k], bias [O])`` float32 of a BaseConv with its BN folded in."""
    bn, conv = block.bn, block.conv
    gamma = bn.gamma.asnumpy().astype(np.float64)
    beta = bn.beta.asnumpy().astype(np.float64)
    mean = bn.moving_mean.asnumpy().astype(np.float64)
    var = bn.moving_variance.asnumpy().astype(np.float64)
    scale = gamma / np.sqrt(var + float(bn.eps))
    w = conv.weight.asnumpy().astype(np.float64) * scale[:, None, None, None]
    b0 = conv.bias.asnumpy().astype(np.float64) if conv.has_bias else 0.0
    b = beta + (b0 - mean) * scale
    return w.astype(np.float32), b.astype(np.float32)


def fold_batchnorms(model):
    """Fold every BaseConv's BatchNorm into its convolution (module doc); returns ``model``
    (in eval mode) and leaves no :class:`BatchNorm2d` cell with an effect in it."""
    model.set_train(False)
    blocks = [c for _, c in model.cells_and_names() if isinstance(c, BaseConv)]
    for block in blocks:
        if isinstance(block.bn, nn.Identity):
            continue
        old = block.conv
        w, b = _folded(block)
        new = Conv2d(old.in_channels, old.out_channels, old.k, old.s, padding=old.p, group=old.group,
                     has_bias=True)
        new.use_impl("im2col" if old.im2col else "native", kernels=old.direct is not None)
        new.compute_dtype, new.cast_output = old.compute_dtype, old.cast_output
        new.weight = Parameter(Tensor(w), name="weight")
        new.bias = Parameter(Tensor(b), name="bias")
        block.conv = new
        block.bn = nn.Identity()
        block.folded = True
    for name, p in model.parameters_and_names():
        p.name = name
    model.set_train(False)
    return model


def count_batchnorms(model):
    """Number of BaseConv blocks whose BatchNorm is still a separate cell (0 after fusing)."""
    return sum(isinstance(c, BaseConv) and not isinstance(c.bn, nn.Identity) for _, c in model.cells_and_names())


def refold_from(folded, source):
    """Put ``source``'s current weights into ``folded`` (a model of the same recipe after
    :func:`fold_batchnorms`, its Cells and compiled graphs kept): each BaseConv's folded weight
    and bias from ``source``'s convolution and BatchNorm, every other parameter copied by name.
    ``source`` is not changed (the EMA model of a run: evaluation during training). Returns
    ``folded``."""
    pairs = list(zip((c for _, c in source.cells_and_names() if isinstance(c, BaseConv)),
                     (c for _, c in folded.cells_and_names() if isinstance(c, BaseConv))))
    done = set()
    for src, dst in pairs:
        if not dst.folded:
            raise ValueError("refold_from: the target model is not folded (fold_batchnorms first)")
        w, b = _folded(src)
        dst.conv.weight.set_data(Tensor(w))
        dst.conv.bias.set_data(Tensor(b))
        done.update((id(dst.conv.weight), id(dst.conv.bias)))
    params = dict(source.parameters_and_names())
    for name, p in folded.parameters_and_names():
        if id(p) not in done:
            p.set_data(Tensor(params[name].asnumpy()))
    return folded
