"""Issue 33, "nothing lost, nothing silently wrong", data side: the disk cache keyed by the
image files' content (3), one EXIF-orientation rule for the size check and every decoder (4),
duplicate image ids / files / annotation ids (5), and the RAM cache's size check before
caching (7). Fast unit tests on images made here (no graph compile)."""
import json
import logging
import os
import struct

import cv2
import numpy as np
import pytest

from mindyolox.data.cache import check_ram_cache, open_disk_cache, ram_cache_bytes
from mindyolox.data.coco import COCODataset
from mindyolox.data.verify import check_image
from mindyolox.data.voc import VOCDataset
from mindyolox.errors import DataError

from .conftest import ROOT, shared_path


# ----------------------------------------------------------------------------- helpers
def exif_segment(orientation, big_endian=False):
    """An APP1 ``Exif`` segment whose IFD0 holds only ``Orientation`` (0x0112, SHORT)."""
    bo = ">" if big_endian else "<"
    tiff = (b"MM" if big_endian else b"II") + struct.pack(bo + "HI", 42, 8)
    tiff += struct.pack(bo + "H", 1) + struct.pack(bo + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(bo + "I", 0)
    body = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def jpeg(img, orientation=None, big_endian=False):
    """JPEG bytes of BGR ``img`` (its stored frame), with an EXIF orientation tag when given."""
    data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    if orientation is None:
        return data
    return data[:2] + exif_segment(orientation, big_endian) + data[2:]


def stripe_image(h=100, w=200, x=150):
    """Black ``[h, w, 3]`` with a white 10-px column stripe from ``x`` (stored frame)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, x:x + 10] = 255
    return img


def coco_set(tmp_path, files, images, anns, name="ann.json"):
    """A COCO set: ``files`` {name: bytes}, ``images`` / ``anns`` JSON lists; returns (ann, dir)."""
    d = tmp_path / "imgs"
    d.mkdir(exist_ok=True)
    for n, data in files.items():
        (d / n).write_bytes(data)
    ann = tmp_path / name
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    return ann, d


def _img(i, name, h, w):
    return {"id": i, "file_name": name, "height": h, "width": w}


def _ann(i, image_id, bbox):
    return {"id": i, "image_id": image_id, "category_id": 1, "bbox": list(bbox), "area": bbox[2] * bbox[3],
            "iscrowd": 0}


def _white_columns(img):
    """Columns of ``img`` that are mostly white (the stripe)."""
    return np.flatnonzero(img.mean(axis=(0, 2)) > 128)


# ----------------------------------------------------------------------------- 4: EXIF orientation
def test_exif_fact_opencv_turns_on_decode():
    """The fact the rule rests on: cv2.imread (IMREAD_COLOR) applies the orientation, and
    IMREAD_IGNORE_ORIENTATION keeps the stored frame."""
    buf = np.frombuffer(jpeg(stripe_image(), 6), np.uint8)
    assert cv2.imdecode(buf, cv2.IMREAD_COLOR).shape == (200, 100, 3)
    assert cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION).shape == (100, 200, 3)


def test_exif_annotated_in_the_stored_frame_keeps_boxes_where_drawn(tmp_path, caplog):
    """Stored 200x100, orientation 6, box on the stripe at x 150..160: every decode path gives
    the stored frame with the stripe inside the box, and one warning names the image (before:
    the image came turned to 100x200 and the box lay on black)."""
    ann, d = coco_set(tmp_path, {"o6.jpg": jpeg(stripe_image(), 6)}, [_img(1, "o6.jpg", 100, 200)],
                      [_ann(1, 1, (150, 10, 10, 80))])
    with caplog.at_level(logging.WARNING, logger="mindyolox.data"):
        ds = COCODataset(ann, d)
    assert len(ds) == 1
    img = ds.load_image(0)
    assert img.shape == (100, 200, 3)
    warn = [r.getMessage() for r in caplog.records if "o6.jpg" in r.getMessage()]
    assert len(warn) == 1 and "stored (not turned) frame" in warn[0]
    x1, _, x2, _ = ds.boxes[0][0]
    cols = _white_columns(img)
    assert x1 <= cols.min() and cols.max() < x2  # the stripe is inside the box
    # the resized image the mosaic / loader use, from a fresh decode and from both caches
    ref, boxes, _ = ds.load_resized(0, (64, 64))
    assert ref.shape == (32, 64, 3)
    cols = _white_columns(ref)
    assert boxes[0, 0] - 1 <= cols.min() and cols.max() <= boxes[0, 2] + 1
    ds.cache_images((64, 64), "ram")
    assert np.array_equal(ds.load_resized(0, (64, 64))[0], ref)
    ds.cache_images((64, 64), "disk", tmp_path / "cache")
    assert np.array_equal(ds.load_resized(0, (64, 64))[0], ref)
    # the evaluation loader reads through the same decoder
    from mindyolox.data.loader import create_eval_loader
    loader = create_eval_loader({"test_size": [64, 64], "num_workers": 0}, 1, dataset=ds)
    im, _, hw, _ = next(loader.ms_dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert tuple(hw[0]) == (100, 200)
    assert np.array_equal(im[0].transpose(1, 2, 0)[:32].astype(np.uint8), ref)  # 114-padded below row 32


def test_exif_annotated_in_the_turned_frame_decodes_as_cv2_imread(tmp_path, caplog):
    data = jpeg(stripe_image(), 6)
    ann, d = coco_set(tmp_path, {"o6.jpg": data}, [_img(1, "o6.jpg", 200, 100)], [_ann(1, 1, (10, 150, 80, 10))])
    with caplog.at_level(logging.WARNING, logger="mindyolox.data"):
        ds = COCODataset(ann, d)
    assert not [r for r in caplog.records if "o6.jpg" in r.getMessage()]
    img = ds.load_image(0)
    assert np.array_equal(img, cv2.imread(str(d / "o6.jpg")))  # official YOLOX's decode
    rows = np.flatnonzero(img.mean(axis=(1, 2)) > 128)
    assert 150 <= rows.min() and rows.max() < 160  # the box (y 150..160) is on the stripe


@pytest.mark.parametrize("orientation,hw", [(3, (100, 200)), (6, (100, 100)), (8, (100, 100))])
def test_exif_ambiguous_size_is_named_and_decoded_as_cv2_imread(tmp_path, caplog, orientation, hw):
    img = stripe_image(*hw, x=20)
    ann, d = coco_set(tmp_path, {"amb.jpg": jpeg(img, orientation, big_endian=True)}, [_img(1, "amb.jpg", *hw)],
                      [_ann(1, 1, (10, 10, 30, 30))])
    with caplog.at_level(logging.WARNING, logger="mindyolox.data"):
        ds = COCODataset(ann, d)
    warn = [r.getMessage() for r in caplog.records if "amb.jpg" in r.getMessage()]
    assert len(warn) == 1 and "ambiguous" in warn[0] and "decoded turned, as cv2.imread" in warn[0]
    assert np.array_equal(ds.load_image(0), cv2.imread(str(d / "amb.jpg")))


def test_exif_size_check_refuses_a_size_in_neither_frame_and_a_turn_without_a_tag(tmp_path):
    (tmp_path / "o6.jpg").write_bytes(jpeg(stripe_image(), 6))
    (tmp_path / "plain.jpg").write_bytes(jpeg(stripe_image()))
    assert check_image(str(tmp_path / "o6.jpg"), (100, 200)) is None
    assert check_image(str(tmp_path / "o6.jpg"), (200, 100)) is None
    assert "EXIF orientation 6" in check_image(str(tmp_path / "o6.jpg"), (120, 200))
    # no tag: OpenCV decodes the stored 200x100 frame, so an annotation saying 100x200 is wrong
    assert check_image(str(tmp_path / "plain.jpg"), (200, 100)) == \
        "image is 200x100 (w x h), the annotation says 100x200"


def test_exif_in_a_png_follows_the_same_rule(tmp_path):
    """OpenCV 4.11 turns PNGs by their ``eXIf`` chunk too."""
    import zlib
    png = cv2.imencode(".png", stripe_image())[1].tobytes()
    tiff = b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) \
        + struct.pack("<I", 0)
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
    data = png[:33] + chunk + png[33:]  # after IHDR (8 + 25 bytes)
    ann, d = coco_set(tmp_path, {"o6.png": data}, [_img(1, "o6.png", 100, 200)], [_ann(1, 1, (150, 10, 10, 80))])
    assert cv2.imread(str(d / "o6.png")).shape == (200, 100, 3)
    ds = COCODataset(ann, d)
    assert ds.load_image(0).shape == (100, 200, 3)


# ----------------------------------------------------------------------------- 5: duplicate ids
def test_duplicate_image_ids_are_refused_naming_them(tmp_path):
    files = {"a.jpg": jpeg(stripe_image()), "b.jpg": jpeg(stripe_image())}
    ann, d = coco_set(tmp_path, files, [_img(7, "a.jpg", 100, 200), _img(7, "b.jpg", 100, 200)],
                      [_ann(1, 7, (10, 10, 20, 20)), _ann(2, 7, (50, 10, 20, 20))])
    with pytest.raises(DataError) as e:
        COCODataset(ann, d)
    msg = str(e.value)
    assert "\n" not in msg and str(ann) in msg and "id 7 at images[0, 1]" in msg


def test_one_file_under_two_ids_is_refused_naming_it(tmp_path):
    files = {"a.jpg": jpeg(stripe_image())}
    ann, d = coco_set(tmp_path, files, [_img(1, "a.jpg", 100, 200), _img(2, "./a.jpg", 100, 200)],
                      [_ann(1, 1, (10, 10, 20, 20)), _ann(2, 2, (50, 10, 20, 20))])
    with pytest.raises(DataError, match=r"listed under more than one id: .*a\.jpg as ids \[1, 2\]"):
        COCODataset(ann, d)


def test_duplicate_annotation_ids_are_renumbered_and_the_evaluator_scores_every_box(tmp_path, caplog):
    """Before: training had 3 boxes, pycocotools' index 2 (one id kept), so the ground truth
    scored as detections gave AP below 100."""
    from mindyolox.evaluation.evaluator import COCOEvaluator
    files = {"a.jpg": jpeg(stripe_image()), "b.jpg": jpeg(stripe_image())}
    anns = [_ann(5, 1, (10, 10, 40, 40)), _ann(5, 1, (100, 20, 50, 60)), _ann(6, 2, (30, 30, 40, 40))]
    ann, d = coco_set(tmp_path, files, [_img(1, "a.jpg", 100, 200), _img(2, "b.jpg", 100, 200)], anns)
    with caplog.at_level(logging.WARNING, logger="mindyolox.data"):
        ds = COCODataset(ann, d)
    assert [len(b) for b in ds.boxes] == [2, 1]
    ev = COCOEvaluator(ds, (64, 64), batch_size=1)
    results = [(i, np.concatenate([ds.boxes[i], np.ones((len(ds.boxes[i]), 2)), ds.classes[i][:, None]], 1))
               for i in range(len(ds))]
    res = ev._metrics(results, {}, None)  # the training ground truth scored as detections
    assert res["AP50_95"] == pytest.approx(1.0)
    assert sorted(ds.coco.anns) == [1, 2, 3] and len(ds.coco.getAnnIds()) == 3
    assert any("annotation ids not unique" in r.getMessage() and "(5)" in r.getMessage() for r in caplog.records)


def _voc(tmp_path, stems_per_split):
    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for stem in {s for ss in stems_per_split.values() for s in ss}:
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.jpg"), stripe_image())
        (root / "Annotations" / f"{stem}.xml").write_text(
            "<annotation><size><width>200</width><height>100</height></size><object><name>dog</name>"
            "<bndbox><xmin>10</xmin><ymin>10</ymin><xmax>50</xmax><ymax>50</ymax></bndbox></object></annotation>")
    for split, stems in stems_per_split.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(s + "\n" for s in stems))
    return root


def test_voc_image_listed_twice_is_refused(tmp_path):
    root = _voc(tmp_path, {"train": ["000001", "000002", "000001"], "val": ["000002"]})
    with pytest.raises(DataError, match=r"train\.txt: image 000001 is already listed in .*train\.txt"):
        VOCDataset(root, "train", classes=["dog"])
    with pytest.raises(DataError, match=r"train\.txt: image 000002 is already listed in .*val\.txt"):
        VOCDataset(root, ["val", "train"], classes=["dog"])
    assert len(VOCDataset(root, "val", classes=["dog"])) == 1


# ----------------------------------------------------------------------------- 3: disk cache by content
def _bmp(value):
    """A 100x200 BMP of one grey ``value``: every such file has the same byte size."""
    return cv2.imencode(".bmp", np.full((100, 200, 3), value, np.uint8))[1].tobytes()


def test_disk_cache_serves_a_replaced_image_of_the_same_size_with_its_new_pixels(tmp_path, caplog):
    ann, d = coco_set(tmp_path, {"a.bmp": _bmp(40), "b.bmp": _bmp(90)},
                      [_img(1, "a.bmp", 100, 200), _img(2, "b.bmp", 100, 200)],
                      [_ann(1, 1, (10, 10, 20, 20)), _ann(2, 2, (10, 10, 20, 20))])
    ds = COCODataset(ann, d)
    folder = tmp_path / "cache"
    first = open_disk_cache(ds, (64, 64), folder, workers=1)
    assert first.built and int(first[0].mean()) == 40
    assert not open_disk_cache(ds, (64, 64), folder, workers=1).built  # unchanged files: reused
    # replace a.bmp by another image of the same byte size, with its old time stamps (cp -p)
    st = os.stat(d / "a.bmp")
    (d / "a.bmp").write_bytes(_bmp(200))
    os.utime(d / "a.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(d / "a.bmp").st_size == st.st_size
    ds = COCODataset(ann, d)
    with caplog.at_level(logging.WARNING, logger="mindyolox.data"):
        again = open_disk_cache(ds, (64, 64), folder, workers=1)
    assert again.built and int(again[0].mean()) == 200 and int(again[1].mean()) == 90
    assert any("1 image file(s) changed" in r.getMessage() and "a.bmp" in r.getMessage() for r in caplog.records)
    assert len(list(folder.glob("*.u8"))) == 1  # rebuilt in place, no stale copy left


# ----------------------------------------------------------------------------- 7: RAM cache size
def test_ram_cache_estimate_is_the_bytes_it_holds(tmp_path):
    ds = COCODataset(*coco_set(tmp_path, {"a.jpg": jpeg(stripe_image()), "b.jpg": jpeg(stripe_image(60, 50))},
                               [_img(1, "a.jpg", 100, 200), _img(2, "b.jpg", 60, 50)],
                               [_ann(1, 1, (10, 10, 20, 20)), _ann(2, 2, (10, 10, 20, 20))]))
    need = ram_cache_bytes(ds.sizes, (64, 96))
    ds.cache_images((64, 96), "ram")
    assert need == sum(c.nbytes for c in ds._cache) == (48 * 96 + 64 * 53) * 3


def test_ram_cache_too_big_is_refused_in_one_line_before_decoding(tmp_path, monkeypatch):
    ds = COCODataset(*coco_set(tmp_path, {"a.jpg": jpeg(stripe_image())}, [_img(1, "a.jpg", 100, 200)],
                               [_ann(1, 1, (10, 10, 20, 20))]))
    ds.sizes = [(4000, 6000)] * 1000  # what the check reads: 1000 images at 4096 -> 1000 * 4096 * 2730 * 3 bytes
    need = ram_cache_bytes(ds.sizes, (4096, 4096))
    assert need == 1000 * 2730 * 4096 * 3
    with pytest.raises(DataError) as e:
        check_ram_cache(ds, (4096, 4096), copies=8, available=(40e9, "MemAvailable in /proc/meminfo"))
    msg = str(e.value)
    assert "\n" not in msg and f"needs {8 * need / 1e9:.2f} GB" in msg and "8 ranks" in msg
    assert "40.00 GB is available (MemAvailable in /proc/meminfo)" in msg and "data.cache=disk" in msg
    assert check_ram_cache(ds, (4096, 4096), copies=1, available=(45e9, "test")) == need  # 33.6 GB <= 45 - 9: fits
    with pytest.raises(DataError):  # the margin: at least 2 GB stays for training
        check_ram_cache(ds, (4096, 4096), copies=1, available=(need + 1e9, "test"))
    # nothing was decoded for the refusal
    monkeypatch.setattr("mindyolox.data.cache.available_memory", lambda: (1e6, "test figure"))
    monkeypatch.setattr(type(ds), "read_image", lambda self, i: pytest.fail("decoded before the check"))
    with pytest.raises(DataError, match="test figure"):
        ds.cache_images((64, 64), "ram")


def test_ram_cache_refusal_at_train_start_releases_the_run_lock(tmp_path, monkeypatch):
    from mindyolox.config import load_config
    from mindyolox.training.trainer import Trainer
    data_dir = str(shared_path("data", "coco16"))
    cfg = load_config(str(ROOT / "configs" / "yolox-nano.yaml"), [
        f"data.data_dir={data_dir}", "data.val_ann=annotations/instances_train2017.json",
        "data.val_images=train2017", "data.input_size=[64,64]", "data.test_size=[64,64]", "data.random_size=[]",
        "data.multiscale_range=0", "data.cache=ram", "train.batch_size=2", "train.max_epoch=1"])
    monkeypatch.setattr("mindyolox.data.cache.available_memory", lambda: (1.5e9, "MemAvailable in /proc/meminfo"))
    run = tmp_path / "run"
    with pytest.raises(DataError, match=r"data.cache=ram: caching the 16 images .* 1.50 GB is available"):
        Trainer(cfg, run_dir=run, progress=False, num_workers=0, evaluate=False).train()
    assert run.is_dir() and not (run / ".run.lock").exists()
