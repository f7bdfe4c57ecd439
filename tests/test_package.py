"""``pip install .`` from a clone: the wheel holds the package, its recipes and four console
commands; installed (into a folder of its own, outside the clone) ``--config yolox-s`` finds
the packaged recipe and the commands run."""
import importlib.util
import os
import subprocess
import sys
import zipfile

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow  # builds a wheel, runs the installed commands

COMMANDS = ("mindyolox-train", "mindyolox-test", "mindyolox-predict", "mindyolox-export")


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
    for command in COMMANDS:
        assert f"{command} = mindyolox.commands." in scripts


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


@pytest.mark.parametrize("command", COMMANDS)
def test_installed_commands_run(installed, command):
    tmp, _ = installed
    script = tmp / "site" / "bin" / command
    assert script.is_file()
    p = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp, env=_env(tmp / "site"),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "--config FILE" in p.stdout, p.stderr[-2000:]
    # a bad recipe name: one line naming the shipped recipes
    p = subprocess.run([sys.executable, str(script), "--config", "yolox-q", "--weights", "w.pth"] +
                       (["--source", "x.jpg"] if command == "mindyolox-predict" else []) +
                       (["--batch", "1", "--img-size", "64"] if command == "mindyolox-export" else []),
                       cwd=tmp, env=_env(tmp / "site"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "shipped recipes, by name: demo/yolox-nano-demo, yolox-darknet53" in p.stderr, \
        p.stderr[-2000:]
