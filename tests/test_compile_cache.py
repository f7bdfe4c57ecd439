"""The compile-cache folder of a training run (mindyolox/runtime/compile_cache.py): keyed by code
version, recipe and device options, so no run reads graphs of other code or another recipe;
``auto`` only for fixed-size recipes (MindSpore caches graphs by compile order)."""
from pathlib import Path

from mindyolox import load_config
from mindyolox.runtime import compile_cache as cc
from mindyolox.options import resolve_options

DEMO = "configs/demo/yolox-nano-demo.yaml"


def test_code_version_follows_every_package_file(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    monkeypatch.setattr(cc, "PACKAGE", pkg)
    first = cc.code_version()
    assert cc.code_version() == first
    (pkg / "sub" / "b.py").write_text("y = 3\n")          # a file reached by no import at all
    assert cc.code_version() != first


def test_recipe_key_ignores_the_output_folder_only():
    cpu = resolve_options(load_config(DEMO, []), device="CPU")
    base = cc.recipe_key(load_config(DEMO, []), cpu)
    assert cc.recipe_key(load_config(DEMO, ["train.output_dir=/tmp/x"]), cpu) == base
    for change in ("data.input_size=[192,192]", "model.width=0.5", "train.seed=1", "train.ema_tau=50.0"):
        assert cc.recipe_key(load_config(DEMO, [change]), cpu) != base, change
    assert cc.recipe_key(load_config(DEMO, []), resolve_options(load_config(DEMO, []), device="GPU")) != base
    assert cc.recipe_key(load_config(DEMO, []), cpu, {"distributed": True}) != base


def test_auto_for_fixed_size_recipes_only(tmp_path, monkeypatch):
    for k in cc.CACHE_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MINDYOLOX_COMPILE_CACHE", str(tmp_path / "root"))
    demo = load_config(DEMO, [])
    path, note = cc.resolve_compile_cache("auto", demo, name="quick")
    assert path.parent == tmp_path / "root" and path.name.startswith("quick-") and str(path) in note
    multi = load_config("configs/yolox-nano.yaml", [])           # multiscale_range 5
    assert cc.resolve_compile_cache("auto", multi) [0] is None
    assert "off" in cc.resolve_compile_cache("auto", multi)[1]
    explicit, note = cc.resolve_compile_cache(str(tmp_path / "mine"), multi, name="n")
    assert explicit.parent == tmp_path / "mine" and "multiscale" in note   # a keyed subfolder, warned
    # a multiscale run is keyed by its start position (its size order), a fixed-size one is not
    at = {s: cc.run_switches(multi, s, evaluate=True) for s in [(0, 0), (1, 4)]}
    assert cc.default_cache_dir(multi, run=at[(0, 0)]) != cc.default_cache_dir(multi, run=at[(1, 4)])
    assert cc.run_switches(demo, (1, 4), evaluate=True) == cc.run_switches(demo, (0, 0), evaluate=True)
    assert cc.run_switches(demo, evaluate=True) != cc.run_switches(demo, evaluate=False)
    assert cc.resolve_compile_cache("off", demo) == (None, None)
    assert cc.resolve_compile_cache(None, demo) == (None, None)
    monkeypatch.setenv("MS_COMPILER_CACHE_PATH", str(tmp_path / "callers"))   # the caller's own cache
    assert cc.resolve_compile_cache("auto", demo) == (None, None)
    monkeypatch.delenv("MS_COMPILER_CACHE_PATH")
    monkeypatch.setenv("MINDYOLOX_COMPILE_CACHE", "off")
    assert cc.resolve_compile_cache("auto", demo) == (None, None)


def test_the_test_session_has_its_own_cache_root():
    import os
    root = Path(os.environ["MINDYOLOX_COMPILE_CACHE"])
    assert root.is_dir() and Path.home() / ".cache" not in root.parents
