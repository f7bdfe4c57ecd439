"""Deployment: exports with BatchNorm folded, ONNX dynamic batch and end-to-end NMS, one runner
for every artifact, the artifacts' COCO AP through the project's evaluator, the Ascend recipe
text, one-line errors.

One module-scoped set of nano exports at 416 (exported in this process through
``mindyolox.deploy.export``) serves every test; the APs of all artifacts are computed once
(``aps``) on the 80 coco_tiny images at conf 0.01 / NMS 0.65. The reference AP is the
official evaluator's 30.52 / 47.77, which the MindSpore Cell reproduces to 0.1
(tests/test_evaluate.py).
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mindyolox import build_model, load_config, load_weights
from mindyolox.data import COCODataset, create_eval_loader, letterbox, preproc
from mindyolox.options import DeviceOptions

from .conftest import ROOT, SHARED, shared_path

WEIGHTS = SHARED / "weights" / "yolox_nano.pth"
DOG = SHARED / "data" / "images" / "dog.jpg"
OFFICIAL_AP = (30.52, 47.77)
pytestmark = pytest.mark.slow      # every test here exports or compiles whole models      # official evaluator, nano 416, conf 0.01 (../shared/README.md)


def _script(path, *args):
    return subprocess.run([sys.executable, str(ROOT / path), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """name -> (path, meta): raw dynamic-batch ONNX, end-to-end NMS ONNX (conf 0.01, IoU
    0.65, top 100), CPU MindIR (im2col, batch 4), float16 MindIR (batch 8)."""
    from mindyolox.deploy.export import ExportSpec, export
    cfg = load_config(ROOT / "configs" / "yolox-nano.yaml")
    out = tmp_path_factory.mktemp("artifacts")
    specs = {"onnx": ExportSpec("ONNX", 1, (416, 416), dynamic_batch=True),
             "nms": ExportSpec("ONNX", 1, (416, 416), dynamic_batch=True, nms=True, conf=0.01, iou=0.65,
                               topk=100, opset=13, simplify=False),
             "mindir": ExportSpec("MINDIR", 4, (416, 416)),
             "fp16": ExportSpec("MINDIR", 8, (416, 416), half=True)}
    done = {k: export(cfg, str(shared_path("weights", "yolox_nano.pth")), s, str(out / k), log=lambda *a: None)
            for k, s in specs.items()}
    # int8: static PTQ of the float32 ONNX, 16 calibration images of coco_tiny train2017 through
    # the project's loader (deploy/quantize.py defaults)
    from mindyolox.deploy.meta import read_meta, write_meta
    from mindyolox.deploy.quantize import calibration_batches, quantize_onnx
    int8 = str(out / "int8.onnx")
    quantize_onnx(done["onnx"][0], int8, calibration_batches(str(shared_path("data", "coco_tiny", "train2017")),
                                                              (416, 416), 16))
    meta = read_meta(done["onnx"][0])
    meta["graph"]["dtype"] = "int8"
    write_meta(str(out / "int8.json"), meta)
    done["int8"] = (int8, meta)
    return done


@pytest.fixture(scope="module")
def coco_tiny():
    root = shared_path("data", "coco_tiny")
    return COCODataset(root / "annotations" / "instances_val2017.json", root / "val2017")


def _subset(dataset, n, folder):
    """The first ``n`` images of a COCO dataset as a new COCODataset (annotation file in ``folder``)."""
    ann = json.loads(open(dataset.ann_file).read()) if hasattr(dataset, "ann_file") else None
    if ann is None:
        ann = json.loads((shared_path("data", "coco_tiny") / "annotations" / "instances_val2017.json").read_text())
    ann["images"] = sorted(ann["images"], key=lambda im: im["id"])[:n]
    keep = {im["id"] for im in ann["images"]}
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] in keep]
    path = folder / f"first{n}.json"
    path.write_text(json.dumps(ann))
    return COCODataset(path, shared_path("data", "coco_tiny") / "val2017")


@pytest.fixture(scope="module")
def aps(artifacts, coco_tiny, tmp_path_factory):
    """name -> (AP50:95, AP50) in percent, the project's COCO evaluator on each artifact: all
    80 images for the float32 ones and the NMS graph; the float16 MindIR (~0.5 s per image on
    this CPU: MindSpore's CPU float16 kernels) and the float32 MindIR again on the first 16
    images (``fp16@16``, ``mindir@16``)."""
    from mindyolox.evaluation.artifacts import open_artifact
    from mindyolox.evaluation import COCOEvaluator
    sub = _subset(coco_tiny, 16, tmp_path_factory.mktemp("subset"))
    res = {}
    for name, dataset in (("onnx", coco_tiny), ("nms", coco_tiny), ("mindir", coco_tiny), ("int8", coco_tiny),
                          ("mindir@16", sub), ("fp16@16", sub)):
        net = open_artifact(artifacts[name.split("@")[0]][0], "cpu", "mindspore")
        batch = net.runner.batch or 8
        loader = create_eval_loader({"test_size": [416, 416], "num_workers": 0}, batch, dataset=dataset)
        r = COCOEvaluator(loader, conf=0.01, nms=0.65).evaluate(net, progress=False)
        res[name] = (100 * r["AP50_95"], 100 * r["AP50"])
    print("artifact APs:", res)
    return res


def test_bn_folded_in_every_format(artifacts):
    import onnx
    for name in ("onnx", "nms"):
        path, meta = artifacts[name]
        model = onnx.load(path)
        ops = {n.op_type for n in model.graph.node}
        assert not ops & {"BatchNormalization", "Sqrt", "Div"}, ops
        assert meta["graph"]["bn_folded"] and meta["graph"]["node_count"] == len(model.graph.node)
        print(f"{name}: {len(model.graph.node)} ONNX nodes (official yolox_nano.onnx: 369)")
    # the network part: the MindSpore exporter's 368 nodes (1,208 before folding), fewer simplified
    assert artifacts["onnx"][1]["graph"]["node_count"] <= 368
    # the ops onnxruntime runs fastest, as in the official graph: Focus as strided Slices (no
    # 6-D Transpose: the only Transpose is the head's output), the upsampling as Resize (no Expand)
    counts = artifacts["onnx"][1]["graph"]["op_counts"]
    assert counts["Resize"] == 2 and counts.get("Transpose") == 1 and "Expand" not in counts, counts
    assert artifacts["nms"][1]["graph"]["op_counts"]["NonMaxSuppression"] == 1
    blob = open(artifacts["mindir"][0], "rb").read()
    assert b"BatchNorm" not in blob and b"Sqrt" not in blob and b"Im2Col" in blob   # CPU MindIR: im2col
    from mindyolox.utils.files import umask
    for name in ("mindir", "onnx"):   # the usual mode, not MindSpore's read-only 0400
        assert os.stat(artifacts[name][0]).st_mode & 0o777 == 0o666 & ~umask(), name


def test_onnx_raw_outputs_equal_official(artifacts):
    """Our ONNX in onnxruntime against the official PyTorch model's raw outputs on dog.jpg."""
    from mindyolox.deploy.runners import open_runner
    runner = open_runner(artifacts["onnx"][0])
    x, _ = preproc(cv2.imread(str(DOG)), (416, 416))
    out = runner(x[None])[0]
    ref = np.load(SHARED / "reference" / "yolox-nano-official_416_b2_data.npz")["eval/raw"][:1]
    assert out.shape == ref.shape == (1, 3549, 85)
    assert np.abs(out - ref).max() <= 5e-4


def test_onnx_dynamic_batch_same_detections(artifacts, coco_tiny):
    """Batch 4 in one call gives every image the detections it gets alone (batch 1)."""
    from mindyolox.deploy.runners import predict_images
    from mindyolox.deploy.runners import open_runner
    runner = open_runner(artifacts["onnx"][0])
    assert runner.batch is None
    imgs = [coco_tiny.load_image(i) for i in range(4)]
    together = predict_images(runner, imgs, 0.25, 0.45, False)
    assert sum(len(d) for d in together) >= 4
    for img, d4 in zip(imgs, together):
        (d1,) = predict_images(runner, [img], 0.25, 0.45, False)
        assert d1.shape == d4.shape
        np.testing.assert_allclose(d1, d4, atol=1e-3)


def test_nms_graph_equals_host_nms(artifacts, coco_tiny):
    """The end-to-end graph's top-100 equals the host's official postprocess of the raw ONNX
    outputs (conf 0.01, NMS 0.65) on all coco_tiny images, boxes to 1e-3 px."""
    from mindyolox.deploy.runners import open_runner
    raw, e2e = open_runner(artifacts["onnx"][0]), open_runner(artifacts["nms"][0])
    imgs = [coco_tiny.load_image(i) for i in range(len(coco_tiny))]
    compared = 0
    for i in range(0, len(imgs), 8):
        x = np.stack([preproc(im, (416, 416))[0] for im in imgs[i:i + 8]])
        host = raw.detections(raw(x), 0.01, 0.65)
        graph = e2e.detections(e2e(x), 0.01, 0.65)
        for h, g in zip(host, graph):
            k = min(len(h), 100)
            assert len(g) == k
            np.testing.assert_allclose(g[:, :4], h[:k, :4], atol=1e-3)
            np.testing.assert_allclose(g[:, 4], h[:k, 4] * h[:k, 5], atol=1e-5)
            assert (g[:, 6] == h[:k, 6]).all()
            compared += k
    assert compared > 3000


def test_artifact_ap_equals_the_model(aps):
    for name in ("onnx", "mindir"):
        ap, ap50 = aps[name]
        assert abs(ap - OFFICIAL_AP[0]) <= 0.1 and abs(ap50 - OFFICIAL_AP[1]) <= 0.1, (name, ap, ap50)
    ap, ap50 = aps["nms"]
    assert abs(ap - OFFICIAL_AP[0]) <= 0.3 and abs(ap50 - OFFICIAL_AP[1]) <= 0.3, (ap, ap50)
    # float16 against float32 on the same 16 images (on all 80, measured once: 30.47 / 47.48)
    (a16, b16), (a32, b32) = aps["fp16@16"], aps["mindir@16"]
    assert abs(a16 - a32) <= 0.3 and abs(b16 - b32) <= 0.3, aps


def test_int8_ap_drop(aps, artifacts):
    """INT8 (QDQ, stem / depthwise / head prediction convs kept float32) loses at most 1.0
    AP50:95 against the float32 ONNX; the graph really holds int8 convolutions."""
    import onnx
    ops = {n.op_type for n in onnx.load(artifacts["int8"][0]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    drop = aps["onnx"][0] - aps["int8"][0]
    print(f"int8 AP50:95 {aps['int8'][0]:.2f} / AP50 {aps['int8'][1]:.2f}: drop {drop:.2f}")
    assert drop <= 1.0


def test_export_metadata_tells_the_runner_everything(artifacts):
    meta = artifacts["nms"][1]
    assert meta["input"] == {"name": "images", "shape": ["B", 3, 416, 416], "dtype": "float32",
                             "layout": "NCHW", "dynamic_batch": True}
    assert meta["preprocess"]["color"] == "BGR" and meta["preprocess"]["mean"] is None
    assert meta["graph"]["decode"] and meta["graph"]["nms"] == {"conf": 0.01, "iou": 0.65, "topk": 100,
                                                                "class_agnostic": False}
    assert meta["graph"]["opset"] == 13 and meta["strides"] == [8, 16, 32] and len(meta["class_names"]) == 80
    assert [o["name"] for o in meta["outputs"]] == ["num_dets", "boxes", "scores", "classes"]
    m = artifacts["mindir"][1]
    assert m["input"]["shape"] == [4, 3, 416, 416] and m["graph"]["conv"] == "im2col"
    assert m["outputs"][0]["shape"] == [4, 3549, 85] and artifacts["fp16"][1]["graph"]["dtype"] == "float16"


def test_ascend_recipe_matches_metadata(artifacts, tmp_path):
    """AIPP / ATC / converter_lite text against the export metadata, and the device input the
    .om runner sends (the uint8 canvas) against the host letterbox."""
    import shutil
    from mindyolox.deploy.ascend import write_recipe
    from mindyolox.deploy.runners import Runner
    onnx_path = tmp_path / "nano.onnx"
    shutil.copy(artifacts["onnx"][0], onnx_path)
    meta = artifacts["onnx"][1]
    write_recipe(onnx_path, meta, (1, 4, 8), "Ascend310P3")
    aipp = dict(line.strip().split(" : ") for line in (tmp_path / "nano_aipp.cfg").read_text().splitlines()
                if " : " in line)
    h, w = meta["input"]["shape"][2:]
    assert (int(aipp["src_image_size_h"]), int(aipp["src_image_size_w"])) == (h, w)
    assert meta["preprocess"]["color"] == "BGR" and aipp["rbuv_swap_switch"] == "false"
    assert aipp["csc_switch"] == "false" and aipp["input_format"] == "RGB888_U8"
    assert meta["preprocess"]["mean"] is None and meta["preprocess"]["std"] is None
    assert all(aipp[f"mean_chn_{c}"] == "0" and float(aipp[f"var_reci_chn_{c}"]) == 1.0 for c in range(3))
    atc = (tmp_path / "nano_atc.sh").read_text()
    assert f"--input_shape=images:-1,3,{h},{w}" in atc and "--dynamic_batch_size=1,4,8" in atc
    assert "--framework=5" in atc and "--insert_op_conf=nano_aipp.cfg" in atc and "--output=nano_ascend" in atc
    om = json.loads((tmp_path / "nano_ascend.json").read_text())
    assert om["file"] == "nano_ascend.om" and om["dynamic_batch_sizes"] == [1, 4, 8]
    assert om["device_input"]["shape"] == ["B", h, w, 3] and om["device_input"]["dtype"] == "uint8"
    assert om["graph"] == meta["graph"] and om["strides"] == meta["strides"]
    # the device input is exactly the host letterbox canvas
    img = cv2.imread(str(DOG))
    x, _ = preproc(img, (h, w))
    feed = Runner.device_feed(type("R", (), {"meta": om})(), x[None])
    assert feed.dtype == np.uint8 and (feed[0] == letterbox(img, (h, w))[0]).all()
    # MindIR -> converter_lite config, fixed batch
    mindir = tmp_path / "m.mindir"
    shutil.copy(artifacts["mindir"][0], mindir)
    write_recipe(mindir, artifacts["mindir"][1])
    cfg = (tmp_path / "m_converter_lite.cfg").read_text()
    assert "input_shape=images:[4,3,416,416]" in cfg and "insert_op_config_file_path=m_aipp.cfg" in cfg


def test_mindir_raw_outputs_equal_cell(artifacts):
    import mindspore as ms
    from mindspore import nn
    path, meta = artifacts["mindir"]
    assert meta["input_shape"] == [4, 3, 416, 416] and meta["outputs_kind"] == "raw"
    # CPU target by default: the fast Im2Col formulation
    assert meta["graph"]["conv"] == "im2col" and b"Im2Col" in open(path, "rb").read()
    x, _ = preproc(cv2.imread(str(DOG)), (416, 416))
    x = ms.Tensor(np.repeat(x[None], 4, axis=0))
    graph = nn.GraphCell(ms.load(path))(x).asnumpy()
    assert meta["options"]["conv"] == "im2col" and meta["options"]["amp_level"] == "O0"

    def raw_outputs(conv):
        model = build_model(load_config(ROOT / "configs" / "yolox-nano.yaml"), DeviceOptions(conv=conv),
                            decode_in_inference=False)
        load_weights(model, WEIGHTS)
        model.set_train(False)
        return model(x[:1]).asnumpy()

    cell = raw_outputs("im2col")
    assert graph.shape == (4, 3549, 85) and cell.shape == (1, 3549, 85)
    # BN folded in float64 once vs in the graph in float32: float32 rounding apart
    assert np.abs(graph - cell).max() <= 5e-4
    assert np.abs(raw_outputs("native") - cell).max() <= 5e-4
    assert np.abs(cell[..., :4]).max() < 50 and 0 <= cell[..., 4:].min() and cell[..., 4:].max() <= 1


def test_infer_equals_predict(artifacts, tmp_path):
    pi = _script("deploy/infer.py", "--model", artifacts["mindir"][0], "--source", DOG,
                 "--save-dir", tmp_path / "infer", "--backend", "mindspore")
    assert pi.returncode == 0, pi.stderr
    pp = _script("predict.py", "--config", "configs/yolox-nano.yaml", "--weights", WEIGHTS,
                 "--img-size", 416, "--source", DOG, "--save-dir", tmp_path / "predict")
    assert pp.returncode == 0, pp.stderr
    a = json.loads((tmp_path / "infer" / "dog.jpg.json").read_text())["detections"]
    b = json.loads((tmp_path / "predict" / "dog.jpg.json").read_text())["detections"]
    assert len(a) == len(b) >= 3
    assert [d["class_id"] for d in a] == [d["class_id"] for d in b]
    np.testing.assert_allclose([d["bbox"] for d in a], [d["bbox"] for d in b], atol=1e-3)
    np.testing.assert_allclose([d["score"] for d in a], [d["score"] for d in b], atol=1e-5)
    assert (tmp_path / "infer" / "dog.jpg").is_file()


def test_batch_and_size_come_from_flags(tmp_path):
    import mindspore as ms
    from mindspore import nn
    p = _script("deploy/export.py", "--config", "configs/yolox-nano.yaml", "--weights", WEIGHTS,
                "--batch", 2, "--img-size", 320, 256, "--target", "ascend", "--output", tmp_path / "b2")
    assert p.returncode == 0, p.stderr
    meta = json.loads((tmp_path / "b2.json").read_text())
    assert meta["input_shape"] == [2, 3, 320, 256] and meta["graph"]["conv"] == "native"
    blob = (tmp_path / "b2.mindir").read_bytes()
    assert b"Conv2D" in blob and b"Im2Col" not in blob          # Ascend: native convolutions
    assert (tmp_path / "b2_converter_lite.cfg").is_file() and (tmp_path / "b2_aipp.cfg").is_file()
    out = nn.GraphCell(ms.load(str(tmp_path / "b2.mindir")))(ms.Tensor(np.zeros((2, 3, 320, 256), np.float32)))
    assert out.shape == (2, 40 * 32 + 20 * 16 + 10 * 8, 85)


@pytest.mark.parametrize("case", ["no_img_size", "bad_size", "missing_weights", "missing_model", "not_mindir",
                                  "wrong_infer_size"])
def test_errors_are_one_line(case, tmp_path, artifacts):
    export = ("deploy/export.py", "--config", "configs/yolox-nano.yaml", "--weights", WEIGHTS)
    if case == "no_img_size":   # the recipe's data.test_size (nano: 416), said in one line; checked like --img-size
        missing = ("deploy/export.py", "--config", "configs/yolox-nano.yaml", "--weights", tmp_path / "x.ckpt")
        p = _script(*missing, "--output", tmp_path / "m")
        assert p.returncode == 2 and "input size 416x416 (the recipe's data.test_size" in p.stdout, p.stdout
        assert "not found" in p.stderr
        p = _script(*missing, "data.test_size=[400,400]", "--output", tmp_path / "m")
        assert p.returncode == 2 and "'data.test_size' must be two positive multiples of 32" in p.stderr, p.stderr
        return
    if case == "bad_size":
        p = _script(*export, "--img-size", 400, "--output", tmp_path / "m")
        expect = "not a multiple of 32"
    elif case == "missing_weights":
        p = _script("deploy/export.py", "--config", "configs/yolox-nano.yaml", "--weights", tmp_path / "x.ckpt",
                    "--img-size", 416, "--output", tmp_path / "m")
        expect = "not found"
    elif case == "missing_model":
        p = _script("deploy/infer.py", "--model", tmp_path / "none.mindir", "--source", DOG)
        expect = "not found"
    elif case == "not_mindir":
        bad = tmp_path / "bad.mindir"
        bad.write_bytes(b"not a graph")
        (tmp_path / "bad.json").write_text(json.dumps(artifacts["mindir"][1]))
        p = _script("deploy/infer.py", "--model", bad, "--source", DOG, "--backend", "mindspore")
        expect = "not a loadable MindIR"
    else:
        p = _script("deploy/infer.py", "--model", artifacts["onnx"][0], "--img-size", 320, "--source", DOG)
        expect = "takes 416x416 inputs, not 320x320"
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], p.stderr


@pytest.mark.parametrize("case", ["wrong_batch", "unknown_format", "mindir_nms", "mindir_dynamic", "onnx_half"])
def test_refusals_name_the_reason(case, tmp_path, artifacts):
    """The same errors in process (run_cli prints each as one ``error:`` line, as above)."""
    from mindyolox.deploy.export import ExportSpec
    from mindyolox.commands.infer import main as infer
    from mindyolox.errors import MindYOLOXError
    if case == "wrong_batch":
        call, expect = (lambda: infer(["--model", artifacts["mindir"][0], "--batch", "6", "--source", str(DOG),
                                       "--backend", "mindspore", "--no-save"])), "fixed batch of 4"
    elif case == "unknown_format":
        weird = tmp_path / "model.tflite"
        weird.write_bytes(b"x")
        call, expect = (lambda: infer(["--model", str(weird), "--source", str(DOG)])), "unknown model format '.tflite'"
    elif case == "mindir_nms":
        call, expect = ExportSpec("MINDIR", nms=True).check, "--nms is ONNX only"
    elif case == "mindir_dynamic":
        call, expect = ExportSpec("MINDIR", dynamic_batch=True).check, "--dynamic-batch is ONNX only"
    else:
        call, expect = ExportSpec("ONNX", half=True).check, "float16 ONNX is not written"
    with pytest.raises(MindYOLOXError) as e:
        call()
    assert expect in str(e.value) and "\n" not in str(e.value)


def test_video_frames_in_batches(artifacts, tmp_path):
    """A video goes through the runner in batches of --batch frames (3 frames, batch 2: one
    full and one partial call) and gives every frame the detections of that image alone."""
    from mindyolox.commands.infer import main as infer
    from mindyolox.deploy.runners import predict_images
    from mindyolox.deploy.runners import open_runner
    img = cv2.imread(str(DOG))
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (img.shape[1], img.shape[0]))
    for k in range(3):
        writer.write(np.roll(img, 8 * k, axis=1))
    writer.release()
    assert infer(["--model", artifacts["onnx"][0], "--source", str(video), "--batch", "2",
                  "--save-dir", str(tmp_path / "out"), "--no-progress"]) == 0
    frames = json.loads((tmp_path / "out" / "clip.mp4.json").read_text())["frames"]
    assert [f["frame"] for f in frames] == [0, 1, 2] and (tmp_path / "out" / "clip.mp4").is_file()
    cap = cv2.VideoCapture(str(video))
    ok, first = cap.read()
    cap.release()
    (alone,) = predict_images(open_runner(artifacts["onnx"][0]), [first], 0.25, 0.45, False)
    assert len(frames[0]["detections"]) == len(alone) >= 3
    np.testing.assert_allclose([d["bbox"] for d in frames[0]["detections"]], alone[:, :4], atol=1e-3)


def test_test_py_model_flag(artifacts, coco_tiny, aps, tmp_path):
    """``test.py --model FILE`` on the first 16 coco_tiny images: the artifact's input size is
    used, the metrics JSON names the model, and its AP is the evaluator's on that artifact."""
    sub = _subset(coco_tiny, 16, tmp_path)
    p = _script("test.py", "--config", "configs/yolox-nano.yaml", "--model", artifacts["onnx"][0], "--conf", 0.01,
                "--ann", sub.ann_file, "--images", shared_path("data", "coco_tiny", "val2017"), "--no-progress",
                "--save-dir", tmp_path, "--json-out", tmp_path / "m.json")
    assert p.returncode == 0, p.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["model"] == str(artifacts["onnx"][0]) and m["num_images"] == 16
    assert "at 416x416" in p.stdout
    # the float32 MindIR's AP on the same 16 images (the ONNX and MindIR APs agree on all 80)
    assert abs(100 * m["AP50_95"] - aps["mindir@16"][0]) <= 0.1
    # issue 37: the exported artifact gets the same analysis folder as a checkpoint
    assert (tmp_path / "per_class.csv").is_file() and (tmp_path / "confusion_matrix.png").is_file()
    assert "deploy at --conf" in p.stdout
    both = _script("test.py", "--config", "configs/yolox-nano.yaml", "--model", artifacts["onnx"][0],
                   "--weights", WEIGHTS)
    assert both.returncode == 2 and "exactly one of --weights" in both.stderr.strip().splitlines()[-1]
