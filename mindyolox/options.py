"""Device choices, decided once and passed explicitly: :class:`DeviceOptions`.

Everything that depends on where a model runs is resolved here, from the recipe's
``runtime`` section plus command-line flags, *before* any model is built, and then handed
to :func:`mindyolox.build_model`, the trainer and the exporter. Nothing else reads the
device target or an environment variable to pick a kernel, so a model built for one set of
options never changes behaviour because the process's device changed later, and two models
built in one process with different options behave differently as asked.

Fields (all plain values; ``to_dict`` goes into checkpoint metadata and the export JSON):

``device``        ``CPU`` | ``GPU`` | ``Ascend`` -- the target the options were resolved for.
``conv``          ``im2col`` (k x k convolutions as Im2Col + GEMM, the fast path on CPU, where
                  MindSpore 2.10 runs oneDNN's reference kernel) | ``native`` (``Conv2D``;
                  GPU/Ascend, and portable MindIR/ONNX export). ``auto``: im2col on CPU.
``decode_exp``    ``float64`` | ``float32``: dtype of the ``exp`` of the box-size decode in
                  eval mode. MindSpore's float32 exp on CPU is ~5e-6 relative off PyTorch's
                  (1e-3 px on a 200 px box); float64 costs 2 x A elements. ``auto``: float64 on CPU.
``fold_bn``       eval-mode BatchNorm folded into the convolution (one kernel less per layer).
                  Forced off under mixed precision, where BN must stay a float32 cell.
``cpu_kernels``   compiled C++ kernels on CPU: depthwise convolutions, Im2Col / Col2Im, SiLU, BN
                  (:mod:`mindyolox.ops.cpu_kernels`; float32 layers only). ``auto``: on when the
                  device is CPU and a compiler is found (g++ / ``$CXX``; nothing is built
                  here), else off with one logged line; ``true`` requires it; always off on
                  GPU/Ascend and for export. Flag set: ``$MINDYOLOX_KERNEL_FLAGS``
                  (``native`` / ``portable``, see the ops module).
``amp_level``     ``O0`` (float32) | ``O1`` | ``O2`` | ``O3`` (see :mod:`mindyolox.models.amp`).
``precision_mode`` Ascend's operator precision mode (``mindspore.device_context.ascend.
                  op_precision.precision_mode``, ``op_precision.py:30-89``; MindSpore 2.10's
                  default is ``must_keep_origin_dtype``), ``none`` elsewhere. ``auto``: on
                  Ascend 910A ``allow_fp32_to_fp16`` -- its matrix unit computes float16 only, so
                  float32 convolutions either run in float16 this way or fail under
                  ``must_keep_origin_dtype`` (vector operators keep float32); on other Ascend
                  chips ``must_keep_origin_dtype`` (910B computes float32 matrices). An explicit
                  value wins; it is applied once by :func:`apply_precision_mode` (the trainer
                  calls it) and recorded with the other options. With float16 matrices the
                  gradients can underflow: ``train.loss_scale: auto`` therefore scales on Ascend
                  even at O0 (dynamic from 1024, :func:`~mindyolox.training.train_step.resolve_loss_scale`).
``jit_level``     MindSpore's graph backend, ``O0`` | ``O1`` | ``O2`` (``set_context(jit_config=
                  {"jit_level": ...})``), resolved per chip by :func:`resolve_jit_level` (its doc
                  cites what each level does where) and applied with the precision mode before
                  device/HCCL init (:func:`apply_device_options`).
"""
from dataclasses import asdict, dataclass

from .errors import ConfigError

__all__ = ["DeviceOptions", "resolve_options", "apply_precision_mode", "apply_device_options", "default_precision_mode",
           "resolve_jit_level", "chip_name", "DEVICES", "CONV_IMPLS", "AMP_LEVELS", "PRECISION_MODES", "JIT_LEVELS"]

DEVICES = ("CPU", "GPU", "Ascend")
CONV_IMPLS = ("native", "im2col")
DECODE_EXP = ("float64", "float32")
AMP_LEVELS = ("O0", "O1", "O2", "O3")
JIT_LEVELS = ("O0", "O1", "O2")
PRECISION_MODES = ("none", "force_fp16", "allow_fp32_to_fp16", "allow_mix_precision", "must_keep_origin_dtype",
                   "force_fp32", "allow_fp32_to_bf16", "allow_mix_precision_fp16", "allow_mix_precision_bf16")


@dataclass(frozen=True)
class DeviceOptions:
    """Resolved device choices (see the module doc); build with :func:`resolve_options`."""
    device: str = "CPU"
    conv: str = "native"
    decode_exp: str = "float32"
    fold_bn: bool = True
    amp_level: str = "O0"
    precision_mode: str = "none"
    cpu_kernels: bool = False
    jit_level: str = "O0"

    def __post_init__(self):
        for name, value, allowed in (("device", self.device, DEVICES), ("conv", self.conv, CONV_IMPLS),
                                     ("decode_exp", self.decode_exp, DECODE_EXP),
                                     ("amp_level", self.amp_level, AMP_LEVELS),
                                     ("precision_mode", self.precision_mode, PRECISION_MODES),
                                     ("jit_level", self.jit_level, JIT_LEVELS)):
            if value not in allowed:
                raise ConfigError(f"runtime option {name} must be one of {', '.join(allowed)}, got {value!r}")

    @property
    def mixed_precision(self):
        return self.amp_level != "O0"

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Options written by :meth:`to_dict` (unknown keys ignored, missing ones default)."""
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    def describe(self):
        return (f"device {self.device}, conv {self.conv}, decode exp {self.decode_exp}, "
                f"BN folding {'on' if self.fold_bn else 'off'}, "
                f"CPU kernels {'on' if self.cpu_kernels else 'off'}, amp {self.amp_level}, jit level {self.jit_level}"
                + (f", precision mode {self.precision_mode}" if self.precision_mode != "none" else ""))


def _section(cfg):
    if cfg is None:
        return {}
    rt = cfg.get("runtime", None) if hasattr(cfg, "get") else None
    return rt or {}


def ascend_910a():
    """True on an Ascend 910A (MindSpore's own test, ``mindspore/amp.py:48-50``)."""
    from mindspore._c_expression import MSContext
    return bool(MSContext.get_instance().ascend_soc_supports_feature("amp_loss_scale_train_classic_target"))


def float_status_mode(device):
    """True where ``mindspore.amp.all_finite`` reads the device's float-status register
    instead of the gradient values (``mindspore/amp.py:124-137``): Ascend 910A, and 910B with
    ``MS_ASCEND_CHECK_OVERFLOW_MODE=SATURATION_MODE``. False on CPU/GPU (the train step's
    module doc says what follows from it)."""
    if device != "Ascend":
        return False
    import os
    from mindspore._c_expression import MSContext
    ctx = MSContext.get_instance()
    if ctx.ascend_soc_supports_feature("amp_loss_scale_train_classic_target"):  # 910A
        return True
    return bool(ctx.ascend_soc_supports_feature("train_hq_dtype_line")
                and os.environ.get("MS_ASCEND_CHECK_OVERFLOW_MODE") == "SATURATION_MODE")


def default_precision_mode(device):
    """``runtime.precision_mode: auto`` for ``device`` (module doc)."""
    if device != "Ascend":
        return "none"
    return "allow_fp32_to_fp16" if ascend_910a() else "must_keep_origin_dtype"


def chip_name(device):
    """``910A`` / ``910B`` / ``Ascend`` (another Ascend chip) on Ascend, else ``device``
    (``GPU`` / ``CPU``): the rows of :func:`resolve_jit_level`'s table. 910A is the chip whose
    soc version MindSpore names ``ascend910`` and whose amp uses the classic float-status
    overflow check (``mindspore/amp.py:48-50``); 910B the one that computes float32 matrices
    (``train_hq_dtype_line``, ``amp.py:53-55``). MindSpore's own 910A test for the jit level is
    ``ascend_soc_version() == "ascend910"`` (``ms_context.cc``), the same chips."""
    if device != "Ascend":
        return device
    from mindspore._c_expression import MSContext
    ctx = MSContext.get_instance()
    if ctx.ascend_soc_supports_feature("amp_loss_scale_train_classic_target"):
        return "910A"
    return "910B" if ctx.ascend_soc_supports_feature("train_hq_dtype_line") else "Ascend"


# runtime.jit_level: auto, per chip (resolve_jit_level's doc says why)
AUTO_JIT_LEVEL = {"910A": "O2", "910B": "O0", "Ascend": "O0", "GPU": "O0", "CPU": "O0"}


def resolve_jit_level(value, chip, environ=None):
    """``runtime.jit_level`` (``auto`` | ``O0`` | ``O1`` | ``O2``) for ``chip`` (a row of
    :func:`chip_name`): returns ``(level, note)``, ``note`` a line for the log or None. A pure
    function of its arguments (``environ``: the launch's environment, default ``os.environ``).

    What MindSpore 2.10 does with each level (``MsContext::GetJitLevel`` and
    ``IsKByKExecutorMode`` in ``mindspore/core/utils/ms_context.cc``; their log texts are in
    the installed ``lib/libmindspore_core.so``; ``mindspore/graph/jit_config.py:41-56,124-129``):

    ============  ==========================================================================
    ``O0``        kernel by kernel (KBK, ``ms_backend``): every operator launched on its
                  own, no fusion. MindSpore's choice for an empty level on 910B, other
                  Ascend chips, GPU and CPU.
    ``O1``        KBK with MindSpore's common optimisations and automatic operator fusion
                  (graph kernel); numerics may differ from O0 by fusion.
    ``O2``        graph sink on GE (``backend = "GE"``, ``jit_config.py:126-129``): the whole
                  graph runs on the device. MindSpore's choice for an empty level on an
                  Ascend 910A in graph mode (``ascend_soc_version() == "ascend910"``), and
                  forced on Ascend by a rank-table launch (``RANK_TABLE_FILE`` /
                  ``MINDSPORE_HCCL_CONFIG_PATH`` without msrun's dynamic cluster). Deprecated
                  since 2.9 (``jit_config.py:41``); GE exists only on Ascend.
    ============  ==========================================================================

    Decision for ``auto`` (:data:`AUTO_JIT_LEVEL`): the level MindSpore itself picks on the
    chip, now chosen explicitly and recorded -- O2 on 910A (the path MindSpore runs there by
    default; whether KBK runs well on a 910A is unknown here: no level has been run on one),
    O0 everywhere else. Elsewhere than on 910A O0 also keeps ``mindspore.amp``'s AllFinite
    overflow check (``amp.py:93-95``: used at O0/O1 only; 910A reads its float-status register
    at any level, ``amp.py:126-133``). An explicit
    value wins, except that O2 off Ascend is refused (``ConfigError``) and a rank-table launch
    on Ascend gets O2 with a note, as MindSpore forces it.
    """
    import os
    env = os.environ if environ is None else environ
    value = str(value)
    if value not in ("auto",) + JIT_LEVELS:
        raise ConfigError(f"runtime.jit_level must be auto, {', '.join(JIT_LEVELS)}; got {value!r}")
    level = AUTO_JIT_LEVEL.get(chip, "O0") if value == "auto" else value
    ascend = chip in ("910A", "910B", "Ascend")
    if level == "O2" and not ascend:
        raise ConfigError(f"runtime.jit_level=O2 is graph sink on GE, which only Ascend has; the device is {chip} "
                          "(use O0 or auto)")
    rank_table = env.get("RANK_TABLE_FILE") or env.get("MINDSPORE_HCCL_CONFIG_PATH")
    if ascend and rank_table and not env.get("MS_ROLE") and level != "O2":
        return "O2", (f"runtime.jit_level {value} -> O2: MindSpore runs a rank-table launch (RANK_TABLE_FILE / "
                      "MINDSPORE_HCCL_CONFIG_PATH) at O2 whatever is set; launch with msrun for O0")
    return level, None


def apply_jit_level(options):
    """Set MindSpore's process-wide ``jit_config={"jit_level": options.jit_level}``
    (``mindspore/context.py:438-466``); read at every graph compile (``MsContext::GetJitLevel``)."""
    import mindspore as ms
    ms.set_context(jit_config={"jit_level": options.jit_level})


def apply_device_options(options):
    """The process-wide settings of ``options``: the jit level, then Ascend's operator
    precision mode. Call before device/HCCL init (``mindspore.communication.init``) -- MindSpore
    warns that Ascend settings made after the backend is initialised "may not take effect"
    (``mindspore/context.py:1284-1291``, ``_check_ascend_device_context_initialized``) -- and
    before the first graph compiles."""
    apply_jit_level(options)
    apply_precision_mode(options)


def apply_precision_mode(options):
    """Set Ascend's operator precision mode of ``options`` (process-wide, before the first
    graph compiles; nothing to do for ``none`` or off Ascend)."""
    if options.device == "Ascend" and options.precision_mode != "none":
        import mindspore as ms
        try:
            ms.device_context.ascend.op_precision.precision_mode(options.precision_mode)
        except RuntimeError as e:  # op_precision.py:74-75: set once per process
            raise ConfigError(f"runtime.precision_mode={options.precision_mode}: MindSpore sets the operator "
                              f"precision once per process and it is already set ({e})") from None


def resolve_options(cfg=None, device=None, conv=None, amp_level=None, decode_exp=None, fold_bn=None,
                    precision_mode=None, cpu_kernels=None, jit_level=None):
    """:class:`DeviceOptions` from the recipe ``cfg`` (its ``runtime`` section and
    ``train.amp_level``) and explicit arguments (command-line flags), which win.

    ``device`` None/``auto``: ``runtime.device``, else MindSpore's current target (call after
    ``mindspore.set_device``). ``auto`` values of ``conv`` / ``decode_exp`` follow the device.
    ``amp_level`` None: ``train.amp_level`` of the recipe (O0 when absent). ``jit_level``
    (``runtime.jit_level``): :func:`resolve_jit_level` for the device's chip. ``cpu_kernels``
    ``auto`` / ``true`` are decided cheaply here (a compiler is found, no program runs:
    :func:`mindyolox.ops.cpu_kernels.buildable`); the library is built when a model first asks
    for a kernel, and a compile that fails then is a ``ConfigError`` naming the compiler's
    error (``runtime.cpu_kernels=false`` runs without it) rather than a silent switch-off
    after the options were recorded.
    """
    rt = _section(cfg)

    def pick(arg, key, default="auto"):
        value = arg if arg is not None else rt.get(key, default)
        return str(value) if not isinstance(value, bool) else value

    device = pick(device, "device")
    if device == "auto":
        import mindspore as ms
        device = ms.get_context("device_target")
    if device not in DEVICES:
        raise ConfigError(f"runtime.device / --device must be auto, {', '.join(DEVICES)}; got {device!r}")
    conv = pick(conv, "conv")
    if conv == "auto":
        conv = "im2col" if device == "CPU" else "native"
    decode_exp = pick(decode_exp, "decode_exp")
    if decode_exp == "auto":
        decode_exp = "float64" if device == "CPU" else "float32"
    if amp_level is None:
        train = cfg.get("train", {}) if cfg is not None and hasattr(cfg, "get") else {}
        amp_level = str(train.get("amp_level", "O0")) if train else "O0"
    fold = bool(pick(fold_bn, "fold_bn", True)) and amp_level == "O0"
    precision = pick(precision_mode, "precision_mode")
    if precision == "auto":
        precision = default_precision_mode(device)
    kernels = _cpu_kernels(pick(cpu_kernels, "cpu_kernels"), device)
    jit = pick(jit_level, "jit_level")
    level, note = resolve_jit_level(jit, chip_name(device))
    if note:
        import logging
        logging.getLogger("mindyolox").warning(note)
    return DeviceOptions(device=device, conv=conv, decode_exp=decode_exp, fold_bn=fold, amp_level=str(amp_level),
                         precision_mode=precision, cpu_kernels=kernels, jit_level=level)


def _cpu_kernels(value, device):
    """``runtime.cpu_kernels`` (``auto`` / true / false) resolved for ``device``."""
    if value is False or value == "false" or device != "CPU":
        if value is True and device != "CPU":
            raise ConfigError(f"runtime.cpu_kernels=true: the compiled kernels run on CPU only, device is {device}")
        return False
    from .ops import cpu_kernels
    ok, reason = cpu_kernels.buildable()   # runs no program: the build waits for the first model
    if ok:
        return True
    if value is True or value == "true":
        raise ConfigError(f"runtime.cpu_kernels=true: the CPU kernel library cannot be built: {reason}")
    if not _logged_kernel_reason:
        import logging
        logging.getLogger("mindyolox").warning("CPU kernels off (runtime.cpu_kernels=auto): %s", reason)
        _logged_kernel_reason.append(reason)
    return False


_logged_kernel_reason = []
