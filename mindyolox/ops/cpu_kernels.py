"""Compiled CPU kernels: depthwise convolution, Im2Col / Col2Im, SiLU, batch norm (+ SiLU),
SimOTA, and the route to oneDNN's convolution primitives, as MindSpore AOT custom operators.

MindSpore 2.10's CPU backend has no fast kernel for these: a k x k convolution runs oneDNN's
reference kernel, so the model computes it as ``Im2Col`` + GEMM (:mod:`.conv`), whose
``Im2Col`` and backward ``Col2Im`` kernels took 20 % of a yolox-s train step; a depthwise
layer that way writes and reads a 9x column tensor for nine MACs per output; SiLU and its
gradient are expanded into 3-5 element-wise kernels each way. ``cpu_kernels.cc`` beside this
file has a direct depthwise convolution (tap by tap over the rows of each (image, channel)
plane, no columns), a threaded Im2Col / Col2Im of the same column layout, SiLU in one
pass each way (the gradient from the saved input), train-mode batch norm alone or followed by
SiLU, the SimOTA assignment, and oneDNN's convolutions (:mod:`.dnnl_conv` wraps those: the
dense layers' training path and the folded eval path). ``bench/bench_conv.py`` (path ``kernel``)
and ``bench/bench_fusion.py silu`` measure them against the other paths and PyTorch.

Build. When a model first asks for a kernel (:func:`library`, never while options resolve),
the source is compiled with g++ into ``$MINDYOLOX_KERNEL_DIR`` (default
``~/.cache/mindyolox/kernels``) as ``cpu_kernels-<key>.so``, about 1 s, once per machine and
source version; ``mindyolox-tools build-kernels [--portable]`` builds it ahead of time (a
container image, a cluster's shared home). The library is written to a temporary name and
renamed, so processes building at once (pytest-xdist, ``msrun`` workers) each load a whole file.

Flag sets (``$MINDYOLOX_KERNEL_FLAGS``): ``native`` (default, :data:`CXXFLAGS`, ``-O3
-march=native``: this CPU's instruction set) or ``portable`` (:data:`PORTABLE_CXXFLAGS`, the
same without ``-march``: the compiler's baseline for the architecture, e.g. x86-64 SSE2, which
runs on every CPU of it; slower, and its float results may differ from ``native`` in the last
bits -- FMA contraction and vector width). The choice is a property of the machine /
image, like the folder, so it is an environment variable and not a recipe key: one recipe runs
on a laptop (native) and from an image built once for a heterogeneous cluster (portable).

Key (:func:`library_key`): the first 16 hex digits of the SHA-256 of the source, the flags, the
compiler's version and, for ``native`` only, this CPU's model and instruction-set flags
(``-march=native`` code runs only where it was built; a ``portable`` key names the machine
architecture instead, so a library built in an image is found on every host). The key is part
of MindSpore's compile-cache key (:func:`mindyolox.runtime.compile_cache.recipe_key`): a cached
graph names the library file it calls, so a home folder shared by two CPU types never hands
one CPU's cached graph (and library) to the other.

Pruning (:func:`prune`, after every new build): the folder keeps the current library and the
:data:`KEEP` - 1 most recently built others (by modification time; another CPU type sharing the
folder keeps its own), and deletes the rest, plus temporary files of builds killed more than an
hour ago. A process that uses a library holds a shared ``flock`` on it for its lifetime
(MindSpore opens the file again at every graph compile, e.g. an evaluation graph or a new
multiscale size mid-run); the pruner takes an exclusive lock without waiting and skips any
library it cannot lock, so a library a live process may load is never deleted. A user that
finds its library deleted between locking and checking rebuilds it. ``flock`` on NFS is
forwarded to the server by Linux clients (NFSv4 / NLM); on a filesystem without locks the
lock fails and nothing is pruned.

Use. :func:`~mindyolox.options.resolve_options` decides ``DeviceOptions.cpu_kernels`` once:
``runtime.cpu_kernels: auto`` is on when the device is CPU and :func:`buildable` finds a
compiler (otherwise off, with one logged line saying why), ``on`` requires one (a
:class:`ConfigError` naming the reason), ``off`` never builds. Resolving runs no program; the
first kernel a layer asks for builds the library, and a compile that fails there is a
:class:`KernelBuildError` (a ``ConfigError``: one ``error:`` line) -- decided so: the options
are already recorded as "on" (checkpoint metadata, compile-cache key), so the run is not
switched to the other path behind them. GPU/Ascend never use it; exports never do (a ``Custom``
operator would bind the exported graph to this machine's library). The layers
(:class:`~mindyolox.models.conv.Conv2d`, :class:`~mindyolox.models.blocks.SiLU`) take these
kernels for float32 inputs only; under mixed precision their float16 inputs go the usual way.
Threads: each call splits its planes over a parked pool of workers (sleeping on a condition
variable between calls; ``cpu_kernels.cc`` says how it stays safe inside MindSpore's runtime:
never destroyed, the library pinned with ``RTLD_NODELETE``, one call at a time, a new pool
after a fork). The count is ``MINDYOLOX_KERNEL_THREADS``, else every CPU the process may use
(``sched_getaffinity``) -- not ``OMP_NUM_THREADS``, which MindSpore's backend sets to 1 in the
process environment at import (``os.environ`` does not show it; a C ``getenv`` does), so the
kernels ran on one thread (nano 416 b8: the custom kernels' time 303-336 -> 195-233 ms per
step with 2 threads). Not OpenMP, whose idle workers spin and took the cores from MindSpore's
next kernels (nano 416 b8 step 25 % slower).

MindSpore side. ``ops.Custom(func="<lib>.so:<name>", func_type="aot")``: on CPU the
function is called with the input and output pointers, ranks and shapes
(``mindspore/ops/operations/custom_ops.py:260-307``); ``bprop=`` supplies the gradient as
further custom operators, so a compiled train step holds one kernel per direction.
"""
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError

__all__ = ["available", "buildable", "library", "library_key", "build", "prune", "flag_set", "kernel_dir",
           "geometry_supported", "depthwise_conv", "im2col", "batch_norm", "batch_norm_silu", "silu", "bias_silu",
           "depthwise_bias_silu", "simota", "custom_op", "KernelBuildError",
           "CXXFLAGS", "PORTABLE_CXXFLAGS", "KEEP", "in_use"]

SOURCE = Path(__file__).with_name("cpu_kernels.cc")
CXXFLAGS = ("-std=c++17", "-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-shared", "-fPIC", "-pthread")
PORTABLE_CXXFLAGS = tuple(f for f in CXXFLAGS if not f.startswith("-march="))
LIBS = ("-lmvec",)
FLAGS_ENV = "MINDYOLOX_KERNEL_FLAGS"
FLAG_SETS = ("native", "portable")
KEEP = 4              # libraries a folder keeps: the current one + the 3 most recently built others
STALE_TMP_S = 3600    # a build's temporary file older than this belongs to a killed build
# (stride, padding) pairs the library exports convolution kernels for (``EXPORT`` in the source)
GEOMETRIES = ((1, 1), (2, 1))

_state = {}


class KernelBuildError(ConfigError, RuntimeError):
    """The kernel library cannot be built or loaded (no compiler, a failed compile, a bad
    ``$MINDYOLOX_KERNEL_FLAGS``); the message names the cause. A ``ConfigError``, so commands
    print one ``error:`` line; a ``RuntimeError`` as before."""


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


def flag_set(portable=None):
    """``"portable"`` or ``"native"``: ``portable`` True/False, else ``$MINDYOLOX_KERNEL_FLAGS``
    (unset or empty: native)."""
    if portable is not None:
        return "portable" if portable else "native"
    value = os.environ.get(FLAGS_ENV, "").strip().lower() or "native"
    if value not in FLAG_SETS:
        raise KernelBuildError(f"{FLAGS_ENV}={os.environ.get(FLAGS_ENV)!r}: must be one of {', '.join(FLAG_SETS)}")
    return value


def kernel_dir():
    """``$MINDYOLOX_KERNEL_DIR`` or ``~/.cache/mindyolox/kernels`` (not created here)."""
    return Path(os.environ.get("MINDYOLOX_KERNEL_DIR") or Path.home() / ".cache" / "mindyolox" / "kernels")


def _compiler():
    """``$CXX`` or g++ on PATH, as a path; :class:`KernelBuildError` naming what is missing."""
    cxx = os.environ.get("CXX")
    if cxx:
        found = shutil.which(cxx)
        if not found:
            raise KernelBuildError(f"no C++ compiler: CXX={cxx} is not an executable")
        return found
    found = shutil.which("g++")
    if not found:
        raise KernelBuildError("no C++ compiler (g++ not on PATH, CXX not set)")
    return found


def buildable():
    """``(True, compiler path)`` when the library can be expected to build, else ``(False,
    reason)``: a compiler is found and the source is there (:class:`KernelBuildError` for a
    wrong ``$MINDYOLOX_KERNEL_FLAGS``). Runs no
    program (``runtime.cpu_kernels: auto`` is decided from this while options resolve); a
    compile that still fails is reported when a model first asks for the kernels."""
    flag_set()   # a wrong $MINDYOLOX_KERNEL_FLAGS is an error, not a reason to switch the kernels off
    try:
        cxx = _compiler()
    except KernelBuildError as e:
        return False, str(e)
    if not SOURCE.is_file():
        return False, f"kernel source {SOURCE} is missing"
    return True, cxx


def library_key(portable=None):
    """16 hex digits naming the library this process builds / loads (module doc) -- runs
    ``<compiler> --version`` once per process and flag set; no build."""
    flags = flag_set(portable)
    if ("key", flags) not in _state:
        cxx = _compiler()
        try:
            version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as e:
            raise KernelBuildError(f"{cxx} --version failed: {e}") from None
        machine = _cpu_signature() if flags == "native" else f"portable|{platform.machine()}"
        _state[("key", flags)] = hashlib.sha256(b"\0".join(
            [SOURCE.read_bytes(), " ".join(_flags(flags) + LIBS).encode(), version.encode(), machine.encode()]
        )).hexdigest()[:16]
    return _state[("key", flags)]


def _flags(flags):
    return CXXFLAGS if flags == "native" else PORTABLE_CXXFLAGS


def build(portable=None, folder=None):
    """Build the library of this flag set into ``folder`` (default :func:`kernel_dir`) unless
    it is there; returns ``(path, built)``, ``built`` False when it existed. After a new build
    the folder is pruned (:func:`prune`). :class:`KernelBuildError` with the compiler's first
    error line when it fails."""
    flags = flag_set(portable)
    cxx = _compiler()
    folder = Path(folder) if folder is not None else kernel_dir()
    target = folder / f"cpu_kernels-{library_key(flags == 'portable')}.so"
    if target.exists():
        return target, False
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        done = subprocess.run([cxx, *_flags(flags), "-o", tmp, str(SOURCE), *LIBS], capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip())
            raise KernelBuildError(f"{cxx} failed on {SOURCE.name}: {first[:300]}")
        os.replace(tmp, target)
    except (OSError, subprocess.SubprocessError) as e:
        raise KernelBuildError(f"building {target}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    prune(folder, keep_path=target)
    return target, True


def prune(folder, keep_path=None, keep=KEEP):
    """Delete old libraries in ``folder`` (module doc): all ``cpu_kernels-*.so`` but
    ``keep_path`` and the ``keep - 1`` newest others, skipping any a process holds a lock on;
    and build leftovers (``*.tmp``) older than :data:`STALE_TMP_S`. Returns the deleted paths."""
    folder = Path(folder)
    libs = sorted((p for p in folder.glob("cpu_kernels-*.so") if p != keep_path),
                  key=lambda p: p.stat().st_mtime_ns, reverse=True)
    deleted = []
    for path in libs[max(keep - 1, 0):]:
        if _delete_unlocked(path):
            deleted.append(path)
    now = time.time()
    for path in folder.glob("cpu_kernels-*.tmp"):
        try:
            if now - path.stat().st_mtime > STALE_TMP_S:
                path.unlink()
                deleted.append(path)
        except FileNotFoundError:
            continue
    return deleted


def _exclusive_fd(path):
    """An open descriptor of ``path`` holding an exclusive lock taken without waiting; None when another
    process holds a lock (or the filesystem has none); FileNotFoundError when the file is gone."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def in_use(path):
    """True when a process holds a lock on the library ``path`` (it has loaded it, module doc):
    an exclusive lock is tried without waiting and released at once."""
    try:
        fd = _exclusive_fd(path)
    except FileNotFoundError:
        return False
    if fd is None:
        return True
    os.close(fd)   # closing releases the lock
    return False


def _delete_unlocked(path):
    """Unlink ``path`` while holding an exclusive lock on it; False when another process holds a
    lock (it uses the library) or the file is gone."""
    try:
        fd = _exclusive_fd(path)
    except FileNotFoundError:
        return False
    if fd is None:         # held by a live process (or no locks on this filesystem): keep it
        return False
    try:
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            return False   # replaced meanwhile by a new build of the same key
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def _lock_shared(path):
    """An open descriptor holding a shared lock on ``path``, or None when ``path`` was deleted
    (or replaced) before the lock was taken."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:        # a filesystem without locks: nothing is pruned there either
        return fd
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


def library():
    """Path of the compiled library of this process's flag set, built on first call and held
    (a shared lock, module doc) for the process's lifetime; :class:`KernelBuildError` with the
    reason when it cannot be built. The outcome is kept for the process."""
    if "path" not in _state and "error" not in _state:
        try:
            for _ in range(3):
                path, _built = build()
                fd = _lock_shared(path)
                if fd is not None:
                    _state["path"], _state["lock"] = path, fd
                    break
            else:
                raise KernelBuildError(f"{path} was deleted three times while loading it")
        except KernelBuildError as e:
            _state["error"] = str(e)
    if "error" in _state:
        raise KernelBuildError("the CPU kernel library cannot be built: " + _state["error"]
                               + " (runtime.cpu_kernels=false runs without it)")
    return _state["path"]


def available():
    """``(True, path)`` when the library is built (builds it), else ``(False, reason)``."""
    try:
        return True, str(library())
    except KernelBuildError as e:
        return False, str(e)


def custom_op(name, out_shape, out_dtype, bprop=None):
    """The ``ops.Custom`` AOT operator of library function ``name`` (builds the library on first
    use); ``out_shape`` / ``out_dtype``: MindSpore's inference callables; ``bprop``: its gradient."""
    from mindspore import ops
    kwargs = {"bprop": bprop} if bprop is not None else {}
    return ops.Custom(f"{library()}:{name}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot", **kwargs)


def _conv_shape(x, w, channels, stride, padding):
    """Output shape [B, channels, Ho, Wo] of a convolution of x [B, C, H, W] with a k x k weight
    ``w`` (shape list), stride and symmetric padding."""
    return [x[0], channels, (x[2] + 2 * padding - w[2]) // stride + 1, (x[3] + 2 * padding - w[3]) // stride + 1]


def geometry_supported(kernel, stride, padding):
    """True when the library has kernels for this convolution geometry (k x k, k <= 8)."""
    return (stride, padding) in GEOMETRIES and 1 < kernel <= 8


def _conv_with_grads(fwd, grad_x, grad_w, stride, padding, depthwise):
    """The operator ``(x [B, C, H, W], w) -> y [B, O, Ho, Wo]`` of library function ``fwd`` with
    its gradient as two more: ``grad_x(dy, w, x (shape only)) -> dx`` and ``grad_w(x, dy, w
    (shape only)) -> dw``; O is C (``depthwise``) or w's first dimension."""
    gx = custom_op(grad_x, lambda dy, w, x: x, lambda dy, w, x: dy)
    gw = custom_op(grad_w, lambda x, dy, w: w, lambda x, dy, w: x)

    def bprop(x, w, out, dout):
        return gx(dout, w, x), gw(x, dout, w)

    return custom_op(fwd, lambda x, w: _conv_shape(x, w, x[1] if depthwise else w[0], stride, padding),
                   lambda x, w: x, bprop)


def depthwise_conv(stride, padding):
    """The operator ``(x [B, C, H, W], w [C, 1, k, k]) -> y [B, C, Ho, Wo]`` (float32,
    Ho = (H + 2 padding - k) // stride + 1), with its gradient (dx, dw) as two more kernels.
    One instance per geometry, shared by every layer of it."""
    key = ("dw", stride, padding)
    if key not in _state:
        tag = f"S{stride}_P{padding}"
        _state[key] = _conv_with_grads(f"DwFwd{tag}", f"DwBwdX{tag}", f"DwBwdW{tag}", stride, padding, True)
    return _state[key]


def im2col(kernel, stride, padding):
    """The operator ``x [B, C, H, W] -> cols [B, C*k*k, Ho, Wo]`` (float32; channel
    ``c*k*k + i*k + j``, zeros where a tap falls in the padding) -- ``ops.Im2Col`` reshaped --
    with its gradient (the sum of the patches back, ``Col2Im``) as one more kernel."""
    key = ("im2col", kernel, stride, padding)
    if key not in _state:
        tag = f"S{stride}_P{padding}"
        grad = custom_op(f"Col2Im{tag}", lambda dcols, x: x, lambda dcols, x: dcols)

        def bprop(x, out, dout):
            return (grad(dout, x),)

        def out_shape(x):
            return [x[0], x[1] * kernel * kernel, (x[2] + 2 * padding - kernel) // stride + 1,
                    (x[3] + 2 * padding - kernel) // stride + 1]

        op = custom_op(f"Im2Col{tag}", out_shape, lambda x: x, bprop)
        # recomputed in the backward rather than kept, as conv.py does with ops.Im2Col
        _state[key] = op.recompute()
    return _state[key]


def batch_norm():
    """The train-mode operator ``(x [B, C, H, W], gamma [C], beta [C], running_mean [C],
    running_var [C], cfg [2] = (eps, keep)) -> (y, mean [C], var [C])`` (float32; biased batch
    variance from two passes in double) that moves the running statistics IN PLACE by the
    momentum ``keep`` (the variance's unbiased; :mod:`mindyolox.models.batchnorm` says why and
    when that is sound), with its gradient ``(dx, dgamma, dbeta)`` as one more kernel. Only
    ``y`` carries a gradient."""
    from mindspore import ops
    if "bn" not in _state:
        grad = custom_op("BnBwd", lambda dy, x, g, m, v, cfg: (x, g, g), lambda dy, x, g, m, v, cfg: (x, x, x))

        def bprop(x, gamma, beta, running_mean, running_var, cfg, out, dout):
            dx, dgamma, dbeta = grad(dout[0], x, gamma, out[1], out[2], cfg)
            return (dx, dgamma, dbeta, ops.zeros_like(running_mean), ops.zeros_like(running_var),
                    ops.zeros_like(cfg))

        _state["bn"] = custom_op("BnFwd", lambda x, g, b, m, v, cfg: (x, g, g), lambda x, g, b, m, v, cfg: (x, x, x),
                                 bprop)
    return _state["bn"]


def batch_norm_silu():
    """:func:`batch_norm` with SiLU applied to its output, one kernel each way: ``(x, gamma, beta,
    running_mean, running_var, cfg) -> (SiLU(y), mean, var)``, the running statistics in place.
    The gradient kernel recomputes ``y`` from ``x`` (the only activation kept, where BN then
    SiLU keep two) and takes SiLU's gradient there. The forward equals the two kernels' to the
    bit; the recomputed ``y`` uses the float variance (within an ulp or two of the forward's)."""
    from mindspore import ops
    if "bn_silu" not in _state:
        grad = custom_op("BnSiluBwd", lambda dy, x, g, b, m, v, cfg: (x, g, g),
                         lambda dy, x, g, b, m, v, cfg: (x, x, x))

        def bprop(x, gamma, beta, running_mean, running_var, cfg, out, dout):
            dx, dgamma, dbeta = grad(dout[0], x, gamma, beta, out[1], out[2], cfg)
            return (dx, dgamma, dbeta, ops.zeros_like(running_mean), ops.zeros_like(running_var),
                    ops.zeros_like(cfg))

        _state["bn_silu"] = custom_op("BnSiluFwd", lambda x, g, b, m, v, cfg: (x, g, g),
                                      lambda x, g, b, m, v, cfg: (x, x, x), bprop)
    return _state["bn_silu"]


def silu():
    """The operator ``x -> x * sigmoid(x)`` (float32, any shape) with its gradient
    ``dy * s * (1 + x (1 - s))`` from the saved input as one more kernel."""
    if "silu" not in _state:
        grad = custom_op("SiluBwd", lambda x, dy: x, lambda x, dy: x)

        def bprop(x, out, dout):
            return (grad(x, dout),)

        _state["silu"] = custom_op("SiluFwd", lambda x: x, lambda x: x, bprop)
    return _state["silu"]


def bias_silu():
    """The eval operator ``(x [B, C, ...], bias [C]) -> SiLU(x + bias)`` (float32), one pass:
    the epilogue of a convolution whose BatchNorm is folded (``BaseConv``'s eval path). No
    gradient: evaluation and prediction only."""
    if "bias_silu" not in _state:
        _state["bias_silu"] = custom_op("BiasSilu", lambda x, b: x, lambda x, b: x)
    return _state["bias_silu"]


def depthwise_bias_silu(stride, padding):
    """The eval operator ``(x [B, C, H, W], w [C, 1, k, k], bias [C]) -> SiLU(depthwise(x, w) +
    bias)`` [B, C, Ho, Wo] (float32): :func:`depthwise_conv`'s forward, the same sums, with
    the bias and SiLU applied to each output plane while it is in cache. No gradient."""
    key = ("dw_bias_silu", stride, padding)
    if key not in _state:
        _state[key] = custom_op(f"DwBiasSiluS{stride}_P{padding}",
                              lambda x, w, b: _conv_shape(x, w, x[1], stride, padding), lambda x, w, b: x)
    return _state[key]


def simota():
    """The operator ``(boxes [B, A, 4] cxcywh px, obj [B, A], cls [B, A, C] logits, labels [B, G, 5],
    grids [A, 2], strides [A]) -> out [B, A, 4]`` float32, per anchor ``(fg 0/1, gt row or -1,
    class, IoU with that gt)``: SimOTA image by image over the real labels and the candidate
    anchors only (``cpu_kernels.cc``; the rules of :mod:`mindyolox.losses.simota`). The
    assignment is stop-gradient: its gradient is zero for every input. A label class outside
    ``[0, C)`` makes the call fail."""
    from mindspore import ops
    if "simota" not in _state:
        def bprop(boxes, obj, cls, labels, grids, strides, out, dout):
            return tuple(ops.zeros_like(t) for t in (boxes, obj, cls, labels, grids, strides))

        _state["simota"] = custom_op("SimOTA", lambda b, o, c, lab, g, s: [b[0], b[1], 4],
                                   lambda b, o, c, lab, g, s: b, bprop)
    return _state["simota"]
