"""predict.py: official-model detections on dog.jpg, folder handling, one-line errors."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT, SHARED, load_npz

WEIGHTS = SHARED / "weights" / "yolox_nano.pth"
DOG = SHARED / "data" / "images" / "dog.jpg"


def _predict(*args):
    return subprocess.run([sys.executable, str(ROOT / "predict.py"), "--config", "configs/yolox-nano.yaml",
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """One predict.py run on a folder: dog.jpg, another photo, a corrupt 'image' and a text file."""
    src = tmp_path_factory.mktemp("src")
    shutil.copy(DOG, src / "dog.jpg")
    shutil.copy(SHARED / "data" / "images" / "chelsea.png", src / "chelsea.png")
    (src / "broken.jpg").write_bytes(b"this is not a jpeg")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path_factory.mktemp("out")
    p = _predict("--weights", WEIGHTS, "--img-size", 416, "--source", src, "--save-dir", out,
                 "--conf", 0.25, "--nms", 0.45)
    return p, src, out


@pytest.mark.slow
def test_dog_matches_official(folder_run):
    p, src, out = folder_run
    assert p.returncode == 0, p.stderr
    dets = json.loads((out / "dog.jpg.json").read_text())["detections"]
    best = {}
    for d in dets:
        best.setdefault(d["class_name"], d)
    for name in ("dog", "bicycle", "car"):
        assert best[name]["score"] > 0.5, name
    # official postprocess at the demo setting, in input pixels; dog.jpg is 768x576 -> r = 416/768
    ref = load_npz("reference", "yolox-nano-official_416_b2_data.npz")["pp/demo/b0"]
    r = 416 / 768
    ours = np.array([d["bbox"] + [d["class_id"]] for d in dets])
    assert ours.shape == (len(ref), 5)
    np.testing.assert_array_equal(ours[:, 4], ref[:, 6])
    assert np.abs(ours[:, :4] - ref[:, :4] / r).max() <= 1.0
    np.testing.assert_allclose([d["score"] for d in dets], ref[:, 4] * ref[:, 5], atol=1e-4)


@pytest.mark.slow
def test_folder_outputs_and_bad_image_skipped(folder_run):
    p, src, out = folder_run
    assert p.returncode == 0, p.stderr
    assert "broken.jpg" in p.stdout + p.stderr
    assert "skipped 1 file(s) of" in p.stdout and "not images or videos by their extension (notes.txt)" in p.stdout
    assert "skipped 2 file(s): 1 not images or videos, 1 unreadable" in p.stdout
    for name in ("dog.jpg", "chelsea.png"):  # outputs named from the whole input name
        assert (out / name).stat().st_size > 10000
        assert (out / f"{name}.json").is_file()
    import cv2
    drawn, orig = cv2.imread(str(out / "dog.jpg")), cv2.imread(str(DOG))
    assert drawn.shape == orig.shape and np.abs(drawn.astype(int) - orig).mean() > 0.5  # boxes drawn
    allp = json.loads((out / "predictions.json").read_text())
    assert len(allp["results"]) == 2
    assert sorted(os.path.basename(s["file"]) for s in allp["skipped"]) == ["broken.jpg", "notes.txt"]
    chelsea = allp["results"][str(src / "chelsea.png")]
    assert any(d["class_name"] == "cat" for d in chelsea)


# The video case (3 frames of dog.jpg: dog, bicycle and car in every frame, a 3-frame MP4) runs in
# tests/test_predict_frontend.py::test_batch_matches_batch1_official_nano on that test's compiled
# graph: one predict.py compile less in the suite.


@pytest.mark.parametrize("case", ["missing_weights", "other_model", "unreadable_image", "empty_dir",
                                  "missing_source"])
def test_errors_are_one_line(case, tmp_path):
    config, weights, source = "configs/yolox-nano.yaml", WEIGHTS, DOG
    expect = {"missing_weights": "not found", "other_model": "does not fit the model",
              "unreadable_image": "cannot be read", "empty_dir": "no images",
              "missing_source": "no such file"}[case]
    if case == "missing_weights":
        weights = tmp_path / "missing.pth"
    elif case == "other_model":
        config = "configs/yolox-s.yaml"
    elif case == "unreadable_image":
        source = tmp_path / "bad.png"
        source.write_bytes(b"\x89PNG garbage")
    elif case == "empty_dir":
        source = tmp_path / "empty"
        source.mkdir()
        (source / "notes.txt").write_text("no images here")
    else:
        source = tmp_path / "nothing.jpg"
    p = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--config", config, "--weights", str(weights),
                        "--source", str(source), "--save-dir", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], p.stderr
