"""Issue 34, part 3: one front door and one video loop.

- every command-line program lives in ``mindyolox/commands/``: no other module of the package
  imports ``argparse``; every documented launcher (root ``train.py``, ``test.py``,
  ``predict.py``, ``deploy/*.py``, ``tools/*.py``) is a thin shim that imports its ``run``
  from ``mindyolox.commands`` and nothing else of the package; every console script of
  ``pyproject.toml`` points into ``mindyolox.commands``; each answers ``--help`` (in process:
  no subprocess, no MindSpore graph);
- one frame source and one video loop (:mod:`mindyolox.predict.source`,
  :mod:`mindyolox.predict.loop`): only ``predict/source.py`` opens a ``cv2.VideoCapture``,
  and both ``predict`` and ``infer`` run ``run_plan``; the loop hands consecutive images and
  frames to the model in batches, keeps the source's order and stops at ``max_frames``.

All fast (ast reading, argparse ``--help``, a stand-in model on 64 px images and a 5-frame video).
"""
import ast
import importlib
import json
import re

import cv2
import numpy as np
import pytest

from mindyolox.errors import DataError

from .conftest import ROOT

PACKAGE = ROOT / "mindyolox"
LAUNCHERS = ["train.py", "test.py", "predict.py", "track.py", "deploy/export.py", "deploy/infer.py", "deploy/quantize.py",
             "tools/convert_weights.py", "tools/model_info.py", "tools/print_config.py", "tools/visualize_dataset.py"]


def _imports(path):
    """Top-level module names imported anywhere in ``path`` (inside functions too), and the
    absolute ``from X import ...`` module names."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _launcher_target(script):
    """The ``mindyolox...`` module a launcher imports ``run`` from; asserts the launcher does
    nothing else than put the clone on sys.path, import it and call ``run()``."""
    tree = ast.parse((ROOT / script).read_text())
    targets = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("mindyolox")]
    assert len(targets) == 1, f"{script}: imports {targets} (expected one module of mindyolox.commands)"
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert not defs, f"{script}: defines {[d.name for d in defs]} (a launcher only calls run())"
    return targets[0]


def _help(module, capsys, argv=("--help",)):
    """``module.main(argv)`` must print its help on stdout and exit 0."""
    mod = importlib.import_module(module)
    with pytest.raises(SystemExit) as e:
        mod.main(list(argv))
    assert e.value.code == 0, module
    out = capsys.readouterr().out
    assert out.startswith("usage:"), (module, out[:200])
    return " ".join(out.split())


@pytest.mark.parametrize("script", LAUNCHERS)
def test_launchers_are_shims_of_commands(script, capsys):
    target = _launcher_target(script)
    assert target.startswith("mindyolox.commands."), f"{script} runs {target}, not a module of mindyolox/commands/"
    text = _help(target, capsys)
    if script.startswith(("train", "test", "predict", "track", "deploy/export", "tools/")):
        assert "--config FILE" in text


def _console_scripts():
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^(\S+)\s*=\s*"([^"]+)"', block, re.M))


def test_console_scripts_point_into_commands_and_answer_help(capsys):
    scripts = _console_scripts()
    assert set(scripts) == {"mindyolox-train", "mindyolox-test", "mindyolox-predict", "mindyolox-export",
                            "mindyolox-tools", "mindyolox-infer", "mindyolox-track"}
    for name, target in scripts.items():
        module, func = target.split(":")
        assert module.startswith("mindyolox.commands") and func == "run", (name, target)
        if name != "mindyolox-tools":
            _help(module, capsys)
    from mindyolox.commands.tools import TOOLS, run
    with pytest.raises(SystemExit) as e:
        run(["--help"])
    assert e.value.code == 0
    listed = capsys.readouterr().out
    assert all(verb in listed for verb in TOOLS) and "demo-data" in TOOLS
    for verb, (module, _) in TOOLS.items():   # every verb's program answers --help
        _help(f"mindyolox.commands.{module}", capsys)


def test_old_demo_entry_says_where_the_program_went():
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "mindyolox.data.demo", "--out", "x"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "error: the demo dataset generator is `python -m mindyolox.commands.demo --out DIR` "
        "(installed: `mindyolox-tools demo-data --out DIR`)"]


# ----------------------------------------------------------------------------- one video loop
def test_one_video_capture_and_one_loop_for_both_commands():
    opens = [str(p.relative_to(ROOT)) for p in sorted(PACKAGE.rglob("*.py")) if "VideoCapture(" in p.read_text()]
    assert opens == ["mindyolox/predict/source.py"]
    for cmd in ("predict", "infer"):
        tree = ast.parse((PACKAGE / "commands" / f"{cmd}.py").read_text())
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert {"plan_source", "run_plan"} <= calls, cmd


def _image(path, value):
    img = np.full((64, 64, 3), value, np.uint8)
    assert cv2.imwrite(str(path), img)


def _video(path, frames):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 64))
    for i in range(frames):
        w.write(np.full((64, 64, 3), 30 * i, np.uint8))
    w.release()


def test_loop_batches_images_and_frames_in_source_order(tmp_path):
    """Folder a.jpg b.jpg c.avi (5 frames) d.jpg, batch 2, max 3 frames: the model sees
    [a, b], [c0, c1], [c2], [d]; outputs and the summary in the folder's order."""
    from mindyolox.predict.loop import plan_source, run_plan
    src = tmp_path / "src"
    src.mkdir()
    for name, v in (("a.jpg", 10), ("b.jpg", 20), ("d.jpg", 40)):
        _image(src / name, v)
    _video(src / "c.avi", 5)
    calls = []

    def model(images):
        calls.append([int(img[0, 0, 0]) for img in images])
        return [np.array([[1, 1, 20, 20, 0.9, 0.9, 0]], np.float32) for _ in images]

    plan = plan_source(str(src), str(tmp_path / "out"))
    lines = []
    out = run_plan(model, plan, ["thing"], batch=2, max_frames=3, progress=False, log=lines.append)
    assert [len(c) for c in calls] == [2, 2, 1, 1]
    assert calls[0][0] < calls[0][1] and calls[3][0] > calls[0][1]      # a, b first; d last (by colour)
    assert list(out["results"]) == [str(src / n) for n in ("a.jpg", "b.jpg", "c.avi", "d.jpg")]
    assert out["images"] == 3 and [f["frame"] for f in out["results"][str(src / "c.avi")]] == [0, 1, 2]
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert list(summary["results"]) == list(out["results"])
    assert (tmp_path / "out" / "c.avi.mp4").stat().st_size > 0
    assert lines[2] == f"{src / 'c.avi'}: 3 frames, 3 detections"


def test_webcam_and_stream_are_sources_of_both_commands(tmp_path):
    """``--source 0`` (a webcam index) is read as a stream by the shared source (predict.py too,
    not only deploy/infer.py): named in one line when it cannot be opened, nothing written."""
    from mindyolox.predict.predictor import run_prediction
    from mindyolox.predict.source import read_source
    assert read_source("0") == ("stream", [0], [])
    assert read_source("rtsp://host/x") == ("stream", ["rtsp://host/x"], [])
    with pytest.raises(DataError, match=r"^--source 987: cannot be opened as a webcam or stream$"):
        run_prediction(lambda img: np.zeros((0, 7), np.float32), "987", str(tmp_path / "o"), ["thing"],
                       progress=False, log=lambda *a: None, streams=True)
    assert not (tmp_path / "o" / "predictions.json").exists()
