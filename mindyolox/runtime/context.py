"""The device context of a process (:func:`apply_device_context`, the one place that sets it),
the process environment a run changes for its duration (:func:`scoped_environ`), and small
helpers shared by the evaluation / prediction / deployment CLIs."""
import os
from contextlib import contextmanager

from ..errors import MindYOLOXError, WeightsError
from ..options import apply_device_options

__all__ = ["setup_mindspore", "apply_device_context", "build_and_load", "keep_compile_dumps_in", "scoped_environ",
           "compile_dumps_in"]

# where MindSpore 2.10 writes what a failed or interrupted graph compile dumps: MS_OM_PATH
# (default "."), as "<MS_OM_PATH>/rank_<id>/om/analyze_fail.ir" (GetEvalFailDatPath in
# mindspore/lib/libmindspore_frontend.so; read at each failure, not at import), and the IR
# files of save_graphs: MS_DEV_SAVE_GRAPHS_PATH (default ".", mindspore/context.py:1304 and
# 1429-1431, the deprecated set_context(save_graphs_path=...))
COMPILE_DUMP_ENV = ("MS_OM_PATH", "MS_DEV_SAVE_GRAPHS_PATH")


def setup_mindspore(device=None, cfg=None):
    """GRAPH_MODE on ``device`` (CPU / GPU / Ascend; None: the recipe ``cfg``'s
    ``runtime.device`` unless ``auto``, else MindSpore's default target): the CLIs' name for
    :func:`apply_device_context` before the options are resolved."""
    apply_device_context(device=device, cfg=cfg)


def apply_device_context(options=None, device=None, cfg=None):
    """Set MindSpore's process-wide device context, the one function that does.

    ``device`` (a ``--device`` flag) or else the recipe ``cfg``'s ``runtime.device`` unless
    ``auto``: ``mindspore.set_device`` (a wrong name is one line naming the flag); then
    GRAPH_MODE; then, with ``options`` (:class:`~mindyolox.options.DeviceOptions`, resolved
    after the device is known), the jit level and Ascend's operator precision mode
    (:func:`~mindyolox.options.apply_device_options`; the precision mode is set once per
    process). The CLIs call it (as :func:`setup_mindspore`) before resolving options, the
    trainer with its options -- before ``init_data_parallel`` (HCCL init), as MindSpore asks
    of Ascend settings (``mindspore/context.py:1284-1291``)."""
    import mindspore as ms  # here, not at the top: the CLIs import this module to parse flags first
    if not device and cfg is not None:
        wanted = str((cfg.get("runtime") or {}).get("device", "auto"))
        device = None if wanted == "auto" else wanted
    if device:
        try:
            ms.set_device(device)
        except (ValueError, RuntimeError) as e:
            raise MindYOLOXError(f"--device {device}: {str(e).splitlines()[0]}") from None
    ms.set_context(mode=ms.GRAPH_MODE)
    if options is not None:
        apply_device_options(options)  # recorded in the checkpoints' and the export's options


@contextmanager
def scoped_environ(values):
    """Set the environment variables ``values`` (``{name: str}``) for the ``with`` block and put
    back what was there (or remove them) when it ends, however it ends."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def compile_dumps_in(folder):
    """:func:`scoped_environ` of :func:`keep_compile_dumps_in`: MindSpore's compile dumps go to
    ``folder`` for the ``with`` block (unless the user set them)."""
    return scoped_environ({k: os.path.abspath(folder) for k in COMPILE_DUMP_ENV if not os.environ.get(k)})


def keep_compile_dumps_in(folder):
    """Point MindSpore's compile dumps (:data:`COMPILE_DUMP_ENV`) at ``folder`` (a run folder)
    instead of the working directory, unless the user set them. Returns ``{name: old value}``
    of what was changed (restore with it: these are process-global)."""
    saved = {}
    for key in COMPILE_DUMP_ENV:
        if not os.environ.get(key):
            saved[key] = os.environ.get(key)
            os.environ[key] = str(os.path.abspath(folder))
    return saved


def build_and_load(cfg, weights, options=None, decode_in_inference=True, half=False):
    """Model of recipe ``cfg`` with ``weights`` loaded, in eval mode; returns ``(model, report)``.

    ``options``: :class:`~mindyolox.options.DeviceOptions` (None: resolved from the recipe
    and the current device, with amp level O2 when ``half`` else O0). ``half`` (``--half``):
    float16 inference, the network :func:`~mindyolox.models.amp.mixed_precision` returns for
    O2 (BatchNorm a float32 cell, float32 outputs). With ``options.fold_bn`` (float32) every
    BatchNorm is folded into its convolution once (:func:`~mindyolox.models.fold.fold_batchnorms`):
    the model is for evaluation and prediction only. ``decode_in_inference=False`` makes the
    head return raw boxes (for export). Raises WeightsError (one line) when the file is
    missing or does not fit the model.
    """
    from ..convert.weights import load_weights
    from ..models import build_model
    from ..models.fold import fold_batchnorms
    from ..options import resolve_options
    from ..models.amp import mixed_precision
    if not os.path.isfile(str(weights)):
        raise WeightsError(f"weights file not found: {weights}")
    if options is None:
        options = resolve_options(cfg, amp_level="O2" if half else "O0")
    model = build_model(cfg, options, decode_in_inference=decode_in_inference)
    report = load_weights(model, weights)
    if options.fold_bn:   # eval only: BN folded once in numpy (no per-call arithmetic; on CPU the
        fold_batchnorms(model)   # fused bias + SiLU kernels), models/fold.py
    net = mixed_precision(model, options.amp_level)
    net.set_train(False)
    return net, report
