"""Candidate CPU paths for 3x3 stride-1 convolutions, timed by ``bench/bench_conv.py`` against
the model's ``Im2Col`` path; none of them won (docs/benchmarks.md, "Convolution paths on
CPU"), so the model does not use them. Kept so the measurement can be repeated (e.g. on a
later MindSpore): Winograd F(2x2, 3x3) for dense convolutions (two gathers), ``Im2Col`` with
a convolution-of-dY backward, and nine shifted multiply-adds for depthwise ones, each a Cell
with its own backward (``bprop``); :class:`CandidateConv` runs one of them on the weight of
a :class:`mindyolox.models.conv.Conv2d`.

Why: :mod:`mindyolox.models.conv` computes a k x k convolution on CPU as ``Im2Col`` + a 1x1
GEMM because MindSpore 2.10's native CPU ``Conv2D`` is oneDNN's reference kernel. ``Im2Col``
writes every input value nine times and its backward (``Col2Im`` of a 9x column gradient)
reads them back. The cells here do the same arithmetic with less data movement:

* :class:`WinogradConv3x3` (``group == 1``, 3x3, stride 1, padding 1). The input, padded to
  an even size, is cut into 4x4 tiles overlapping by 2 (one per 2x2 block of outputs: 16
  input values per 4 outputs instead of 36); the transform ``B^T d B`` is done with slices
  and additions of the padded input (its rows, then its columns, as even/odd halves of a
  reshape: no gather), the 16 transformed tile planes are multiplied by the 16 transformed
  weights ``G g G^T`` as one ``BatchMatMul`` ``[16, B, O, C] x [16, B, C, T]`` and the
  output transform ``A^T m A`` is again additions. Backward: the input gradient is the same
  Winograd convolution of the output gradient with the flipped, transposed kernel
  (``w'[c, o, i, j] = w[o, c, 2-i, 2-j]``, folded into the weight transform), the weight
  gradient one ``Im2Col`` of the input and a ``BatchMatMul`` with the output gradient (a
  column tensor in the backward only, and no ``Col2Im``).
* :class:`ShiftDepthwise3x3` (``group == C == O``, 3x3, stride 1, padding 1):
  ``y = sum_ij w[:, i, j] * x_pad[:, :, i:i+H, j:j+W]``. Backward: the input gradient is
  the same sum over the output gradient with the flipped kernel, the weight gradient an
  ``Im2Col`` of the input times the output gradient (a per-channel ``BatchMatMul``).
* :class:`Im2ColConv3x3` (dense): the model's forward, with the input gradient as ``Im2Col``
  of dY and a 1x1 GEMM with the flipped kernel instead of ``Col2Im``.

Tensor shapes: ``x`` [B, C, H, W] (float32 or float16), ``weight`` [O, C, 3, 3] (dense) or
[C, 1, 3, 3] (depthwise), output [B, O, H, W]. Numerics: Winograd F(2x2, 3x3) has transform
constants 1 and 1/2 only; the float32 results differ from a direct convolution by a few ULP
of the largest partial sums. ``bench_conv.py`` checks every candidate's forward and both
gradients against the ``Im2Col`` path before timing it.

Graph-mode traps met here (MindSpore 2.10): inside a ``bprop``, functional ops with Python
argument checks (``ops.pad``, ``ops.conv2d``) fail to compile ("The func graph is empty"),
and so do generator expressions and conditional expressions on Python flags: use primitives
(``ops.Pad``, ``ops.Conv2D``) and unrolled statements.

The padding is ``ops.Pad`` in the forward of these cells only: their backward is written
out, so the trap of the padding's own gradient in GRAPH_MODE (see conv.py) does not apply.
"""
import numpy as np
from mindspore import Tensor, nn, ops

__all__ = ["CANDIDATES", "CandidateConv", "WinogradConv3x3", "ShiftDepthwise3x3", "Im2ColConv3x3",
           "winograd_conv", "winograd_conv_mm", "winograd_weights"]

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]], np.float32)
_K = np.kron(_G, _G)          # [16, 9]: U[r*4+c] = sum_ij G[r, i] G[c, j] g[i*3+j]
_K_FLIP = _K[:, ::-1].copy()  # the same for the kernel rotated by 180 degrees
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)
_KB = np.kron(_BT, _BT)       # [16, 16]: V[r*4+c] = sum_ij B^T[r, i] B^T[c, j] d[i*4+j]
_KA = np.kron(_AT, _AT)       # [4, 16]:  Y[p*2+q] = sum_rc A^T[p, r] A^T[q, c] M[r*4+c]


def winograd_weights(weight, kmat):
    """The 16 transformed kernels ``G g G^T``: weight [O, C, 3, 3] -> [16, O, C];
    ``kmat`` [16, 9] (``_K``, or ``_K_FLIP`` for the kernel rotated by 180 degrees)."""
    o, c = weight.shape[0], weight.shape[1]
    return ops.matmul(kmat.astype(weight.dtype), weight.reshape(o * c, 9).transpose(1, 0)).reshape(16, o, c)


def winograd_conv(x, u):
    """Winograd F(2x2, 3x3) convolution, stride 1, padding 1: x [B, C, H, W], u [16, O, C]
    (from :func:`winograd_weights`) -> [B, O, H, W]."""
    b, c, h, w = x.shape
    o = u.shape[1]
    th, tw = (h + 1) // 2, (w + 1) // 2
    n = b * c
    xp = ops.Pad(((0, 0), (0, 0), (1, 2 * th - h + 1), (1, 2 * tw - w + 1)))(x)          # [B, C, 2th+2, 2tw+2]
    wp = 2 * tw + 2
    rows = xp.reshape(n, th + 1, 2 * wp)                             # (row pair, even|odd row)
    e0 = ops.slice(rows, (0, 0, 0), (n, th, wp))                     # rows 2t
    o0 = ops.slice(rows, (0, 0, wp), (n, th, wp))                    # rows 2t+1
    e1 = ops.slice(rows, (0, 1, 0), (n, th, wp))                     # rows 2t+2
    o1 = ops.slice(rows, (0, 1, wp), (n, th, wp))                    # rows 2t+3
    # B^T d: [d0 - d2, d1 + d2, d2 - d1, d1 - d3] over the four rows of each tile
    r = ops.stack((e0 - e1, o0 + e1, e1 - o0, o0 - o1))              # [4, n, th, wp]
    cols = r.reshape(4 * n * th, tw + 1, 2)
    m = 4 * n * th
    ce0 = ops.slice(cols, (0, 0, 0), (m, tw, 1))
    co0 = ops.slice(cols, (0, 0, 1), (m, tw, 1))
    ce1 = ops.slice(cols, (0, 1, 0), (m, tw, 1))
    co1 = ops.slice(cols, (0, 1, 1), (m, tw, 1))
    v = ops.stack(((ce0 - ce1).reshape(4, b, c, th * tw), (co0 + ce1).reshape(4, b, c, th * tw),
                   (ce1 - co0).reshape(4, b, c, th * tw), (co0 - co1).reshape(4, b, c, th * tw)), 1)
    v = v.reshape(16, b, c, th * tw)                                 # [16 = row*4+col, B, C, T]
    ub = ops.broadcast_to(u.reshape(16, 1, o, c), (16, b, o, c))
    prod = ops.BatchMatMul()(ub, v).reshape(4, 4, b * o * th * tw)   # [row, col, B*O*T]
    k = b * o * th * tw
    m0 = ops.slice(prod, (0, 0, 0), (1, 4, k)).reshape(4, k)
    m1 = ops.slice(prod, (1, 0, 0), (1, 4, k)).reshape(4, k)
    m2 = ops.slice(prod, (2, 0, 0), (1, 4, k)).reshape(4, k)
    m3 = ops.slice(prod, (3, 0, 0), (1, 4, k)).reshape(4, k)
    # A^T m: two output rows, then A^T over the columns of each
    out_rows = (_output_row(m0 + m1 + m2, b * o, th, tw), _output_row(m1 - m2 - m3, b * o, th, tw))
    y = ops.concat(out_rows, 2).reshape(b, o, 2 * th, 2 * tw)
    if 2 * th != h or 2 * tw != w:
        y = ops.slice(y, (0, 0, 0, 0), (b, o, h, w))
    return y


def _output_row(s, bo, th, tw):
    """One row of the 2x2 output blocks from its 4 column planes ``s`` [4, B*O*th*tw]:
    [B*O, th, 1, 2tw] (columns interleaved)."""
    k = bo * th * tw
    s0 = ops.slice(s, (0, 0), (1, k)).reshape(bo * th, tw)
    s1 = ops.slice(s, (1, 0), (1, k)).reshape(bo * th, tw)
    s2 = ops.slice(s, (2, 0), (1, k)).reshape(bo * th, tw)
    s3 = ops.slice(s, (3, 0), (1, k)).reshape(bo * th, tw)
    return ops.stack((s0 + s1 + s2, s1 - s2 - s3), -1).reshape(bo, th, 1, 2 * tw)


def winograd_conv_mm(x, u, unfold4, kb, ka):
    """:func:`winograd_conv` with the transforms as matrix products: the 4x4 tiles gathered
    by ``unfold4`` (``Im2Col`` 4x4, stride 2, padding 1) into [B, C, 16, T], ``V = KB @ tiles``
    (``kb`` [16, 16]), the products, ``Y = KA @ M`` (``ka`` [4, 16]) and one transpose that
    interleaves the 2x2 output blocks. Fewer kernels, two 4x-sized transposes."""
    b, c, h, w = x.shape
    o = u.shape[1]
    th, tw = (h + 1) // 2, (w + 1) // 2
    if 2 * th != h or 2 * tw != w:
        x = ops.Pad(((0, 0), (0, 0), (0, 2 * th - h), (0, 2 * tw - w)))(x)
    tiles = unfold4(x).reshape(b, c, 16, th * tw)                   # [B, C, 16, T]
    v = ops.matmul(kb.astype(x.dtype), tiles).transpose(2, 0, 1, 3)  # [16, B, C, T]
    ub = ops.broadcast_to(u.reshape(16, 1, o, c), (16, b, o, c))
    prod = ops.BatchMatMul()(ub, v).reshape(16, b * o * th * tw)
    y = ops.matmul(ka.astype(x.dtype), prod).reshape(2, 2, b, o, th, tw)
    y = y.transpose(2, 3, 4, 0, 5, 1).reshape(b, o, 2 * th, 2 * tw)
    if 2 * th != h or 2 * tw != w:
        y = ops.slice(y, (0, 0, 0, 0), (b, o, h, w))
    return y


def _weight_grad_dense(x, dy, unfold):
    """dW [O, C, 3, 3] = sum_b dY_b [O, HW] x cols_b^T [HW, C*9]."""
    b, c, h, w = x.shape
    o = dy.shape[1]
    cols = unfold(x).reshape(b, c * 9, h * w)
    g = ops.BatchMatMul(transpose_b=True)(dy.reshape(b, o, h * w), cols)   # [B, O, C*9]
    return g.sum(0).reshape(o, c, 3, 3)


class WinogradConv3x3(nn.Cell):
    """``y = conv3x3(x, weight)``, stride 1, padding 1, no groups, via Winograd F(2x2, 3x3),
    with the backward of the module doc. construct(x [B, C, H, W], weight [O, C, 3, 3]) ->
    [B, O, H, W]."""

    def __init__(self, gather="slices"):
        super().__init__()
        self.kmat = Tensor(_K)
        self.kmat_flip = Tensor(_K_FLIP)
        self.kb, self.ka = Tensor(_KB), Tensor(_KA)
        self.unfold = ops.Im2Col(ksizes=3, strides=1, dilations=1, pads=1)
        self.unfold4 = ops.Im2Col(ksizes=4, strides=2, dilations=1, pads=1)
        self.mm = gather == "im2col"

    def _conv(self, x, u):
        if self.mm:
            return winograd_conv_mm(x, u, self.unfold4, self.kb, self.ka)
        return winograd_conv(x, u)

    def construct(self, x, weight):
        return self._conv(x, winograd_weights(weight, self.kmat))

    def bprop(self, x, weight, out, dout):
        dx = self._conv(dout, winograd_weights(weight, self.kmat_flip).transpose(0, 2, 1))
        return dx, _weight_grad_dense(x, dout, self.unfold)


def shift_depthwise(x, weight):
    """Depthwise 3x3 convolution, stride 1, padding 1, as nine shifted multiply-adds:
    x [B, C, H, W], weight [C, 1, 3, 3] -> [B, C, H, W]."""
    b, c, h, w = x.shape
    xp = ops.Pad(((0, 0), (0, 0), (1, 1), (1, 1)))(x)
    taps = weight.reshape(c, 9)
    y = ops.slice(xp, (0, 0, 0, 0), (b, c, h, w)) * ops.slice(taps, (0, 0), (c, 1)).reshape(1, c, 1, 1)
    for t in range(1, 9):
        i, j = t // 3, t % 3
        y = y + ops.slice(xp, (0, 0, i, j), (b, c, h, w)) * ops.slice(taps, (0, t), (c, 1)).reshape(1, c, 1, 1)
    return y


class ShiftDepthwise3x3(nn.Cell):
    """Depthwise 3x3 (stride 1, padding 1) as shifted multiply-adds with the backward of the
    module doc. construct(x [B, C, H, W], weight [C, 1, 3, 3]) -> [B, C, H, W]."""

    def __init__(self):
        super().__init__()
        self.unfold = ops.Im2Col(ksizes=3, strides=1, dilations=1, pads=1)

    def construct(self, x, weight):
        return shift_depthwise(x, weight)

    def bprop(self, x, weight, out, dout):
        b, c, h, w = x.shape
        flipped = ops.flip(weight.reshape(c, 1, 9), (2,)).reshape(c, 1, 3, 3)
        dx = shift_depthwise(dout, flipped)
        cols = self.unfold(x)                                              # [B, C, 9, HW]
        dw = ops.BatchMatMul()(cols, dout.reshape(b, c, h * w, 1))         # [B, C, 9, 1]
        return dx, dw.sum(0).reshape(c, 1, 3, 3)


class Im2ColConv3x3(nn.Cell):
    """The ``Im2Col`` + 1x1 GEMM forward of conv.py (3x3, stride 1, padding 1, no groups)
    with a written-out backward: the input gradient as ``Im2Col`` of the output gradient and
    a 1x1 GEMM with the flipped, transposed kernel (instead of a 9x column gradient and
    ``Col2Im``), the weight gradient as in :class:`WinogradConv3x3`.
    construct(x [B, C, H, W], weight [O, C, 3, 3]) -> [B, O, H, W]."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.unfold = ops.Im2Col(ksizes=3, strides=1, dilations=1, pads=1)
        self.gemm = ops.Conv2D(out_channels, 1)        # forward: C*9 -> O
        self.gemm_t = ops.Conv2D(in_channels, 1)       # input gradient: O*9 -> C

    def construct(self, x, weight):
        b, c, h, w = x.shape
        o = weight.shape[0]
        return self.gemm(self.unfold(x).reshape(b, c * 9, h, w), weight.reshape(o, c * 9, 1, 1))

    def bprop(self, x, weight, out, dout):
        b, c, h, w = x.shape
        o = weight.shape[0]
        flipped = ops.flip(weight.reshape(o, c, 9), (2,)).transpose(1, 0, 2).reshape(c, o * 9, 1, 1)
        dx = self.gemm_t(self.unfold(dout).reshape(b, o * 9, h, w), flipped)
        return dx, _weight_grad_dense(x, dout, self.unfold)


CANDIDATES = ("winograd", "winograd_mm", "im2col_bprop", "shift")


def applies(path, cin, cout, k, stride, group):
    """Whether candidate ``path`` computes a convolution of this geometry (padding (k-1)/2)."""
    if k != 3 or stride != 1:
        return False
    depthwise = group == cin == cout and group > 1
    return depthwise if path == "shift" else group == 1


class CandidateConv(nn.Cell):
    """Candidate ``path`` (one of ``CANDIDATES``) on the weight of ``conv`` (a model
    :class:`~mindyolox.models.conv.Conv2d`, no bias): construct(x [B, C, H, W]) -> [B, O, H, W]."""

    def __init__(self, conv, path):
        super().__init__()
        if not applies(path, conv.in_channels, conv.out_channels, conv.k, conv.s, conv.group) or conv.p != 1:
            raise ValueError(f"candidate {path!r} does not apply to this convolution")
        self.weight = conv.weight
        self.op = {"winograd": lambda: WinogradConv3x3("slices"), "winograd_mm": lambda: WinogradConv3x3("im2col"),
                   "im2col_bprop": lambda: Im2ColConv3x3(conv.in_channels, conv.out_channels),
                   "shift": ShiftDepthwise3x3}[path]()

    def construct(self, x):
        return self.op(x, self.weight)
