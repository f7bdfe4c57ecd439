"""``Conv2d``: ``mindspore.nn.Conv2d`` with a fast CPU path for k x k convolutions.

MindSpore 2.10 on CPU runs a k x k (k > 1) convolution through oneDNN's reference kernel
(``jit_uni_ncsp:conv+ref:any`` in ``ONEDNN_VERBOSE``): a 3x3 conv 64->64 on 4x80x80 takes
1.5 s forward and 3.8 s with its backward, where the same FLOPs as a 1x1 conv (a GEMM) take
15 ms. On CPU this class therefore computes a k x k conv as

* dense (``group == 1``): ``Im2Col`` -- the k*k taps of every output position as channels,
  ``[B, C*k*k, Ho, Wo]`` in the (c, i, j) order of a flattened weight -- then one 1x1 conv
  with the weight viewed as ``[O, C*k*k, 1, 1]`` (25x faster forward and backward);
* depthwise (``group == C == O``): ``Im2Col`` columns ``[B, C, k*k, Ho*Wo]`` multiplied
  per channel by the weight row ``[1, k*k]`` (a batched GEMM; 5-9x faster than the native
  kernel with its backward).

Parameters, their names (``weight`` ``[O, C/group, k, k]``, ``bias`` ``[O]``), shapes and
initialisation are ``nn.Conv2d``'s, so checkpoints, weight import, weight decay and FLOP
counting see an ordinary convolution. Results equal the native kernel to float32 rounding
(the sums run in another order). Padding is symmetric ``padding`` on every side (the
``pad_mode="pad"`` semantics), done inside ``Im2Col``. (Two traps found on the way, for
whoever changes this: in GRAPH_MODE the gradient of ``ops.pad`` accumulates over repeated
calls of a compiled graph on MindSpore 2.10 CPU, and Python slicing (``StridedSlice``) is
20x slower than ``ops.slice``.)

With ``cpu_kernels`` on (the CPU default) and float32 inputs, layers take the compiled
kernels of :mod:`mindyolox.ops`: a depthwise k x k layer of stride 1 or 2 and padding 1 its
direct convolution (:mod:`~mindyolox.ops.cpu_kernels`; no column tensor; 5-10x faster than
``Im2Col`` forward and backward, the same forward sums); a dense 3x3 layer *in training*
oneDNN's own convolution primitives, forward and both gradients, in the blocked formats oneDNN
picks (:mod:`~mindyolox.ops.dnnl_conv`; yolox-s 640 b2 train step on AMD EPYC 1.21x -> 0.96x
the official time); 1x1 layers stay MindSpore's ``Conv2D`` (a GEMM on plain tensors, faster
than oneDNN's primitive with its reorders at the quickstart's small shapes); *in evaluation* a
dense layer keeps the ``Im2Col`` + GEMM sums, with the columns built by a compiled ``Im2Col``
(the parity tests check this unfolded eval model against the official outputs on
ill-conditioned networks, where oneDNN's differently ordered sums drift past their tolerance:
:mod:`mindyolox.models.fold`), and a folded model (test.py, predict.py) runs oneDNN with bias
and SiLU fused (:class:`~mindyolox.models.blocks.BaseConv`).
``bench/bench_conv.py`` measures the paths.

The implementation is a per-layer choice made when the model is built: ``impl`` of the
constructor (default ``native``), set for a whole model by :func:`mindyolox.build_model` from
``DeviceOptions.conv`` (``im2col`` on CPU, ``native`` on GPU/Ascend and for export, so that
exported graphs hold standard ``Conv2D`` ops for ONNX, MindSpore Lite and Ascend), and
``DeviceOptions.cpu_kernels``.
"""
from mindspore import dtype as mstype
from mindspore import nn, ops

from ..ops import cpu_kernels, dnnl_conv

__all__ = ["Conv2d", "IMPLS"]

IMPLS = ("native", "im2col")


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (``pad_mode="pad"``, symmetric ``padding``, no dilation) that runs k x k
    convolutions through ``Im2Col`` (see the module doc) on CPU.

    Input [B, C, H, W] float32, output [B, O, Ho, Wo], Ho = (H + 2 padding - k) // stride + 1.
    ``compute_dtype`` / ``cast_output`` (None, or MindSpore float types set by
    :func:`~mindyolox.models.amp.mixed_precision`): the dtype the weights are cast to (float16
    under O1-O3) and the dtype the output is cast to (O1: float16 layers handing float32 on).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, group=1,
                 has_bias=False, impl="native", **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, stride, pad_mode="pad", padding=padding,
                         group=group, has_bias=has_bias, **kwargs)
        if self.kernel_size[0] != self.kernel_size[1] or self.stride[0] != self.stride[1]:
            raise ValueError("Conv2d: square kernels and strides only")
        self.k, self.s, self.p = int(self.kernel_size[0]), int(self.stride[0]), int(padding)
        self.depthwise = group == in_channels == out_channels and group > 1
        self.unfold = ops.Im2Col(ksizes=self.k, strides=self.s, dilations=1, pads=self.p)
        # recomputed in the backward rather than kept: the columns are k*k times the input
        # (nano train step at 416 b8: peak 3.8 -> 3.4 GB, step time unchanged)
        self.unfold.recompute()
        self.gemm = ops.Conv2D(out_channels, 1)
        self.bmm = ops.BatchMatMul()
        self.cast_output = None
        self.compute_dtype = None
        self.use_impl(impl)

    def use_impl(self, impl, kernels=False):
        """``native`` or ``im2col`` for this layer (before its first call compiles a graph);
        1x1 and grouped (non-depthwise) convolutions otherwise run natively. ``kernels`` (the
        caller checked :func:`cpu_kernels.available`), for float32 inputs: a depthwise layer of
        a supported geometry takes the compiled direct kernel; a dense ``im2col`` layer the
        compiled Im2Col / Col2Im in eval mode and, when MindSpore's oneDNN is found, oneDNN's
        convolution in training (3x3)."""
        if impl not in IMPLS:
            raise ValueError(f"conv implementation must be one of {IMPLS}, got {impl!r}")
        self.im2col = impl == "im2col" and self.k > 1 and (self.group == 1 or self.depthwise)
        fits = kernels and cpu_kernels.geometry_supported(self.k, self.s, self.p)
        self.direct = cpu_kernels.depthwise_conv(self.s, self.p) if fits and self.depthwise else None
        self.columns = cpu_kernels.im2col(self.k, self.s, self.p) if fits and self.im2col and self.group == 1 else None
        # 3x3 only: a 1x1 layer through oneDNN (its reorders in and out) made the quickstart's
        # nano 160 b8 step 15 % slower than MindSpore's plain 1x1 Conv2D (AMD EPYC, 2 runs each)
        dense = kernels and self.im2col and self.k == 3 and dnnl_conv.fits(self.k, self.s, self.p, self.group)
        self.dnnl = dnnl_conv.conv(self.s, self.p) if dense and dnnl_conv.available() else None

    def construct(self, x):
        weight, bias = self.weight, self.bias
        if self.compute_dtype is not None:
            # under to_float(float16) MindSpore casts the inputs, but not a Parameter handed
            # on to another method (convolve): cast here (float32 graphs carry no cast op)
            weight = weight.astype(self.compute_dtype)
            bias = bias.astype(self.compute_dtype) if self.has_bias else bias
        y = self.convolve(x, weight)
        if self.has_bias:
            y = ops.bias_add(y, bias)
        if self.cast_output is not None:
            y = y.astype(self.cast_output)
        return y

    def convolve(self, x, weight):
        """The convolution of ``x`` with ``weight`` (this layer's geometry), without bias."""
        if self.dnnl is not None and self.training and x.dtype == mstype.float32 and weight.dtype == mstype.float32:
            return self.dnnl(x, weight)
        if self.direct is not None and x.dtype == mstype.float32 and weight.dtype == mstype.float32:
            return self.direct(x, weight)
        if not self.im2col:
            return self.conv2d(x, weight)
        b, c, h, w = x.shape
        kk = self.k * self.k
        ho = (h + 2 * self.p - self.k) // self.s + 1
        wo = (w + 2 * self.p - self.k) // self.s + 1
        if self.depthwise:
            cols = self.unfold(x)                                  # [B, C, k*k, Ho*Wo]
            # per (image, channel) a [1, k*k] x [k*k, Ho*Wo] product: the BatchMatMul
            # primitive, whose backward multiplies with transposed operands in place
            # (``ops.matmul`` transposes the 9x-sized columns explicitly in its backward:
            # 1.1-1.6x slower forward+backward); 2-3x faster than multiply + reduce.
            w = ops.broadcast_to(weight.reshape(1, c, 1, kk), (b, c, 1, kk))
            return self.bmm(w, cols).reshape(b, c, ho, wo)
        if self.columns is not None and x.dtype == mstype.float32:
            cols = self.columns(x)                                 # the same [B, C*k*k, Ho, Wo], compiled
        else:
            cols = self.unfold(x).reshape(b, c * kk, ho, wo)       # channel index c*k*k + i*k + j
        return self.gemm(cols, weight.reshape(weight.shape[0], c * kk, 1, 1))
