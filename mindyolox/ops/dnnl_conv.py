"""Dense convolutions through oneDNN's own convolution primitive, on CPU.

MindSpore 2.10's CPU ``Conv2D`` hands oneDNN plain NCHW memory, for which oneDNN has only
its reference k x k kernel, so the model computes a dense k x k convolution as ``Im2Col`` +
GEMM (:mod:`mindyolox.models.conv`), whose backward multiplies the k*k times larger column
tensor twice (yolox-s 640 b2, AMD EPYC: ``Conv2DBackpropFilter`` + ``Conv2DBackpropInput``
742 ms of a 1.5 s step). PyTorch asks oneDNN for the convolution with "any" memory formats
(blocked, e.g. ``nChw16c`` with AVX-512) and reorders the plain tensors in and out; the
operators here do the same with the oneDNN that MindSpore already loaded
(``mindspore/lib/libdnnl.so.3``, oneDNN 3.10.1), through its C API from the kernel library
(``cpu_kernels.cc`` says how: ``dlsym``, oneDNN's threadpool interface on the library's
pool, one plan per shape made at the first call, one oneDNN call at a time).

Two uses, chosen per layer by :class:`~mindyolox.models.conv.Conv2d` and
:class:`~mindyolox.models.blocks.BaseConv` when the CPU kernels are on (float32 only):

* :func:`conv`: the training convolution (forward_training) with its two gradients as
  oneDNN's backward-data and backward-weights primitives -- no column tensor either way (3x3
  layers: :class:`~mindyolox.models.conv.Conv2d` keeps MindSpore's ``Conv2D`` for 1x1);
* :func:`conv_silu`: the eval convolution with bias and SiLU as a post-op, for *folded*
  models only (:mod:`mindyolox.models.fold` says why: the unfolded eval model, which the
  parity tests check against the official outputs, keeps the ``Im2Col`` + GEMM sums).

GPU/Ascend never use these (the kernels are CPU-only); exports never do.
"""
from pathlib import Path

from . import cpu_kernels
from .cpu_kernels import _conv_shape, _conv_with_grads, custom_op, _state

__all__ = ["GEOMETRIES", "available", "conv", "conv_silu", "fits"]

# (stride, padding) pairs the library exports oneDNN convolutions for (EXPORT_DNNL in the source)
GEOMETRIES = ((1, 1), (2, 1), (1, 0))


def available():
    """True when the kernel library finds oneDNN in this process (MindSpore's
    ``lib/libdnnl.so.3``, loaded here first if MindSpore has not yet) with every function it
    calls; the outcome is kept for the process."""
    if "dnnl" not in _state:
        import ctypes
        import mindspore
        dnnl = Path(mindspore.__file__).parent / "lib" / "libdnnl.so.3"
        try:
            ctypes.CDLL(str(dnnl), mode=ctypes.RTLD_GLOBAL)
            _state["dnnl"] = bool(ctypes.CDLL(str(cpu_kernels.library())).DnnlAvailable())
        except OSError:
            _state["dnnl"] = False
    return _state["dnnl"]


def fits(kernel, stride, padding, group):
    """True when a dense ``kernel`` x ``kernel`` convolution of this geometry has oneDNN
    operators here (1x1 and 3x3, :data:`GEOMETRIES`, ``group == 1``)."""
    return group == 1 and kernel in (1, 3) and (stride, padding) in GEOMETRIES


def conv(stride, padding):
    """The training operator ``(x [B, C, H, W], w [O, C, k, k]) -> y [B, O, Ho, Wo]`` (float32,
    symmetric ``padding``, no bias) as oneDNN's forward_training convolution, with its gradient
    ``(dx, dw)`` as oneDNN's backward-data and backward-weights convolutions (each in the
    formats oneDNN picks, plain tensors reordered in and out). One instance per geometry."""
    key = ("dnnl_train", stride, padding)
    if key not in _state:
        tag = f"S{stride}_P{padding}"
        _state[key] = _conv_with_grads(f"DnnlConv{tag}", f"DnnlConvBwdData{tag}", f"DnnlConvBwdWeights{tag}",
                                       stride, padding, False)
    return _state[key]


def conv_silu(stride, padding):
    """The eval operator ``(x [B, C, H, W], w [O, C, k, k], bias [O]) -> SiLU(conv(x, w) + bias)``
    [B, O, Ho, Wo] (float32, symmetric ``padding``) as ONE oneDNN convolution primitive
    (forward_inference) with the bias and SiLU applied by the convolution (a post-op). No
    gradient."""
    key = ("dnnl", stride, padding)
    if key not in _state:
        _state[key] = custom_op(f"DnnlConvSiluS{stride}_P{padding}",
                              lambda x, w, b: _conv_shape(x, w, w[0], stride, padding), lambda x, w, b: x)
    return _state[key]
