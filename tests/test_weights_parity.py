"""The official YOLOX-Nano COCO weights (.pth, read without PyTorch) give the official outputs.

These weights are well-conditioned: neck features and scores hold the plain tolerances
(1e-4 of the tensor's largest magnitude, 1e-4). Boxes: 99% of coordinates are within
1e-3 px; the largest gap (~5e-3 px on ~250 px boxes) equals how far a one-ULP change of
the input pixels moves this same network (measured here: 3-4.5e-3 px), i.e. float32's
floor for any implementation not bit-identical to PyTorch's kernels.
"""
import numpy as np
import pytest
from mindspore import Tensor

from mindyolox import build_model, load_config, load_weights

from .conftest import ROOT, load_npz, shared_path
from .test_model_parity import (BOX_TOL, FEATURE_RTOL, SCORE_TOL, Probe, assert_within,
                                 one_ulp_perturbed)

pytestmark = pytest.mark.slow  # compiles nano at 416


@pytest.fixture(scope="module")
def official_nano_run():
    cfg = load_config(ROOT / "configs" / "yolox-nano.yaml")
    model = build_model(cfg)
    load_weights(model, shared_path("weights", "yolox_nano.pth"))
    model.set_train(False)
    data = load_npz("reference", "yolox-nano-official_416_b2_data.npz")
    probe = Probe(model)
    x = data["input/images"]
    floors = [probe(Tensor(one_ulp_perturbed(x, seed)))[3].asnumpy() for seed in (0, 1)]
    return data, [o.asnumpy() for o in probe(Tensor(x))], floors


def test_official_nano_416_features(official_nano_run):
    data, outs, _ = official_nano_run
    for i in range(3):
        ref = data[f"eval/fpn{i}"]
        assert outs[i].shape == ref.shape
        assert np.abs(outs[i] - ref).max() <= FEATURE_RTOL * np.abs(ref).max()


def test_official_nano_416_decoded(official_nano_run):
    data, outs, floors = official_nano_run
    ref = data["eval/decoded"]
    assert outs[3].shape == ref.shape == (2, 3549, 85)
    box_gap = np.abs(outs[3][..., :4] - ref[..., :4])
    assert np.percentile(box_gap, 99) <= BOX_TOL
    assert_within(outs[3][..., :4], ref[..., :4], [f[..., :4] for f in floors], BOX_TOL, "boxes")
    assert np.abs(outs[3][..., 4:] - ref[..., 4:]).max() <= SCORE_TOL


def test_official_nano_416_finds_the_dog(official_nano_run):
    """Slot 0 is dog.jpg: the best-scoring anchors are dog (16), bicycle (1) and car (2)."""
    _, outs, _ = official_nano_run
    det = outs[3][0]
    scores = det[:, 4:5] * det[:, 5:]
    best = {int(c): float(scores[:, c].max()) for c in (1, 2, 16)}
    assert min(best.values()) > 0.5, best
