"""``pip install .`` from a clone: the wheel holds the package, its recipes and its console
commands; installed (into a folder of its own, outside the clone) ``--config yolox-s`` finds
the packaged recipe and the commands run.

The acceptance test of the custom-data section (issue 26): in a folder outside the clone, with
only the installed wheel on the path, it writes the recipe files of the README section
``README_CUSTOM`` and runs that section's commands as written on generated 5-image COCO and VOC
sets (``mindyolox-train`` commands get ``PKG_SHORT`` appended: 1 epoch, batch 2), then checks
what each command wrote (``CHECKS``, one entry per command name). Beside them, in the
background, the demo recipe trains one epoch (``train.max_epoch=1``: the schedule clipped to fit)
on the demo set in a Roboflow YOLO export's layout, through ``--data data.yaml`` (issue 36)."""
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import ROOT, shared_path

pytestmark = pytest.mark.slow   # every test here builds and installs the wheel (one per module)

# the console scripts and the module each runs (mindyolox-tools: a verb, then its options)
COMMANDS = {"mindyolox-train": "mindyolox.commands.train:run", "mindyolox-test": "mindyolox.commands.evaluate:run",
            "mindyolox-predict": "mindyolox.commands.predict:run", "mindyolox-export": "mindyolox.commands.export:run",
            "mindyolox-tools": "mindyolox.commands.tools:run"}
# not a --config command: tested on its own (test_installed_infer_runs_exported_models_from_any_folder)
ENTRY_POINTS = dict(COMMANDS, **{"mindyolox-infer": "mindyolox.commands.infer:run",
                                  "mindyolox-track": "mindyolox.commands.track:run"})
# where the custom-data commands are documented: (file, heading of the section)
README_CUSTOM = (ROOT / "docs" / "training.md", "## Custom datasets (COCO and VOC)")
PKG_SHORT = ["train.max_epoch=1", "train.batch_size=2"]   # 5 images: 3 steps of 2, then the evaluation


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # the venv's setuptools when it has one (Python <= 3.11 venvs do), else pip's isolated build
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    p = subprocess.run(pip + ["wheel", "--no-deps", *isolation, "-w", str(tmp / "dist"), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    wheel = next((tmp / "dist").glob("mindyolox-*.whl"))
    p = subprocess.run(pip + ["install", "--no-deps", "--target", str(tmp / "site"), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return tmp, wheel


def test_wheel_holds_the_package_recipes_and_commands(installed):
    _, wheel = installed
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = z.read(entry).decode()
    assert {"mindyolox/configs/yolox-s.yaml", "mindyolox/configs/_base_/default.yaml",
            "mindyolox/configs/demo/yolox-nano-demo.yaml", "mindyolox/commands/train.py"} <= names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    for command, target in ENTRY_POINTS.items():
        assert f"{command} = {target}" in scripts
    assert {"mindyolox/configs/custom/yolox-nano-cpu.yaml", "mindyolox/commands/tools/print_config.py"} <= names


def _env(site):
    return dict(os.environ, PYTHONPATH=str(site), PATH=f"{site / 'bin'}{os.pathsep}{os.environ['PATH']}")


def test_installed_package_finds_its_recipes_by_name(installed):
    tmp, _ = installed
    code = ("import mindyolox, mindyolox.config as c; from mindyolox import load_config; "
            "print(mindyolox.__file__); print(c.RECIPES); cfg = load_config('yolox-s'); "
            "print(cfg.model.width, load_config('demo/yolox-nano-demo').train.batch_size)")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=_env(tmp / "site"), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    module, recipes, values = p.stdout.strip().splitlines()[-3:]
    assert module.startswith(str(tmp / "site")) and recipes == str(tmp / "site" / "mindyolox" / "configs")
    assert values == "0.5 8"


@pytest.mark.parametrize("command", [c if c != "mindyolox-tools" else "mindyolox-tools print-config" for c in COMMANDS])
def test_installed_commands_run(installed, command):
    tmp, _ = installed
    command, *verb = command.split()
    script = tmp / "site" / "bin" / command
    assert script.is_file()
    if verb:  # mindyolox-tools: without a verb it lists them
        p = subprocess.run([sys.executable, str(script)], cwd=tmp, env=_env(tmp / "site"), capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 2 and all(v in p.stderr for v in ("convert-weights", "model-info", "print-config",
                                                                 "visualize-dataset")), p.stderr
    p = subprocess.run([sys.executable, str(script), *verb, "--help"], cwd=tmp, env=_env(tmp / "site"),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    help_text = " ".join(p.stdout.split())
    assert "--config FILE" in help_text and "shipped recipe by name such as yolox-s, demo/yolox-nano-demo" in help_text
    # a bad recipe name: one line naming the shipped recipes
    p = subprocess.run([sys.executable, str(script), *verb, "--config", "yolox-q"] +
                       ([] if verb else ["--weights", "w.pth"]) +
                       (["--source", "x.jpg"] if command == "mindyolox-predict" else []) +
                       (["--batch", "1", "--img-size", "64"] if command == "mindyolox-export" else []),
                       cwd=tmp, env=_env(tmp / "site"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "shipped recipes, by name: custom/yolox-nano-cpu, demo/yolox-nano-demo, yolox-darknet53" in p.stderr, \
        p.stderr[-2000:]



def test_installed_infer_runs_exported_models_from_any_folder(installed):
    """``mindyolox-infer`` (deploy/infer.py of the clone) is installed: its help names the artifact
    kinds, and a model that is not there is one line naming it."""
    tmp, _ = installed
    script = tmp / "site" / "bin" / "mindyolox-infer"
    env = _env(tmp / "site")
    p = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and all(k in p.stdout for k in (".onnx", ".mindir", ".om")), p.stderr[-2000:]
    image = tmp / "one.jpg"
    cv2.imwrite(str(image), np.full((32, 32, 3), 114, np.uint8))
    p = subprocess.run([sys.executable, str(script), "--model", "absent.onnx", "--source", str(image)], cwd=tmp,
                       env=env, capture_output=True, text=True, timeout=300)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "absent.onnx" in lines[0], p.stderr[-2000:]

# ----------------------------------------------------------------------------- custom data
CLASSES = ("cat", "dog")         # the README's example: two classes
COCO_IDS = (3, 7)                # non-contiguous category ids, as the README allows


def _draw(rng, size=(120, 160)):
    """A random image with 1-2 objects: ``(bgr uint8 [h, w, 3], [(class, x1, y1, x2, y2)])``;
    class 0 a filled rectangle, class 1 a filled disc."""
    h, w = size
    img = np.full((h, w, 3), rng.integers(40, 200, 3), np.uint8)
    objects = []
    for _ in range(int(rng.integers(1, 3))):
        c = int(rng.integers(0, 2))
        bw, bh = int(rng.integers(30, 60)), int(rng.integers(30, 60))
        x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        if c == 0:
            cv2.rectangle(img, (x1, y1), (x1 + bw - 1, y1 + bh - 1), colour, -1)
        else:
            cv2.ellipse(img, (x1 + bw // 2, y1 + bh // 2), (bw // 2, bh // 2), 0, 0, 360, colour, -1)
        objects.append((c, x1, y1, x1 + bw, y1 + bh))
    return img, objects


def make_coco(root, n=5, seed=0):
    """The README's COCO layout: ``annotations/{train,val}.json``, ``images/{train,val}/``
    (the same ``n`` images in both splits)."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(n):
        img, objects = _draw(rng)
        for split in ("train", "val"):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / split / f"img{i}.jpg"), img)
        images.append({"id": i + 1, "file_name": f"img{i}.jpg", "height": img.shape[0], "width": img.shape[1]})
        for c, x1, y1, x2, y2 in objects:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": COCO_IDS[c], "iscrowd": 0,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": cid, "name": name} for cid, name in zip(COCO_IDS, CLASSES)]}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (root / "annotations" / f"{split}.json").write_text(json.dumps(coco))


def make_voc(root, n=5, seed=1):
    """The README's VOC layout: ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/{trainval,test}.txt``
    (1-based pixel coordinates, as VOC writes them)."""
    rng = np.random.default_rng(seed)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    stems = [f"{i:06d}" for i in range(n)]
    for stem in stems:
        img, objects = _draw(rng)
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.jpg"), img)
        objs = "".join(f"<object><name>{CLASSES[c]}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin>"
                       f"<ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
                       for c, x1, y1, x2, y2 in objects)
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{img.shape[1]}</width>"
            f"<height>{img.shape[0]}</height><depth>3</depth></size>{objs}</annotation>")
    for split in ("trainval", "test"):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems) + "\n")


def custom_section():
    """``(files {name: text}, run [commands], as_overrides [commands])`` of the README section
    ``README_CUSTOM``: the ```yaml blocks after ``<!-- file: NAME -->``, the ```bash commands to
    run, and those of blocks whose marker says they are a run written "as overrides"."""
    from tests.test_quickstart import readme_blocks
    path, heading = README_CUSTOM
    text = path.read_text()
    assert text.count(heading + "\n") == 1, f"{path} has no section {heading!r}"
    body = re.split(r"^## ", text.split(heading + "\n", 1)[1], flags=re.M)[0]
    files = dict(re.findall(r"<!-- file: (\S+) -->\n```yaml\n(.*?)```", body, flags=re.S))
    run, as_overrides = [], []
    for b in readme_blocks(body):
        (as_overrides if "as overrides" in b.marker else run).extend(b.commands)
    return files, run, as_overrides


def _run_dir(user, command):
    words = shlex.split(command)
    name = words[words.index("--name") + 1] if "--name" in words else \
        os.path.splitext(os.path.basename(words[words.index("--config") + 1]))[0]
    return user / "runs" / "train" / name


def _check_tool(user, command, out):
    words = shlex.split(command)
    png = cv2.imread(str(user / words[words.index("-o") + 1]))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100, out[-2000:]
    assert "8 samples of VOCDataset('VOC datasets/my_voc trainval', images=5" in out, out[-2000:]


def _check_train(user, command, out):
    run = _run_dir(user, command)
    assert (run / "last.ckpt").is_file(), out[-3000:]
    log = (run / "train_log.txt").read_text()
    assert "short schedule: warm-up clipped to 0.25 epoch(s), no-aug tail to 0" in log  # 1 epoch of a 30-epoch recipe
    assert "the head's class layers" in log and "yolox_nano.pth" in log  # fine-tuned: 80 -> 2 classes
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["iter"]) for r in records if r["type"] == "train"] == [(1, 3)]  # 5 images, batch 2
    evals = [r for r in records if r["type"] == "eval"]
    assert len(evals) == 1 and 0.0 <= evals[0]["AP50_95"] <= evals[0]["AP50"] <= 1.0, out[-3000:]


def _check_predict(user, command, out):
    words = shlex.split(command)
    save = user / words[words.index("--save-dir") + 1]
    results = json.loads((save / "predictions.json").read_text())["results"]
    assert sorted(os.path.basename(k) for k in results) == [f"img{i}.jpg" for i in range(5)], out[-2000:]
    assert all(d["class_name"] in CLASSES for dets in results.values() for d in dets)
    assert all((save / f"img{i}.jpg").is_file() for i in range(5))


# what each README command must have written; a command of the section without an entry fails
# (issue 25 adds mindyolox-infer: one entry here, its command in the README block)
CHECKS = {"mindyolox-tools": _check_tool, "mindyolox-train": _check_train, "mindyolox-predict": _check_predict}


def demo_as_yolo(coco_root, dst):
    """The demo set at ``coco_root`` in the layout of a Roboflow YOLO export: ``dst/{train,valid}/
    images`` (links to the demo's images) and ``labels/*.txt`` (``class cx cy w h``, normalised, 6
    digits), ``dst/data.yaml`` as Roboflow writes it (``train: ../train/images``, ``nc``, ``names``)."""
    for split, sub in (("train", "train"), ("val", "valid")):
        data = json.loads((coco_root / "annotations" / f"instances_{split}.json").read_text())
        cats = sorted(c["id"] for c in data["categories"])
        (dst / sub / "labels").mkdir(parents=True)
        (dst / sub / "images").symlink_to(coco_root / split)
        lines = {im["id"]: [] for im in data["images"]}
        size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
        for a in data["annotations"]:
            (x, y, w, h), (iw, ih) = a["bbox"], size[a["image_id"]]
            lines[a["image_id"]].append(f"{cats.index(a['category_id'])} {(x + w / 2) / iw:.6f} {(y + h / 2) / ih:.6f} "
                                        f"{w / iw:.6f} {h / ih:.6f}")
        for im in data["images"]:
            stem = os.path.splitext(im["file_name"])[0]
            (dst / sub / "labels" / f"{stem}.txt").write_text("".join(f"{t}\n" for t in lines[im["id"]]))
    names = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
    (dst / "data.yaml").write_text(f"train: ../train/images\nval: ../valid/images\n\nnc: {len(names)}\n"
                                   f"names: {names!r}\n")
    return dst / "data.yaml"


def _start_demo_one_epoch(user, env):
    """``mindyolox-train --config demo/yolox-nano-demo --data <data.yaml> train.max_epoch=1``
    (issue 26: a short run of a shipped recipe starts; issue 36: one epoch from a dataset YAML
    from outside the clone) on a small pre-made demo set in a Roboflow YOLO export's layout,
    started in the background so that its graph compile overlaps the README commands' (one core
    each)."""
    from mindyolox.data.demo import DemoSpec, generate
    generate(user / "demo_small", DemoSpec(32, 4, 0), progress=False)
    yml = demo_as_yolo(user / "demo_small", user / "demo_yolo")
    log = open(user / "demo_one_epoch.out", "w")
    command = [sys.executable, str(Path(env["PATH"].split(os.pathsep)[0]) / "mindyolox-train"), "--config",
               "demo/yolox-nano-demo", "--data", str(yml.relative_to(user)), "train.max_epoch=1",
               "train.tensorboard=false", "--workers", "0", "--no-eval", "--run-dir", str(user / "demo_run")]
    env = {k: v for k, v in env.items() if not k.startswith("MS_COMPILER_CACHE")}
    return subprocess.Popen(command, cwd=user, env=env, stdout=log, stderr=subprocess.STDOUT, text=True), log


def _check_demo_one_epoch(user, proc, log):
    import yaml

    from mindyolox.training.lr import build_lr_schedule
    proc.wait(timeout=900)
    log.close()
    out = (user / "demo_one_epoch.out").read_text()
    assert proc.returncode == 0, out[-4000:]
    run = user / "demo_run"
    train_log = (run / "train_log.txt").read_text()
    assert train_log.count("short schedule: warm-up clipped to 0.25 epoch(s), no-aug tail to 0") == 1, train_log
    assert "no Mosaic/MixUp from now on, L1 loss on" in train_log  # the one epoch is the official last (no-aug) one
    ran_cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (ran_cfg["data"]["format"], ran_cfg["data"]["yaml"]) == ("yolo", str(user / "demo_yolo" / "data.yaml"))
    assert "YOLODataset('data.yaml train', images=32" in train_log and "label problems" not in train_log
    ran = ran_cfg["train"]   # what ran
    assert (ran["warmup_epochs"], ran["no_aug_epochs"], ran["max_epoch"]) == (0.25, 0, 1)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    assert [(r["epoch"], r["iter"]) for r in train] == [(1, 4)]  # 32 images / batch 8, one log line at the end
    sched = build_lr_schedule(ran, 4)
    assert sched.warmup_iters == 1 and sched(0) == 0.0
    assert train[0]["lr"] == pytest.approx(sched(3)) and train[0]["l1"] > 0 and train[0]["total"] > 0
    assert (run / "last.ckpt").is_file()
    assert "epoch 1/1" in out and "loss nan" not in out   # the progress bar (issue 26, point 7)


def test_readme_custom_data_commands_run_from_the_installed_wheel(installed, monkeypatch):
    """Issue 26 acceptance: the README's custom-data section, as written, outside the clone."""
    from mindyolox import load_config
    from mindyolox.predict.predictor import class_names_for
    tmp, _ = installed
    files, commands, as_overrides = custom_section()
    assert set(files) == {"my_coco.yaml", "my_voc.yaml"} and len(commands) >= 4 and as_overrides
    user = tmp / "user"
    (user / "home").mkdir(parents=True)
    make_coco(user / "datasets" / "my_coco")
    make_voc(user / "datasets" / "my_voc")
    for name, text in files.items():
        (user / name).write_text(text)
    weights = user / "home" / "weights"   # --weights yolox_nano: the official file, as if downloaded
    weights.mkdir()
    (weights / "yolox_nano.pth").symlink_to(shared_path("weights", "yolox_nano.pth"))
    env = {k: v for k, v in _env(tmp / "site").items() if k != "GLOG_v"}
    env.update(HOME=str(user / "home"), MINDYOLOX_WEIGHTS_DIR=str(weights), PYTHONUNBUFFERED="1",
               MS_COMPILER_CACHE_ENABLE="1", MS_COMPILER_CACHE_PATH=str(tmp / "ms_cache"))
    demo = _start_demo_one_epoch(user, env)
    ran = []
    for command in commands:
        program = shlex.split(command)[0]
        assert program in CHECKS, f"README custom-data command without a check in tests/test_package.py: {command}"
        full = command + (" " + " ".join(PKG_SHORT) if program == "mindyolox-train" else "")
        t0 = time.perf_counter()
        p = subprocess.run(["bash", "-c", full], cwd=user, env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=900)
        print(f"+ {full}\n  exit {p.returncode} in {time.perf_counter() - t0:.1f} s", flush=True)
        assert p.returncode == 0, f"`{full}` exited {p.returncode}:\n{p.stdout[-4000:]}"
        assert str(ROOT) not in p.stdout  # nothing comes from the clone
        CHECKS[program](user, command, p.stdout)
        ran.append(program)
    assert ran.count("mindyolox-train") == 2 and "mindyolox-predict" in ran and "mindyolox-tools" in ran
    _check_demo_one_epoch(user, *demo)
    # the recipe files name a shipped recipe as __base__; class names come from the JSON;
    # the all-overrides VOC command resolves to the my_voc.yaml recipe and its run folder
    monkeypatch.chdir(user)
    assert class_names_for(load_config("my_coco.yaml")) == CLASSES
    for command in as_overrides:
        words = shlex.split(command)
        cfg = load_config(words[words.index("--config") + 1], [w for w in words if re.match(r"^\w+(\.\w+)+=", w)])
        assert cfg == load_config("my_voc.yaml") and _run_dir(user, command) == user / "runs/train/my_voc"
