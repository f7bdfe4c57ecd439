"""COCO / VOC datasets on ../shared data, and every kind of bad input."""
import json
import logging
import shutil

import cv2
import numpy as np
import pytest

from mindyolox.data import COCODataset, VOCDataset, build_dataset
from mindyolox.data.loader import EvalSource
from mindyolox.data.mosaic import MosaicMixup
from mindyolox.errors import DataError

from .conftest import shared_path

AUG = dict(mosaic_prob=1.0, mixup_prob=1.0, hsv_prob=1.0, flip_prob=0.5, degrees=10.0, translate=0.1,
           mosaic_scale=[0.5, 1.5], enable_mixup=True, mixup_scale=[0.5, 1.5], shear=2.0)


def test_coco16_items_and_category_mapping():
    root = shared_path("data", "coco16")
    ds = COCODataset(root / "annotations" / "instances_train2017.json", root / "train2017")
    raw = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    assert len(ds) == 16 and ds.ids == [im["id"] for im in raw["images"]]
    assert ds.class_ids == sorted(c["id"] for c in raw["categories"]) and ds.num_classes == 80
    assert ds.stats["crowd_boxes_ignored"] == 1
    item = ds[0]
    assert item["image"].dtype == np.uint8 and item["image"].shape == item["orig_size"] + (3,)
    anns = [a for a in raw["annotations"] if a["image_id"] == item["image_id"] and not a["iscrowd"]]
    assert len(item["boxes"]) == len(anns)
    x, y, w, h = anns[0]["bbox"]
    np.testing.assert_allclose(item["boxes"][0], [x, y, x + w, y + h], rtol=1e-6)
    assert ds.class_ids[item["classes"][0]] == anns[0]["category_id"]
    assert ds.coco.getImgIds() == ds.ids  # pycocotools index for COCOeval


def test_coco_tiny_val_and_build_dataset():
    cfg = {"format": "coco", "data_dir": str(shared_path("data", "coco_tiny")),
           "val_ann": "annotations/instances_val2017.json", "val_images": "val2017"}
    ds = build_dataset(cfg, "val")
    assert len(ds) == 80
    assert set(np.concatenate(ds.classes).tolist()) == set(range(80))  # every category present
    for (h, w), b in zip(ds.sizes, ds.boxes):
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()


def test_voc2():
    ds = VOCDataset(shared_path("data", "voc2"), "trainval", [])
    assert ds.ids == ["2007_000063", "2011_003353"]
    np.testing.assert_array_equal(ds.boxes[0], [[122, 114, 378, 274], [74, 0, 427, 374]])  # 1-based -> -1
    assert [ds.class_names[c] for c in ds.classes[0]] == ["dog", "chair"]
    assert ds[1]["image"].shape[:2] == ds.orig_size(1)


def test_voc_roots_of_one_devkit_merge_from_a_recipe(tmp_path):
    """README / voc.py: with data_dir = VOCdevkit, ``data.train_split`` as a list of
    ``<year>/<split>`` reads each year's folder and merges them in order."""
    from mindyolox import load_config
    src = shared_path("data", "voc2")
    for year, stem in (("VOC2007", "2007_000063"), ("VOC2012", "2011_003353")):
        root = tmp_path / "VOCdevkit" / year
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "trainval.txt").write_text(stem + "\n")
        for sub in ("Annotations", "JPEGImages"):
            (root / sub).symlink_to(src / sub)
    cfg = load_config("yolox-nano", ["data.format=voc", f"data.data_dir={tmp_path / 'VOCdevkit'}",
                                     "data.train_split=[VOC2007/trainval, VOC2012/trainval]",
                                     "data.val_split=VOC2012/trainval", "model.num_classes=20"])
    assert cfg.data.train_split == ["VOC2007/trainval", "VOC2012/trainval"]
    ds = build_dataset(cfg.data, "train")
    assert ds.ids == ["2007_000063", "2011_003353"]
    assert ds.paths[0].startswith(str(tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages"))
    assert ds.paths[1].startswith(str(tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages"))
    assert build_dataset(cfg.data, "val").ids == ["2011_003353"]   # one entry: that year only
    assert [ds.class_names[c] for c in ds.classes[0]] == ["dog", "chair"]


def test_voc_unknown_class_names_file(tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(shared_path("data", "voc2"), root)
    with pytest.raises(DataError, match=r"2007_000063\.xml.*'dog'"):
        VOCDataset(root, "trainval", ["cat", "chair"])


# ----------------------------------------------------------------------------- bad COCO input
def _coco(tmp_path, images, annotations, categories=({"id": 1, "name": "a"}, {"id": 7, "name": "b"}),
          files=None):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir(exist_ok=True)
    for name in files if files is not None else [im["file_name"] for im in images]:
        cv2.imwrite(str(img_dir / name), np.full((40, 60, 3), 90, np.uint8))
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}))
    return ann, img_dir


def _img(i, name=None):
    return {"id": i, "file_name": name or f"{i}.png", "height": 40, "width": 60}


def _ann(i, image_id, bbox, cat=1, **kw):
    return dict({"id": i, "image_id": image_id, "bbox": bbox, "category_id": cat, "area": 1.0, "iscrowd": 0}, **kw)


def test_not_json_names_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(DataError, match=r"broken\.json is not valid JSON"):
        COCODataset(p, tmp_path)


def test_missing_keys_named(tmp_path):
    p = tmp_path / "nokeys.json"
    p.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match=r"nokeys\.json: missing required key\(s\) \['annotations', 'categories'\]"):
        COCODataset(p, tmp_path)
    ann, d = _coco(tmp_path, [{"id": 1, "file_name": "1.png"}], [])
    with pytest.raises(DataError, match=r"images\[0\] lacks \['height', 'width'\]"):
        COCODataset(ann, d)


def test_unknown_category_ids_named(tmp_path):
    ann, d = _coco(tmp_path, [_img(1)], [_ann(5, 1, [1, 1, 5, 5], cat=999), _ann(6, 1, [1, 1, 5, 5], cat=42)])
    with pytest.raises(DataError, match=r"category ids not in 'categories': 42 .*annotation id 6.*999 .*annotation id 5"):
        COCODataset(ann, d)


def test_bad_boxes_clipped_or_dropped_and_counted(tmp_path):
    anns = [_ann(1, 1, [10, 10, 20, 10]),            # fine
            _ann(2, 1, [10, 10, 0, 5]),              # zero width -> dropped
            _ann(3, 1, [10, 10, -4, 5]),             # negative -> dropped
            _ann(4, 1, [100, 10, 5, 5]),             # outside (width 60) -> dropped
            _ann(5, 1, [-5, 30, 20, 20]),            # partly outside -> clipped to [0,30,15,40]
            _ann(6, 1, [5, 5, 5, 5], cat=7)]         # fine, class 1
    ann, d = _coco(tmp_path, [_img(1), _img(2)], anns)
    ds = COCODataset(ann, d)
    assert ds.stats["boxes_dropped_zero_size"] == 2
    assert ds.stats["boxes_dropped_outside_image"] == 1
    assert ds.stats["boxes_clipped_to_image"] == 1
    np.testing.assert_allclose(ds.boxes[0], [[10, 10, 30, 20], [0, 30, 15, 40], [5, 5, 10, 10]])
    assert ds.classes[0].tolist() == [0, 0, 1]
    # image 2 has no annotations: kept as a negative
    assert len(ds) == 2 and len(ds.boxes[1]) == 0 and ds.stats["images_without_boxes"] == 1
    builder = MosaicMixup(ds, (64, 64), dict(AUG, mosaic_prob=0.0), max_labels=4)
    img, labels = builder.sample(1, (64, 64), np.random.default_rng(0))
    assert img.shape == (3, 64, 64) and not labels.any()


def test_non_numeric_file_names_and_ids(tmp_path):
    images = [_img("cat photo", "my cat (1).jpeg"), _img("x-2", "x-2.png")]
    ann, d = _coco(tmp_path, images, [_ann(1, "cat photo", [5, 5, 20, 20], cat=7)])
    ds = COCODataset(ann, d)
    assert ds.ids == ["cat photo", "x-2"] and ds.classes[0].tolist() == [1]
    builder = MosaicMixup(ds, (64, 64), AUG, max_labels=4)
    _, labels = builder.sample(0, (64, 64), np.random.default_rng(0))
    assert (labels[:, 3] > 0).any()
    assert EvalSource(ds, (64, 64), 2)[0][1] == 0


def test_missing_and_corrupt_images_skipped_counted_logged_once(tmp_path, caplog):
    images = [_img(1), _img(2), _img(3), _img(4)]
    anns = [_ann(k, k, [5, 5, 20, 20]) for k in range(1, 5)]
    ann, d = _coco(tmp_path, images, anns)
    ds = COCODataset(ann, d)  # every image verified fine when indexed; they break afterwards:
    (d / "4.png").unlink()                                                  # 4.png missing
    (d / "3.png").write_bytes(b"\x89PNG this is not an image")             # 3.png corrupt
    builder = MosaicMixup(ds, (64, 64), AUG, max_labels=4)
    with caplog.at_level(logging.WARNING, logger="mindyolox.data"):
        for seed in range(12):  # every sample is produced: the bad images are replaced
            img, labels = builder.sample(seed % 4, (64, 64), np.random.default_rng(seed), mosaic=seed % 2 == 0)
            assert img.shape == (3, 64, 64) and (labels[:, 3] > 0).any()
        src = EvalSource(ds, (64, 64), batch_size=4)
        assert [int(src[k][1]) for k in range(4)] == [0, 1, -1, -1]
    bad = dict(ds.events.bad_images())
    assert set(bad) == {str(d / "3.png"), str(d / "4.png")}
    assert bad[str(d / "4.png")] == "file not found" and bad[str(d / "3.png")] == "cannot be decoded"
    for name in ("3.png", "4.png"):
        assert sum(name in r.getMessage() for r in caplog.records) == 1
    assert ds.events.summary()["bad_images"] == 2


def test_labels_beyond_max_labels_dropped_and_counted(tmp_path):
    anns = [_ann(k, 1, [2 * k, 2, 5, 30]) for k in range(1, 8)]  # 7 boxes
    ann, d = _coco(tmp_path, [_img(1)], anns)
    ds = COCODataset(ann, d)
    builder = MosaicMixup(ds, (64, 64), dict(AUG, mosaic_prob=0.0, flip_prob=0.0), max_labels=5)
    _, labels = builder.sample(0, (64, 64), np.random.default_rng(0))
    assert (labels[:, 3] > 0).sum() == 5
    assert ds.events.dropped_labels() == 2


def test_event_folders_of_killed_processes_are_removed(tmp_path):
    import os
    import subprocess
    import tempfile

    from mindyolox.data.base import EventLog
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = os.path.join(tempfile.gettempdir(), f"{EventLog.PREFIX}{dead.pid}_test")
    os.makedirs(orphan, exist_ok=True)
    live = EventLog()
    assert not os.path.exists(orphan) and os.path.isdir(live.root)
    assert os.path.basename(live.root).startswith(f"{EventLog.PREFIX}{os.getpid()}_")
    EventLog()  # a second one in this (live) process leaves the first alone
    assert os.path.isdir(live.root)
