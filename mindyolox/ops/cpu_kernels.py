"""Compiled CPU kernels: depthwise convolution, Im2Col / Col2Im and SiLU as MindSpore AOT
custom operators.

MindSpore 2.10's CPU backend has no fast kernel for these: a k x k convolution runs oneDNN's
reference kernel, so the model computes it as ``Im2Col`` + GEMM (:mod:`.conv`), whose
``Im2Col`` and backward ``Col2Im`` kernels took 20 % of a yolox-s train step; a depthwise
layer that way writes and reads a 9x column tensor for nine MACs per output; SiLU and its
gradient are expanded into 3-5 element-wise kernels each way. ``cpu_kernels.cc`` beside this
file has a direct depthwise convolution (tap by tap over the rows of each (image, channel)
plane, no columns), a threaded Im2Col / Col2Im of the same column layout, and SiLU in one
pass each way (the gradient from the saved input). ``bench/bench_conv.py`` (path ``kernel``)
and ``bench/bench_fusion.py silu`` measure them against the other paths and PyTorch.

Build. On first use the source is compiled with g++ (``-O3 -march=native``, the
flags in :data:`CXXFLAGS`) into ``$MINDYOLOX_KERNEL_DIR`` (default
``~/.cache/mindyolox/kernels``) as ``cpu_kernels-<key>.so``; ``key`` hashes the source, the
flags, the compiler's version and this CPU's model and instruction-set flags (``-march=native``
code runs only where it was built). The library is written to a temporary name and renamed,
so processes building at once (pytest-xdist, ``msrun`` workers) each load a whole file.
About 1 s, once per machine and source version.

Use. :func:`~mindyolox.options.resolve_options` decides ``DeviceOptions.cpu_kernels`` once:
``runtime.cpu_kernels: auto`` is on when the device is CPU and the library builds (otherwise
off, with one logged line saying why), ``on`` requires it (a :class:`ConfigError` naming the
reason), ``off`` never builds it. GPU/Ascend never use it; exports never do (a ``Custom``
operator would bind the exported graph to this machine's library). The layers
(:class:`~mindyolox.models.conv.Conv2d`, :class:`~mindyolox.models.blocks.SiLU`) take these
kernels for float32 inputs only; under mixed precision their float16 inputs go the usual way.
Threads: each call splits its planes over threads it starts (``MINDYOLOX_KERNEL_THREADS``,
else ``OMP_NUM_THREADS``, else every CPU the process may use); not OpenMP, whose idle
workers spin and took the cores from MindSpore's next kernels (nano 416 b8 step 25 % slower).

MindSpore side. ``ops.Custom(func="<lib>.so:<name>", func_type="aot")``: on CPU the
function is called with the input and output pointers, ranks and shapes
(``mindspore/ops/operations/custom_ops.py:260-307``); ``bprop=`` supplies the gradient as
further custom operators, so a compiled train step holds one kernel per direction.
"""
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["available", "library", "geometry_supported", "depthwise_conv", "im2col", "batch_norm", "silu",
           "CXXFLAGS"]

SOURCE = Path(__file__).with_name("cpu_kernels.cc")
CXXFLAGS = ("-std=c++17", "-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-shared", "-fPIC", "-pthread")
LIBS = ("-lmvec",)
# (stride, padding) pairs the library exports convolution kernels for (``EXPORT`` in the source)
GEOMETRIES = ((1, 1), (2, 1))

_state = {}


def _cpu_signature():
    """This CPU's model name and instruction-set flags (what ``-march=native`` compiles for)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags", "Features") and key not in fields:
            fields[key] = value.strip()
    return platform.machine() + "|" + "|".join(f"{k}={v}" for k, v in sorted(fields.items()))


def _build(cxx):
    """Compile the library (if this key is not built yet) and return its path."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256(b"\0".join(
        [SOURCE.read_bytes(), " ".join(CXXFLAGS + LIBS).encode(), version.encode(), _cpu_signature().encode()]
    )).hexdigest()[:16]
    folder = Path(os.environ.get("MINDYOLOX_KERNEL_DIR") or Path.home() / ".cache" / "mindyolox" / "kernels")
    target = folder / f"cpu_kernels-{key}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        done = subprocess.run([cxx, *CXXFLAGS, "-o", tmp, str(SOURCE), *LIBS], capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip())
            raise RuntimeError(f"{cxx} failed on {SOURCE.name}: {first[:300]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def library():
    """Path of the compiled library (built on first call); raises ``RuntimeError`` with the
    reason when it cannot be built. The outcome is kept for the process."""
    if "path" not in _state and "error" not in _state:
        cxx = os.environ.get("CXX") or shutil.which("g++")
        try:
            if not cxx:
                raise RuntimeError("no C++ compiler (g++ not on PATH, CXX not set)")
            _state["path"] = _build(cxx)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            _state["error"] = str(e)
    if "error" in _state:
        raise RuntimeError(_state["error"])
    return _state["path"]


def available():
    """``(True, path)`` when the library is built, else ``(False, reason)``."""
    try:
        return True, str(library())
    except RuntimeError as e:
        return False, str(e)


def _custom(name, out_shape, out_dtype, bprop=None):
    from mindspore import ops
    kwargs = {"bprop": bprop} if bprop is not None else {}
    return ops.Custom(f"{library()}:{name}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot", **kwargs)


def geometry_supported(kernel, stride, padding):
    """True when the library has kernels for this convolution geometry (k x k, k <= 8)."""
    return (stride, padding) in GEOMETRIES and 1 < kernel <= 8


def depthwise_conv(stride, padding):
    """The operator ``(x [B, C, H, W], w [C, 1, k, k]) -> y [B, C, Ho, Wo]`` (float32,
    Ho = (H + 2 padding - k) // stride + 1), with its gradient (dx, dw) as two more kernels.
    One instance per geometry, shared by every layer of it."""
    key = ("dw", stride, padding)
    if key not in _state:
        tag = f"S{stride}_P{padding}"
        grad_x = _custom(f"DwBwdX{tag}", lambda dy, w, x: x, lambda dy, w, x: dy)
        grad_w = _custom(f"DwBwdW{tag}", lambda x, dy, w: w, lambda x, dy, w: x)

        def bprop(x, w, out, dout):
            return grad_x(dout, w, x), grad_w(x, dout, w)

        def out_shape(x, w):
            return [x[0], x[1], (x[2] + 2 * padding - w[2]) // stride + 1, (x[3] + 2 * padding - w[3]) // stride + 1]

        _state[key] = _custom(f"DwFwd{tag}", out_shape, lambda x, w: x, bprop)
    return _state[key]


def im2col(kernel, stride, padding):
    """The operator ``x [B, C, H, W] -> cols [B, C*k*k, Ho, Wo]`` (float32; channel
    ``c*k*k + i*k + j``, zeros where a tap falls in the padding) -- ``ops.Im2Col`` reshaped --
    with its gradient (the sum of the patches back, ``Col2Im``) as one more kernel."""
    key = ("im2col", kernel, stride, padding)
    if key not in _state:
        tag = f"S{stride}_P{padding}"
        grad = _custom(f"Col2Im{tag}", lambda dcols, x: x, lambda dcols, x: dcols)

        def bprop(x, out, dout):
            return (grad(dout, x),)

        def out_shape(x):
            return [x[0], x[1] * kernel * kernel, (x[2] + 2 * padding - kernel) // stride + 1,
                    (x[3] + 2 * padding - kernel) // stride + 1]

        op = _custom(f"Im2Col{tag}", out_shape, lambda x: x, bprop)
        # recomputed in the backward rather than kept, as conv.py does with ops.Im2Col
        _state[key] = op.recompute()
    return _state[key]


def batch_norm():
    """The train-mode operator ``(x [B, C, H, W], gamma [C], beta [C], running_mean [C],
    running_var [C], cfg [2] = (eps, keep)) -> (y, mean [C], var [C], new running_mean, new
    running_var)`` (float32; biased batch variance from two passes in double; the running
    statistics move by the momentum ``keep``, the variance's unbiased) with its gradient
    ``(dx, dgamma, dbeta)`` as one more kernel. Only ``y`` carries a gradient; the running
    statistics are computed here rather than by graph arithmetic, which compiled 1.3 s slower
    per 60 layers."""
    from mindspore import ops
    if "bn" not in _state:
        grad = _custom("BnBwd", lambda dy, x, g, m, v, cfg: (x, g, g), lambda dy, x, g, m, v, cfg: (x, x, x))

        def bprop(x, gamma, beta, running_mean, running_var, cfg, out, dout):
            dx, dgamma, dbeta = grad(dout[0], x, gamma, out[1], out[2], cfg)
            return (dx, dgamma, dbeta, ops.zeros_like(running_mean), ops.zeros_like(running_var),
                    ops.zeros_like(cfg))

        _state["bn"] = _custom("BnFwd", lambda x, g, b, m, v, cfg: (x, g, g, g, g),
                               lambda x, g, b, m, v, cfg: (x, x, x, x, x), bprop)
    return _state["bn"]


def silu():
    """The operator ``x -> x * sigmoid(x)`` (float32, any shape) with its gradient
    ``dy * s * (1 + x (1 - s))`` from the saved input as one more kernel."""
    if "silu" not in _state:
        grad = _custom("SiluBwd", lambda x, dy: x, lambda x, dy: x)

        def bprop(x, out, dout):
            return (grad(x, dout),)

        _state["silu"] = _custom("SiluFwd", lambda x: x, lambda x: x, bprop)
    return _state["silu"]
