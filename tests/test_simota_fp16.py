"""SimOTA with float16 ranking keys (issue 24, deliverable 4).

The tiered assigner (``SimOTAAssigner(tiered=True)``, used on Ascend) ranks on the real cost
with no value beyond float16's range. Checked here on the official reference cases (head
outputs of the official code) and on demo batches (coco16 through the training loader, the
official nano weights in train mode):

* with float32 keys it gives exactly the official assigner's assignment;
* with the keys cast to float16 (as a device running TopK/ArgMin in float16 would) the
  assignment equals the float32 one, or every difference is a tie of the float16 keys: a
  gt's selected anchors differ only by anchors whose float16 key equals a selected one's,
  and a conflict goes to another gt only when both gts' float16 keys are equal.

Also: the official single key does lose the order in float16 (1e5 -> inf), and the clamped
logs never take ``log(0)`` while giving the official values.
"""
import numpy as np
import pytest
from mindspore import Tensor, ops
from mindspore import dtype as mstype

from mindyolox import build_model, load_weights
from mindyolox.data.loader import create_train_loader
from mindyolox.losses import SimOTAAssigner, gt_valid_mask
from mindyolox.losses.simota import _bce_log

from .conftest import load_npz, shared_path
from .test_simota import CASES, run_assigner
from .test_train import coco16_cfg


@pytest.fixture(scope="module")
def assigners():
    return {"official": SimOTAAssigner(80), "tiered32": SimOTAAssigner(80, tiered=True),
            "tiered16": SimOTAAssigner(80, tiered=True, key_dtype=mstype.float16)}


def _demo_inputs():
    """Two batches of 2 (mosaic on, then off) of coco16 at 320 through the official nano
    weights in train mode: the assigner's inputs as the loss builds them."""
    model = build_model({"model": {"backbone": "cspdarknet", "depth": 0.33, "width": 0.25, "depthwise": True}})
    load_weights(model, shared_path("weights", "yolox_nano.pth"))
    model.set_train(True)
    batches = []
    for epoch, extra in ((0, ()), (1, ("train.no_aug_epochs=1",))):
        cfg = coco16_cfg(*extra, size=320, max_epoch=2)
        ld = create_train_loader(cfg.data, cfg.aug, cfg.train, num_workers=0, start_epoch=epoch, end_epoch=epoch + 1)
        images, labels = next(ld.ms_dataset.create_tuple_iterator(num_epochs=1))
        raw, grids, strides = model(images.astype(mstype.float32))  # the pipeline sends uint8
        raw, lab = raw.asnumpy(), labels.asnumpy()
        from mindyolox.losses.yolox_loss import decode_boxes
        boxes = decode_boxes(Tensor(raw[..., :4]), grids, strides).asnumpy()
        batches.append(dict(boxes=boxes, obj=raw[..., 4], cls=raw[..., 5:], grids=grids.asnumpy(),
                            strides=strides.asnumpy(), labels=lab))
    return batches


def _run(assigner, x):
    lab = Tensor(x["labels"])
    out = assigner(Tensor(x["boxes"]), Tensor(x["obj"]), Tensor(x["cls"]), Tensor(x["grids"]),
                   Tensor(x["strides"]), lab[..., 1:5], lab[..., 0].astype(mstype.int32), gt_valid_mask(lab),
                   None)  # the reference cases' call signature: the same compiled graph at 320
    return {k: v.asnumpy() for k, v in out.items()}


def _reference_inputs(name):
    data = load_npz("reference", f"{name}_data.npz")
    return data


@pytest.fixture(scope="module")
def outcomes(assigners):
    """Per input (3 reference cases, 2 demo batches): the three assigners' outputs."""
    res = {}
    for name in CASES:
        data = _reference_inputs(name)
        res[name] = {k: run_assigner(a, data, 120) for k, a in assigners.items()}
    for i, batch in enumerate(_demo_inputs()):
        res[f"demo{i}"] = {k: _run(a, batch) for k, a in assigners.items()}
    return res


def _keys16(out):
    """(tier, float16 real cost) per [B, G, A] pair, the tiered float16 ranking key."""
    tier = ~out["in_both"]
    real = out["cost"].astype(np.float64) - 1e5 * tier
    return tier, real.astype(np.float32).astype(np.float16)


@pytest.mark.slow  # the demo batches run the nano model (a compiled forward)
def test_tiered_float32_keys_give_the_official_assignment(outcomes):
    for name, o in outcomes.items():
        for key in ("fg_mask", "matched_gt", "matched_classes", "dynamic_ks", "matching"):
            np.testing.assert_array_equal(o["tiered32"][key], o["official"][key], err_msg=f"{name} {key}")
        assert o["official"]["fg_mask"].sum() > 0, name


@pytest.mark.slow  # the demo batches run the nano model (a compiled forward)
def test_float16_keys_give_the_float32_assignment_up_to_ties(outcomes):
    differing = 0
    for name, o in outcomes.items():
        a32, a16 = o["tiered32"], o["tiered16"]
        np.testing.assert_array_equal(a16["cost"], a32["cost"])  # the same float32 cost went in
        np.testing.assert_array_equal(a16["dynamic_ks"], a32["dynamic_ks"])
        tier, key = _keys16(a32)
        b_n, g_n, _ = key.shape
        for b in range(b_n):
            for g in range(g_n):
                s32, s16 = np.flatnonzero(a32["matching"][b, g]), np.flatnonzero(a16["matching"][b, g])
                assert len(s32) == len(s16), (name, b, g)
                if set(s32) != set(s16):  # only anchors of equal float16 keys were exchanged
                    differing += 1
                    k32 = sorted(zip(tier[b, g, s32], key[b, g, s32]))
                    k16 = sorted(zip(tier[b, g, s16], key[b, g, s16]))
                    assert k32 == k16, (name, b, g, k32, k16)
            for a in np.flatnonzero(a32["fg_mask"][b] & a16["fg_mask"][b]):
                g32, g16 = a32["matched_gt"][b, a], a16["matched_gt"][b, a]
                if g32 != g16:  # a conflict decided between two gts whose float16 keys tie
                    differing += 1
                    assert (tier[b, g32, a], key[b, g32, a]) == (tier[b, g16, a], key[b, g16, a]), (name, b, a)
        # foreground differs only where a tie exchanged the anchors (checked above per gt)
        assert abs(int(a32["fg_mask"].sum()) - int(a16["fg_mask"].sum())) <= differing, name
    print(f"float16 keys: {differing} (gt, anchor set) or conflict difference(s), all ties")


def test_the_official_key_loses_the_order_in_float16():
    """The reason for the tiers: 1e5 and the 1e10 sentinel become inf in float16."""
    cost = np.array([100012.5, 100003.25, 1e10], np.float32)
    with np.errstate(over="ignore"):
        assert np.isinf(cost.astype(np.float16)).all()
    key = np.array([12.5, 3.25, 65504.0], np.float32)  # the tiered keys of the same pairs
    assert np.isfinite(key.astype(np.float16)).all()
    assert np.argsort(key.astype(np.float16)).tolist() == [1, 0, 2]


def test_clamped_logs_equal_the_official_clamp_without_log_of_zero():
    x = np.array([0.0, 1e-45, 1e-40, 3e-44, 1e-30, 1e-8, 0.5, 1.0], np.float32)
    # the clamp of F.binary_cross_entropy as it was written before (max(log(x), -100) with
    # MindSpore's log, which takes log(0) = -inf at x = 0): bit-identical results at 0 and on
    # normal floats. Subnormal inputs (1e-45 .. 1e-40) give -100 or about -88 depending on the
    # process's denormal mode (flush-to-zero set by other libraries in a pytest worker): both
    # lie between the clamp and log of the smallest normal float
    before = ops.maximum(ops.log(Tensor(x)), -100.0).asnumpy()
    got = _bce_log(Tensor(x)).asnumpy()
    normal = np.array([True, False, False, False, True, True, True, True])
    np.testing.assert_array_equal(got[normal], before[normal])
    assert ((got[~normal] >= -100.0) & (got[~normal] <= np.log(np.finfo(np.float32).tiny))).all(), got
    assert got[0] == -100.0
    np.testing.assert_allclose(got[4:], np.log(x[4:]), rtol=1e-6)
    # in float16 no -inf reaches the maximum: log of 0 is never taken
    got16 = _bce_log(Tensor(np.array([0.0, 6e-8, 0.25], np.float16))).asnumpy()
    assert np.isfinite(got16).all() and got16[0] == -100.0
    assert ops.isfinite(_bce_log(Tensor(np.zeros(3, np.float32)))).asnumpy().all()
