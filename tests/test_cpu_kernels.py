"""The compiled CPU kernels (depthwise convolution, SiLU): the same function and gradients as
the paths they replace, the on-disk build, and how ``runtime.cpu_kernels`` resolves."""
import logging

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from mindyolox import build_model, load_config
from mindyolox.errors import ConfigError
from mindyolox.ops import cpu_kernels, dnnl_conv
from mindyolox.models.batchnorm import BatchNorm2d
from mindyolox.models.blocks import SiLU
from mindyolox.models.conv import Conv2d
from mindyolox.options import resolve_options

from .conftest import ROOT


class _Grads(nn.Cell):
    """(y, dL/dx, dL/dparams) of L = sum(net(x) * dy), one graph, one forward (a train-mode
    BN moves its running statistics once)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.params = net.trainable_params()

    def construct(self, x, dy):
        def loss(x):
            y = self.net(x)
            return (y * dy).sum(), y
        (_, y), (dx, dparams) = ms.value_and_grad(loss, 0, self.params, has_aux=True)(x)
        return y, dx, dparams


def _run(net, x, dy):
    y, dx, dparams = _Grads(net)(Tensor(x), Tensor(dy))
    return y.asnumpy(), dx.asnumpy(), [g.asnumpy() for g in dparams]


@pytest.mark.parametrize("stride, size", [(1, 13), (2, 13), (2, 12)])
def test_depthwise_kernel_equals_im2col_forward_and_gradients(stride, size):
    rng = np.random.default_rng(stride * 100 + size)
    c = 6
    direct = Conv2d(c, c, 3, stride, padding=1, group=c, impl="im2col")
    direct.use_impl("im2col", kernels=True)
    reference = Conv2d(c, c, 3, stride, padding=1, group=c, impl="im2col")
    assert direct.direct is not None and reference.direct is None
    reference.weight.set_data(direct.weight.data.copy())
    x = rng.standard_normal((3, c, size, size)).astype(np.float32)
    out = (size + 2 - 3) // stride + 1
    dy = rng.standard_normal((3, c, out, out)).astype(np.float32)
    (y, dx, (dw,)), (y0, dx0, (dw0,)) = _run(direct, x, dy), _run(reference, x, dy)
    assert y.shape == (3, c, out, out) and dx.shape == x.shape and dw.shape == (c, 1, 3, 3)
    np.testing.assert_array_equal(y, y0)           # the taps are added in the same order
    np.testing.assert_allclose(dx, dx0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, dw0, rtol=1e-4, atol=1e-4)
    # and both are the convolution numpy computes in float64
    pad = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    w = direct.weight.data.asnumpy().astype(np.float64)[:, 0]
    ref = sum(pad[:, :, i:i + stride * out:stride, j:j + stride * out:stride] * w[None, :, i, j, None, None]
              for i in range(3) for j in range(3))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride, size", [(1, 11), (2, 11), (2, 10)])
def test_compiled_columns_equal_im2col_forward_and_gradients(stride, size):
    """Dense k x k: the compiled Im2Col / Col2Im feed the same GEMM as ``ops.Im2Col``."""
    rng = np.random.default_rng(stride * 10 + size)
    fast = Conv2d(5, 7, 3, stride, padding=1, impl="im2col")
    fast.use_impl("im2col", kernels=True)
    reference = Conv2d(5, 7, 3, stride, padding=1, impl="im2col")
    assert fast.columns is not None and fast.direct is None and reference.columns is None
    reference.weight.set_data(fast.weight.data.copy())
    x = rng.standard_normal((2, 5, size, size)).astype(np.float32)
    out = (size + 2 - 3) // stride + 1
    dy = rng.standard_normal((2, 7, out, out)).astype(np.float32)
    (y, dx, (dw,)), (y0, dx0, (dw0,)) = _run(fast, x, dy), _run(reference, x, dy)
    np.testing.assert_array_equal(y, y0)     # the same columns into the same GEMM
    np.testing.assert_array_equal(dw, dw0)
    np.testing.assert_allclose(dx, dx0, rtol=1e-5, atol=1e-5)


def test_batch_norm_kernel_equals_the_exact_two_pass_batch_norm():
    """Train mode: output, running statistics and gradients of the compiled kernel against the
    ``exact`` ops path, on channels whose mean is large next to their spread."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 4, 6, 5)) * [[[[0.5]], [[2.0]], [[1.0]], [[0.01]]]]
         + [[[[100.0]], [[-3.0]], [[0.0]], [[7.0]]]]).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for kernel in (True, False):
        bn = BatchNorm2d(4, eps=1e-3, momentum=0.97, exact=True)
        bn.gamma.set_data(Tensor(np.array([1.5, 0.5, -1.0, 2.0], np.float32)))
        bn.beta.set_data(Tensor(np.array([0.1, 0.2, 0.3, -0.4], np.float32)))
        bn.use_kernels(kernel)
        assert (bn.kernel is not None) == kernel
        bn.set_train(True)
        y, dx, (dgamma, dbeta) = _run(bn, x, dy)
        results.append((y, dx, dgamma, dbeta, bn.moving_mean.asnumpy(), bn.moving_variance.asnumpy()))
    for got, want, tol in zip(results[0], results[1], (2e-5, 2e-4, 2e-4, 1e-5, 1e-5, 1e-5)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    x64 = x.astype(np.float64)
    xhat = (x64 - x64.mean((0, 2, 3), keepdims=True)) / np.sqrt(x64.var((0, 2, 3), keepdims=True) + 1e-3)
    want = xhat * np.array([1.5, 0.5, -1.0, 2.0])[None, :, None, None] + np.array([0.1, 0.2, 0.3, -0.4])[None, :, None, None]
    np.testing.assert_allclose(results[0][0], want, rtol=1e-5, atol=1e-5)   # float64 batch norm
    n = x.size // 4
    mean, var = x64.mean((0, 2, 3)), x64.var((0, 2, 3)) * n / (n - 1)
    # one move from (0, 1): the kernel wrote them in place (no output, no Assign)
    np.testing.assert_allclose(results[0][4], 0.03 * mean, rtol=1e-5)
    np.testing.assert_allclose(results[0][5], 0.97 * 1 + 0.03 * var, rtol=1e-5)


def test_batch_norm_with_silu_in_one_kernel_equals_the_two_kernels():
    """A train-mode BaseConv with BN + SiLU as one kernel each way (the backward recomputes the
    normalised input from x): output, gradients of x and of every parameter, and the running
    statistics equal BN's kernel followed by SiLU's."""
    from mindyolox.models.blocks import BaseConv
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 5, 9, 8)) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal((2, 6, 9, 8)).astype(np.float32)
    results = []
    for fused in (True, False):
        block = BaseConv(5, 6, 3, 1)
        block.conv.use_impl("im2col", kernels=True)
        block.bn.use_kernels(True)
        block.act.use_kernels(True)
        block.use_fused_kernels(True)
        assert block.train_bn_silu
        block.train_bn_silu = fused
        block.conv.weight.set_data(Tensor((rng.standard_normal((6, 5, 3, 3)) * 0.2).astype(np.float32)) if fused
                                   else Tensor(results[0][-1]))
        block.bn.gamma.set_data(Tensor(np.linspace(0.5, 1.5, 6).astype(np.float32)))
        block.bn.beta.set_data(Tensor(np.linspace(-0.3, 0.4, 6).astype(np.float32)))
        block.set_train(True)
        y, dx, grads = _run(block, x, dy)
        results.append((y, dx, *grads, block.bn.moving_mean.asnumpy(), block.bn.moving_variance.asnumpy(),
                        block.conv.weight.asnumpy()))
    assert len(results[0]) == 2 + 3 + 3                   # y, dx, (dw, dgamma, dbeta), stats, weight
    assert results[0][0].min() > -0.2785                 # SiLU applied (its minimum is -0.2785)
    for got, want in zip(results[0], results[1]):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_silu_kernel_equals_native_silu_forward_and_gradient():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(997) * 6, [0.0, -0.0, 88.0, -88.0, 100.0, -100.0, 1e-30]])
    x = x.astype(np.float32).reshape(1, -1)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    fast = SiLU()
    fast.use_kernels(True)
    assert fast.kernel is not None
    (y, dx, _), (y0, dx0, _) = _run(fast, x, dy), _run(nn.SiLU(), x, dy)
    np.testing.assert_allclose(y, y0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, dx0, rtol=1e-5, atol=1e-6)
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    nan = fast(Tensor(np.array([[np.nan, 1.0]], np.float32))).asnumpy()
    assert np.isnan(nan[0, 0]) and nan[0, 1] == pytest.approx(1 / (1 + np.exp(-1.0)))  # NaN passes on


def test_float16_inputs_take_the_usual_path():
    """Mixed precision (a float16 layer, as ``models.amp`` sets it): the float32-only kernels
    are passed over, the result is the kernel-free layer's."""
    x = Tensor(np.random.default_rng(4).standard_normal((2, 4, 9, 9)).astype(np.float16))
    conv = Conv2d(4, 4, 3, 1, padding=1, group=4, impl="im2col")
    conv.compute_dtype = mstype.float16
    act = SiLU()
    conv.use_impl("im2col")
    y0 = act(conv(x)).asnumpy()
    conv.use_impl("im2col", kernels=True)
    act.use_kernels(True)
    y = act(conv(x))
    assert y.dtype == mstype.float16
    np.testing.assert_array_equal(y.asnumpy(), y0)


def test_library_is_built_once_per_folder_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDYOLOX_KERNEL_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "_state", {})
    path = cpu_kernels.library()
    assert path.parent == tmp_path and path.suffix == ".so" and path.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]     # no temporary file left
    stamp = path.stat().st_mtime_ns
    monkeypatch.setattr(cpu_kernels, "_state", {})
    assert cpu_kernels.library() == path and path.stat().st_mtime_ns == stamp   # not rebuilt


def test_options_without_a_compiler(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MINDYOLOX_KERNEL_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    monkeypatch.setattr(cpu_kernels, "_state", {})
    monkeypatch.setattr("mindyolox.options._logged_kernel_reason", [])
    cfg = load_config(ROOT / "configs" / "yolox-nano.yaml")
    with caplog.at_level(logging.WARNING, logger="mindyolox"):
        assert resolve_options(cfg).cpu_kernels is False          # auto: off, one line
        assert resolve_options(cfg).cpu_kernels is False
    lines = [r.getMessage() for r in caplog.records if "CPU kernels off" in r.getMessage()]
    assert len(lines) == 1 and "no-such-g++" in lines[0]
    with pytest.raises(ConfigError, match="runtime.cpu_kernels=true.*no-such-g\\+\\+"):
        resolve_options(load_config(ROOT / "configs" / "yolox-nano.yaml", ["runtime.cpu_kernels=true"]))
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_options(load_config(ROOT / "configs" / "yolox-nano.yaml", ["runtime.cpu_kernels=true"]),
                        device="GPU")
    with pytest.raises(ConfigError, match="runtime.cpu_kernels"):
        load_config(ROOT / "configs" / "yolox-nano.yaml", ["runtime.cpu_kernels=sometimes"])


def test_nano_takes_the_kernels_where_the_options_say():
    """What the parity tests of nano (built with the resolved options) run through."""
    cfg = load_config(ROOT / "configs" / "yolox-nano.yaml")
    on, off = build_model(cfg, resolve_options(cfg)), build_model(cfg, resolve_options(cfg, cpu_kernels=False))
    def count(model):
        cells = [c for _, c in model.cells_and_names()]
        return (sum(isinstance(c, Conv2d) and c.direct is not None for c in cells),
                sum(isinstance(c, Conv2d) and c.columns is not None for c in cells),
                sum(isinstance(c, SiLU) and c.kernel is not None for c in cells))
    convs = [c for _, c in on.cells_and_names() if isinstance(c, Conv2d) and c.k == 3]
    depthwise = sum(c.depthwise for c in convs)
    assert depthwise > 20 and count(on)[:2] == (depthwise, len(convs) - depthwise) and count(on)[2] > 50
    assert count(off) == (0, 0, 0)


_POOL_PROBE = r"""
import ctypes, json, os, sys
import numpy as np
import mindspore  # noqa: F401  (its backend sets OMP_NUM_THREADS=1, which the kernels must ignore)
from mindyolox.ops import cpu_kernels, dnnl_conv

lib = ctypes.CDLL(str(cpu_kernels.library()))

def silu(x):
    # the AOT signature MindSpore calls: (nparam, params, ndims, shapes, dtypes, stream, extra)
    y = np.empty_like(x)
    params = (ctypes.c_void_p * 2)(x.ctypes.data, y.ctypes.data)
    shape = (ctypes.c_int64 * 1)(x.size)
    shapes = (ctypes.POINTER(ctypes.c_int64) * 2)(shape, shape)
    assert lib.SiluFwd(2, params, (ctypes.c_int * 2)(1, 1), shapes, None, None, None) == 0
    return y

tasks = lambda: len(os.listdir("/proc/self/task"))
x = np.linspace(-20, 20, 1 << 20).astype(np.float32)
before = tasks()
y = silu(x)
grown = tasks() - before
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
child = os.fork()
if child == 0:   # a forked child has no workers: it must make its own pool, not hang on the parent's
    os._exit(0 if np.array_equal(silu(x), y) else 3)
_, status = os.waitpid(child, 0)
print(json.dumps({"grown": grown, "err": float(np.abs(y - x / (1 + np.exp(-x.astype(np.float64)))).max()),
                  "omp": (libc.getenv(b"OMP_NUM_THREADS") or b"").decode(), "child": status,
                  "cpus": len(os.sched_getaffinity(0))}))
"""


@pytest.mark.parametrize("threads", [None, 3])
def test_kernel_pool_threads_ignore_mindspore_omp_setting_and_survive_fork(threads):
    """The kernels' worker pool: MINDYOLOX_KERNEL_THREADS, else every CPU of the affinity mask
    (MindSpore sets OMP_NUM_THREADS=1 at import; reading it ran the kernels on one thread); a
    forked child computes the same result with a pool of its own (it would hang on the
    parent's workers otherwise)."""
    import json
    import os
    import subprocess
    import sys
    env = dict(os.environ)
    env.pop("MINDYOLOX_KERNEL_THREADS", None)
    if threads:
        env["MINDYOLOX_KERNEL_THREADS"] = str(threads)
    run = subprocess.run([sys.executable, "-c", _POOL_PROBE], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["omp"] == "1"                                    # the trap is there
    expected = (threads or out["cpus"]) - 1                     # workers beside the calling thread
    assert out["grown"] == expected, out
    assert out["err"] < 1e-5 and out["child"] == 0, out


@pytest.mark.parametrize("b, c, o, size, k, stride, pad", [(2, 8, 16, 13, 3, 1, 1), (1, 16, 32, 20, 3, 2, 1),
                                                          (1, 16, 8, 21, 3, 2, 1), (2, 24, 8, 9, 1, 1, 0)])
def test_dnnl_convolution_with_bias_and_silu_equals_the_native_layers(b, c, o, size, k, stride, pad):
    """The eval path's dense convolution through oneDNN's own primitive (blocked formats, bias
    and SiLU as a post-op): MindSpore's Conv2D + bias + SiLU in float64 numpy to float32 rounding."""
    assert dnnl_conv.available()
    rng = np.random.default_rng(size + k)
    x = rng.standard_normal((b, c, size, size)).astype(np.float32)
    w = (rng.standard_normal((o, c, k, k)) * 0.2).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    y = dnnl_conv.conv_silu(stride, pad)(Tensor(x), Tensor(w), Tensor(bias)).asnumpy()
    ref = ops.conv2d(Tensor(x), Tensor(w), None, stride, "pad", pad).asnumpy().astype(np.float64)
    ref += bias[None, :, None, None]
    ref = ref / (1 + np.exp(-ref))
    assert y.shape == ref.shape == (b, o, (size + 2 * pad - k) // stride + 1, (size + 2 * pad - k) // stride + 1)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("b, c, o, size, k, stride, pad", [(2, 8, 16, 13, 3, 1, 1), (2, 16, 8, 21, 3, 2, 1),
                                                          (1, 3, 4, 7, 3, 1, 1)])
def test_dnnl_training_convolution_and_its_gradients_equal_float64(b, c, o, size, k, stride, pad):
    """The training path of a dense 3x3 layer (oneDNN forward_training, backward-data and
    backward-weights primitives in blocked formats): y, dx and dw equal a float64 numpy
    convolution and its two gradients, written from the definition, to float32 rounding."""
    assert dnnl_conv.available()
    layer = Conv2d(c, o, k, stride, padding=pad, impl="im2col")
    layer.use_impl("im2col", kernels=True)
    assert layer.dnnl is not None
    layer.set_train(True)
    rng = np.random.default_rng(size * stride)
    x = rng.standard_normal((b, c, size, size)).astype(np.float32)
    w = (rng.standard_normal((o, c, k, k)) * 0.3).astype(np.float32)
    layer.weight.set_data(Tensor(w))
    ho = (size + 2 * pad - k) // stride + 1
    dy = rng.standard_normal((b, o, ho, ho)).astype(np.float32)
    y, dx, (dw,) = _run(layer, x, dy)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    # taps[b, c, i, j, p, q] = xp[b, c, p*stride + i, q*stride + j]
    taps = np.stack([np.stack([xp[:, :, i:i + stride * ho:stride, j:j + stride * ho:stride] for j in range(k)], 2)
                     for i in range(k)], 2)
    ref_y = np.einsum("bcijpq,ocij->bopq", taps, w.astype(np.float64))
    ref_dw = np.einsum("bcijpq,bopq->ocij", taps, dy.astype(np.float64))
    dtaps = np.einsum("ocij,bopq->bcijpq", w.astype(np.float64), dy.astype(np.float64))
    ref_dxp = np.zeros_like(xp)
    for i in range(k):
        for j in range(k):
            ref_dxp[:, :, i:i + stride * ho:stride, j:j + stride * ho:stride] += dtaps[:, :, i, j]
    ref_dx = ref_dxp[:, :, pad:pad + size, pad:pad + size]
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, ref_dw, rtol=1e-5, atol=2e-5)
