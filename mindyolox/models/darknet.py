"""Backbones: CSPDarknet (YOLOX-nano..x) and Darknet-21/53 (YOLOX-darknet53).

Both return a dict-free tuple ``(dark3, dark4, dark5)`` of features at strides 8, 16, 32.
"""
from mindspore import nn

from .blocks import BaseConv, CSPLayer, Focus, ResLayer, SPPBottleneck, conv_class


class Backbone(nn.Cell):
    """The forward pass both backbones share: ``stem`` and ``dark2`` (no output kept), then
    ``dark3`` / ``dark4`` / ``dark5``, whose outputs (strides 8, 16, 32) are returned.
    Subclasses build those five cells (the attribute names are the parameter names of the
    official checkpoints: ``backbone.dark3.0.conv.weight``...)."""

    def construct(self, x):
        x = self.dark2(self.stem(x))
        c3 = self.dark3(x)
        c4 = self.dark4(c3)
        c5 = self.dark5(c4)
        return c3, c4, c5


class CSPDarknet(Backbone):
    """CSPDarknet: Focus stem, then dark2..dark5 (conv stride 2 + CSPLayer; SPP in dark5).

    Input [B,3,H,W]; output (dark3 [B,4c,H/8,W/8], dark4 [B,8c,H/16,W/16],
    dark5 [B,16c,H/32,W/32]) with c = int(64 * width).
    """

    def __init__(self, depth, width, depthwise=False, act="silu"):
        super().__init__()
        conv = conv_class(depthwise)
        ch = int(width * 64)
        n = max(round(depth * 3), 1)
        self.stem = Focus(3, ch, ksize=3, act=act)
        self.dark2 = nn.SequentialCell([
            conv(ch, ch * 2, 3, 2, act=act),
            CSPLayer(ch * 2, ch * 2, n=n, depthwise=depthwise, act=act)])
        self.dark3 = nn.SequentialCell([
            conv(ch * 2, ch * 4, 3, 2, act=act),
            CSPLayer(ch * 4, ch * 4, n=n * 3, depthwise=depthwise, act=act)])
        self.dark4 = nn.SequentialCell([
            conv(ch * 4, ch * 8, 3, 2, act=act),
            CSPLayer(ch * 8, ch * 8, n=n * 3, depthwise=depthwise, act=act)])
        self.dark5 = nn.SequentialCell([
            conv(ch * 8, ch * 16, 3, 2, act=act),
            SPPBottleneck(ch * 16, ch * 16, activation=act),
            CSPLayer(ch * 16, ch * 16, n=n, shortcut=False, depthwise=depthwise, act=act)])


def _group(in_channels, num_blocks, stride):
    """A stride-``stride`` 3x3 conv doubling the channels, then ``num_blocks`` ResLayers."""
    return [BaseConv(in_channels, in_channels * 2, 3, stride, act="lrelu")] + \
        [ResLayer(in_channels * 2) for _ in range(num_blocks)]


class Darknet(Backbone):
    """Darknet-21/53 with an SPP block at the end of dark5 (the YOLOv3-SPP backbone).

    Input [B,3,H,W]; output (dark3 [B,256,H/8,W/8], dark4 [B,512,H/16,W/16],
    dark5 [B,512,H/32,W/32]).
    """

    depth2blocks = {21: [1, 2, 2, 1], 53: [2, 8, 8, 4]}

    def __init__(self, depth=53, in_channels=3, stem_out_channels=32):
        super().__init__()
        if depth not in self.depth2blocks:
            raise ValueError(f"Darknet depth must be 21 or 53, got {depth}")
        blocks = self.depth2blocks[depth]
        ch = stem_out_channels
        self.stem = nn.SequentialCell(
            [BaseConv(in_channels, ch, 3, 1, act="lrelu")] + _group(ch, 1, 2))
        ch *= 2
        self.dark2 = nn.SequentialCell(_group(ch, blocks[0], 2))
        ch *= 2
        self.dark3 = nn.SequentialCell(_group(ch, blocks[1], 2))
        ch *= 2
        self.dark4 = nn.SequentialCell(_group(ch, blocks[2], 2))
        ch *= 2
        self.dark5 = nn.SequentialCell(_group(ch, blocks[3], 2) + [nn.SequentialCell([
            BaseConv(ch * 2, ch, 1, 1, act="lrelu"),
            BaseConv(ch, ch * 2, 3, 1, act="lrelu"),
            SPPBottleneck(ch * 2, ch, activation="lrelu"),
            BaseConv(ch, ch * 2, 3, 1, act="lrelu"),
            BaseConv(ch * 2, ch, 1, 1, act="lrelu")])])
