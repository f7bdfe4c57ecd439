"""SimOTA assignment equals the official YOLOX 0.3.0 one, image by image (GRAPH_MODE).

The assigner is fed the official decoded head outputs (``train/l1_0/head_outputs``) and the
official grid, so these tests check the assignment alone; the official per-image matrices
are restricted to the candidate anchors ([G, C]), ours are dense [G, A] and are mapped
through the candidate mask.
"""
import numpy as np
import pytest
from mindspore import Tensor

from mindyolox.losses import SimOTAAssigner, gt_valid_mask

from .conftest import load_npz

CASES = ["yolox-nano_s0_320_b2_0.3.0", "yolox-s_s0_320_b2_0.3.0", "yolox-nano-official_416_b2"]


@pytest.fixture(scope="module")
def assigner():
    return SimOTAAssigner(80)


def reference_case(data, max_labels):
    """The official decoded head outputs [B, A, 85], grid [A, 2], strides [A] and labels cut /
    padded to ``max_labels`` rows of a reference case, float32."""
    pre = "train/l1_0/"
    head = data[pre + "head_outputs"].astype(np.float32)
    grids = np.stack([data[pre + "x_shifts"][0], data[pre + "y_shifts"][0]], 1).astype(np.float32)
    strides = data[pre + "expanded_strides"][0].astype(np.float32)
    labels = np.zeros((head.shape[0], max_labels, 5), np.float32)
    n = min(max_labels, data["input/labels"].shape[1])
    labels[:, :n] = data["input/labels"][:, :n]
    return head, grids, strides, labels


def run_assigner(assigner, data, max_labels, factored=False):
    """Our assignment for a reference case, labels cut/padded to ``max_labels`` rows;
    ``factored``: candidate tests from the anchor layout (``levels``, as the train step)."""
    head, grids, strides, labels = reference_case(data, max_labels)
    valid = gt_valid_mask(Tensor(labels))
    h, w = data["input/images"].shape[2:]
    levels = tuple((h // s, w // s, s) for s in (8, 16, 32)) if factored else None
    out = assigner(Tensor(head[..., :4]), Tensor(head[..., 4]), Tensor(head[..., 5:]),
                   Tensor(grids), Tensor(strides), Tensor(labels[..., 1:5]),
                   Tensor(labels[..., 0].astype(np.int32)), valid, levels)
    return {k: v.asnumpy() for k, v in out.items()}


@pytest.fixture(scope="module", params=[(c, g, False) for c in CASES for g in (120, 50)]
                + [(c, 120, True) for c in CASES], ids=lambda p: f"{p[0]}-G{p[1]}" + ("-levels" if p[2] else ""))
def case(request, assigner):
    name, max_labels, factored = request.param
    data = load_npz("reference", f"{name}_data.npz")
    return data, run_assigner(assigner, data, max_labels, factored)


def test_assignment_matches_official(case):
    data, ours = case
    n_img = data["input/images"].shape[0]
    for b in range(n_img):
        ref = {k.rsplit("/", 1)[1]: v for k, v in data.items()
               if k.startswith(f"train/l1_0/assign/b{b}/")}
        n_gt = ref["dynamic_ks"].shape[0]
        cand = ref["candidate_mask"]
        assert cand.sum() > 0
        np.testing.assert_array_equal(ours["candidate"][b], cand)
        np.testing.assert_array_equal(ours["in_both"][b, :n_gt][:, cand], ref["in_boxes_and_center"])
        assert not ours["in_both"][b, n_gt:].any(), "padding rows must never be candidates"
        np.testing.assert_allclose(ours["ious"][b, :n_gt][:, cand], ref["pair_wise_ious"],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours["cost"][b, :n_gt][:, cand], ref["cost"], rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(ours["dynamic_ks"][b, :n_gt], ref["dynamic_ks"])
        assert (ours["dynamic_ks"][b, n_gt:] == 0).all()
        np.testing.assert_array_equal(ours["fg_mask"][b], ref["fg_mask"])
        np.testing.assert_array_equal(ours["matched_gt"][b], ref["matched_gt_per_anchor"])
        fg = ref["fg_mask"]
        np.testing.assert_array_equal(ours["matched_gt"][b][fg], ref["matched_gt_inds"])
        np.testing.assert_array_equal(ours["matched_classes"][b][fg],
                                      ref["gt_matched_classes"].astype(np.int32))
        np.testing.assert_allclose(ours["matched_ious"][b][fg], ref["pred_ious_this_matching"],
                                   rtol=1e-5, atol=1e-7)
        assert ours["num_fg"][b] == fg.sum()
        assert (ours["matched_ious"][b][~fg] == 0).all()


def test_reference_has_conflicts_resolved(case):
    """The official data contain anchors claimed by several gts; ours give each one gt."""
    data, ours = case
    summary_conflicts = 0
    for b in range(data["input/images"].shape[0]):
        fg = ours["fg_mask"][b]
        assert ((ours["matched_gt"][b] >= 0) == fg).all()
        ref = data[f"train/l1_0/assign/b{b}/cost"]
        # every dynamic_k is honoured before conflicts: sum(k) >= fg anchors
        summary_conflicts += int(ours["dynamic_ks"][b].sum() - fg.sum())
        assert ref.shape[0] == (ours["dynamic_ks"][b] > 0).sum()
    assert summary_conflicts > 0, "the reference batch exercises the conflict rule"


def test_factored_candidate_masks_equal_generic():
    """The per-level (outer product) candidate tests give the generic [B, G, A] result,
    also for box edges exactly on anchor centres (strict comparisons) and a non-square input."""
    from mindyolox.losses.simota import candidate_masks
    from mindyolox.models.head import level_grid
    h, w = 96, 160
    levels = tuple((h // s, w // s, s) for s in (8, 16, 32))
    parts = [level_grid(lh, lw, s) for lh, lw, s in levels]
    grids = np.concatenate([p[0].asnumpy() for p in parts])
    strides = np.concatenate([p[1].asnumpy() for p in parts])
    rng = np.random.default_rng(3)
    boxes = np.zeros((2, 12, 4), np.float32)
    boxes[..., :2] = rng.integers(0, 20, (2, 12, 2)) * 8.0 + 4.0      # centres on anchor centres
    boxes[..., 2:] = rng.integers(1, 12, (2, 12, 2)) * 8.0             # edges on anchor centres
    valid = np.arange(12)[None].repeat(2, 0) < np.array([[9], [4]])
    args = (Tensor(boxes), Tensor(valid), Tensor(grids), Tensor(strides))
    generic = [x.asnumpy() for x in candidate_masks(*args)]
    factored = [x.asnumpy() for x in candidate_masks(*args, levels=levels)]
    assert generic[0].shape == (2, 12, grids.shape[0]) and generic[0].any() and not generic[1].all()
    np.testing.assert_array_equal(factored[0], generic[0])
    np.testing.assert_array_equal(factored[1], generic[1])


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("max_labels", [120, 50, 7])
def test_cpu_kernel_assignment_matches_official(name, max_labels):
    """The compiled CPU assignment (real labels only, ``YOLOXLoss.use_kernels``) against the
    official per-image assignment; with 7 label slots the reference's later gts are cut, so it
    must equal the dense assigner on the same cut labels instead."""
    from mindyolox.ops import cpu_kernels
    data = load_npz("reference", f"{name}_data.npz")
    pre = "train/l1_0/"
    head, grids, strides, labels = reference_case(data, max_labels)
    out = cpu_kernels.simota()(Tensor(head[..., :4]), Tensor(head[..., 4]), Tensor(head[..., 5:]), Tensor(labels),
                               Tensor(grids), Tensor(strides)).asnumpy()
    fg, gt, cls, iou = out[..., 0] > 0.5, out[..., 1].astype(np.int32), out[..., 2].astype(np.int32), out[..., 3]
    n_ref = data["input/labels"].shape[1]
    if max_labels >= n_ref or not (data["input/labels"][:, max_labels:].sum(2) > 0).any():
        for b in range(head.shape[0]):
            ref = {k.rsplit("/", 1)[1]: v for k, v in data.items() if k.startswith(f"{pre}assign/b{b}/")}
            np.testing.assert_array_equal(fg[b], ref["fg_mask"])
            np.testing.assert_array_equal(gt[b], ref["matched_gt_per_anchor"])
            np.testing.assert_array_equal(cls[b][fg[b]], ref["gt_matched_classes"].astype(np.int32))
            np.testing.assert_allclose(iou[b][fg[b]], ref["pred_ious_this_matching"], rtol=1e-5, atol=1e-7)
            assert (iou[b][~fg[b]] == 0).all() and (cls[b][~fg[b]] == 0).all()
    else:
        dense = run_assigner(SimOTAAssigner(80), data, max_labels)
        np.testing.assert_array_equal(fg, dense["fg_mask"])
        np.testing.assert_array_equal(gt, dense["matched_gt"])
        np.testing.assert_array_equal(cls, dense["matched_classes"])
        np.testing.assert_allclose(iou, dense["matched_ious"], rtol=1e-5, atol=1e-7)


def test_cpu_kernel_assignment_refuses_a_class_beyond_the_model():
    """A label class outside [0, C) fails the call (the dense graph would gather out of range)."""
    from mindyolox.ops import cpu_kernels
    rng = np.random.default_rng(0)
    labels = np.zeros((1, 4, 5), np.float32)
    labels[0, 0] = [80, 40, 40, 20, 20]
    args = [rng.uniform(10, 60, (1, 100, 4)), rng.standard_normal((1, 100)), rng.standard_normal((1, 100, 80)),
            labels, np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2), np.full(100, 8.0)]
    with pytest.raises(RuntimeError):
        cpu_kernels.simota()(*[Tensor(np.asarray(a, np.float32)) for a in args]).asnumpy()
