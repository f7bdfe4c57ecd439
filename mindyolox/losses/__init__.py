"""SimOTA label assignment and the YOLOX loss (official 0.3.0 numerics, static shapes)."""
from .simota import SimOTAAssigner, gt_valid_mask
from .yolox_loss import LOSS_KEYS, YOLOXLoss, YOLOXWithLoss, decode_boxes

__all__ = ["SimOTAAssigner", "gt_valid_mask", "YOLOXLoss", "YOLOXWithLoss", "LOSS_KEYS",
           "decode_boxes"]
