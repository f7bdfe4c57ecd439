"""Issue 37 item 1: the evaluation analysis folder (mindyolox/evaluation/analysis.py).

Hand-built cases give exact confusion-matrix cells and P/R; :func:`reference_analysis` is a
second, plain-numpy implementation written here from the published definitions (YOLOv5 /
ultralytics confusion matrix, COCO-style greedy matching by score), without project code, that
``test_evaluate.py`` feeds the same nano detections on coco128 as the project's code (that file
owns the compiled nano model). The training hook and test.py's option handling are checked
without a compile (a stand-in trainer; ``main`` stops before the model is built).
"""
import csv
import json
import types

import numpy as np
import pytest

from mindyolox.errors import ConfigError, MindYOLOXError

from .conftest import ROOT, shared_path

# ------------------------------------------------------------------ independent reference


def _iou(a, b):
    """IoU of two xyxy boxes (plain Python)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _over_det(d, c):
    """Intersection over the detection's area (COCO's IoU for a crowd region)."""
    iw = max(0.0, min(d[2], c[2]) - max(d[0], c[0]))
    ih = max(0.0, min(d[3], c[3]) - max(d[1], c[1]))
    area = (d[2] - d[0]) * (d[3] - d[1])
    return iw * ih / area if area > 0 else 0.0


def reference_analysis(coco, dets, conf=0.25, iou=0.45):
    """``(matrix [N+1, N+1], tp [N], fp [N], instances [N])`` from the definitions alone:
    matrix rows predicted, columns true, last background; pairs of IoU >= iou sorted by IoU
    (then true, then detection index), each box used once; crowd boxes are no true boxes and
    an unmatched detection covering one (over its own area >= iou) is ignored. TP at 0.5:
    per image and class, by descending score, the free true box of highest IoU."""
    cats = sorted(c["id"] for c in coco["categories"])
    k_of = {c: k for k, c in enumerate(cats)}
    n = len(cats)
    m = np.zeros((n + 1, n + 1), int)
    tp, fp, inst = np.zeros(n, int), np.zeros(n, int), np.zeros(n, int)
    box = (lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])
    per_img = {im["id"]: ([], []) for im in coco["images"]}
    for a in coco["annotations"]:
        per_img[a["image_id"]][0].append((box(a["bbox"]), k_of[a["category_id"]], bool(a.get("iscrowd", 0))))
    for d in dets:
        per_img[d["image_id"]][1].append((box(d["bbox"]), k_of[d["category_id"]], d["score"]))
    for img, (gts, ds) in per_img.items():
        ds = sorted(ds, key=lambda d: -d[2])          # stable: file order among equal scores
        true = [g for g in gts if not g[2]]
        crowd = [g for g in gts if g[2]]
        for g in true:
            inst[g[1]] += 1
        # confusion matrix
        kept = [d for d in ds if d[2] >= conf]
        pairs = [(_iou(t[0], d[0]), ti, di) for ti, t in enumerate(true) for di, d in enumerate(kept)]
        pairs = sorted([p for p in pairs if p[0] >= iou], key=lambda p: (-p[0], p[1], p[2]))
        t_used, d_used = set(), set()
        for _, ti, di in pairs:
            if ti not in t_used and di not in d_used:
                t_used.add(ti)
                d_used.add(di)
                m[kept[di][1], true[ti][1]] += 1
        for di, d in enumerate(kept):
            if di not in d_used and not any(_over_det(d[0], c[0]) >= iou for c in crowd):
                m[d[1], n] += 1
        for ti, t in enumerate(true):
            if ti not in t_used:
                m[n, t[1]] += 1
        # TP / FP at IoU 0.5, by class
        for c in range(n):
            taken = set()
            for d in [d for d in ds if d[1] == c]:
                best, best_iou = None, 0.5
                for ti, t in enumerate(true):
                    if t[1] == c and ti not in taken and _iou(d[0], t[0]) >= best_iou:
                        best, best_iou = ti, _iou(d[0], t[0])
                if best is not None:
                    taken.add(best)
                    if d[2] >= conf:
                        tp[c] += 1
                elif not any(g[1] == c and _over_det(d[0], g[0]) >= 0.5 for g in crowd) and d[2] >= conf:
                    fp[c] += 1
    return m, tp, fp, inst


# ------------------------------------------------------------------ hand-built cases
CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 5, "name": "bird"}]
A, B, C, BG = 0, 1, 2, 3


def _gt(boxes):
    """COCO dict: ``boxes`` {image id: [(category id, x, y, w, h, iscrowd)]}."""
    anns = [{"id": i + 1, "image_id": img, "category_id": c, "bbox": [x, y, w, h], "iscrowd": k,
             "area": w * h} for i, (img, (c, x, y, w, h, k)) in
            enumerate((img, b) for img, bs in boxes.items() for b in bs)]
    return {"images": [{"id": i, "file_name": f"{i:03d}.jpg", "width": 200, "height": 200} for i in boxes],
            "annotations": anns, "categories": CATS}


def _det(img, cat, x, y, w, h, score):
    return {"image_id": img, "category_id": cat, "bbox": [x, y, w, h], "score": score}


def test_hand_built_cases_give_exact_cells_and_pr():
    """A duplicate, a wrong class, a background box, a missed box, a detection under the
    operating confidence, and the highest-IoU-first matching."""
    from mindyolox.evaluation.analysis import analyse
    gt = _gt({1: [(1, 10, 10, 50, 50, 0)],             # cat, found twice (a duplicate)
              2: [(2, 10, 10, 50, 50, 0)],             # dog, called cat (wrong class)
              3: [],                                   # a bird where there is nothing (background)
              4: [(2, 100, 100, 40, 40, 0)],           # dog, missed
              5: [(1, 0, 0, 100, 100, 0)]})            # cat: a low-IoU dog and a high-IoU cat
    dets = [_det(1, 1, 10, 10, 50, 50, 0.9), _det(1, 1, 12, 12, 50, 50, 0.8),
            _det(2, 1, 11, 11, 50, 50, 0.7),
            _det(3, 5, 120, 120, 30, 30, 0.6),
            _det(4, 2, 100, 100, 40, 40, 0.1),            # under conf 0.25: does not count
            _det(5, 2, 0, 0, 100, 60, 0.95),             # IoU 0.6, higher score
            _det(5, 1, 0, 0, 100, 95, 0.5)]              # IoU 0.95: matched first
    a = analyse(gt, dets, conf=0.25, iou=0.45)
    m = a["matrix"]
    want = np.zeros((4, 4), int)
    want[A, A] = 2          # image 1's first cat + image 5's cat
    want[A, BG] = 1         # image 1's duplicate
    want[A, B] = 1          # image 2: dog predicted as cat
    want[C, BG] = 1         # image 3: bird on background
    want[BG, B] = 1         # image 4: the missed dog (its detection is under conf)
    want[B, BG] = 1         # image 5: the dog lost to the higher-IoU cat
    np.testing.assert_array_equal(m, want)
    pc = a["per_class"]
    np.testing.assert_array_equal(pc["instances"], [2, 2, 0])
    np.testing.assert_array_equal(pc["images"], [2, 2, 0])
    np.testing.assert_array_equal(pc["tp"], [2, 0, 0])
    np.testing.assert_array_equal(pc["fp"], [2, 1, 1])   # cat: duplicate + wrong class
    np.testing.assert_allclose(pc["P"][:2], [0.5, 0.0])
    np.testing.assert_allclose(pc["R"][:2], [1.0, 0.0])
    np.testing.assert_allclose(pc["F1"][0], 2 * 0.5 * 1.0 / 1.5)
    assert np.isnan(pc["R"][2]) and pc["P"][2] == 0.0
    # the same numbers from the independent reference
    ref_m, ref_tp, ref_fp, ref_inst = reference_analysis(gt, dets)
    np.testing.assert_array_equal(m, ref_m)
    np.testing.assert_array_equal(pc["tp"], ref_tp)
    np.testing.assert_array_equal(pc["fp"], ref_fp)
    # worst images at conf 0.25: image 1 (1 FP), 2 (1 FP + 1 missed), 3 (1 FP), 4 (1 missed), 5 (1 FP)
    assert a["worst"][0] == (2, 1, 1)
    assert [w[0] for w in a["worst"][1:]] == [1, 3, 4, 5]
    # lowering the operating confidence to 0.1 finds image 4's dog
    low = analyse(gt, dets, conf=0.1)
    assert low["matrix"][B, B] == 1 and low["matrix"][BG, B] == 0


def test_crowd_regions_are_no_true_boxes_and_excuse_detections_on_them():
    from mindyolox.evaluation.analysis import analyse
    gt = _gt({1: [(1, 0, 0, 100, 100, 1), (1, 150, 150, 40, 40, 0)]})
    dets = [_det(1, 1, 10, 10, 30, 30, 0.9),       # inside the cat crowd: ignored (not FP, not background)
            _det(1, 2, 20, 20, 30, 30, 0.8),       # dog in the cat crowd: ignored by the matrix, FP for dog
            _det(1, 1, 150, 150, 40, 40, 0.7)]     # the ordinary cat
    a = analyse(gt, dets)
    want = np.zeros((4, 4), int)
    want[A, A] = 1
    np.testing.assert_array_equal(a["matrix"], want)
    np.testing.assert_array_equal(a["per_class"]["instances"], [1, 0, 0])
    np.testing.assert_array_equal(a["per_class"]["tp"], [1, 0, 0])
    np.testing.assert_array_equal(a["per_class"]["fp"], [0, 1, 0])   # P/R: crowd of the same class only
    ref_m, ref_tp, ref_fp, _ = reference_analysis(gt, dets)
    np.testing.assert_array_equal(a["matrix"], ref_m)
    np.testing.assert_array_equal(a["per_class"]["fp"], ref_fp)


def test_curves_pick_the_confidence_of_the_best_mean_f1():
    """One class, two true boxes: a TP at 0.9, an FP at 0.8, a TP at 0.3. F1 is 2/3 above
    0.8... (P 1, R 0.5), 0.5 at 0.8 (P 0.5), 0.8 from 0.3 down (P 2/3, R 1): best at 0.30."""
    from mindyolox.evaluation.analysis import analyse
    gt = _gt({1: [(1, 0, 0, 50, 50, 0), (1, 100, 100, 50, 50, 0)]})
    dets = [_det(1, 1, 0, 0, 50, 50, 0.9), _det(1, 1, 60, 0, 30, 30, 0.8), _det(1, 1, 100, 100, 50, 50, 0.3)]
    c = analyse(gt, dets)["curves"]
    assert c["best_conf"] == pytest.approx(0.3) and c["best_f1"] == pytest.approx(0.8)
    i = int(round(0.85 * 1000))
    assert c["mean_P"][i] == pytest.approx(1.0) and c["mean_R"][i] == pytest.approx(0.5)
    pr = analyse(gt, dets)["pr"]
    # envelope: precision 1 up to recall 0.5, 2/3 up to 1
    assert pr["precision"][50, 0] == pytest.approx(1.0) and pr["precision"][100, 0] == pytest.approx(2 / 3)


def test_write_analysis_files_table_and_other_reports(tmp_path):
    """Every file, the per-class CSV, the log lines, and the "other reports" hook point."""
    from mindyolox.evaluation.analysis import analyse, analysis_files, format_analysis_table, write_analysis
    gt = _gt({1: [(1, 10, 10, 50, 50, 0)], 2: [(2, 10, 10, 50, 50, 0)]})
    dets = [_det(1, 1, 10, 10, 50, 50, 0.9), _det(2, 1, 10, 10, 50, 50, 0.7)]
    a = analyse(gt, dets, per_class_ap={"cat": 0.5}, per_class_ap50={"cat": 0.75})
    import cv2
    imgs = {}
    for i in (1, 2):
        imgs[i] = tmp_path / f"{i:03d}.jpg"
        cv2.imwrite(str(imgs[i]), np.full((200, 200, 3), 90, np.uint8))
    seen, lines = [], []

    def other(gt_dict, d, out, log):
        seen.append((len(gt_dict["annotations"]), len(d)))
        p = out / "other.csv" if hasattr(out, "joinpath") else f"{out}/other.csv"
        open(p, "w").write("x\n")
        return [str(p)]
    out = tmp_path / "out"
    written = write_analysis(a, str(out), imgs, reports=[other], log=lines.append, dets=dets)
    assert seen == [(2, 2)]
    for p in analysis_files(out):
        assert p in written and (out / p.split("/")[-1]).stat().st_size > 0
    assert sorted(p.name for p in (out / "worst_images").iterdir()) == ["01_002.jpg"]   # dog called cat
    rows = list(csv.DictReader(open(out / "per_class.csv")))
    assert [r["class"] for r in rows] == ["cat", "dog", "bird"]
    assert rows[0]["P"] == "0.5000" and rows[0]["R"] == "1.0000" and rows[0]["AP50"] == "0.7500"
    assert rows[0]["AP50_95"] == "0.5000" and rows[2]["R"] == "" and rows[1]["instances"] == "1"
    cm = list(csv.reader(open(out / "confusion_matrix.csv")))
    assert cm[0] == ["predicted \\ true", "cat", "dog", "bird", "background"]
    assert cm[1] == ["cat", "1", "1", "0", "0"]
    assert any(x.startswith("best F1 ") and "deploy at --conf" in x for x in lines)
    table = format_analysis_table(a)
    assert "instances" in table.splitlines()[0] and "bird" not in table   # no boxes, no detections: left out


def test_voc_data_is_skipped_with_one_line(tmp_path):
    from mindyolox.evaluation.analysis import run_analysis
    lines = []
    assert run_analysis(types.SimpleNamespace(name="voc", coco=None), [], tmp_path / "a", log=lines.append) == []
    assert len(lines) == 1 and "COCO and YOLO-format data only" in lines[0] and not (tmp_path / "a").exists()


def test_bad_operating_point_is_one_line():
    from mindyolox.evaluation.analysis import analyse
    with pytest.raises(ConfigError, match="analysis confidence must be in"):
        analyse(_gt({1: []}), [], conf=1.5)


# ------------------------------------------------------------------ training: best.ckpt's analysis
def _stand_in_trainer(run_dir, rank=0, status="finished"):
    from mindyolox.config import load_config
    from mindyolox.data import COCODataset
    root = shared_path("data", "coco16")
    ds = COCODataset(root / "annotations" / "instances_train2017.json", root / "train2017")
    lines = []
    tr = types.SimpleNamespace(run_dir=run_dir, rank=rank, status=status, epoch=2, log=lines.append,
                               evaluator=types.SimpleNamespace(dataset=ds), lines=lines,
                               cfg=load_config(ROOT / "configs" / "yolox-nano.yaml"))
    return tr, ds


def test_the_run_folder_gets_the_analysis_of_best_ckpt_from_its_detections(tmp_path):
    """EvalHook keeps the best evaluation's detections (best_detections.json); AnalysisHook
    writes analysis/ from them at the end -- again after a resume (per-class AP recomputed from
    the file); nothing on rank 1, nothing without the file."""
    from mindyolox.training.hooks import AnalysisHook
    from mindyolox.training.hooks.evaluation import BEST_DETECTIONS, keep_best_detections
    run = tmp_path / "run"
    run.mkdir()
    tr, ds = _stand_in_trainer(run)
    AnalysisHook().after_train(tr)
    assert "analysis: skipped" in tr.lines[0] and not (run / "analysis").exists()
    coco = ds.coco.dataset
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in coco["annotations"] if not a.get("iscrowd", 0)]
    keep_best_detections(tr, {"detections": dets, "per_class_AP": {n: 0.123 for n in ds.class_names},
                              "per_class_AP50": {n: 0.456 for n in ds.class_names}})
    assert json.loads((run / BEST_DETECTIONS).read_text()) == dets
    AnalysisHook().after_train(tr)
    rows = {r["class"]: r for r in csv.DictReader(open(run / "analysis" / "per_class.csv"))}
    assert rows["person"]["P"] == rows["person"]["R"] == "1.0000" and rows["person"]["AP50"] == "0.4560"
    assert (run / "analysis" / "confusion_matrix.png").is_file() and not (run / "analysis" / "worst_images").exists()
    assert any("best F1 1.00" in x for x in tr.lines)
    # resumed: no per-class AP in memory -> COCOeval of the kept file (perfect boxes: AP50 1)
    (run / "analysis" / "per_class.csv").unlink()
    tr2, _ = _stand_in_trainer(run)
    AnalysisHook().after_train(tr2)
    rows = {r["class"]: r for r in csv.DictReader(open(run / "analysis" / "per_class.csv"))}
    assert rows["person"]["AP50"] == "1.0000"
    tr3, _ = _stand_in_trainer(tmp_path / "r1", rank=1)
    keep_best_detections(tr3, {"detections": dets})
    AnalysisHook().after_train(tr3)
    assert not (tmp_path / "r1").exists() and tr3.lines == []


# ------------------------------------------------------------------ test.py options
def test_test_py_analysis_options_and_output_checks(tmp_path):
    from mindyolox.commands.evaluate import main
    root = shared_path("data", "coco16")
    base = ["--config", "configs/yolox-nano.yaml", "--weights", str(shared_path("weights", "yolox_nano.pth")),
            "--ann", str(root / "annotations" / "instances_train2017.json"), "--images", str(root / "train2017"),
            "--no-progress", "--workers", "0", "--save-dir", str(tmp_path / "o")]
    with pytest.raises(ConfigError, match="--analysis-conf must be in"):
        main(base + ["--analysis-conf", "2"])
    with pytest.raises(ConfigError, match=r"--analysis-iou must be in \(0, 1\]"):
        main(base + ["--analysis-iou", "0"])
    # the metrics JSON may not take an analysis file's place (checked before anything is written)
    with pytest.raises(MindYOLOXError, match=r"--json-out: the outputs of the analysis and of the metrics \(--json-out\) would "
                                             r"both be written to .*per_class.csv"):
        main(base + ["--json-out", str(tmp_path / "o" / "per_class.csv")])
    with pytest.raises(MindYOLOXError, match=r"would both be written to .*tide.csv"):   # the TIDE report's too
        main(base + ["--json-out", str(tmp_path / "o" / "tide.csv")])
    assert not (tmp_path / "o").exists()
