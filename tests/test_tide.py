"""TIDE error breakdown (mindyolox/evaluation/tide.py): hand-built cases with exactly one error
type, the AP equal to pycocotools' COCOeval, the error types against a second plain-Python
implementation written from the paper (``reference_types``), crowd regions, bad input, the CSV /
PNG outputs.

Boxes are COCO [x, y, w, h] px. A gt box G = [0, 0, 100, 100]; [0, 0, 60, 100] overlaps it at IoU
0.6, [0, 0, 30, 100] at IoU 0.3. Fast: numpy only, no graph compiles.
"""
import contextlib
import csv
import io
import json

import cv2
import numpy as np
import pytest

from mindyolox.errors import DataError, MindYOLOXError
from mindyolox.evaluation.tide import ERROR_TYPES, tide_breakdown, tide_summary, write_tide

from .conftest import shared_path

G = [0, 0, 100, 100]
FAR = [300, 300, 100, 100]
FAR2 = [600, 600, 100, 100]
IOU06, IOU03 = [0, 0, 60, 100], [0, 0, 30, 100]
A, B = 1, 2


def scene(gts, dets):
    """One image 1000x1000, categories A and B; gts (cat, box[, iscrowd]); dets (cat, box, score)."""
    anns = [{"id": k + 1, "image_id": 1, "category_id": g[0], "bbox": list(g[1]), "area": g[1][2] * g[1][3],
             "iscrowd": g[2] if len(g) > 2 else 0} for k, g in enumerate(gts)]
    gt = {"images": [{"id": 1, "width": 1000, "height": 1000, "file_name": "1.jpg"}], "annotations": anns,
          "categories": [{"id": A, "name": "a"}, {"id": B, "name": "b"}]}
    return gt, [{"image_id": 1, "category_id": c, "bbox": list(b), "score": s} for c, b, s in dets]


def coco_ap(gt, dets):
    """pycocotools COCOeval bbox: (AP50:95, AP50)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = json.loads(json.dumps(gt))
        c.createIndex()
        e = COCOeval(c, c.loadRes(json.loads(json.dumps(dets))), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats[0], e.stats[1]


# one case per error type: (gts, dets, AP50 before the fix); after fixing that type AP50 is 1
SINGLE = {
    # a wrong class at IoU 0.6 (B's own gt found later: B's AP 0.5, A's 0)
    "cls": ([(A, G), (B, FAR)], [(B, IOU06, 0.9), (B, FAR, 0.5)], (0 + 0.5) / 2),
    # the right class at IoU 0.3 (A: no true positive)
    "loc": ([(A, G), (B, FAR)], [(A, IOU03, 0.9), (B, FAR, 0.5)], (0 + 1) / 2),
    # a wrong class at IoU 0.3, ahead of B's true positive
    "both": ([(A, G), (B, FAR)], [(A, G, 0.5), (B, IOU03, 0.9), (B, FAR, 0.5)], (1 + 0.5) / 2),
    # the same box twice, ahead of A's second true positive: P = 1, 1/2, 2/3 at R = .5, .5, 1
    "dupe": ([(A, G), (A, FAR)], [(A, G, 0.9), (A, G, 0.8), (A, FAR, 0.5)], (51 + 50 * 2 / 3) / 101),
    # a box on nothing, ahead of the true positive
    "bkg": ([(A, G)], [(A, [800, 800, 50, 50], 0.9), (A, G, 0.5)], 0.5),
    # one of two gts never detected: recall 0.5
    "miss": ([(A, G), (A, FAR)], [(A, G, 0.9)], 51 / 101),
}


@pytest.mark.parametrize("etype", ERROR_TYPES)
def test_single_error_moves_only_its_type(etype):
    gts, dets, ap50 = SINGLE[etype]
    gt, dt = scene(gts, dets)
    r = tide_breakdown(gt, dt)
    assert r["counts"] == {e: int(e == etype) for e in ERROR_TYPES}
    assert r["ap_pos"] == pytest.approx(ap50, abs=1e-12)
    assert r["ap_pos"] == pytest.approx(coco_ap(gt, dt)[1], abs=1e-12)
    # fixing that type gives AP50 1; every other fix changes nothing
    for e in ERROR_TYPES:
        assert r["dAP_pos"][e] == pytest.approx(1 - ap50 if e == etype else 0.0, abs=1e-12), e
    if etype != "cls":   # IoU 1 or <= 0.3: the same error at every threshold 0.50..0.95
        assert r["ap"] == pytest.approx(ap50, abs=1e-12)
        assert r["dAP"] == pytest.approx({e: (1 - ap50) * (e == etype) for e in ERROR_TYPES}, abs=1e-12)


def test_cls_over_thresholds():
    """IoU 0.6, wrong class: cls at t_f 0.50..0.60; above, IoU < t_f makes it 'both' and A's gt
    missed. A wrong class on the exact box is cls at every threshold."""
    gt, dt = scene(*SINGLE["cls"][:2])
    r = tide_breakdown(gt, dt)
    per = {round(p["iou"], 2): p for p in r["per_thr"]}
    assert [per[t]["counts"]["cls"] for t in (0.5, 0.55, 0.6, 0.65, 0.95)] == [1, 1, 1, 0, 0]
    assert per[0.65]["counts"] == {"cls": 0, "loc": 0, "both": 1, "dupe": 0, "bkg": 0, "miss": 1}
    assert r["dAP"]["cls"] == pytest.approx(3 / 10 * 0.75)
    assert r["ap"] == pytest.approx(coco_ap(gt, dt)[0], abs=1e-12)
    gt, dt = scene([(A, G), (B, FAR)], [(B, G, 0.9), (B, FAR, 0.5)])
    r = tide_breakdown(gt, dt)
    assert r["dAP"] == pytest.approx({e: 0.75 * (e == "cls") for e in ERROR_TYPES}, abs=1e-12)


def test_fix_picks_highest_scoring_error_per_gt():
    """Two loc errors on one gt: the fix makes the higher-scoring one the true positive and
    suppresses the other (it would be a duplicate): AP 1, not 1/2."""
    gt, dt = scene([(A, G)], [(A, IOU03, 0.9), (A, [0, 0, 100, 30], 0.8)])
    r = tide_breakdown(gt, dt)
    assert r["counts"]["loc"] == 2 and r["counts"]["miss"] == 0
    assert r["ap_pos"] == 0 and r["dAP_pos"]["loc"] == pytest.approx(1.0)


def test_crowd_region_ignores_detection():
    """A detection on a crowd region (iscrowd 1) is neither a false positive nor an error; the
    crowd box is never missed (pycocotools and TIDE)."""
    gt, dt = scene([(A, G), (A, FAR, 1)], [(A, G, 0.5), (A, [320, 320, 50, 50], 0.9)])
    r = tide_breakdown(gt, dt)
    assert r["counts"] == {e: 0 for e in ERROR_TYPES} and r["num_gt"] == 1
    assert r["ap"] == pytest.approx(1.0) and r["ap"] == pytest.approx(coco_ap(gt, dt)[0], abs=1e-12)
    # the same box without the crowd flag is a gt, and the detection a loc error on it
    gt, dt = scene([(A, G), (A, FAR)], [(A, G, 0.5), (A, [320, 320, 50, 50], 0.9)])
    assert tide_breakdown(gt, dt)["counts"]["loc"] == 1


# ------------------------------------------------------------------------------ real ground truth
@pytest.fixture(scope="module")
def coco128():
    """coco128's ground truth (10 crowd boxes) and a deterministic detection list made from it:
    jittered boxes, 20 % with a random class, and random boxes on every image."""
    gt = json.loads(shared_path("data", "coco128", "annotations", "instances_train2017.json").read_text())
    rng = np.random.default_rng(0)
    cats = [c["id"] for c in gt["categories"]]
    dets = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        for _ in range(rng.integers(0, 4)):
            box = [x + rng.normal(0, 0.15) * w, y + rng.normal(0, 0.15) * h, w * rng.uniform(0.7, 1.3),
                   h * rng.uniform(0.7, 1.3)]
            cat = a["category_id"] if rng.random() < 0.8 else int(rng.choice(cats))
            dets.append({"image_id": a["image_id"], "category_id": cat, "bbox": box, "score": float(rng.random())})
    for im in gt["images"]:
        for _ in range(rng.integers(0, 6)):
            w, h = rng.uniform(10, 200, 2)
            box = [float(rng.uniform(0, im["width"] - w)), float(rng.uniform(0, im["height"] - h)), float(w), float(h)]
            dets.append({"image_id": im["id"], "category_id": int(rng.choice(cats)), "bbox": box,
                         "score": float(rng.random())})
    return gt, dets


def test_ap_equals_pycocotools(coco128):
    gt, dets = coco128
    r = tide_breakdown(gt, dets)
    ap, ap50 = coco_ap(gt, dets)
    assert r["ap"] == pytest.approx(ap, abs=1e-12) and r["ap_pos"] == pytest.approx(ap50, abs=1e-12)
    assert 0.05 < ap < ap50 < 0.5
    # a pycocotools COCO index works as the ground truth too
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        index = COCO()
        index.dataset = gt
        index.createIndex()
    assert tide_breakdown(index, dets)["dAP"] == r["dAP"]
    assert all(v >= -1e-12 for v in r["dAP"].values()) and all(r["counts"][e] > 100 for e in ERROR_TYPES)


# ------------------------------------------------------------------------------ errors, outputs
@pytest.mark.parametrize("mutate, match", [
    (lambda gt, dt: dt[0].update(image_id=7), r"TIDE detection 0: image_id 7 is not in"),
    (lambda gt, dt: dt[0].update(category_id=9), r"TIDE detection 0: category_id 9"),
    (lambda gt, dt: dt[0].update(bbox=[1, 2, 3]), r"TIDE detection 0: 'bbox' must be 4 finite"),
    (lambda gt, dt: dt[0].pop("score"), r"TIDE detection 0: 'score' must be a number"),
    (lambda gt, dt: gt["annotations"][0].update(bbox=None), r"annotation 0 \(id 1\): 'bbox'"),
    (lambda gt, dt: gt.pop("categories"), r"lists 'images', 'annotations' and 'categories'"),
])
def test_bad_input_names_the_record(mutate, match):
    gt, dt = scene(*SINGLE["bkg"][:2])
    mutate(gt, dt)
    with pytest.raises(DataError, match=match):
        tide_breakdown(gt, dt)


def test_bad_thresholds():
    gt, dt = scene(*SINGLE["bkg"][:2])
    with pytest.raises(MindYOLOXError, match="bg_thr 0.5 must be"):
        tide_breakdown(gt, dt, bg_thr=0.5)
    with pytest.raises(MindYOLOXError, match="must be in"):
        tide_breakdown(gt, dt, iou_thrs=[0.5, 1.5])


def test_pos_thr_outside_iou_thrs():
    gt, dt = scene(*SINGLE["cls"][:2])
    r = tide_breakdown(gt, dt, pos_thr=0.65, iou_thrs=[0.5])
    assert r["counts"]["cls"] == 0 and r["counts"]["both"] == 1 and r["dAP"]["cls"] == pytest.approx(0.75)


def test_write_tide_csv_png_and_summary(tmp_path, coco128):
    r = tide_breakdown(*coco128)
    paths = write_tide(r, tmp_path / "analysis")
    assert [p.rsplit("/", 1)[1] for p in map(str, paths)] == ["tide.csv", "tide.png"]
    rows = list(csv.reader(open(paths[0])))
    assert rows[0] == ["type", "name", "count", "dAP50:95", "dAP50"]
    assert [row[0] for row in rows[1:]] == list(ERROR_TYPES) + ["AP"]
    for row in rows[1:7]:
        assert int(row[2]) == r["counts"][row[0]]
        assert float(row[3]) == pytest.approx(r["dAP"][row[0]], abs=1e-6)
        assert float(row[4]) == pytest.approx(r["dAP_pos"][row[0]], abs=1e-6)
    assert float(rows[7][3]) == pytest.approx(r["ap"], abs=1e-6)
    img = cv2.imread(paths[1])
    assert img is not None and img.shape[2] == 3 and 200 < img.shape[0] < 400 and (img < 128).any()
    line = tide_summary(r)
    assert "\n" not in line and f"loc {100 * r['dAP']['loc']:.2f}" in line and f"{100 * r['ap']:.2f}" in line


def test_everything_missed_and_no_ground_truth():
    gt, dt = scene([(A, G)], [(B, FAR, 0.9)])      # A never found; B has no gt (left out of the mean)
    r = tide_breakdown(gt, dt)
    assert r["counts"] == {"cls": 0, "loc": 0, "both": 0, "dupe": 0, "bkg": 1, "miss": 1}
    assert r["ap"] == 0 and r["dAP"]["miss"] == 1 and r["dAP"]["bkg"] == 0
    gt, dt = scene([], [(A, G, 0.9)])
    r = tide_breakdown(gt, dt)
    assert np.isnan(r["ap"]) and r["counts"]["bkg"] == 1 and r["num_gt"] == 0


def reference_types(gt, dets, t_f=0.5, t_b=0.1):
    """A second implementation, plain Python from the paper's definitions (not the project's code):
    the type of every false positive and the missed gts at one ``t_f``. Greedy COCO matching per
    image and class in score order; crowd regions ignore a detection at intersection / det area
    >= t_f; precedence loc, cls, dupe, bkg, both. Returns {type: count}."""
    def iou(a, b, crowd=False):
        w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
        h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
        if w <= 0 or h <= 0:
            return 0.0
        union = a[2] * a[3] if crowd else a[2] * a[3] + b[2] * b[3] - w * h
        return w * h / union
    counts = dict.fromkeys(ERROR_TYPES, 0)
    for im in gt["images"]:
        boxes = [a for a in gt["annotations"] if a["image_id"] == im["id"] and not a["iscrowd"]]
        crowds = [a for a in gt["annotations"] if a["image_id"] == im["id"] and a["iscrowd"]]
        mine = [d for d in dets if d["image_id"] == im["id"]]
        mine = sorted(mine, key=lambda d: -d["score"])   # fewer than 100 per image and class here
        used, targeted = set(), set()
        fps = []
        for d in mine:
            best, j = t_f, None
            for k, a in enumerate(boxes):
                if a["category_id"] == d["category_id"] and k not in used and iou(d["bbox"], a["bbox"]) >= best:
                    best, j = iou(d["bbox"], a["bbox"]), k
            if j is not None:
                used.add(j)
            elif not any(c["category_id"] == d["category_id"] and iou(d["bbox"], c["bbox"], True) >= t_f
                         for c in crowds):
                fps.append(d)
        for d in fps:
            ious = [(iou(d["bbox"], a["bbox"]), k, a["category_id"] == d["category_id"]) for k, a in enumerate(boxes)]
            same = [(v, k) for v, k, right in ious if right]
            other = [(v, k) for v, k, right in ious if not right]
            s = max(same, key=lambda v: (v[0], -v[1]), default=(-1, None))
            o = max(other, key=lambda v: (v[0], -v[1]), default=(-1, None))
            if not boxes:
                kind = "bkg"
            elif t_b <= s[0] < t_f:
                kind = "loc"
                targeted.add(s[1])
            elif o[0] >= t_f:
                kind = "cls"
                targeted.add(o[1])
            elif s[0] >= t_f:
                kind = "dupe"
            elif max(s[0], o[0]) < t_b:
                kind = "bkg"
            else:
                kind = "both"
            counts[kind] += 1
        counts["miss"] += sum(1 for k in range(len(boxes)) if k not in used and k not in targeted)
    return counts


@pytest.mark.parametrize("t_f", [0.5, 0.75])
def test_error_types_against_reference(coco128, t_f):
    """Every detection's type (counted) as a plain-Python reading of the paper, crowd boxes kept."""
    gt, dets = coco128
    r = tide_breakdown(gt, dets, pos_thr=t_f)
    assert r["counts"] == reference_types(gt, dets, t_f)
