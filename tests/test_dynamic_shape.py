"""One graph for every input size (issue 35, item 6): the shape-free forms that
:mod:`mindyolox.training.dynamic_shape` switches on equal the static ones, and the nano model
with its loss compiles ONCE for images ``[B, 3, None, None]`` and gives at each size the loss
terms of the per-size static graphs. The whole train step and its step times are measured by
``bench/compile_dynamic.py`` (docs/devices.md, "One graph for all multiscale sizes").
"""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor
from mindspore import dtype as mstype

from mindyolox.losses import YOLOXLoss, YOLOXWithLoss
from mindyolox.models.head import level_grid, level_grid_like
from mindyolox.training.dynamic_shape import mark_dynamic_hw
from mindyolox.utils.boxes import pairwise_iou_cxcywh


@pytest.mark.parametrize("h,w,stride", [(5, 7, 8), (1, 3, 32), (12, 12, 16)])
def test_level_grid_like_equals_level_grid(h, w, stride):
    """The grid built from a feature map's shape (running sums) is ``level_grid``'s, exactly."""
    xy, s = level_grid(h, w, stride)
    xy2, s2 = level_grid_like(Tensor(np.zeros((2, 3, h, w), np.float32)), stride)
    np.testing.assert_array_equal(xy2.asnumpy(), xy.asnumpy())
    np.testing.assert_array_equal(s2.asnumpy(), s.asnumpy())
    assert xy.asnumpy()[-1].tolist() == [w - 1, h - 1]


def test_pairwise_iou_broadcast_equals_tiled():
    """``tile=False`` (broadcasting min/max, shapes unknown at compile time) gives the tiled IoU."""
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0, 100, (2, 7, 2)), rng.uniform(1, 40, (2, 7, 2))], 2).astype(np.float32)
    b = np.concatenate([rng.uniform(0, 100, (2, 50, 2)), rng.uniform(1, 40, (2, 50, 2))], 2).astype(np.float32)
    tiled = pairwise_iou_cxcywh(Tensor(a), Tensor(b)).asnumpy()
    broadcast = pairwise_iou_cxcywh(Tensor(a), Tensor(b), tile=False).asnumpy()
    assert tiled.shape == (2, 7, 50) and (tiled > 0).any()
    np.testing.assert_array_equal(broadcast, tiled)


def _labels(rng, size, batch=2, boxes=8, max_labels=120):
    """``boxes`` random boxes per image (sides 5-55 % of ``size``, inside it), class, cx, cy, w, h
    px: the bench's rule (``bench/compile_dynamic.py``); padding rows zero."""
    lab = np.zeros((batch, max_labels, 5), np.float32)
    for b in range(batch):
        wh = rng.uniform(0.05, 0.55, (boxes, 2)) * size
        cxy = wh / 2 + rng.uniform(0, 1, (boxes, 2)) * (size - wh)
        lab[b, :boxes] = np.concatenate([rng.integers(0, 80, (boxes, 1)), cxy, wh], 1)
    return Tensor(lab)


@pytest.mark.slow
def test_model_and_loss_compile_once_for_all_sizes():
    """nano + SimOTA loss with ``set_inputs([2, 3, None, None])``: one graph serves 64 and 96
    px, and its loss terms equal the static per-size graphs' to float32 rounding (native
    convolutions, the device path; the compiled CPU kernels need static shapes). Random boxes,
    as the bench's: boxes placed symmetrically on the anchor grid give near-tied SimOTA costs,
    and there 1e-6 rounding differences between two graphs can flip an assignment (seen: a
    0.25 % different loss at batch 1 with three grid-centred boxes), as between any two
    kernel orders."""
    from mindyolox import build_model, load_config
    cfg = load_config("configs/yolox-nano.yaml", ["runtime.conv=native", "runtime.cpu_kernels=false"])
    ms.set_seed(0)
    model = build_model(cfg)
    model.set_train(True)
    static = YOLOXWithLoss(model, YOLOXLoss(80))
    dynamic = YOLOXWithLoss(model, YOLOXLoss(80))      # the same weights, its own graph
    assert mark_dynamic_hw(dynamic) == 3                 # head, loss wrapper, SimOTA
    dynamic.set_inputs(Tensor(shape=[2, 3, None, None], dtype=mstype.float32),
                       Tensor(shape=[2, 120, 5], dtype=mstype.float32), Tensor(shape=[], dtype=mstype.float32))
    rng = np.random.default_rng(0)
    use_l1 = Tensor(1.0, mstype.float32)
    for size in (64, 96):
        images = Tensor(rng.uniform(0, 255, (2, 3, size, size)).astype(np.float32))
        labels = _labels(rng, size)
        want = [float(x.asnumpy()) for x in static(images, labels, use_l1)]
        got = [float(x.asnumpy()) for x in dynamic(images, labels, use_l1)]
        assert want[5] > 0                                # foreground anchors were assigned
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert len(dynamic.compile_cache) == 1 and len(static.compile_cache) == 2
