"""Build a YOLOX Cell from the ``model`` section of a recipe.

``model`` keys: ``backbone`` (``cspdarknet`` -> PAFPN neck, or ``darknet53`` -> YOLOv3 FPN),
``depth``, ``width``, ``act``, ``depthwise``, ``num_classes``, ``in_channels``, ``strides``,
``exact_bn`` (train-mode BatchNorm kernel, see :mod:`mindyolox.models.batchnorm`).
"""
from .batchnorm import set_exact_batchnorm
from .head import YOLOXHead
from .necks import PAFPN, YOLOFPN
from .yolox import YOLOX


def _get(cfg, key, default=None):
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def build_model(cfg):
    """Return a YOLOX Cell for ``cfg`` (a whole recipe with a ``model`` section, or that section)."""
    m = _get(cfg, "model", None) or cfg
    name = _get(m, "backbone", "cspdarknet")
    num_classes = int(_get(m, "num_classes", 80))
    strides = tuple(_get(m, "strides", (8, 16, 32)))
    if name == "cspdarknet":
        depth, width = float(_get(m, "depth")), float(_get(m, "width"))
        act, depthwise = _get(m, "act", "silu"), bool(_get(m, "depthwise", False))
        in_channels = tuple(_get(m, "in_channels", (256, 512, 1024)))
        neck = PAFPN(depth, width, in_channels=in_channels, depthwise=depthwise, act=act)
        head = YOLOXHead(num_classes, width, strides, in_channels, act=act, depthwise=depthwise)
    elif name == "darknet53":
        neck = YOLOFPN(53)
        head = YOLOXHead(num_classes, 1.0, strides, (128, 256, 512), act="lrelu")
    else:
        raise ValueError(f"model.backbone: unknown backbone '{name}' (use cspdarknet or darknet53)")
    model = YOLOX(neck, head)
    set_exact_batchnorm(model, bool(_get(m, "exact_bn", False)))
    return model
