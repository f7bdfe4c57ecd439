"""Build a YOLOX Cell from the ``model`` section of a recipe and the device options.

``model`` keys: ``backbone`` (``cspdarknet`` -> PAFPN neck, or ``darknet53`` -> YOLOv3 FPN),
``depth``, ``width``, ``act``, ``depthwise``, ``num_classes``, ``in_channels``, ``strides``,
``exact_bn`` (train-mode BatchNorm kernel, see :mod:`mindyolox.models.batchnorm`).

Device-dependent choices (convolution implementation, compiled CPU kernels, decode
precision, eval-time BN folding) come from a :class:`~mindyolox.options.DeviceOptions` passed in; they are set on
every layer of the new model here, once, and recorded as ``model.options``.
"""
from ..options import resolve_options
from .batchnorm import BatchNorm2d, set_exact_batchnorm
from .blocks import BaseConv, SiLU
from .conv import Conv2d
from .head import YOLOXHead
from .necks import PAFPN, YOLOFPN
from .yolox import YOLOX


def _get(cfg, key, default=None):
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def build_model(cfg, options=None, decode_in_inference=True):
    """Return a YOLOX Cell for ``cfg`` (a whole recipe with a ``model`` section, or that section).

    ``options``: :class:`~mindyolox.options.DeviceOptions` (None: resolved now by
    :func:`~mindyolox.options.resolve_options` from the recipe's ``runtime`` section and
    MindSpore's current device target -- pass them explicitly where the device may change).
    ``decode_in_inference=False``: eval mode returns raw boxes (the export layout).
    """
    options = options if options is not None else resolve_options(cfg)
    m = _get(cfg, "model", None) or cfg
    name = _get(m, "backbone", "cspdarknet")
    num_classes = int(_get(m, "num_classes", 80))
    strides = tuple(_get(m, "strides", (8, 16, 32)))
    head_kw = dict(decode_in_inference=decode_in_inference, decode_exp=options.decode_exp)
    if name == "cspdarknet":
        depth, width = float(_get(m, "depth")), float(_get(m, "width"))
        act, depthwise = _get(m, "act", "silu"), bool(_get(m, "depthwise", False))
        in_channels = tuple(_get(m, "in_channels", (256, 512, 1024)))
        neck = PAFPN(depth, width, in_channels=in_channels, depthwise=depthwise, act=act)
        head = YOLOXHead(num_classes, width, strides, in_channels, act=act, depthwise=depthwise, **head_kw)
    elif name == "darknet53":
        neck = YOLOFPN(53)
        head = YOLOXHead(num_classes, 1.0, strides, (128, 256, 512), act="lrelu", **head_kw)
    else:
        raise ValueError(f"model.backbone: unknown backbone '{name}' (use cspdarknet or darknet53)")
    model = YOLOX(neck, head)
    set_exact_batchnorm(model, bool(_get(m, "exact_bn", False)))
    for _, cell in model.cells_and_names():
        if isinstance(cell, Conv2d):
            cell.use_impl(options.conv, kernels=options.cpu_kernels)
        elif isinstance(cell, BaseConv):
            cell.fold_bn = options.fold_bn
        elif isinstance(cell, (SiLU, BatchNorm2d)):
            cell.use_kernels(options.cpu_kernels)
    for _, cell in model.cells_and_names():
        if isinstance(cell, BaseConv):   # after its conv's use_impl (the depthwise kernel decides)
            cell.use_fused_kernels(options.cpu_kernels)
    model.options = options
    return model
