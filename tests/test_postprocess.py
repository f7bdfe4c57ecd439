"""Postprocess (score threshold + NMS) keeps exactly the official set on every reference case."""
import numpy as np
import pytest

from mindyolox.utils.postprocess import (decode_outputs, level_sizes, multiclass_nms, nms, postprocess,
                                         postprocess_image)

from .conftest import load_npz

REFS = ["yolox-nano-official_416_b2", "yolox-nano_s0_320_b2_0.3.0", "yolox-s_s0_320_b2_0.3.0"]


def _cases():
    for ref in REFS:
        data = load_npz("reference", f"{ref}_data.npz")
        for key in sorted(k for k in data if k.startswith("pp/") and k.endswith("/params")):
            yield ref, key.split("/")[1]


@pytest.fixture(scope="module")
def refs():
    return {r: load_npz("reference", f"{r}_data.npz") for r in REFS}


@pytest.mark.parametrize("ref,setting", list(_cases()))
def test_official_postprocess_sets(refs, ref, setting):
    data = refs[ref]
    conf, thr, agnostic = data[f"pp/{setting}/params"]
    outs = postprocess(data["eval/decoded"], conf, thr, bool(agnostic))
    assert len(outs) == data["eval/decoded"].shape[0]
    for i, out in enumerate(outs):
        expected = data[f"pp/{setting}/b{i}"]
        assert out.shape == expected.shape, (setting, i)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, expected)


def test_reference_cases_cover_both_nms_modes(refs):
    data = refs["yolox-nano-official_416_b2"]
    aware = postprocess(data["eval/decoded"], 0.0157, 0.45, False)[0]
    agnostic = postprocess(data["eval/decoded"], 0.0157, 0.45, True)[0]
    assert len(agnostic) < len(aware)              # cross-class overlaps only suppressed when agnostic
    assert set(map(tuple, agnostic[:, :4].tolist())) <= set(map(tuple, aware[:, :4].tolist()))


def test_decode_outputs_matches_official_decoding(refs):
    for ref, size in (("yolox-nano-official_416_b2", 416), ("yolox-s_s0_320_b2_0.3.0", 320)):
        data = refs[ref]
        ours = decode_outputs(data["eval/raw"], (size, size))
        ref_dec = data["eval/decoded"]
        assert np.abs(ours[..., :4] - ref_dec[..., :4]).max() <= 1e-4 * max(1.0, np.abs(ref_dec[..., :4]).max())
        np.testing.assert_array_equal(ours[..., 4:], ref_dec[..., 4:])
    assert level_sizes((416, 416)) == [(52, 52), (26, 26), (13, 13)]
    with pytest.raises(ValueError, match="anchors expected"):
        decode_outputs(refs["yolox-s_s0_320_b2_0.3.0"]["eval/raw"], (416, 416))


def test_nms_threshold_is_strict_and_class_aware():
    # box 1 overlaps box 0 with IoU exactly 0.75 (inter 75, union 100): kept at 0.75, gone at 0.74
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 7.5], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, 0.75).tolist() == [0, 1, 2]
    assert nms(boxes, scores, 0.74).tolist() == [0, 2]
    classes = np.array([0, 1, 1])
    assert multiclass_nms(boxes, scores, classes, 0.5).tolist() == [0, 1, 2]
    assert multiclass_nms(boxes, scores, classes, 0.5, class_agnostic=True).tolist() == [0, 2]
    # output ordered by score across classes
    order = multiclass_nms(boxes, np.array([0.1, 0.8, 0.5], np.float32), np.array([0, 1, 2]), 0.5)
    assert order.tolist() == [1, 2, 0]


def test_score_threshold_inclusive_and_empty():
    pred = np.zeros((3, 7), np.float32)
    pred[:, :4] = [[50, 50, 20, 20], [150, 50, 20, 20], [50, 150, 20, 20]]
    pred[:, 4] = [1.0, 0.5, 0.25]
    pred[:, 5] = 0.5
    pred[:, 6] = [0.2, 0.6, 0.1]                  # image 1: class 1 wins with cls_conf 0.6
    out = postprocess_image(pred, conf_thre=0.25)
    assert out.shape == (2, 7)
    np.testing.assert_array_equal(out[:, 6], [0, 1])
    np.testing.assert_allclose(out[0, :4], [40, 40, 60, 60])
    np.testing.assert_allclose(out[1, 5], 0.6, rtol=1e-6)
    assert postprocess_image(pred, conf_thre=0.6).shape == (0, 7)
    with pytest.raises(ValueError, match="5 \\+ num_classes"):
        postprocess(np.zeros((3, 7), np.float32))
