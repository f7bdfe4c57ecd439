"""Necks: PAFPN (YOLOX-nano..x, owns a CSPDarknet) and the YOLOv3 FPN (owns a Darknet-53).

The official YOLOX code nests the backbone inside the neck (``backbone.backbone.*``);
we keep that nesting so parameter names stay one-to-one.
"""
from mindspore import nn, ops

from .blocks import BaseConv, CSPLayer, Upsample2x, conv_class
from .darknet import CSPDarknet, Darknet


class PAFPN(nn.Cell):
    """Path-aggregation FPN over CSPDarknet features.

    Input [B,3,H,W]; output (P3 [B,c0,H/8,W/8], P4 [B,c1,H/16,W/16], P5 [B,c2,H/32,W/32])
    with c_i = int(in_channels[i] * width).
    """

    def __init__(self, depth=1.0, width=1.0, in_channels=(256, 512, 1024), depthwise=False,
                 act="silu"):
        super().__init__()
        self.backbone = CSPDarknet(depth, width, depthwise=depthwise, act=act)
        self.upsample = Upsample2x()
        conv = conv_class(depthwise)
        c0, c1, c2 = (int(c * width) for c in in_channels)
        n = round(3 * depth)
        self.lateral_conv0 = BaseConv(c2, c1, 1, 1, act=act)
        self.C3_p4 = CSPLayer(2 * c1, c1, n, False, depthwise=depthwise, act=act)
        self.reduce_conv1 = BaseConv(c1, c0, 1, 1, act=act)
        self.C3_p3 = CSPLayer(2 * c0, c0, n, False, depthwise=depthwise, act=act)
        self.bu_conv2 = conv(c0, c0, 3, 2, act=act)
        self.C3_n3 = CSPLayer(2 * c0, c1, n, False, depthwise=depthwise, act=act)
        self.bu_conv1 = conv(c1, c1, 3, 2, act=act)
        self.C3_n4 = CSPLayer(2 * c1, c2, n, False, depthwise=depthwise, act=act)

    def construct(self, x):
        x2, x1, x0 = self.backbone(x)
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.C3_p4(ops.concat((self.upsample(fpn_out0), x1), 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(ops.concat((self.upsample(fpn_out1), x2), 1))
        pan_out1 = self.C3_n3(ops.concat((self.bu_conv2(pan_out2), fpn_out1), 1))
        pan_out0 = self.C3_n4(ops.concat((self.bu_conv1(pan_out1), fpn_out0), 1))
        return pan_out2, pan_out1, pan_out0


def _cbl(cin, cout, k):
    return BaseConv(cin, cout, k, 1, act="lrelu")


def _embedding(filters, cin):
    f0, f1 = filters
    return nn.SequentialCell([_cbl(cin, f0, 1), _cbl(f0, f1, 3), _cbl(f1, f0, 1),
                              _cbl(f0, f1, 3), _cbl(f1, f0, 1)])


class YOLOFPN(nn.Cell):
    """YOLOv3 FPN over Darknet-53: outputs ([B,128,H/8,W/8], [B,256,H/16,W/16], [B,512,H/32,W/32])."""

    def __init__(self, depth=53):
        super().__init__()
        self.backbone = Darknet(depth)
        self.upsample = Upsample2x()
        self.out1_cbl = _cbl(512, 256, 1)
        self.out1 = _embedding([256, 512], 512 + 256)
        self.out2_cbl = _cbl(256, 128, 1)
        self.out2 = _embedding([128, 256], 256 + 128)

    def construct(self, x):
        x2, x1, x0 = self.backbone(x)
        out_dark4 = self.out1(ops.concat((self.upsample(self.out1_cbl(x0)), x1), 1))
        out_dark3 = self.out2(ops.concat((self.upsample(self.out2_cbl(out_dark4)), x2), 1))
        return out_dark3, out_dark4, x0
