"""Building blocks of YOLOX, one-to-one with the official ``network_blocks.py``.

Every block keeps the official attribute names so that MindSpore parameter names
equal the official PyTorch names (BatchNorm ``weight/bias/running_mean/running_var``
become ``gamma/beta/moving_mean/moving_variance``).

All tensors are NCHW float32.
"""
from contextlib import contextmanager

from mindspore import dtype as mstype
from mindspore import nn, ops

from ..ops import cpu_kernels, dnnl_conv
from .batchnorm import BatchNorm2d
from .conv import Conv2d

BN_EPS = 1e-3
# PyTorch momentum 0.03 (new = 0.97 * old + 0.03 * batch) is MindSpore momentum 0.97.
BN_MOMENTUM = 0.97


class SiLU(nn.SiLU):
    """``nn.SiLU`` (x * sigmoid(x), any shape) that runs the compiled CPU kernel for float32
    inputs once :meth:`use_kernels` switched it on (:mod:`mindyolox.ops.cpu_kernels`: one
    kernel each way instead of MindSpore's 3-5; equal to float32 rounding)."""

    def __init__(self):
        super().__init__()
        self.kernel = None

    def use_kernels(self, on):
        self.kernel = cpu_kernels.silu() if on else None

    def construct(self, x):
        if self.kernel is not None and x.dtype == mstype.float32:
            return self.kernel(x)
        return super().construct(x)


def get_activation(name="silu"):
    """Return the activation Cell for ``silu``, ``relu`` or ``lrelu`` (LeakyReLU 0.1)."""
    if name == "silu":
        return SiLU()
    if name == "relu":
        return nn.ReLU()
    if name == "lrelu":
        return nn.LeakyReLU(0.1)
    raise ValueError(f"unsupported activation '{name}' (use silu, relu or lrelu)")


class BaseConv(nn.Cell):
    """Conv2d (no bias, symmetric padding (k-1)//2) -> BatchNorm2d -> activation.

    In eval mode the BatchNorm is folded into the convolution (weight * gamma / sqrt(var +
    eps), bias beta - mean * that scale), computed from the current parameters in the graph
    (the same function with one kernel less per layer, 15% of a CPU forward), or once in
    numpy by :func:`mindyolox.models.fold.fold_batchnorms` (``folded``: no per-call arithmetic;
    exports, ``test.py`` and ``predict.py``); on CPU the bias and SiLU then run as one compiled
    pass (:meth:`use_fused_kernels`). ``fold_bn``
    (per instance, set by ``build_model`` from ``DeviceOptions.fold_bn``; off under mixed
    precision, where BN stays a float32 cell) switches it; inside :func:`bn_unfolded` ``conv``
    and ``bn`` run as separate cells in eval mode too (the FLOP counter needs their per-layer
    hooks to fire)."""

    def __init__(self, in_channels, out_channels, ksize, stride, groups=1, bias=False, act="silu"):
        super().__init__()
        self.fold_bn = True
        self.folded = False          # True once models.fold.fold_batchnorms put the BN into conv's weight/bias
        self.epilogue = None         # the fused eval kernels (use_fused_kernels)
        self.dw_epilogue = None
        self.dnnl = None
        self.train_bn_silu = False   # train mode: BN + SiLU as one compiled kernel (use_fused_kernels)
        pad = (ksize - 1) // 2
        self.conv = Conv2d(in_channels, out_channels, ksize, stride, padding=pad, group=groups, has_bias=bias)
        self.bn = BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = get_activation(act)

    def use_fused_kernels(self, on):
        """The fused eval path on CPU (``on``: the CPU kernels are on; after the conv's
        ``use_impl``): with a SiLU activation the eval forward ends with one compiled
        bias + SiLU pass instead of ``BiasAdd`` + SiLU, a depthwise layer with a direct
        kernel does convolution, bias and SiLU in one kernel, and -- once the block is
        ``folded`` (test.py, predict.py, track.py, evaluation during training) -- a dense 1x1 /
        3x3 layer runs as one oneDNN convolution primitive with bias and SiLU as its post-op, in
        the blocked formats oneDNN picks for the CPU (:func:`~mindyolox.ops.dnnl_conv.conv_silu`,
        when MindSpore's oneDNN is found) (:mod:`mindyolox.ops.cpu_kernels`). In training the
        BatchNorm and SiLU run as one kernel each way (:meth:`BatchNorm2d.fused_silu`: one
        activation kept per layer instead of two, fewer graph nodes). Float32 only."""
        fits = bool(on) and isinstance(self.act, SiLU)
        self.train_bn_silu = fits and self.bn.kernel_silu is not None
        self.epilogue = cpu_kernels.bias_silu() if fits else None
        conv = self.conv
        self.dw_epilogue = cpu_kernels.depthwise_bias_silu(conv.s, conv.p) if fits and conv.direct is not None else None
        dense = fits and dnnl_conv.fits(conv.k, conv.s, conv.p, conv.group)
        self.dnnl = dnnl_conv.conv_silu(conv.s, conv.p) if dense and dnnl_conv.available() else None

    def construct(self, x):
        if self.training or not self.fold_bn:
            y = self.conv(x)
            if (self.train_bn_silu and self.training and not self.bn.frozen and y.dtype == mstype.float32
                    and self.conv.compute_dtype is None and self.bn.cast_output is None):   # float32 models only
                return self.bn.fused_silu(y)
            return self.act(self.bn(y))
        if self.folded:                       # constant folded weights (models.fold.fold_batchnorms)
            weight, bias = self.conv.weight, self.conv.bias
        else:                                 # folded in the graph from the current parameters
            bn = self.bn
            scale = bn.gamma / ops.sqrt(bn.moving_variance + bn.eps)   # (no Rsqrt in ONNX export)
            mean = bn.moving_mean - self.conv.bias if self.conv.has_bias else bn.moving_mean
            weight, bias = self.conv.weight * scale.reshape(-1, 1, 1, 1), bn.beta - mean * scale
        if self.epilogue is not None and x.dtype == mstype.float32 and weight.dtype == mstype.float32:
            if self.dw_epilogue is not None:
                return self.dw_epilogue(x, weight, bias)
            if self.dnnl is not None and self.folded:   # (module doc of models/fold.py: why folded only)
                return self.dnnl(x, weight, bias)
            return self.epilogue(self.conv.convolve(x, weight), bias)
        return self.act(ops.bias_add(self.conv.convolve(x, weight), bias))


@contextmanager
def bn_unfolded(model):
    """Within the block, every :class:`BaseConv` of ``model`` calls its ``conv`` and ``bn``
    cells separately in eval mode (same outputs up to float rounding)."""
    convs = [(c, c.fold_bn) for _, c in model.cells_and_names() if isinstance(c, BaseConv)]
    for c, _ in convs:
        c.fold_bn = False
    try:
        yield model
    finally:
        for c, fold in convs:
            c.fold_bn = fold


class DWConv(nn.Cell):
    """Depthwise ``ksize`` conv (``dconv``) followed by a pointwise 1x1 conv (``pconv``)."""

    def __init__(self, in_channels, out_channels, ksize, stride=1, act="silu"):
        super().__init__()
        self.dconv = BaseConv(in_channels, in_channels, ksize, stride, groups=in_channels, act=act)
        self.pconv = BaseConv(in_channels, out_channels, 1, 1, act=act)

    def construct(self, x):
        return self.pconv(self.dconv(x))


def conv_class(depthwise):
    """The 3x3 conv type used by CSPDarknet/PAFPN/head: DWConv when ``depthwise``."""
    return DWConv if depthwise else BaseConv


class Bottleneck(nn.Cell):
    """1x1 conv to ``out*expansion`` channels, 3x3 conv back, residual add when shapes allow."""

    def __init__(self, in_channels, out_channels, shortcut=True, expansion=0.5,
                 depthwise=False, act="silu"):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = BaseConv(in_channels, hidden, 1, 1, act=act)
        self.conv2 = conv_class(depthwise)(hidden, out_channels, 3, 1, act=act)
        self.use_add = shortcut and in_channels == out_channels

    def construct(self, x):
        y = self.conv2(self.conv1(x))
        if self.use_add:
            y = y + x
        return y


class ResLayer(nn.Cell):
    """Darknet-53 residual layer: 1x1 to half the channels, 3x3 back, add (LeakyReLU)."""

    def __init__(self, in_channels):
        super().__init__()
        mid = in_channels // 2
        self.layer1 = BaseConv(in_channels, mid, 1, 1, act="lrelu")
        self.layer2 = BaseConv(mid, in_channels, 3, 1, act="lrelu")

    def construct(self, x):
        return x + self.layer2(self.layer1(x))


class SPPBottleneck(nn.Cell):
    """Spatial pyramid pooling: 1x1 conv, concat of max pools (5, 9, 13; stride 1), 1x1 conv."""

    def __init__(self, in_channels, out_channels, kernel_sizes=(5, 9, 13), activation="silu"):
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = BaseConv(in_channels, hidden, 1, 1, act=activation)
        # stride 1 with an odd kernel: 'same' pads k//2 on every side, as the official padding=k//2.
        self.m = nn.CellList([nn.MaxPool2d(kernel_size=k, stride=1, pad_mode="same")
                              for k in kernel_sizes])
        self.conv2 = BaseConv(hidden * (len(kernel_sizes) + 1), out_channels, 1, 1, act=activation)

    def construct(self, x):
        x = self.conv1(x)
        feats = [x]
        for pool in self.m:
            feats.append(pool(x))
        return self.conv2(ops.concat(feats, 1))


class CSPLayer(nn.Cell):
    """CSP bottleneck with three convs (YOLOv5 C3): two 1x1 branches, ``n`` Bottlenecks on one."""

    def __init__(self, in_channels, out_channels, n=1, shortcut=True, expansion=0.5,
                 depthwise=False, act="silu"):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = BaseConv(in_channels, hidden, 1, 1, act=act)
        self.conv2 = BaseConv(in_channels, hidden, 1, 1, act=act)
        self.conv3 = BaseConv(2 * hidden, out_channels, 1, 1, act=act)
        self.m = nn.SequentialCell([Bottleneck(hidden, hidden, shortcut, 1.0, depthwise, act=act)
                                    for _ in range(n)])

    def construct(self, x):
        x1 = self.m(self.conv1(x))
        x2 = self.conv2(x)
        return self.conv3(ops.concat((x1, x2), 1))


class Focus(nn.Cell):
    """Space-to-depth [B,C,H,W] -> [B,4C,H/2,W/2] (order TL, BL, TR, BR), then a BaseConv."""

    def __init__(self, in_channels, out_channels, ksize=1, stride=1, act="silu"):
        super().__init__()
        self.conv = BaseConv(in_channels * 4, out_channels, ksize, stride, act=act)
        # ONNX export only (mindyolox/deploy/export.py): four strided slices + concat, which
        # onnxruntime runs ~3x faster than the 6-D transpose (nano 416: 0.6 vs 1.75 ms)
        self.by_slices = False

    def construct(self, x):
        if self.by_slices:
            return self.conv(ops.concat((x[:, :, ::2, ::2], x[:, :, 1::2, ::2], x[:, :, ::2, 1::2],
                                         x[:, :, 1::2, 1::2]), 1))
        # x[.., 2y + p, 2x + q] -> channel block 2q + p (p, q = row, column phase): one reshape
        # and transpose (strided slicing is 20x slower on CPU)
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).transpose(0, 5, 3, 1, 2, 4)
        return self.conv(x.reshape(b, 4 * c, h // 2, w // 2))


class Upsample2x(nn.Cell):
    """Nearest-neighbour 2x upsampling [B,C,H,W] -> [B,C,2H,2W] (exact, as nn.Upsample)."""

    def __init__(self):
        super().__init__()
        # ONNX export only: ResizeNearestNeighbor, exported as one ONNX Resize (nearest,
        # asymmetric, floor: exact for 2x), which onnxruntime runs far faster than the
        # broadcast's Expand (nano 416: 0.05 vs 1.3 ms)
        self.by_resize = False

    def construct(self, x):
        b, c, h, w = x.shape
        if self.by_resize:
            return ops.ResizeNearestNeighbor((h * 2, w * 2))(x)
        x = ops.broadcast_to(x.reshape(b, c, h, 1, w, 1), (b, c, h, 2, w, 2))
        return x.reshape(b, c, h * 2, w * 2)
