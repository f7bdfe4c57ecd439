"""COCO evaluation reproduces the official evaluator's AP; VOC metrics; test.py CLI errors.

The official YOLOX-Nano COCO weights at 416, NMS 0.65, batch 8 here (official: batch 1; the
batch does not change eval-mode outputs). One compiled model serves every evaluation.
"""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from mindyolox import build_model, load_config, load_weights
from mindyolox.data import COCODataset, VOCDataset, create_eval_loader
from mindyolox.evaluation import COCOEvaluator, VOCEvaluator, evaluate, voc_ap, voc_map

from .conftest import ROOT, SHARED, shared_path

# official 0.3.0 evaluator, ../shared/README.md (percent)
OFFICIAL_VAL_CONF001 = [0.3052, 0.4777, 0.3228, 0.1117, 0.3239, 0.5244,
                        0.2799, 0.3990, 0.4153, 0.1469, 0.4240, 0.6642]


@pytest.fixture(scope="session")
def nano():
    cfg = load_config(ROOT / "configs" / "yolox-nano.yaml")
    model = build_model(cfg)
    load_weights(model, shared_path("weights", "yolox_nano.pth"))
    model.set_train(False)
    return model


@pytest.fixture(scope="session")
def coco_tiny_val():
    root = shared_path("data", "coco_tiny")
    return COCODataset(root / "annotations" / "instances_val2017.json", root / "val2017")


@pytest.fixture(scope="session")
def val_results(nano, coco_tiny_val, tmp_path_factory):
    """Both official thresholds, the same evaluator loader (the model compiles once); the conf
    0.001 detections are kept in a file (``r001["det_file"]``, for the TIDE test)."""
    loader = create_eval_loader({"test_size": [416, 416], "num_workers": 0}, 8, dataset=coco_tiny_val)
    ev = COCOEvaluator(loader, conf=0.01, nms=0.65)
    r01 = ev.evaluate(nano, progress=False)
    ev.conf = 0.001
    det_file = tmp_path_factory.mktemp("val") / "detections.json"
    r001 = ev.evaluate(nano, progress=False, det_file=str(det_file))
    return r01, dict(r001, det_file=det_file)


@pytest.mark.slow
def test_coco_tiny_val_conf_0_01_matches_official(val_results):
    r, _ = val_results
    assert abs(100 * r["AP50_95"] - 30.52) <= 0.1 and abs(100 * r["AP50"] - 47.77) <= 0.1
    np.testing.assert_allclose(r["stats"], OFFICIAL_VAL_CONF001, atol=1e-3)
    assert r["stats"][0] == r["AP50_95"] and len(r["stats"]) == 12
    # per-class AP averages to the overall AP (classes with ground truth only)
    per_class = np.array([v for v in r["per_class_AP"].values() if not np.isnan(v)])
    assert len(r["per_class_AP"]) == 80
    assert abs(per_class.mean() - r["AP50_95"]) < 1e-6
    assert r["num_images"] == 80 and r["timing"]["images"] == 80
    assert r["timing"]["forward_ms"] > 0 and r["timing"]["images_per_s"] > 0


@pytest.mark.slow
def test_fused_eval_path_gives_the_same_ap(val_results, coco_tiny_val):
    """The fused eval path of test.py / predict.py (BatchNorm folded once in numpy, and on CPU
    bias + SiLU -- with the depthwise convolution -- as one compiled kernel) against the
    unfolded model of ``val_results``: the same twelve COCO numbers on coco_tiny (conf 0.01)."""
    from mindyolox.models.fold import count_batchnorms, fold_batchnorms
    cfg = load_config(ROOT / "configs" / "yolox-nano.yaml")
    model = build_model(cfg)
    load_weights(model, shared_path("weights", "yolox_nano.pth"))
    fold_batchnorms(model)
    blocks = [c for _, c in model.cells_and_names() if hasattr(c, "folded")]
    assert count_batchnorms(model) == 0 and all(b.folded for b in blocks)
    assert sum(b.dw_epilogue is not None for b in blocks) > 0 and all(b.epilogue is not None for b in blocks)
    assert sum(b.dnnl is not None for b in blocks) > 0            # dense layers: oneDNN's convolution
    loader = create_eval_loader({"test_size": [416, 416], "num_workers": 0}, 8, dataset=coco_tiny_val)
    fused = COCOEvaluator(loader, conf=0.01, nms=0.65).evaluate(model, progress=False)
    np.testing.assert_array_equal(fused["stats"], val_results[0]["stats"])


@pytest.mark.slow
def test_refold_puts_the_source_weights_into_a_folded_copy(nano):
    """What evaluation during training runs (``hooks/evaluation.py`` ``eval_network``): a
    folded copy of another (random) initialisation refolded from the official weights computes
    what the unfolded model computes, and a second refold after the source changed follows it."""
    from mindspore import Tensor
    from mindyolox.models.fold import fold_batchnorms, refold_from
    folded = fold_batchnorms(build_model(load_config(ROOT / "configs" / "yolox-nano.yaml")))
    x = Tensor(np.random.default_rng(5).uniform(0, 255, (8, 3, 416, 416)).astype(np.float32))
    want = nano(x).asnumpy()
    before = folded(x).asnumpy()
    got = refold_from(folded, nano)(x).asnumpy()
    assert np.abs(before - want).max() > 1.0                  # the copy's own weights differ
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    gamma = nano.backbone.backbone.stem.conv.bn.gamma
    saved = gamma.asnumpy()
    try:
        gamma.set_data(Tensor(saved * 0.5))
        changed = nano(x).asnumpy()
        np.testing.assert_allclose(refold_from(folded, nano)(x).asnumpy(), changed, rtol=1e-4, atol=1e-3)
        assert np.abs(changed - want).max() > 1e-2
    finally:
        gamma.set_data(Tensor(saved))


@pytest.mark.slow
def test_coco_tiny_val_conf_0_001_matches_official(val_results):
    r01, r = val_results
    assert abs(100 * r["AP50_95"] - 30.73) <= 0.1 and abs(100 * r["AP50"] - 48.23) <= 0.1
    assert r["num_detections"] > r01["num_detections"]


@pytest.mark.slow
def test_tide_on_real_detections(val_results, coco_tiny_val):
    """The TIDE breakdown of the official nano's coco_tiny val detections (conf 0.001): its AP is
    the evaluator's (pycocotools) AP, and at t_f 0.5 every detection's error type is the one the
    plain-Python reference written from the paper gives (tests/test_tide.py), on COCO's 100
    detections per image and class."""
    from mindyolox.evaluation.tide import tide_breakdown

    from .test_tide import reference_types
    _, r = val_results
    dets = json.loads(r["det_file"].read_text())
    t = tide_breakdown(coco_tiny_val.coco, dets)
    assert abs(t["ap"] - r["stats"][0]) < 1e-12 and abs(t["ap_pos"] - r["stats"][1]) < 1e-12
    top = {}   # COCO's (and tide_breakdown's) 100 detections per image and class, best first
    for d in sorted(dets, key=lambda d: -d["score"]):
        top.setdefault((d["image_id"], d["category_id"]), []).append(d)
    counts = reference_types(coco_tiny_val.coco.dataset, [d for v in top.values() for d in v[:100]])
    assert {e: t["counts"][e] for e in counts} == counts and min(counts.values()) > 100


@pytest.mark.slow
def test_coco16_matches_official(nano):
    root = shared_path("data", "coco16")
    ds = COCODataset(root / "annotations" / "instances_train2017.json", root / "train2017")
    r = evaluate(nano, ds, img_size=(416, 416), batch_size=8, conf=0.01, nms=0.65, progress=False)
    assert abs(100 * r["AP50_95"] - 21.76) <= 0.1 and abs(100 * r["AP50"] - 37.13) <= 0.1


@pytest.mark.slow
def test_detections_json_is_coco_results(nano, tmp_path):
    root = shared_path("data", "coco16")
    ds = COCODataset(root / "annotations" / "instances_train2017.json", root / "train2017")
    det = tmp_path / "det.json"
    r = evaluate(nano, ds, img_size=(416, 416), batch_size=8, conf=0.25, nms=0.65, progress=False,
                 det_file=str(det))
    dets = json.loads(det.read_text())
    assert len(dets) == r["num_detections"] > 0
    cats = {c["id"] for c in ds.coco.dataset["categories"]}
    imgs = {im["id"]: im for im in ds.coco.dataset["images"]}
    for d in dets:
        assert d["category_id"] in cats and d["image_id"] in imgs and d["score"] >= 0.25
        x, y, w, h = d["bbox"]
        assert w > 0 and h > 0
        im = imgs[d["image_id"]]   # boxes are in original pixels: well inside a margin of the image
        assert -0.25 * im["width"] < x < im["width"] and -0.25 * im["height"] < y < im["height"]


@pytest.mark.slow
def test_analysis_on_coco128_equals_an_independent_implementation(nano):
    """Issue 37 acceptance: official nano on coco128 (416, batch 8: this file's compiled graph,
    no new compile; conf 0.01): the confusion matrix and per-class TP / FP / P / R of
    mindyolox.evaluation.analysis equal the plain-numpy reference of tests/test_analysis.py
    fed the same detections, at two operating points; the PR curves' AP50 per class equals
    pycocotools' (the same COCO matching at IoU 0.5, 101 recall points) for all but a class or two."""
    from mindyolox.evaluation.analysis import analyse
    from .test_analysis import reference_analysis
    root = shared_path("data", "coco128")
    ds = COCODataset(root / "annotations" / "instances_train2017.json", root / "train2017")
    r = evaluate(nano, ds, img_size=(416, 416), batch_size=8, conf=0.01, nms=0.65, progress=False)
    dets = r["detections"]
    assert len(dets) == r["num_detections"] > 1000
    for conf, iou in ((0.25, 0.45), (0.1, 0.6)):
        a = analyse(ds.coco, dets, conf, iou, r["per_class_AP"], r["per_class_AP50"])
        m, tp, fp, inst = reference_analysis(ds.coco.dataset, dets, conf, iou)
        np.testing.assert_array_equal(a["matrix"], m)
        pc = a["per_class"]
        np.testing.assert_array_equal(pc["tp"], tp)
        np.testing.assert_array_equal(pc["fp"], fp)
        np.testing.assert_array_equal(pc["instances"], inst)
        has = inst > 0
        np.testing.assert_allclose(pc["P"], np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0))
        np.testing.assert_allclose(pc["R"][has], tp[has] / inst[has])
        # a real matrix: most boxes found, some confused between classes, some on background
        n = len(ds.class_names)
        assert np.trace(m[:n, :n]) > 400 and m[:n, :n].sum() > np.trace(m[:n, :n]) and m[:n, n].sum() > 0
    assert inst.sum() == 929 and a["matrix"][:, :80].sum() == 929   # every non-crowd box counted once
    ours = a["pr"]["ap50"][has]
    coco = np.array([r["per_class_AP50"][nm] for nm in np.array(ds.class_names)[has]])
    # pycocotools keeps 100 detections per image and breaks score ties in image-id order:
    # a class or two may differ a little, the rest to rounding
    diff = np.abs(ours - coco)
    assert (diff < 1e-9).sum() >= len(diff) - 2 and diff.max() < 0.01 and abs(ours.mean() - r["AP50"]) < 1e-3


# ------------------------------------------------------------------------------ VOC
def test_voc_ap_both_metrics():
    rec = np.array([0.5, 0.5, 1.0])
    prec = np.array([1.0, 0.5, 2 / 3])
    # area: 0.5 * 1.0 + 0.5 * 2/3
    assert voc_ap(rec, prec) == pytest.approx(0.5 + 1 / 3)
    # 11-point: t=0..0.5 -> 1.0 (6 points), t=0.6..1.0 -> 2/3 (5 points)
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_voc_map_difficult_duplicates_and_missing_classes():
    gt = {"a": (np.array([[0, 0, 9, 9], [20, 20, 29, 29]], float), np.array([0, 0]), np.array([False, True])),
          "b": (np.array([[0, 0, 9, 9]], float), np.array([1]), np.array([False]))}
    dets = [("a", 0, 0.9, [0, 0, 9, 9]),      # TP
            ("a", 0, 0.8, [0, 0, 9, 9]),      # duplicate -> FP
            ("a", 0, 0.7, [20, 20, 29, 29]),  # matches a difficult box -> ignored
            ("b", 1, 0.6, [50, 50, 59, 59])]  # miss -> FP, class 1 recall 0
    out = voc_map(dets, gt, num_classes=3, iou_thrs=(0.5,))
    aps = out["per_class"][0]
    assert aps[0] == pytest.approx(1.0) and aps[1] == 0.0 and np.isnan(aps[2])
    assert out["per_iou"][0.5] == pytest.approx(0.5)      # class 2 (no ground truth) left out
    assert out["npos"] == [1, 1, 0]


class _Oracle:
    """Stands in for a model: returns, for each image in loader order, its ground truth as
    decoded [1, A, 5+C] rows in input pixels (scaled by ``shift`` px)."""

    def __init__(self, ds, size, shift=0.0):
        self.ds, self.size, self.shift, self.k, self.training = ds, size, shift, 0, False

    def set_train(self, mode):
        self.training = mode

    def __call__(self, x):
        import mindspore as ms
        i = self.k
        self.k += 1
        h, w = self.ds.orig_size(i)
        r = min(self.size / h, self.size / w)
        boxes, classes = self.ds.boxes[i] * r, self.ds.classes[i]
        out = np.zeros((1, 10, 5 + self.ds.num_classes), np.float32)
        for j, (b, c) in enumerate(zip(boxes, classes)):
            out[0, j, :4] = [(b[0] + b[2]) / 2 + self.shift, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]]
            out[0, j, 4] = 1.0
            out[0, j, 5 + c] = 0.9
        return ms.Tensor(out)


def test_voc_evaluator_maps_boxes_back():
    ds = VOCDataset(shared_path("data", "voc2"), "trainval")
    perfect = VOCEvaluator(ds, img_size=(416, 416), batch_size=1).evaluate(_Oracle(ds, 416), progress=False)
    assert perfect["AP50"] == pytest.approx(1.0) and perfect["AP50_voc07"] == pytest.approx(1.0)
    assert perfect["AP50_95"] > 0.95
    shifted = VOCEvaluator(ds, img_size=(416, 416), batch_size=1).evaluate(_Oracle(ds, 416, 40.0),
                                                                            progress=False)
    assert shifted["AP50_95"] < perfect["AP50_95"] - 0.1


def test_raw_output_model_is_refused():
    ds = VOCDataset(shared_path("data", "voc2"), "trainval")
    oracle = _Oracle(ds, 416)
    oracle.head = type("Head", (), {"decode_in_inference": False})()
    with pytest.raises(ValueError, match="decode_in_inference"):
        VOCEvaluator(ds, img_size=(416, 416), batch_size=1).evaluate(oracle, progress=False)


# ------------------------------------------------------------------------------ CLI
def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "test.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_coco16_json_out(tmp_path):
    out = tmp_path / "m.json"
    root = SHARED / "data" / "coco16"
    p = _run("--config", "configs/yolox-nano.yaml", "--weights", SHARED / "weights" / "yolox_nano.pth",
             "--img-size", 416, "--conf", 0.01, "--nms", 0.65, "--ann", root / "annotations" / "instances_train2017.json",
             "--images", root / "train2017", "--json-out", out, "--save-dir", tmp_path, "--workers", 0)
    assert p.returncode == 0, p.stderr
    m = json.loads(out.read_text())
    assert abs(100 * m["AP50_95"] - 21.76) <= 0.1 and abs(100 * m["AP50"] - 37.13) <= 0.1
    assert len(m["stats"]) == 12 and "forward_ms" in m["timing"]
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in p.stdout and "| class" in p.stdout
    assert "ms/img" in p.stdout and "images/s" in p.stdout
    assert (tmp_path / "detections.json").is_file()
    # issue 37: the analysis folder next to the detections, the table and the deploy line in the log
    for name in ("per_class.csv", "confusion_matrix.csv", "confusion_matrix_normalized.csv", "curves.csv",
                 "confusion_matrix.png", "pr_curve.png", "f1_curve.png", "p_curve.png", "r_curve.png",
                 "tide.csv", "tide.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(list((tmp_path / "worst_images").glob("0[1-6]_*.jpg"))) == 6
    assert "detections" not in m and "per_class_AP50" in m
    rows = {r["class"]: r for r in csv.DictReader(open(tmp_path / "per_class.csv"))}
    assert len(rows) == 80 and float(rows["person"]["AP50_95"]) == pytest.approx(m["per_class_AP"]["person"], abs=1e-4)
    assert "class" in p.stdout and "instances" in p.stdout and "deploy at --conf" in p.stdout
    assert "files written to" in p.stdout and "TIDE errors, AP points gained if fixed" in p.stdout
    tide = {r["type"]: r for r in csv.DictReader(open(tmp_path / "tide.csv"))}   # the same AP as COCOeval
    assert float(tide["AP"]["dAP50:95"]) == pytest.approx(m["AP50_95"], abs=1e-6)


@pytest.mark.parametrize("case", ["missing_weights", "other_model", "missing_ann"])
def test_cli_errors_are_one_line(case, tmp_path):
    root = SHARED / "data" / "coco16"
    ann, imgs = root / "annotations" / "instances_train2017.json", root / "train2017"
    config, weights = "configs/yolox-nano.yaml", SHARED / "weights" / "yolox_nano.pth"
    if case == "missing_weights":
        weights, expect = tmp_path / "nope.ckpt", "not found"
    elif case == "other_model":
        config, expect = "configs/yolox-s.yaml", "does not fit the model"
    else:
        ann, expect = tmp_path / "none.json", "not found"
    p = _run("--config", config, "--weights", weights, "--ann", ann, "--images", imgs)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], p.stderr
