"""The YOLOX detector: a neck that owns its backbone (``backbone``) and a decoupled ``head``."""
from mindspore import nn


class YOLOX(nn.Cell):
    """YOLOX: images [B, 3, S, S] (BGR, 0..255) -> head outputs (see ``YOLOXHead``)."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def num_classes(self):
        return self.head.num_classes

    def construct(self, x):
        return self.head(self.backbone(x))
