"""Issue 33 ("nothing lost, nothing silently wrong"), cases 1, 9, 10, 11b-d: outputs of
predict.py / test.py / deploy/infer.py never replace an input, get one name per input, and an
output folder in use by another process is refused; deploy/infer.py skips an unreadable video
of a folder as predict.py does; ``--workers`` is capped like ``data.num_workers``; an exported
model's input size is read from the model; hand-placed official weights that do not read are
never trusted; an unknown weights name lists the names; ``1e-12`` is a number in a recipe.

Everything here is fast: a stand-in predictor (no network), a hand-made ONNX graph of 64 px,
tiny images and videos written by OpenCV, a local HTTP server for the weights download.
"""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mindyolox.errors import ConfigError, MindYOLOXError

from .conftest import ROOT, shared_path

WEIGHTS = shared_path("weights", "yolox_nano.pth")


def _image(path, value=90, size=64):
    img = np.full((size, size, 3), value, np.uint8)
    cv2.rectangle(img, (10, 10), (40, 40), (0, 0, 255), -1)
    assert cv2.imwrite(str(path), img)
    return path


def _video(path, frames=2, size=64):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (size, size))
    for i in range(frames):
        w.write(np.full((size, size, 3), 40 * i, np.uint8))
    w.release()
    assert path.stat().st_size > 0
    return path


def _one_box(img):
    """Stand-in predictor: one detection ``[1, 7]`` in the image's pixels."""
    h, w = img.shape[:2]
    return np.array([[1, 1, w / 2, h / 2, 0.9, 0.8, 0]], np.float32)


def _tree(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ----------------------------------------------------------------------------- case 1: names and inputs
def test_save_dir_equal_to_source_folder_is_refused_before_writing(tmp_path):
    from mindyolox.predict.predictor import run_prediction
    src = tmp_path / "photos"
    src.mkdir()
    _image(src / "photo.jpg")
    before = _tree(src)
    with pytest.raises(MindYOLOXError, match=r"--save-dir: writing .*photo.jpg would overwrite the input "
                                             r".*photo.jpg; choose another --save-dir"):
        run_prediction(_one_box, str(src), str(src), ["thing"], progress=False, log=lambda *a: None)
    assert _tree(src) == before  # the original photo untouched, nothing added


def test_each_input_gets_its_own_outputs(tmp_path):
    """a.jpg, a.png, a.avi and predictions.jpg in one folder: one drawn file and one JSON each,
    and the summary predictions.json holds all four."""
    from mindyolox.predict.predictor import run_prediction
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    _image(src / "a.jpg", 10)
    _image(src / "a.png", 200)
    _image(src / "predictions.jpg", 120)
    _video(src / "a.avi")
    res = run_prediction(_one_box, str(src), str(out), ["thing"], progress=False, log=lambda *a: None)
    assert len(res["results"]) == 4
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["a.jpg", "a.jpg.json", "a.png", "a.png.json", "a.avi.mp4", "a.avi.json",
                            "predictions.jpg", "predictions.jpg.json", "predictions.json"])
    for name in ("a.jpg", "a.png", "predictions.jpg", "a.avi"):
        assert json.loads((out / f"{name}.json").read_text())["source"] == str(src / name)
    assert json.loads((out / "a.png.json").read_text())["width"] == 64
    assert len(json.loads((out / "a.avi.json").read_text())["frames"]) == 2
    summary = json.loads((out / "predictions.json").read_text())
    assert sorted(summary["results"]) == sorted(str(src / n) for n in ("a.jpg", "a.png", "predictions.jpg", "a.avi"))
    assert cv2.imread(str(out / "a.png")).shape == (64, 64, 3)   # drawn, in the input's own format


def test_two_inputs_on_one_output_are_refused(tmp_path):
    from mindyolox.predict.predictor import run_prediction
    src = tmp_path / "src"
    src.mkdir()
    _video(src / "x.avi")
    _video(src / "x.avi.mp4")   # its drawn video keeps its name, the one x.avi's would get
    with pytest.raises(MindYOLOXError, match=r"would both be written to .*x.avi.mp4"):
        run_prediction(_one_box, str(src), str(tmp_path / "out"), ["thing"], progress=False, log=lambda *a: None)
    assert not (tmp_path / "out").exists()


def _cli(script, *args):
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_predict_cli_source_folder_refused_in_one_line(tmp_path):
    photo = _image(tmp_path / "photo.jpg")
    before = photo.read_bytes()
    p = _cli("predict.py", "--config", "configs/yolox-nano.yaml", "--weights", WEIGHTS, "--source", photo,
             "--save-dir", tmp_path, "--no-progress")
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --save-dir: writing") and "would overwrite the input" \
        in lines[0], p.stderr
    assert photo.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["photo.jpg"]


def test_test_py_outputs_never_replace_inputs(tmp_path):
    from mindyolox.commands.evaluate import main
    root = shared_path("data", "coco16")
    ann = tmp_path / "instances.json"
    shutil.copy(root / "annotations" / "instances_train2017.json", ann)
    before = ann.read_bytes()
    base = ["--config", "configs/yolox-nano.yaml", "--weights", str(WEIGHTS), "--ann", str(ann),
            "--images", str(root / "train2017"), "--no-progress", "--workers", "0"]
    with pytest.raises(MindYOLOXError, match=r"--det-out: writing .*instances.json would overwrite the input"):
        main(base + ["--det-out", str(ann)])
    assert ann.read_bytes() == before
    with pytest.raises(MindYOLOXError, match=r"--json-out: the outputs of the detections \(--save-dir\) and of "
                                             r"the metrics \(--json-out\) would both be written to"):
        main(base + ["--save-dir", str(tmp_path / "o"), "--json-out", str(tmp_path / "o" / "detections.json")])
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- case 1: two processes
@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """Three output folders held by another live process (its output folder lock), and its pid."""
    base = tmp_path_factory.mktemp("held")
    folders = [base / n for n in ("predict", "test", "infer")]
    code = ("import sys, time\nfrom mindyolox.runtime.run_lock import RunLock\n"
            "for d in sys.argv[1:]:\n    RunLock(d).acquire()\nprint('ready', flush=True)\ntime.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, folders)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield dict(zip(("predict", "test", "infer"), folders)), proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_busy_save_dir_is_refused_by_predict_test_and_infer(held, tmp_path, monkeypatch):
    from mindyolox.commands.evaluate import main as test_main
    from mindyolox.commands.predict import main as predict_main
    from mindyolox.commands.infer import main as infer_main
    folders, pid = held
    photo = _image(tmp_path / "photo.jpg")
    root = shared_path("data", "coco16")
    calls = {
        "predict": lambda: predict_main(["--config", "configs/yolox-nano.yaml", "--weights", str(WEIGHTS),
                                         "--source", str(photo), "--save-dir", str(folders["predict"])]),
        "test": lambda: test_main(["--config", "configs/yolox-nano.yaml", "--weights", str(WEIGHTS),
                                   "--ann", str(root / "annotations" / "instances_train2017.json"),
                                   "--images", str(root / "train2017"), "--save-dir", str(folders["test"])]),
        "infer": lambda: infer_main(["--model", str(_onnx(tmp_path / "m.onnx")), "--source", str(photo),
                                     "--save-dir", str(folders["infer"])]),
    }
    for name, call in calls.items():
        with pytest.raises(MindYOLOXError, match=rf"output folder \(--save-dir\) .*{name} is in use by process "
                                                 rf"{pid} on .*; wait for it, choose another --save-dir"):
            call()
        assert sorted(p.name for p in folders[name].iterdir()) == [".run.lock"], name  # nothing written


def test_output_folder_is_free_again_after_a_run(tmp_path):
    from mindyolox.runtime.outputs import claim_output_dir
    with claim_output_dir(tmp_path / "o") as lock:
        assert lock.path.is_file()
    assert not (tmp_path / "o" / ".run.lock").exists()
    with claim_output_dir(tmp_path / "o"):   # a later run takes it
        pass


# ----------------------------------------------------------------------------- exported models (cases 9, 10)
def _onnx(path, size=64, meta_size=None, batch=1):
    """A decoded-output ONNX graph taking ``[batch, 3, size, size]`` (one box at the centre of
    the first anchor row, class 0), with the export metadata beside it stating ``meta_size``."""
    import onnx
    from onnx import TensorProto, helper
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    const = np.zeros((1, anchors, 85), np.float32)
    const[0, 0, :6] = [size / 2, size / 2, size / 4, size / 4, 0.9, 0.9]
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["m0"]),
             helper.make_node("Add", ["rows", "m0"], ["output"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, anchors, 85])],
        initializer=[helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
                     onnx.numpy_helper.from_array(const, "rows")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    s = meta_size or size
    meta = {"input": {"name": "images", "shape": [batch, 3, s, s], "dynamic_batch": False},
            "graph": {"decode": True, "nms": None}, "strides": [8, 16, 32], "num_classes": 80}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def test_infer_folder_skips_an_unreadable_video(tmp_path, capsys):
    from mindyolox.commands.infer import main
    model = _onnx(tmp_path / "m.onnx")
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "bad.mp4").write_bytes(b"\0not a video" * 50)
    _image(src / "img.jpg")
    _video(src / "good.avi")
    (src / "notes.txt").write_text("x")
    assert main(["--model", str(model), "--source", str(src), "--save-dir", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"skipped: video {src / 'bad.mp4'}: cannot be opened" in printed
    assert "skipped 2 file(s): 1 not images or videos, 1 unreadable" in printed
    summary = json.loads((out / "predictions.json").read_text())
    assert sorted(summary["results"]) == [str(src / "good.avi"), str(src / "img.jpg")]
    assert {os.path.basename(s["file"]) for s in summary["skipped"]} == {"bad.mp4", "notes.txt"}
    assert len(summary["results"][str(src / "good.avi")]) == 2 and summary["results"][str(src / "img.jpg")]
    assert (out / "good.avi.mp4").stat().st_size > 0 and (out / "img.jpg.json").is_file()


def test_infer_refuses_the_source_folder(tmp_path):
    from mindyolox.commands.infer import main
    model = _onnx(tmp_path / "m.onnx")
    photo = _image(tmp_path / "photo.jpg")
    before = _tree(tmp_path)
    with pytest.raises(MindYOLOXError, match=r"writing .*photo.jpg would overwrite the input"):
        main(["--model", str(model), "--source", str(photo), "--save-dir", str(tmp_path)])
    assert _tree(tmp_path) == before


def test_onnx_input_size_comes_from_the_model(tmp_path, capsys):
    from mindyolox.commands.infer import main
    model = _onnx(tmp_path / "m.onnx", size=64, meta_size=128)
    photo = _image(tmp_path / "photo.jpg", size=96)
    assert main(["--model", str(model), "--source", str(photo), "--save-dir", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    warn = [ln for ln in captured.err.splitlines() if ln.startswith("warning:")]
    assert warn == [f"warning: {tmp_path / 'm.json'} says input 128x128, the model takes 64x64: using the model's"]
    assert "3 x 64 x 64" in captured.out
    dets = json.loads((tmp_path / "o" / "photo.jpg.json").read_text())["detections"]
    # the box (24, 24)-(40, 40) of the 64 px input, back in the 96 px image: r = 64/96
    assert len(dets) == 1 and np.allclose(dets[0]["bbox"], [36, 36, 60, 60], atol=1e-3)


def test_mindir_input_size_comes_from_the_model(tmp_path, capsys):
    import mindspore as ms
    from mindspore import nn
    from mindyolox.deploy.runners import MindIRRunner
    net = nn.Conv2d(3, 2, 3)
    ms.export(net, ms.Tensor(np.zeros((2, 3, 32, 64), np.float32)), file_name=str(tmp_path / "c"),
              file_format="MINDIR")
    meta = {"input": {"name": "x", "shape": [1, 3, 64, 64]}, "graph": {"decode": False}}
    runner = MindIRRunner(tmp_path / "c.mindir", meta)
    assert runner.img_size == (32, 64) and runner.batch == 2
    err = capsys.readouterr().err
    assert "says input 64x64, the model takes 32x64; batch 1, the model has batch 2: using the model's" in err


# ----------------------------------------------------------------------------- case 10: --workers
def test_workers_flag_is_capped_like_the_key(monkeypatch):
    import mindyolox.data.loader as loader_mod
    from mindyolox import load_config
    from mindyolox.training.builder import build_training
    from mindyolox.options import DeviceOptions
    seen = []

    class Stop(Exception):
        pass

    def fake_loader(*args, num_workers=None, **kwargs):
        seen.append(num_workers)
        raise Stop

    monkeypatch.setattr(loader_mod, "create_train_loader", fake_loader)
    cfg = load_config(ROOT / "configs" / "yolox-nano.yaml", ["data.input_size=[64,64]", "train.ema=false"])
    cpus = os.cpu_count() or 1
    for flag in (1000, None):
        cfg.data.num_workers = 1000
        with pytest.raises(Stop):
            build_training(cfg, DeviceOptions(), num_workers=flag, evaluate=False)
    assert seen == [cpus, cpus]


# ----------------------------------------------------------------------------- case 11: config
def test_exponent_numbers_are_numbers(tmp_path):
    from mindyolox import load_config
    cfg = load_config(ROOT / "configs" / "yolox-nano.yaml", ["train.basic_lr_per_img=1e-12"])
    assert cfg.train.basic_lr_per_img == 1e-12
    recipe = tmp_path / "r.yaml"
    recipe.write_text("__base__: yolox-nano\ntrain:\n  basic_lr_per_img: 1e-12\n  weight_decay: 5E-4\n")
    cfg = load_config(recipe)
    assert cfg.train.basic_lr_per_img == 1e-12 and cfg.train.weight_decay == 5e-4
    with pytest.raises(ConfigError, match="must be a number, got str '1e-12'"):   # quoted: a string
        load_config(ROOT / "configs" / "yolox-nano.yaml", ["train.basic_lr_per_img='1e-12'"])
