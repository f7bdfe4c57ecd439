"""Issue 39 item 1: one prediction front end (predict.py --weights / --model), sources (folder,
glob, video, webcam, stream), --batch with real batched graph calls, --save-txt / --save-coco,
reader / writer threads, bad sources kept to one line with the work done so far kept.

Fast tests drive :func:`mindyolox.predict.loop.run_plan` with a numpy ``predict_batch`` (no
MindSpore compile) or ``predict.py --model`` with a tiny hand-made ONNX graph; one slow test
compiles the official nano once (320 px, batch 4) for batch 1 vs batch 4 on coco_tiny.
"""
import json
import os
import sys

import cv2
import numpy as np
import pytest

from mindyolox.errors import DataError, MindYOLOXError
from mindyolox.predict.loop import plan_source, run_plan

from .conftest import shared_path

NAMES = ("a", "b", "c")


def _fake_dets(img):
    """One detection per image from its content: class and score from the mean intensity; the
    box sticks out of the image on the left and the bottom (to check the txt clipping)."""
    h, w = img.shape[:2]
    m = float(img.mean())
    return np.array([[-0.1 * w, 0.2 * h, 0.5 * w, 1.1 * h, 0.9, 0.2 + 0.7 * m / 255, int(m) % 3]], np.float32)


class FakeModel:
    """``predict_batch`` recording the size of every call."""

    def __init__(self, fail_on_call=None):
        self.calls, self.fail_on_call = [], fail_on_call

    def __call__(self, images):
        self.calls.append(len(images))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt
        return [_fake_dets(img) for img in images]


def _image(value, w=64, h=48):
    img = np.full((h, w, 3), value, np.uint8)
    img[h // 4:h // 2, w // 4:w // 2] = 255 - value
    return img


def _video(path, n, size=(64, 48), fps=10):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(n):
        w.write(_image(20 * i % 250, *size))
    w.release()
    return path


def _count_frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _run(source, out, model=None, batch=1, **kw):
    plan = plan_source(str(source), str(out) if out else None, save_txt=kw.pop("save_txt", False),
                       save_coco=kw.pop("save_coco", False))
    lines = []
    res = run_plan(model or FakeModel(), plan, NAMES, batch=batch, progress=False, log=lines.append, **kw)
    return res, lines


# -- sources ---------------------------------------------------------------------------------

def test_video_file_batched_with_txt(tmp_path):
    """A 7-frame video at --batch 3: calls of 3, 3, 1 frames; drawn MP4 with 7 frames; per-frame
    JSON; one YOLO txt per frame."""
    video = _video(tmp_path / "clip.avi", 7)
    model = FakeModel()
    res, lines = _run(video, tmp_path / "o", model, batch=3, save_txt=True)
    assert model.calls == [3, 3, 1]
    js = json.loads((tmp_path / "o" / "clip.avi.json").read_text())
    assert js["complete"] is True and [f["frame"] for f in js["frames"]] == list(range(7))
    assert _count_frames(tmp_path / "o" / "clip.avi.mp4") == 7
    txts = sorted(os.listdir(tmp_path / "o" / "labels"))
    assert txts == [f"clip_{i:06d}.txt" for i in range(7)]
    assert lines[-1].endswith("clip.avi: 7 frames, 7 detections")


def test_folder_and_glob(tmp_path):
    """A folder: every image (sorted), the text file named as not media; a glob pattern: only
    the files it matches, as a folder (an unreadable match skipped and named)."""
    src = tmp_path / "imgs"
    src.mkdir()
    for i, name in enumerate(["x1.png", "x2.png", "y1.jpg"]):
        cv2.imwrite(str(src / name), _image(40 * i))
    (src / "notes.txt").write_text("not an image")
    (src / "x3.png").write_bytes(b"")    # a 0-byte match
    res, _ = _run(src, tmp_path / "o1", batch=2)
    assert sorted(os.path.basename(p) for p in res["results"]) == ["x1.png", "x2.png", "y1.jpg"]
    res, lines = _run(src / "x*.png", tmp_path / "o2", batch=2)
    assert sorted(os.path.basename(p) for p in res["results"]) == ["x1.png", "x2.png"]
    assert [os.path.basename(p) for p, _ in res["skipped"]] == ["x3.png"]
    assert any("x3.png cannot be read (empty file, 0 bytes)" in ln for ln in lines)
    summary = json.loads((tmp_path / "o2" / "predictions.json").read_text())
    assert summary["complete"] is True and len(summary["results"]) == 2
    with pytest.raises(DataError, match="the pattern matches no images or videos"):
        plan_source(str(src / "*.gif"), None)


def test_missing_webcam_is_one_line(tmp_path):
    plan = plan_source("987", str(tmp_path / "o"))
    with pytest.raises(DataError, match=r"^--source 987: cannot be opened as a webcam or stream$"):
        run_plan(FakeModel(), plan, NAMES, progress=False, log=lambda *a: None)
    assert not (tmp_path / "o" / "webcam987.mp4").exists()


@pytest.mark.parametrize("case", ["empty_image", "empty_video", "text_video"])
def test_bad_single_file_is_one_line(case, tmp_path):
    path = tmp_path / {"empty_image": "a.jpg", "empty_video": "a.mp4", "text_video": "a.mp4"}[case]
    path.write_bytes(b"" if case.startswith("empty") else b"this is a text file, not a video\n" * 50)
    expect = {"empty_image": "image .* cannot be read \\(empty file, 0 bytes\\)",
              "empty_video": "video .*: cannot be opened \\(empty file, 0 bytes\\)",
              "text_video": "video .*: cannot be opened \\(not a video OpenCV can decode\\)"}[case]
    with pytest.raises(DataError, match=expect) as e:
        _run(path, tmp_path / "o")
    assert "\n" not in str(e.value)
    if case.startswith("empty"):   # refused by the plan, before a model would be built
        with pytest.raises(DataError, match=expect):
            plan_source(str(path), str(tmp_path / "o"))


class _DroppingCapture:
    """A stand-in for cv2.VideoCapture of a stream that delivers 5 frames, then fails."""

    def __init__(self, target):
        self.n = 0

    def isOpened(self):
        return True

    def get(self, prop):
        return 10.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        self.n += 1
        return (True, _image(30 * self.n)) if self.n <= 5 else (False, None)

    def release(self):
        pass


def test_stream_drop_keeps_frames(tmp_path, monkeypatch):
    """An RTSP stream that stops after 5 frames: one line, the 5 frames kept (playable MP4, JSON)."""
    monkeypatch.setattr(cv2, "VideoCapture", _DroppingCapture)
    res, lines = _run("rtsp://camera/live", tmp_path / "o", batch=2)
    dropped = [ln for ln in lines if "stopped delivering frames" in ln]
    assert dropped == ["--source rtsp://camera/live: the stream stopped delivering frames after 5 frame(s); "
                       "the 5 frame(s) are kept"]
    monkeypatch.undo()
    assert _count_frames(tmp_path / "o" / "stream.mp4") == 5
    assert len(json.loads((tmp_path / "o" / "stream.json").read_text())["frames"]) == 5


def test_interrupt_keeps_what_was_written(tmp_path):
    """Ctrl-C during the third batch of a 10-frame video: the MP4 holds the 4 frames done and is
    playable, the JSON says complete: false with those 4 frames."""
    video = _video(tmp_path / "clip.avi", 10)
    with pytest.raises(KeyboardInterrupt):
        _run(video, tmp_path / "o", FakeModel(fail_on_call=3), batch=2)
    assert _count_frames(tmp_path / "o" / "clip.avi.mp4") == 4
    js = json.loads((tmp_path / "o" / "clip.avi.json").read_text())
    assert js["complete"] is False and len(js["frames"]) == 4


def test_writer_error_is_one_line(tmp_path):
    """A write that fails in the writer thread (the output path is a folder) comes back to the
    caller as one MindYOLOXError line naming the file."""
    cv2.imwrite(str(tmp_path / "a.png"), _image(10))
    (tmp_path / "o" / "a.png").mkdir(parents=True)
    with pytest.raises(MindYOLOXError, match="a.png") as e:
        _run(tmp_path / "a.png", tmp_path / "o")
    assert "\n" not in str(e.value)


def test_prefetch_propagates_and_stops():
    """The reader thread: an error of the iterator is re-raised in the consumer after the items
    before it; close() stops an endless iterator and runs its finally."""
    from mindyolox.predict.workers import Prefetch

    def failing():
        yield 1
        yield 2
        raise DataError("video x: broken")
    got = []
    with pytest.raises(DataError, match="video x: broken"), Prefetch(failing(), 1) as items:
        got.extend(items)
    assert got == [1, 2]
    state = {"closed": False}

    def endless():
        try:
            i = 0
            while True:
                i += 1
                yield i
        finally:
            state["closed"] = True
    with Prefetch(endless(), 2) as items:
        assert [next(items) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert state["closed"]


# -- --save-txt / --save-coco ----------------------------------------------------------------

def test_save_txt_and_coco_match_json(tmp_path):
    """YOLO txt rows and COCO results recomputed here from the per-image JSON: txt = class,
    clipped box centre / size over the image size, score; COCO = xywh of the JSON box, image id
    from the digit file names."""
    src = tmp_path / "imgs"
    src.mkdir()
    for i, name in enumerate(["000000000139.jpg", "000000000285.png"]):
        cv2.imwrite(str(src / name), _image(70 * i + 10, w=80, h=60))
    _run(src, tmp_path / "o", batch=2, save_txt=True, save_coco=True)
    coco = json.loads((tmp_path / "o" / "predictions_coco.json").read_text())
    for name, img_id in (("000000000139.jpg", 139), ("000000000285.png", 285)):
        js = json.loads((tmp_path / "o" / f"{name}.json").read_text())
        assert js["image_id"] == img_id
        W, H = js["width"], js["height"]
        rows = [list(map(float, ln.split())) for ln in
                (tmp_path / "o" / "labels" / f"{os.path.splitext(name)[0]}.txt").read_text().splitlines()]
        assert len(rows) == len(js["detections"]) == 1
        for row, d in zip(rows, js["detections"]):
            x1, y1, x2, y2 = d["bbox"]
            x1, x2 = min(max(x1, 0), W), min(max(x2, 0), W)
            y1, y2 = min(max(y1, 0), H), min(max(y2, 0), H)
            want = [d["class_id"], (x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H, d["score"]]
            np.testing.assert_allclose(row, want, atol=2e-6)
            assert 0 <= row[1] - row[3] / 2 + 1e-6 and row[2] + row[4] / 2 <= 1 + 1e-6   # clipped
        mine = [r for r in coco if r["image_id"] == img_id]
        assert len(mine) == 1
        x1, y1, x2, y2 = js["detections"][0]["bbox"]
        np.testing.assert_allclose(mine[0]["bbox"], [x1, y1, x2 - x1, y2 - y1], rtol=1e-6)
        assert mine[0]["category_id"] == js["detections"][0]["class_id"]   # not COCO's classes: the index
        assert mine[0]["score"] == pytest.approx(js["detections"][0]["score"])


def test_save_txt_refuses_one_stem_twice(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    for name in ("dog.jpg", "dog.png"):
        cv2.imwrite(str(src / name), _image(10))
    with pytest.raises(MindYOLOXError, match="labels.dog.txt"):
        plan_source(str(src), str(tmp_path / "o"), save_txt=True)
    assert not (tmp_path / "o").exists()


# -- the Cell predictor batches for real -----------------------------------------------------

def test_predictor_batches_with_one_shape():
    """Predictor(batch=4) on 5 images: two network calls, both [4, 3, H, W] (the last padded),
    and the same detections as batch 1."""
    from mindyolox.predict.predictor import Predictor
    shapes = []

    def network(x):
        shapes.append(x.shape)
        n = len(x)
        out = np.zeros((n, 2, 6), np.float32)
        m = x.reshape(n, -1).mean(axis=1)
        out[:, 0, :4] = np.stack([m / 4 + 10, m / 8 + 10, 8 + m / 20, 6 + m / 30], 1)
        out[:, 0, 4:] = 0.9
        return out
    images = [_image(v) for v in (0, 60, 120, 180, 240)]
    batched = Predictor(network, (32, 32), batch=4).predict_batch(images)
    assert shapes == [(4, 3, 32, 32), (4, 3, 32, 32)]
    shapes.clear()
    single = Predictor(network, (32, 32)).predict_batch(images)
    assert shapes == [(1, 3, 32, 32)] * 5
    assert len({round(float(d[0, 0]), 3) for d in single}) == 5   # content-dependent boxes
    for a, b in zip(single, batched):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# -- predict.py --model (an exported model) ---------------------------------------------------

def _tiny_onnx(path):
    """An ONNX graph 'images' [B, 3, 32, 32] -> decoded [B, 1, 6] (one box of class 0 at the
    centre, obj and cls 0.9) and its deploy/export.py-style metadata beside it."""
    import onnx
    from onnx import TensorProto, helper
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 6], [0.0] * 18)
    b = helper.make_tensor("b", TensorProto.FLOAT, [6], [16.0, 16.0, 8.0, 8.0, 0.9, 0.9])
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["p"]),
             helper.make_node("Reshape", ["p", "shape"], ["r"]),
             helper.make_node("MatMul", ["r", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["output"])]
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [-1, 1, 3])
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                           ["B", 3, 32, 32])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", 1, 6])],
                              initializer=[w, b, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    meta = {"input": {"name": "images", "shape": ["B", 3, 32, 32], "dynamic_batch": True},
            "graph": {"decode": True, "nms": None}, "strides": [8, 16, 32], "num_classes": 1,
            "class_names": ["thing"]}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def _cli(argv, capsys):
    from mindyolox.commands._args import run_cli
    from mindyolox.commands.predict import main
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: main(argv))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_predict_model_cli(tmp_path, capsys):
    """predict.py --model: an exported model through the same loop, batched, with the txt and
    COCO outputs; --weights with --model, and a missing webcam, are one error line."""
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"{i + 1}.jpg"), _image(50 * i, w=64, h=32))
    code, out, err = _cli(["--model", str(model), "--source", str(src / "*.jpg"), "--batch", "2", "--save-txt",
                           "--save-coco", "--save-dir", str(tmp_path / "o"), "--no-progress"], capsys)
    assert code == 0, err
    assert "1 image(s) per call" not in out and "2 image(s) per call" in out
    js = json.loads((tmp_path / "o" / "2.jpg.json").read_text())
    # the box (16, 16, 8, 8) at 32x32 -> letterbox r = 0.5 of the 64x32 image -> (24, 24, 40, 40) px
    assert [d["class_name"] for d in js["detections"]] == ["thing"]
    np.testing.assert_allclose(js["detections"][0]["bbox"], [24, 24, 40, 40], atol=1e-4)
    assert (tmp_path / "o" / "labels" / "2.txt").read_text().split()[0] == "0"
    coco = json.loads((tmp_path / "o" / "predictions_coco.json").read_text())
    assert sorted(r["image_id"] for r in coco) == [1, 2, 3]
    for argv, expect in ((["--model", str(model), "--weights", "x.pth", "--source", str(src)],
                          "give exactly one of --weights"),
                         (["--model", str(model), "--source", "987", "--save-dir", str(tmp_path / "w")],
                          "--source 987: cannot be opened as a webcam or stream")):
        code, out, err = _cli(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], err


# -- batch N == batch 1 with the official nano (one compiled graph) ----------------------------

@pytest.mark.slow
def test_batch_matches_batch1_official_nano(tmp_path):
    """Official nano at 320 px, ONE graph compiled for [4, 3, 320, 320] (the Predictor pads):
    16 coco_tiny val images through the loop at batch 1 (each call padded) and at batch 4 give
    the same detections; the COCO results of the batch-4 run load into pycocotools against
    coco_tiny's annotation (image ids from the file names, COCO category ids) and score AP > 0;
    a 3-frame video of dog.jpg gives dog, bicycle and car in every frame and a 3-frame MP4."""
    import mindspore as ms
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from mindyolox.config import load_config
    from mindyolox.predict.predictor import COCO_CLASSES, Predictor
    from mindyolox.runtime.context import build_and_load, setup_mindspore
    cfg = load_config("configs/yolox-nano.yaml", [])
    setup_mindspore(None, cfg)
    net, _ = build_and_load(cfg, str(shared_path("weights", "yolox_nano.pth")))
    predictor = Predictor(lambda x: net(ms.Tensor(x)), (320, 320), conf=0.25, nms=0.45, batch=4)
    val = shared_path("data", "coco_tiny", "val2017")
    src = tmp_path / "src"
    src.mkdir()
    for name in sorted(os.listdir(val))[:16]:
        os.symlink(val / name, src / name)
    runs = {}
    for b in (1, 4):
        plan = plan_source(str(src / "*.jpg"), str(tmp_path / f"b{b}"), save_coco=True)
        runs[b] = run_plan(predictor.predict_batch, plan, COCO_CLASSES, batch=b, progress=False,
                           log=lambda *a: None)["results"]
    assert runs[1].keys() == runs[4].keys() and len(runs[1]) == 16
    assert sum(len(v) for v in runs[4].values()) > 40
    for path, dets in runs[1].items():
        other = runs[4][path]
        assert [d["class_id"] for d in dets] == [d["class_id"] for d in other], path
        np.testing.assert_allclose([d["bbox"] + [d["score"]] for d in dets],
                                   [d["bbox"] + [d["score"]] for d in other], rtol=1e-4, atol=1e-3)
    gt = COCO(str(shared_path("data", "coco_tiny", "annotations", "instances_val2017.json")))
    results = json.loads((tmp_path / "b4" / "predictions_coco.json").read_text())
    ids = {int(os.path.splitext(n)[0]) for n in os.listdir(src)}
    assert {r["image_id"] for r in results} <= ids
    names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
    by_file = {int(os.path.splitext(os.path.basename(p))[0]): dets for p, dets in runs[4].items()}
    assert sorted((r["image_id"], names[r["category_id"]]) for r in results) == \
        sorted((i, d["class_name"]) for i, dets in by_file.items() for d in dets)
    # a video through the same graph (moved here from test_predict.py::test_video: no second
    # compile): 3 frames of dog.jpg at batch 4 (one padded call), each with its objects
    dog = cv2.imread(str(shared_path("data", "images", "dog.jpg")))
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (dog.shape[1], dog.shape[0]))
    for _ in range(3):
        w.write(dog)
    w.release()
    plan = plan_source(str(video), str(tmp_path / "video"))
    run_plan(predictor.predict_batch, plan, COCO_CLASSES, batch=4, progress=False, log=lambda *a: None)
    frames = json.loads((tmp_path / "video" / "clip.avi.json").read_text())["frames"]
    assert len(frames) == 3
    assert all({"dog", "bicycle", "car"} <= {d["class_name"] for d in f["detections"]} for f in frames)
    assert _count_frames(tmp_path / "video" / "clip.avi.mp4") == 3
    ev = COCOeval(gt, gt.loadRes(results), "bbox")
    ev.params.imgIds = sorted(ids)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] > 0.1
    print(f"AP50:95 on 16 coco_tiny images at 320: {ev.stats[0]:.3f}", file=sys.stderr)
