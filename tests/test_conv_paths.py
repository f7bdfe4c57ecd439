"""The CPU convolution paths of ``Conv2d`` (mindyolox/models/conv_cpu.py) against a float64
NumPy convolution: forward, input gradient and weight gradient in GRAPH_MODE, on random
data of small odd/even shapes (odd sizes exercise Winograd's padding to whole tiles)."""
import numpy as np
import pytest
from mindspore import ParameterTuple, Tensor, nn, ops

from mindyolox.models.conv import CPU_PATHS, Conv2d, cpu_path

# |error| / max |reference| of each result; Im2Col + GEMM is ~1e-7 here, Winograd's
# transforms (constants 1 and 1/2) add a few float32 ULP of the largest partial sums
TOL = 2e-6


def conv_ref(x, w, group):
    """float64 direct convolution, stride 1, padding 1: x [B, C, H, W], w [O, C/group, 3, 3]."""
    b, c, h, wd = x.shape
    o = w.shape[0]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((b, o, h, wd))
    cg, og = c // group, o // group
    for g in range(group):
        for i in range(3):
            for j in range(3):
                patch = xp[:, g * cg:(g + 1) * cg, i:i + h, j:j + wd]
                y[:, g * og:(g + 1) * og] += np.einsum("bchw,oc->bohw", patch, w[g * og:(g + 1) * og, :, i, j])
    return y


def grads_ref(x, w, dy, group):
    """(dx, dw) of sum(conv_ref(x, w) * dy), by the adjoint sums written out."""
    b, c, h, wd = x.shape
    o = w.shape[0]
    cg, og = c // group, o // group
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    for g in range(group):
        sl_c, sl_o = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        for i in range(3):
            for j in range(3):
                dxp[:, sl_c, i:i + h, j:j + wd] += np.einsum("bohw,oc->bchw", dy[:, sl_o], w[sl_o, :, i, j])
                dw[sl_o, :, i, j] = np.einsum("bohw,bchw->oc", dy[:, sl_o], xp[:, sl_c, i:i + h, j:j + wd])
    return dxp[:, :, 1:-1, 1:-1], dw


class ForwardAndGrads(nn.Cell):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        self.weights = ParameterTuple(conv.trainable_params())
        self.grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)

    def construct(self, x, dy):
        return self.conv(x), self.grad(self.conv, self.weights)(x, dy)


CASES = [("im2col", 5, 7, 1), ("winograd", 5, 7, 1), ("winograd_mm", 5, 7, 1), ("im2col_bprop", 5, 7, 1),
         ("im2col", 6, 6, 6), ("shift", 6, 6, 6)]


@pytest.mark.parametrize("path,cin,cout,group", CASES)
def test_path_matches_direct_convolution(path, cin, cout, group):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, cin, 9, 6)).astype(np.float32)
    conv = Conv2d(cin, cout, 3, 1, padding=1, group=group)
    conv.use_impl("im2col", path)
    assert conv.path == path and (conv.fast is None) == (path == "im2col")
    w = conv.weight.asnumpy()
    dy = rng.standard_normal((2, cout, 9, 6)).astype(np.float32)
    y, ((dx,), (dw,)) = ForwardAndGrads(conv)(Tensor(x), Tensor(dy))
    dx_ref, dw_ref = grads_ref(x, w, dy, group)
    for name, ours, ref in (("y", y, conv_ref(x, w, group)), ("dx", dx, dx_ref), ("dw", dw, dw_ref)):
        err = np.abs(ours.asnumpy() - ref).max() / np.abs(ref).max()
        assert err < TOL, f"{path} {name}: relative error {err:.2e}"


def test_path_choice():
    """3x3 stride-1 dense/depthwise layers follow the rule, others keep Im2Col or native;
    a path that does not fit the layer is refused."""
    assert set(CPU_PATHS) >= {"im2col", "winograd", "shift"}
    assert cpu_path(3, 2, 1, True, False) == "im2col" and cpu_path(1, 1, 0, True, False) == "native"
    assert cpu_path(3, 1, 1, True, False) in ("im2col", "winograd", "winograd_mm", "im2col_bprop")
    assert cpu_path(3, 1, 1, False, True) in ("im2col", "shift")
    with pytest.raises(ValueError, match="does not apply"):
        Conv2d(4, 4, 3, 2, padding=1).use_impl("im2col", "winograd")
    with pytest.raises(ValueError, match="does not apply"):
        Conv2d(4, 8, 3, 1, padding=1).use_impl("im2col", "shift")
    native = Conv2d(4, 8, 3, 1, padding=1)
    native.use_impl("native")
    assert native.path == "native" and native.fast is None
