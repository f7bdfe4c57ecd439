"""The decoupled YOLOX head (official ``YOLOXHead`` without the loss, which lives in losses/).

Per level k (stride 8, 16, 32): ``stems[k]`` 1x1 to 256*width channels, then a cls branch
(``cls_convs[k]``: two 3x3 convs -> ``cls_preds[k]`` 1x1 to num_classes) and a reg branch
(``reg_convs[k]``: two 3x3 convs -> ``reg_preds[k]`` 1x1 to 4 and ``obj_preds[k]`` 1x1 to 1).

Anchors are ordered stride 8, 16, 32 and row-major (y, then x) inside a level, so
A = sum(H_k * W_k) (2100 at 320, 8400 at 640).
"""
import math

from mindspore import nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import Constant

from .blocks import BaseConv, conv_class
from .conv import Conv2d

PRIOR_PROB = 0.01


def level_grid(h, w, stride):
    """Grid of one level: (xy [h*w, 2] cell indices (x, y) row-major, strides [h*w]), float32."""
    ys, xs = ops.meshgrid(ops.arange(h, dtype=mstype.float32),
                          ops.arange(w, dtype=mstype.float32), indexing="ij")
    xy = ops.stack((xs.reshape(-1), ys.reshape(-1)), 1)
    return xy, ops.fill(mstype.float32, (h * w,), stride)


def level_grid_like(feature, stride):
    """:func:`level_grid` of feature map ``feature`` [B, C, h, w] whose h, w are unknown when the
    graph compiles (dynamic shape): the cell indices are running sums of ones (exact integers
    in float32), ``ops.arange`` needing a constant length."""
    ones = ops.ones_like(feature[0, 0].astype(mstype.float32))          # [h, w]
    xs = ops.cumsum(ones, 1) - 1.0
    ys = ops.cumsum(ones, 0) - 1.0
    xy = ops.stack((xs.reshape(-1), ys.reshape(-1)), 1)
    return xy, ones.reshape(-1) * stride


class BoxDecode(nn.Cell):
    """Eval-mode decode, its own cell so that it stays float32 under mixed precision
    (:mod:`mindyolox.models.amp` gives it ``to_float(float32)`` at O2/O3, as BatchNorm): a
    float16 decode would put the box centres on 0.25 px steps from 256 px and 0.5 px steps
    from 512 px (``--half``). Inputs raw [B, A, 5 + C] (dx, dy, log w, log h, obj, cls
    logits), grids [A, 2], strides [A]; returns [B, A, 5 + C] (cx, cy, w, h px, sigmoid
    scores), float32. ``exp_in_float64``: the size ``exp`` in float64 (``decode_exp``)."""

    def __init__(self, exp_in_float64=False):
        super().__init__()
        self.exp_in_float64 = bool(exp_in_float64)

    def construct(self, raw, grids, strides):
        raw = raw.astype(mstype.float32)
        scores = ops.sigmoid(raw[:, :, 4:])
        s = strides.reshape(1, -1, 1)
        xy = (raw[:, :, :2] + grids) * s
        log_wh = raw[:, :, 2:4]
        if self.exp_in_float64:
            wh = ops.exp(log_wh.astype(mstype.float64)).astype(mstype.float32) * s
        else:
            wh = ops.exp(log_wh) * s
        return ops.concat((xy, wh, scores), 2)


class YOLOXHead(nn.Cell):
    """Decoupled head.

    Inputs: three feature maps [B, int(in_channels[k]*width), H_k, W_k].
    Eval mode (``set_train(False)``): [B, A, 5 + num_classes] rows
    (cx, cy, w, h in input pixels, sigmoid(obj), sigmoid(cls)...); with
    ``decode_in_inference = False`` the box part stays raw (dx, dy, log w, log h).
    ``decode_exp`` (``float32`` | ``float64``) is the dtype of the size decode's ``exp``
    (``DeviceOptions.decode_exp``: float64 on CPU, whose float32 exp is ~5e-6 relative off).
    Both are per-instance choices made before the first eval call compiles the graph
    (:func:`mindyolox.build_model`).
    Train mode: ``(raw [B, A, 5+C], grids [A, 2], strides [A])`` where raw holds the raw box
    regression, the obj logit and the class logits, grids the (x, y) cell of each anchor and
    strides its stride in pixels; the loss decodes from these.
    """

    def __init__(self, num_classes, width=1.0, strides=(8, 16, 32), in_channels=(256, 512, 1024),
                 act="silu", depthwise=False, decode_in_inference=True, decode_exp="float32"):
        super().__init__()
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.decode_in_inference = bool(decode_in_inference)
        if decode_exp not in ("float32", "float64"):
            raise ValueError(f"decode_exp must be float32 or float64, got {decode_exp!r}")
        self.exp_in_float64 = decode_exp == "float64"
        self.decode = BoxDecode(self.exp_in_float64)
        # True: the anchor grid from the feature maps (level_grid_like), for input H/W unknown
        # when the graph compiles (mindyolox.training.dynamic_shape); a compile-time constant
        self.dynamic_hw = False
        conv = conv_class(depthwise)
        hidden = int(256 * width)
        bias = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)
        self.stems = nn.CellList()
        self.cls_convs = nn.CellList()
        self.reg_convs = nn.CellList()
        self.cls_preds = nn.CellList()
        self.reg_preds = nn.CellList()
        self.obj_preds = nn.CellList()
        for c in in_channels:
            self.stems.append(BaseConv(int(c * width), hidden, 1, 1, act=act))
            self.cls_convs.append(nn.SequentialCell([conv(hidden, hidden, 3, 1, act=act),
                                                     conv(hidden, hidden, 3, 1, act=act)]))
            self.reg_convs.append(nn.SequentialCell([conv(hidden, hidden, 3, 1, act=act),
                                                     conv(hidden, hidden, 3, 1, act=act)]))
            self.cls_preds.append(Conv2d(hidden, num_classes, 1, 1, has_bias=True,
                                            bias_init=Constant(bias)))
            self.reg_preds.append(Conv2d(hidden, 4, 1, 1, has_bias=True))
            self.obj_preds.append(Conv2d(hidden, 1, 1, 1, has_bias=True,
                                            bias_init=Constant(bias)))

    def construct(self, feats):
        outputs = []
        grids = []
        strides = []
        for k in range(len(self.strides)):
            x = self.stems[k](feats[k])
            cls_out = self.cls_preds[k](self.cls_convs[k](x))
            reg_feat = self.reg_convs[k](x)
            out = ops.concat((self.reg_preds[k](reg_feat), self.obj_preds[k](reg_feat), cls_out), 1)
            if self.dynamic_hw:
                outputs.append(out.reshape(out.shape[0], out.shape[1], -1))
                xy, s = level_grid_like(out, self.strides[k])
            else:
                b, c, h, w = out.shape
                outputs.append(out.reshape(b, c, h * w))
                xy, s = level_grid(h, w, self.strides[k])
            grids.append(xy)
            strides.append(s)
        raw = ops.concat(outputs, 2).transpose(0, 2, 1)
        grids = ops.concat(grids, 0)
        strides = ops.concat(strides, 0)
        if self.training:
            return raw, grids, strides
        if not self.decode_in_inference:
            return ops.concat((raw[:, :, :4], ops.sigmoid(raw[:, :, 4:])), 2)
        return self.decode(raw, grids, strides)
