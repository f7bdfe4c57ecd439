"""MindIR export: raw outputs equal the Cell's; infer.py detections equal predict.py's;
batch and size come from the flags."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mindyolox import build_model, load_config, load_weights
from mindyolox.data import preproc
from mindyolox.options import DeviceOptions

from .conftest import ROOT, SHARED

WEIGHTS = SHARED / "weights" / "yolox_nano.pth"
DOG = SHARED / "data" / "images" / "dog.jpg"


def _script(path, *args):
    return subprocess.run([sys.executable, str(ROOT / path), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    p = _script("deploy/export.py", "--config", "configs/yolox-nano.yaml", "--weights", WEIGHTS,
                "--format", "MINDIR", "--batch", 1, "--img-size", 416, "--output", out / "nano")
    assert p.returncode == 0, p.stderr
    return out


@pytest.mark.slow
def test_mindir_raw_outputs_equal_cell(exported):
    import mindspore as ms
    from mindspore import nn
    meta = json.loads((exported / "nano.json").read_text())
    assert meta["input_shape"] == [1, 3, 416, 416] and meta["outputs"] == "raw"
    # portable by default: standard Conv2D ops, not the CPU Im2Col formulation of the Cell
    blob = (exported / "nano.mindir").read_bytes()
    assert meta["conv"] == "native" and b"Conv2D" in blob and b"Im2Col" not in blob
    x, _ = preproc(cv2.imread(str(DOG)), (416, 416))
    x = ms.Tensor(x[None])
    graph = nn.GraphCell(ms.load(str(exported / "nano.mindir")))(x).asnumpy()

    assert meta["options"]["conv"] == "native" and meta["options"]["amp_level"] == "O0"

    def raw_outputs(conv):
        model = build_model(load_config(ROOT / "configs" / "yolox-nano.yaml"), DeviceOptions(conv=conv),
                            decode_in_inference=False)
        load_weights(model, WEIGHTS)
        model.set_train(False)
        return model(x).asnumpy()

    cell = raw_outputs("native")  # the Cell that was exported (native Conv2D)
    assert graph.shape == cell.shape == (1, 3549, 85)
    assert np.abs(graph - cell).max() <= 1e-4
    # the CPU training formulation (Im2Col + GEMM) computes the same function up to the
    # float32 summation order
    assert np.abs(raw_outputs("im2col") - cell).max() <= 5e-4
    # raw: box part is (dx, dy, log w, log h), not pixels; scores are probabilities
    assert np.abs(cell[..., :4]).max() < 50 and 0 <= cell[..., 4:].min() and cell[..., 4:].max() <= 1


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime_like_the_cell(tmp_path):
    """ONNX export (native Conv2D ops, BN folded with Sqrt/Div) run by onnxruntime gives the
    Cell's raw outputs; the official model's raw outputs are 1.8e-4 away (deploy/README.md)."""
    import onnxruntime as ort
    p = _script("deploy/export.py", "--config", "configs/yolox-nano.yaml", "--weights", WEIGHTS,
                "--format", "ONNX", "--batch", 1, "--img-size", 416, "--output", tmp_path / "nano")
    assert p.returncode == 0, p.stderr
    x, _ = preproc(cv2.imread(str(DOG)), (416, 416))
    sess = ort.InferenceSession(str(tmp_path / "nano.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["images"]
    out = sess.run(None, {"images": x[None]})[0]
    ref = np.load(SHARED / "reference" / "yolox-nano-official_416_b2_data.npz")["eval/raw"][:1]
    assert out.shape == ref.shape == (1, 3549, 85)
    assert np.abs(out - ref).max() <= 5e-4


@pytest.mark.slow
def test_infer_equals_predict(exported, tmp_path):
    pi = _script("deploy/infer.py", "--mindir", exported / "nano.mindir", "--source", DOG,
                 "--save-dir", tmp_path / "infer", "--backend", "mindspore")
    assert pi.returncode == 0, pi.stderr
    pp = _script("predict.py", "--config", "configs/yolox-nano.yaml", "--weights", WEIGHTS,
                 "--img-size", 416, "--source", DOG, "--save-dir", tmp_path / "predict")
    assert pp.returncode == 0, pp.stderr
    a = json.loads((tmp_path / "infer" / "dog.json").read_text())["detections"]
    b = json.loads((tmp_path / "predict" / "dog.json").read_text())["detections"]
    assert len(a) == len(b) >= 3
    assert [d["class_id"] for d in a] == [d["class_id"] for d in b]
    np.testing.assert_allclose([d["bbox"] for d in a], [d["bbox"] for d in b], atol=1e-3)
    np.testing.assert_allclose([d["score"] for d in a], [d["score"] for d in b], atol=1e-5)
    assert (tmp_path / "infer" / "dog.jpg").is_file()


@pytest.mark.slow
def test_batch_and_size_come_from_flags(tmp_path):
    import mindspore as ms
    from mindspore import nn
    p = _script("deploy/export.py", "--config", "configs/yolox-nano.yaml", "--weights", WEIGHTS,
                "--batch", 2, "--img-size", 320, 256, "--output", tmp_path / "b2")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "b2.json").read_text())["input_shape"] == [2, 3, 320, 256]
    out = nn.GraphCell(ms.load(str(tmp_path / "b2.mindir")))(ms.Tensor(np.zeros((2, 3, 320, 256), np.float32)))
    assert out.shape == (2, 40 * 32 + 20 * 16 + 10 * 8, 85)


@pytest.mark.parametrize("case", ["no_batch", "bad_size", "missing_weights", "missing_mindir", "not_mindir"])
def test_errors_are_one_line(case, tmp_path):
    if case == "no_batch":
        p = _script("deploy/export.py", "--config", "configs/yolox-nano.yaml", "--weights", WEIGHTS,
                    "--img-size", 416)
        assert p.returncode == 2 and "--batch" in p.stderr   # argparse: required flag
        return
    if case == "bad_size":
        p = _script("deploy/export.py", "--config", "configs/yolox-nano.yaml", "--weights", WEIGHTS,
                    "--batch", 1, "--img-size", 400, "--output", tmp_path / "m")
        expect = "not a multiple of 32"
    elif case == "missing_weights":
        p = _script("deploy/export.py", "--config", "configs/yolox-nano.yaml", "--weights", tmp_path / "x.ckpt",
                    "--batch", 1, "--img-size", 416, "--output", tmp_path / "m")
        expect = "not found"
    elif case == "missing_mindir":
        p = _script("deploy/infer.py", "--mindir", tmp_path / "none.mindir", "--source", DOG)
        expect = "not found"
    else:
        bad = tmp_path / "bad.mindir"
        bad.write_bytes(b"not a graph")
        p = _script("deploy/infer.py", "--mindir", bad, "--img-size", 416, "--source", DOG,
                    "--backend", "mindspore")
        expect = "not a loadable MindIR"
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], p.stderr
