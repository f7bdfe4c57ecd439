"""The demo dataset generator (mindyolox/data/demo.py) and its ``demo:<dir>`` hook."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mindyolox.config import load_config
from mindyolox.data import COCODataset, build_dataset
from mindyolox.data.demo import CLASSES, MIN_VISIBLE, DemoSpec, draw_image, ensure_demo, generate, resolve_data_dir
from mindyolox.errors import DataError
from tests.conftest import ROOT

SMALL = DemoSpec(num_train=12, num_val=4, seed=3)


def test_draw_image_is_deterministic_and_seed_dependent():
    a, oa = draw_image(5, "train", 7)
    b, ob = draw_image(5, "train", 7)
    assert np.array_equal(a, b)
    assert [o["bbox"] for o in oa] == [o["bbox"] for o in ob]
    c, _ = draw_image(6, "train", 7)
    d, _ = draw_image(5, "val", 7)
    assert a.shape != c.shape or not np.array_equal(a, c)
    assert a.shape != d.shape or not np.array_equal(a, d)


def test_boxes_frame_the_drawn_shapes():
    """Independent of the masks: the pixels that drawing the shapes changed (image vs. the
    same image's background) lie inside the boxes, and every box edge touches changed pixels."""
    n_boxes, sizes, classes = 0, [], set()
    for i in range(40):
        img, objects = draw_image(0, "train", i)
        bg, _ = draw_image(0, "train", i, background_only=True)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape == bg.shape
        h, w = img.shape[:2]
        assert 160 <= h <= 224 and 160 <= w <= 224
        assert 1 <= len(objects) <= DemoSpec().max_objects
        changed = np.abs(img.astype(int) - bg.astype(int)).max(2) > 25
        inside = np.zeros((h, w), bool)
        for o in objects:
            x, y, bw, bh = o["bbox"]
            assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
            assert bw >= 3 and bh >= 3 and 0 < o["area"] <= bw * bh
            assert o["area"] >= 0.2 * bw * bh  # shapes fill a good part of their box
            # 1 px margin: anti-aliased edges and outlines
            inside[max(0, y - 1):y + bh + 1, max(0, x - 1):x + bw + 1] = True
            own = changed & o["mask"]
            if o["area"] >= 100 and own.sum() > 0.8 * o["area"]:  # a shape in its own colour
                ys, xs = np.nonzero(own)
                assert abs(xs.min() - x) <= 1 and abs(xs.max() + 1 - (x + bw)) <= 1
                assert abs(ys.min() - y) <= 1 and abs(ys.max() + 1 - (y + bh)) <= 1
            n_boxes += 1
            sizes.append(max(bw, bh))
            classes.add(o["class"])
        assert not (changed & ~inside).any(), f"image {i}: drawn pixels outside every box"
    assert classes == set(range(len(CLASSES)))
    assert min(sizes) <= 32 and max(sizes) >= 80  # small and large shapes


def test_occluded_shapes_stay_mostly_visible():
    """Shapes do overlap, and an occluded one keeps at least MIN_VISIBLE of the pixels it
    has when drawn alone (its box is then still most of the way filled)."""
    overlapping, occluded = 0, 0
    for i in range(40):
        _, objects = draw_image(0, "val", i)
        for k, o in enumerate(objects):
            assert MIN_VISIBLE * o["full_area"] <= o["area"] <= o["full_area"]
            occluded += o["area"] < o["full_area"]
            x, y, bw, bh = o["bbox"]
            for p in objects[k + 1:]:
                px, py, pw, ph = p["bbox"]
                if px < x + bw and x < px + pw and py < y + bh and y < py + ph:
                    overlapping += 1
                    assert (o["mask"] & p["mask"]).sum() == 0  # each pixel belongs to one shape
    assert overlapping >= 5 and occluded >= 3  # the dataset does have occluded shapes


def test_ring_has_a_hole_showing_the_background():
    ring = CLASSES.index("ring")
    for i in range(60):
        img, objects = draw_image(0, "train", i)
        for o in objects:
            x, y, bw, bh = o["bbox"]
            if o["class"] == ring and bw >= 30 and not o["mask"][y:y + bh, x:x + bw].all():
                # the box centre is background (hole) unless another shape was drawn there
                assert not o["mask"][y + bh // 2, x + bw // 2]
                assert o["area"] < 0.8 * np.pi * bw * bh / 4  # a disc minus the hole
                return
    pytest.fail("no ring of 30 px or more in 60 images")


def test_generate_writes_a_coco_dataset_identical_across_runs(tmp_path):
    a = generate(tmp_path / "a", SMALL, progress=False)
    b = generate(tmp_path / "b", SMALL, progress=False)
    for rel in ("annotations/instances_train.json", "annotations/instances_val.json", "train/000003.jpg",
                "val/000001.jpg", "demo_manifest.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    ds = COCODataset(os.path.join(a, "annotations/instances_train.json"), os.path.join(a, "train"))
    assert len(ds) == 12 and ds.class_names == CLASSES and ds.class_ids == [1, 2, 3, 4, 5, 6]
    assert not any(ds.stats.values()), ds.stats  # no box dropped or clipped
    data = json.loads((tmp_path / "a/annotations/instances_val.json").read_text())
    assert len(data["images"]) == 4 and all(an["iscrowd"] == 0 for an in data["annotations"])
    # the written JPEG is the drawn image up to compression
    img, objects = draw_image(3, "train", 5, SMALL)
    import cv2
    disk = cv2.imread(os.path.join(b, "train/000005.jpg"))
    assert disk.shape == img.shape and np.abs(disk.astype(int) - img.astype(int)).mean() < 6
    anns = [an for an in json.loads((tmp_path / "b/annotations/instances_train.json").read_text())["annotations"]
            if an["image_id"] == 6]
    assert [an["bbox"] for an in anns] == [o["bbox"] for o in objects]
    assert [an["category_id"] for an in anns] == [o["class"] + 1 for o in objects]


def test_demo_prefix_generates_once_then_reuses(tmp_path, capsys):
    target = tmp_path / "cache" / "demo"
    assert resolve_data_dir("datasets/COCO") == "datasets/COCO"
    generate(target, SMALL, progress=False)
    mtime = os.path.getmtime(target / "demo_manifest.json")
    assert resolve_data_dir(f"demo:{target}") == str(target)
    assert os.path.getmtime(target / "demo_manifest.json") == mtime
    cfg = load_config(str(ROOT / "configs/demo/yolox-nano-demo.yaml"), [f"data.data_dir=demo:{target}"])
    ds = build_dataset(cfg.data, "val")
    assert len(ds) == 4 and ds.num_classes == cfg.model.num_classes == 6
    assert list(cfg.data.classes) == list(CLASSES)


@pytest.mark.slow
def test_demo_prefix_generates_default_dataset_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    out = resolve_data_dir("demo:~/d", progress=False)
    assert out == str(tmp_path / "d")
    manifest = json.loads((tmp_path / "d/demo_manifest.json").read_text())
    assert manifest["images"] == {"train": DemoSpec().num_train, "val": DemoSpec().num_val}
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".demo-")]  # no temp folder left


def test_demo_prefix_bad_input_gives_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="name a folder"):
        resolve_data_dir("demo:")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="is not a demo dataset"):
        resolve_data_dir(f"demo:{tmp_path / 'other'}")
    generate(tmp_path / "old", SMALL, progress=False)
    m = json.loads((tmp_path / "old/demo_manifest.json").read_text())
    (tmp_path / "old/demo_manifest.json").write_text(json.dumps({**m, "version": 0}))
    with pytest.raises(DataError, match="generator version 0"):
        ensure_demo(tmp_path / "old")
    (tmp_path / "old/demo_manifest.json").write_text(json.dumps({**m, "sizes": [256, 320]}))
    with pytest.raises(DataError, match=r"other settings \(sizes\)"):
        ensure_demo(tmp_path / "old")
    (tmp_path / "old/demo_manifest.json").write_text(json.dumps(m))
    assert ensure_demo(tmp_path / "old") == str(tmp_path / "old")  # another seed / size is fine
    with pytest.raises(DataError, match="not empty"):
        generate(tmp_path / "other", SMALL, progress=False)
    with pytest.raises(DataError, match="at least one"):
        DemoSpec(num_train=0)


@pytest.mark.slow
def test_cli_writes_the_dataset_and_reports_progress(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mindyolox.commands.demo", "--out", str(tmp_path / "cli"),
                           "--train", "3", "--val", "2", "--seed", "3"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "demo dataset: train 3/3 images" in proc.stderr and "written to" in proc.stderr
    assert len(os.listdir(tmp_path / "cli/train")) == 3
    # the same seed draws the same images as the library call
    gen = generate(tmp_path / "lib", DemoSpec(3, 2, seed=3), progress=False)
    assert (tmp_path / "cli/val/000001.jpg").read_bytes() == (tmp_path / "lib/val/000001.jpg").read_bytes()
    bad = subprocess.run([sys.executable, "-m", "mindyolox.commands.demo", "--out", str(tmp_path / "cli")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert len(bad.stderr.strip().splitlines()) == 1
    assert gen
