"""YOLOX models as MindSpore Cells; ``build_model(cfg)`` makes one from a recipe."""
from .blocks import (BaseConv, Bottleneck, CSPLayer, DWConv, Focus, ResLayer, SPPBottleneck,
                     Upsample2x)
from .darknet import CSPDarknet, Darknet
from .head import YOLOXHead
from .necks import PAFPN, YOLOFPN
from .yolox import YOLOX
from .build import build_model

__all__ = ["BaseConv", "Bottleneck", "CSPLayer", "DWConv", "Focus", "ResLayer", "SPPBottleneck",
           "Upsample2x",
           "CSPDarknet", "Darknet", "PAFPN", "YOLOFPN", "YOLOXHead", "YOLOX", "build_model"]
