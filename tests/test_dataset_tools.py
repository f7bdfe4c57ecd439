"""Issue 36 parts 2-4: dataset converters (COCO / VOC / YOLO), the stratified split tool and the
dataset report (mindyolox/data/convert.py, writers.py, split.py, report.py and the
``mindyolox-tools convert | split | dataset-report`` verbs). All fast: no graph compiles."""
import json
import math
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pytest

from mindyolox.commands.tools import convert_data, dataset_report, split_data
from mindyolox.data.convert import convert, read_coco, read_voc, read_yolo_source, summary_line
from mindyolox.data.report import dataset_as_split, dataset_stats, draw_report, duplicate_groups
from mindyolox.data.split import split_sizes, stratified_split
from mindyolox.errors import DataError
from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]
COCO128_JSON = shared_path("data", "coco128", "annotations", "instances_train2017.json")
COCO16 = shared_path("data", "coco16")
VOC2 = shared_path("data", "voc2")


def _boxes_by_file(coco_json):
    """{file_name: [(class name, [x, y, w, h]), ...]} of the non-crowd boxes, and {file_name: (w, h)}."""
    d = json.loads(Path(coco_json).read_text())
    names = {c["id"]: c["name"] for c in d["categories"]}
    ims = {im["id"]: im for im in d["images"]}
    out = defaultdict(list)
    for a in d["annotations"]:
        if not a.get("iscrowd", 0):
            out[ims[a["image_id"]]["file_name"]].append((names[a["category_id"]], a["bbox"]))
    return out, {im["file_name"]: (im["width"], im["height"]) for im in d["images"]}, d


def _cli(module, argv, capsys):
    """Run a tool's ``run()`` in-process; returns (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["mindyolox-tools", *map(str, argv)]
    try:
        with pytest.raises(SystemExit) as e:
            module.run()
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


# --------------------------------------------------------------------------- converters (part 2)
def test_coco_to_yolo_to_coco_round_trip_box_by_box(tmp_path):
    """Acceptance: coco128 COCO -> YOLO -> COCO equals the original box by box (up to the txt's
    6 decimals: within 0.75e-6 of the image side), classes by name, crowd and masks counted."""
    r1 = convert("coco", COCO128_JSON, "yolo", tmp_path / "yolo")
    r2 = convert("yolo", tmp_path / "yolo" / "data.yaml", "coco", tmp_path / "back")
    a, size_a, da = _boxes_by_file(COCO128_JSON)
    b, size_b, db = _boxes_by_file(tmp_path / "back" / "annotations" / "instances_train.json")
    assert size_a == size_b and len(size_a) == 128
    assert sorted(a) == sorted(b)
    worst = 0.0
    for fn, boxes in a.items():
        assert [n for n, _ in boxes] == [n for n, _ in b[fn]], fn           # classes by name, in order
        w, h = size_a[fn]
        err = np.abs(np.array([x for _, x in boxes]) - np.array([x for _, x in b[fn]])) / [w, h, w, h]
        worst = max(worst, float(err.max()))
    assert 0 < worst <= 0.75e-6 + 1e-9, worst
    assert [c["name"] for c in sorted(da["categories"], key=lambda c: c["id"])] == \
           [c["name"] for c in sorted(db["categories"], key=lambda c: c["id"])]      # all 80, in class order
    crowd = sum(x.get("iscrowd", 0) for x in da["annotations"])
    masks = sum(1 for x in da["annotations"] if x.get("segmentation"))
    assert r1["lost"] == {"crowd boxes": crowd, "segmentation masks": masks} and crowd == 10
    assert f"not carried over: {crowd} crowd boxes, {masks} segmentation masks" in summary_line(r1)
    assert r2["lost"] == {} and "not carried over: nothing" in summary_line(r2)
    img = tmp_path / "yolo" / "images" / "train2017" / "000000000009.jpg"
    assert img.is_symlink() and img.resolve() == (Path(COCO128_JSON).parents[1] / "train2017" / img.name).resolve()
    label = (tmp_path / "yolo" / "labels" / "train2017" / "000000000009.txt").read_text().splitlines()
    assert len(label) == len(a["000000000009.jpg"]) and all(len(x.split()[1].split(".")[1]) == 6 for x in label)


def _voc_with_flags(tmp_path):
    """The VOC sample (../shared/data/voc2) with its first object marked difficult and truncated."""
    src = tmp_path / "voc"
    shutil.copytree(VOC2, src)
    xml = src / "Annotations" / "2011_003353.xml"
    tree = ET.parse(xml)
    obj = tree.getroot().find("object")
    obj.find("difficult").text = "1"
    (obj.find("truncated") if obj.find("truncated") is not None else ET.SubElement(obj, "truncated")).text = "1"
    tree.write(xml)
    return src


def _voc_objects(root):
    out = {}
    for xml in sorted((Path(root) / "Annotations").glob("*.xml")):
        t = ET.parse(xml).getroot()
        out[xml.stem] = [(o.find("name").text, [float(o.find("bndbox").find(k).text) for k in
                                                  ("xmin", "ymin", "xmax", "ymax")],
                          int(o.findtext("difficult", "0")), int(o.findtext("truncated", "0")))
                         for o in t.iter("object")]
    return out


def test_voc_to_coco_to_voc_keeps_boxes_and_difficult(tmp_path):
    src = _voc_with_flags(tmp_path)
    r1 = convert("voc", src, "coco", tmp_path / "coco")
    d = json.loads((tmp_path / "coco" / "annotations" / "instances_trainval.json").read_text())
    assert sum(a.get("difficult", 0) for a in d["annotations"]) == 1
    # the project's VOC reading rule: xmin - 1 (the COCO JSON trains on the same pixels as data.format=voc)
    first = next(a for a in d["annotations"] if a.get("difficult"))
    orig = _voc_objects(src)["2011_003353"][0][1]
    assert first["bbox"] == [orig[0] - 1, orig[1] - 1, orig[2] - orig[0], orig[3] - orig[1]]
    r2 = convert("coco", tmp_path / "coco" / "annotations" / "instances_trainval.json", "voc", tmp_path / "back")
    assert _voc_objects(tmp_path / "back") == _voc_objects(src)            # boxes, classes, difficult, truncated
    assert (tmp_path / "back" / "ImageSets" / "Main" / "trainval.txt").read_text().split() == \
           (src / "ImageSets" / "Main" / "trainval.txt").read_text().split()
    assert r1["lost"] == {} and r2["lost"] == {}
    r3 = convert("voc", src, "yolo", tmp_path / "yolo")                  # YOLO cannot carry the flags
    truncated = sum(o[3] for objs in _voc_objects(src).values() for o in objs)
    assert truncated == 2 and r3["lost"] == {"difficult flags": 1, "truncated flags": truncated}
    assert "not carried over: 1 difficult flags, 2 truncated flags" in summary_line(r3)


def test_coco_to_voc_counts_what_voc_cannot_carry(tmp_path):
    r = convert("coco", COCO128_JSON, "voc", tmp_path / "voc", images="copy")
    d = json.loads(Path(COCO128_JSON).read_text())
    used = {a["category_id"] for a in d["annotations"] if not a.get("iscrowd", 0)}
    assert r["lost"]["crowd boxes"] == 10 and r["lost"]["classes without boxes"] == 80 - len(used)
    jpg = tmp_path / "voc" / "JPEGImages" / "000000000009.jpg"
    assert jpg.is_file() and not jpg.is_symlink()                          # --images copy
    splits, _ = read_voc(tmp_path / "voc")
    assert len(splits[0].coco["annotations"]) == r["boxes"] == 929


def test_hardlink_mode(tmp_path):
    convert("voc", VOC2, "coco", tmp_path / "c", images="hardlink")
    a, b = tmp_path / "c" / "trainval" / "2007_000063.jpg", Path(VOC2) / "JPEGImages" / "2007_000063.jpg"
    assert not a.is_symlink() and os.stat(a).st_ino == os.stat(b).st_ino


def test_convert_cli_and_refusals(tmp_path, capsys):
    dst = tmp_path / "out"
    code, out, _ = _cli(convert_data, ["--from", "voc", "--to", "yolo", VOC2, dst], capsys)
    assert code == 0 and out.startswith("converted voc -> yolo: 2 images, 3 boxes, 3 classes") and len(out.splitlines()) == 1
    code, _, err = _cli(convert_data, ["--from", "voc", "--to", "yolo", VOC2, dst], capsys)      # not empty
    assert code == 2 and err.startswith("error: destination") and "--exist-ok" in err and len(err.splitlines()) == 1
    code, _, _ = _cli(convert_data, ["--from", "voc", "--to", "yolo", VOC2, dst, "--exist-ok"], capsys)
    assert code == 0
    # never into the source: DST inside SRC (a copy of it, so nothing is written into ../shared by a bug)
    src = tmp_path / "voc"
    shutil.copytree(VOC2, src)
    before = sorted(str(p) for p in src.rglob("*"))
    for target in (src, src / "converted"):
        code, _, err = _cli(convert_data, ["--from", "voc", "--to", "coco", src, target], capsys)
        assert code == 2 and "overlaps the source folder" in err and len(err.splitlines()) == 1
    assert sorted(str(p) for p in src.rglob("*")) == before
    # a COCO JSON outside COCO's layout needs its image folder
    code, _, err = _cli(convert_data, ["--from", "coco", "--to", "yolo", dst.parent / "nothing.json", tmp_path / "x"],
                        capsys)
    assert code == 2 and "nothing.json not found" in err


def test_bad_sources_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    d = json.loads((Path(COCO16) / "annotations" / "instances_train2017.json").read_text())
    d["annotations"][3]["bbox"] = [1, 2, 3]
    bad.write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"bad.json: annotations\[3\] .*expected 4 finite numbers"):
        read_coco(bad, Path(COCO16) / "train2017")
    voc = _voc_with_flags(tmp_path)
    (voc / "Annotations" / "2007_000063.xml").write_text("<annotation><size>")
    with pytest.raises(DataError, match=r"2007_000063.xml is not valid XML"):
        read_voc(voc)
    with pytest.raises(DataError, match=r"not in the class list"):
        read_voc(VOC2, classes=["dog"])


def test_front_door_module(tmp_path):
    """``python -m mindyolox.commands.tools convert`` (the installed ``mindyolox-tools convert``)."""
    p = subprocess.run([sys.executable, "-m", "mindyolox.commands.tools", "convert", "--from", "voc", "--to", "coco",
                        str(VOC2), str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "converted voc -> coco: 2 images, 3 boxes" in p.stdout
    assert (tmp_path / "o" / "annotations" / "instances_trainval.json").is_file()


# --------------------------------------------------------------------------- split (part 3)
def test_split_sizes_within_one_image():
    for n in (0, 1, 7, 10, 128, 1001):
        for ratios in ([0.8, 0.2], [0.7, 0.2, 0.1], [0.5, 0.5], [0.9, 0.1, 0.0]):
            sizes = split_sizes(n, ratios)
            assert sum(sizes) == n and all(abs(s - r * n) < 1 for s, r in zip(sizes, ratios)), (n, ratios, sizes)
    assert split_sizes(128, [0.8, 0.2]) == [102, 26]


def _labels(coco):
    pos = {im["id"]: i for i, im in enumerate(coco["images"])}
    out = [set() for _ in coco["images"]]
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0):
            out[pos[a["image_id"]]].add(a["category_id"])
    return out


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    from mindyolox.data.demo import DemoSpec, generate
    return generate(tmp_path_factory.mktemp("demo") / "shapes", DemoSpec(num_train=60, num_val=6, seed=1),
                    progress=False)


def test_stratified_split_rules(demo_set):
    coco128 = read_coco(COCO128_JSON)[0][0].coco
    cases = [(coco128, [0.8, 0.2]), (coco128, [0.7, 0.2, 0.1]),
             (coco128, [0.5, 0.5]),     # class 74 on 2 images that also hold classes 72 and 73 (2 images each)
             (read_coco(Path(demo_set) / "annotations" / "instances_train.json")[0][0].coco, [0.8, 0.2])]
    for coco, ratios in cases:
        labels, n = _labels(coco), len(coco["images"])
        for seed in (0, 1):
            parts = stratified_split(coco, ratios, seed)
            assert sorted(i for p in parts for i in p) == list(range(n))                    # a partition
            assert all(abs(len(p) - r * n) < 1 for p, r in zip(parts, ratios))              # ratios within one image
            k = math.ceil(1 / min(ratios))
            counts = defaultdict(int)
            for labs in labels:
                for c in labs:
                    counts[c] += 1
            for p in parts:                                  # every class with >= k images in every split
                present = {c for i in p for c in labels[i]}
                assert {c for c, m in counts.items() if m >= k} <= present
            assert stratified_split(coco, ratios, seed) == parts                             # same seed, same split
        assert stratified_split(coco, ratios, 0) != stratified_split(coco, ratios, 1)


def test_stratified_split_puts_a_rare_class_in_both_splits():
    """A class on 5 of 100 images (ratio 0.2 x 5 = 1 image due in val): a plain random 80/20
    split misses val for many seeds; the rule never does, and the common class keeps its ratio."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 10, "height": 10} for i in range(100)]
    anns = [{"id": i + 1, "image_id": i, "category_id": 1, "bbox": [0, 0, 5, 5]} for i in range(100)]
    anns += [{"id": 200 + i, "image_id": i * 7, "category_id": 2, "bbox": [1, 1, 2, 2]} for i in range(5)]
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    rare = {i * 7 for i in range(5)}
    for seed in range(20):
        train, val = stratified_split(coco, [0.8, 0.2], seed)
        assert len(val) == 20 and rare & set(val) and rare & set(train)
        assert len(rare & set(val)) == 1


def test_split_cli_every_format(tmp_path, capsys):
    code, out, _ = _cli(split_data, [COCO128_JSON, tmp_path / "y", "--format", "coco", "--to", "yolo",
                                     "--ratios", "0.8", "0.2", "--seed", "3"], capsys)
    assert code == 0 and "split: train 102 images (79.7 %), val 26 images (20.3 %) of 128, seed 3" in out
    parts, _ = read_yolo_source(tmp_path / "y")
    assert [(s.name, len(s.coco["images"])) for s in parts] == [("train", 102), ("val", 26)]
    code, _, _ = _cli(split_data, [tmp_path / "y", tmp_path / "v", "--format", "yolo", "--to", "voc",
                                   "--ratios", "0.5", "0.25", "0.25"], capsys)
    assert code == 0
    assert sorted(os.listdir(tmp_path / "v" / "ImageSets" / "Main")) == ["test.txt", "train.txt", "val.txt"]
    assert sum(len((tmp_path / "v" / "ImageSets" / "Main" / f).read_text().split()) for f in
               ("train.txt", "val.txt", "test.txt")) == 128
    code, _, _ = _cli(split_data, [tmp_path / "v", tmp_path / "c", "--format", "voc", "--to", "coco", "--seed", "3"], capsys)
    assert code == 0 and sorted(os.listdir(tmp_path / "c" / "annotations")) == ["instances_train.json",
                                                                                 "instances_val.json"]
    code, _, err = _cli(split_data, [tmp_path / "v", tmp_path / "d", "--format", "voc", "--ratios", "0.8", "0.3"],
                        capsys)
    assert code == 2 and err.startswith("error: --ratios: expected 2 or 3 non-negative numbers adding up to 1")


# --------------------------------------------------------------------------- report (part 4)
def test_report_on_coco128(tmp_path, capsys):
    code, out, _ = _cli(dataset_report, [COCO128_JSON, "-o", tmp_path / "r"], capsys)
    assert code == 0
    s = json.loads((tmp_path / "r" / "dataset_report.json").read_text())
    a, sizes, d = _boxes_by_file(COCO128_JSON)
    boxes = [(fn, b) for fn, bs in a.items() for _, b in bs]
    areas = np.array([b[2] * b[3] for _, b in boxes])
    assert (s["images"], s["boxes"], s["crowd_boxes"], s["classes"]) == (128, len(boxes), 10, 80)
    assert s["images_without_boxes"] == 128 - len(a) == 2
    assert s["box_sizes"] == {"small": int((areas < 32 ** 2).sum()),
                              "medium": int(((areas >= 32 ** 2) & (areas < 96 ** 2)).sum()),
                              "large": int((areas >= 96 ** 2).sum())}
    person = next(c for c in s["class_histogram"] if c["name"] == "person")
    assert person["boxes"] == sum(1 for bs in a.values() for n, _ in bs if n == "person")
    assert s["duplicate_images"] == 0 and s["labels_outside_image"] == 0 and s["boxes_per_image"]["max"] == 42
    assert len(s["wh_scatter"]) == len(boxes)
    assert "images 128, boxes 929 (+10 crowd), classes 80" in out
    import cv2
    png = cv2.imread(str(tmp_path / "r" / "dataset_report.png"))
    assert png.shape == (900, 1400, 3) and png.std() > 20


def test_report_finds_duplicates_outside_labels_and_empty_images(demo_set, tmp_path, capsys):
    """The demo set (YOLO copy) with one image duplicated under a new name and one label line
    pushed past the border: named in the report."""
    convert("coco", Path(demo_set) / "annotations" / "instances_train.json", "coco", tmp_path / "c", images="copy")
    ann = tmp_path / "c" / "annotations" / "instances_train.json"
    d = json.loads(ann.read_text())
    im0 = d["images"][0]
    shutil.copy(tmp_path / "c" / "train" / im0["file_name"], tmp_path / "c" / "train" / "copy.jpg")
    d["images"].append(dict(im0, id=10 ** 6, file_name="copy.jpg"))
    d["annotations"][0]["bbox"][0] = -5.0
    ann.write_text(json.dumps(d))
    code, out, _ = _cli(dataset_report, [ann, "-o", tmp_path / "r"], capsys)
    assert code == 0
    s = json.loads((tmp_path / "r" / "dataset_report.json").read_text())
    assert s["images"] == 61 and s["duplicate_images"] == 1 and s["duplicate_groups"] == 1
    assert [os.path.basename(p) for p in s["duplicate_examples"][0]] == [im0["file_name"], "copy.jpg"]
    assert s["labels_outside_image"] == 1 and "box [-5" in s["labels_outside_image_examples"][0]
    assert s["images_without_boxes"] == 1 and s["images_without_boxes_examples"] == ["copy.jpg"]
    assert "duplicate images: 1 (in 1 group(s) of identical files)" in out
    assert [len(g) for g in duplicate_groups([str(p) for p in sorted((tmp_path / "c" / "train").iterdir())])] == [2]


def test_training_start_writes_the_report_into_the_run_folder(tmp_path):
    """SummaryHook.before_train: ``dataset_report.json`` / ``.png`` of the train set the trainer
    built (its cleaned boxes), rank 0 only, one log line."""
    from mindyolox.data.coco import COCODataset
    from mindyolox.training.hooks import SummaryHook
    ds = COCODataset(Path(COCO16) / "annotations" / "instances_train2017.json", Path(COCO16) / "train2017")
    logs = []
    for rank, run in ((1, tmp_path / "r1"), (0, tmp_path / "r0")):
        run.mkdir()
        SummaryHook().before_train(NS(rank=rank, loader=NS(dataset=ds), run_dir=run, log=logs.append))
    assert os.listdir(tmp_path / "r1") == []
    s = json.loads((tmp_path / "r0" / "dataset_report.json").read_text())
    assert s["images"] == len(ds) and s["boxes"] == sum(len(b) for b in ds.boxes)
    assert (tmp_path / "r0" / "dataset_report.png").stat().st_size > 10_000
    assert len(logs) == 1 and logs[0].startswith(f"dataset report: {tmp_path / 'r0' / 'dataset_report.png'}")
    back = dataset_as_split(ds)
    assert dataset_stats(back, hash_images=False)["boxes"] == s["boxes"] and draw_report(s).shape == (900, 1400, 3)
