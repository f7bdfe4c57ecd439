"""Recipes, __base__ inheritance, overrides, validation errors and the print_config CLI."""
import copy
import pickle
import subprocess
import sys

import pytest
import yaml

from mindyolox import load_config
from mindyolox.config import Config, dump_config
from mindyolox.errors import ConfigError

from .conftest import ROOT

CONFIGS = ROOT / "configs"

# Official YOLOX 0.3.0 exps/default/*.py values that differ between the models.
OFFICIAL = {
    "nano": dict(backbone="cspdarknet", act="silu", depth=0.33, width=0.25, depthwise=True,
                 input_size=[416, 416], test_size=[416, 416], random_size=[10, 20],
                 mosaic_scale=[0.5, 1.5], mosaic_prob=0.5, enable_mixup=False),
    "tiny": dict(backbone="cspdarknet", act="silu", depth=0.33, width=0.375, depthwise=False,
                 input_size=[416, 416], test_size=[416, 416], random_size=[10, 20],
                 mosaic_scale=[0.5, 1.5], mosaic_prob=1.0, enable_mixup=False),
    "s": dict(backbone="cspdarknet", act="silu", depth=0.33, width=0.50, depthwise=False),
    "m": dict(backbone="cspdarknet", act="silu", depth=0.67, width=0.75, depthwise=False),
    "l": dict(backbone="cspdarknet", act="silu", depth=1.0, width=1.0, depthwise=False),
    "x": dict(backbone="cspdarknet", act="silu", depth=1.33, width=1.25, depthwise=False),
    "darknet53": dict(backbone="darknet53", act="lrelu", depth=1.0, width=1.0, depthwise=False),
}
# Official Exp defaults for everything a model file leaves alone.
EXP_DEFAULTS = dict(input_size=[640, 640], test_size=[640, 640], random_size=[],
                    mosaic_scale=[0.1, 2.0], mosaic_prob=1.0, enable_mixup=True)


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_recipe_matches_official(name):
    cfg = load_config(CONFIGS / f"yolox-{name}.yaml")
    want = {**EXP_DEFAULTS, **OFFICIAL[name]}
    got = dict(backbone=cfg.model.backbone, act=cfg.model.act, depth=cfg.model.depth,
               width=cfg.model.width, depthwise=cfg.model.depthwise,
               input_size=cfg.data.input_size, test_size=cfg.data.test_size,
               random_size=cfg.data.random_size, mosaic_scale=cfg.aug.mosaic_scale,
               mosaic_prob=cfg.aug.mosaic_prob, enable_mixup=cfg.aug.enable_mixup)
    assert got == want
    # Shared official Exp defaults.
    assert cfg.model.num_classes == 80 and cfg.train.max_epoch == 300
    assert cfg.train.no_aug_epochs == 15 and cfg.train.warmup_epochs == 5
    assert cfg.train.basic_lr_per_img == pytest.approx(0.01 / 64)
    assert cfg.aug.mixup_prob == 1.0 and cfg.aug.mixup_scale == [0.5, 1.5]
    assert (cfg.test.conf, cfg.test.nms) == (0.01, 0.65)
    assert "__base__" not in cfg
    first = (CONFIGS / f"yolox-{name}.yaml").read_text().splitlines()[0]
    assert first.startswith("# YOLOX-") and "official" in first


def test_nano_builds_with_official_param_count():
    from mindyolox import build_model
    model = build_model(load_config(CONFIGS / "yolox-nano.yaml"))
    assert sum(p.size for p in model.trainable_params()) == 912_159


def test_config_attribute_access_copy_and_pickle():
    cfg = Config({"a": {"b": 1}})
    assert isinstance(cfg.a, Config) and cfg.a.b == 1 and cfg["a"]["b"] == 1
    cfg.a.c = {"d": 2}
    assert cfg.a.c.d == 2
    with pytest.raises(AttributeError, match="'zz'"):
        cfg.zz
    assert not hasattr(cfg, "zz")
    assert copy.deepcopy(cfg) == cfg and pickle.loads(pickle.dumps(cfg)) == cfg


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_list_deep_merge_in_order(tmp_path):
    _write(tmp_path / "b/one.yaml", "model: {depth: 0.5, width: 0.5}\ndata: {input_size: [320, 320]}\n")
    _write(tmp_path / "b/two.yaml", "__base__: inner/three.yaml\nmodel: {width: 0.75}\n")
    _write(tmp_path / "b/inner/three.yaml", "train: {max_epoch: 7}\ndata: {random_size: [3, 4]}\n")
    top = _write(tmp_path / "top.yaml",
                 "__base__: [b/one.yaml, b/two.yaml]\ndata: {input_size: [256, 256]}\n")
    cfg = load_config(top)
    assert cfg.model.depth == 0.5            # from one.yaml
    assert cfg.model.width == 0.75           # two.yaml overrides one.yaml (later base wins)
    assert cfg.train.max_epoch == 7          # recursive base of two.yaml
    assert cfg.data.input_size == [256, 256]  # the file itself beats its bases; list replaced
    assert cfg.data.random_size == [3, 4]
    assert cfg.model.act == "silu" and cfg.train.batch_size == 64   # schema defaults underneath


def test_recipe_outside_repo_gets_defaults_and_int_becomes_float(tmp_path):
    cfg = load_config(_write(tmp_path / "r.yaml", "model: {depth: 1, num_classes: 3}\n"))
    assert cfg.model.depth == 1.0 and isinstance(cfg.model.depth, float)
    assert cfg.model.num_classes == 3 and cfg.data.test_size == [640, 640]


def test_override_typing():
    cfg = load_config(CONFIGS / "yolox-s.yaml", [
        "train.max_epoch=10", "data.input_size=[320,320]", "model.depthwise=true",
        "model.depth=5", "train.output_dir=123", "aug.mosaic_scale=[1, 2]",
        "test={conf: 0.5}"])
    assert cfg.train.max_epoch == 10 and isinstance(cfg.train.max_epoch, int)
    assert cfg.data.input_size == [320, 320]
    assert cfg.model.depthwise is True
    assert cfg.model.depth == 5.0 and isinstance(cfg.model.depth, float)
    assert cfg.train.output_dir == "123"
    assert cfg.aug.mosaic_scale == [1.0, 2.0] and all(isinstance(x, float) for x in cfg.aug.mosaic_scale)
    assert cfg.test.conf == 0.5 and cfg.test.nms == 0.65   # section override merges


def test_dump_load_round_trip(tmp_path):
    cfg = load_config(CONFIGS / "yolox-nano.yaml", ["data.classes=[a, 'yes', '1']",
                                                     "model.num_classes=3"])
    path = dump_config(cfg, tmp_path / "out" / "resolved.yaml")
    assert "__base__" not in path.read_text()
    again = load_config(path)
    assert again == cfg and again.data.classes == ["a", "yes", "1"]
    assert yaml.safe_load(cfg.to_yaml()) == cfg


def test_cycle_names_the_files(tmp_path):
    _write(tmp_path / "a.yaml", "__base__: b.yaml\n")
    _write(tmp_path / "b.yaml", "__base__: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml")


# (file text, overrides, fragments the one-line message must contain)
BAD = {
    "unknown_key": ("train: {max_epochs: 10}\n", [],
                    ["bad.yaml", "unknown key 'train.max_epochs'", "did you mean 'train.max_epoch'"]),
    "unknown_section": ("modle: {depth: 1.0}\n", [], ["bad.yaml", "'modle'", "did you mean 'model'"]),
    "wrong_type": ("model: {depth: fast}\n", [], ["bad.yaml", "'model.depth'", "number"]),
    "bool_strict": ("model: {depthwise: 1}\n", [], ["bad.yaml", "'model.depthwise'", "bool"]),
    "int_not_float": ("train: {max_epoch: 10.5}\n", [], ["bad.yaml", "'train.max_epoch'", "integer"]),
    "list_required": ("data: {input_size: 640}\n", [], ["bad.yaml", "'data.input_size'", "list"]),
    "section_scalar": ("model: 3\n", [], ["bad.yaml", "'model'", "mapping"]),
    "bad_backbone": ("model: {backbone: resnet}\n", [], ["bad.yaml", "'model.backbone'", "darknet53"]),
    "bad_act": ("model: {act: gelu}\n", [], ["bad.yaml", "'model.act'", "lrelu"]),
    "bad_format": ("data: {format: yolov5}\n", [], ["bad.yaml", "'data.format'", "yolo"]),
    "bad_prob": ("aug: {mosaic_prob: 1.5}\n", [], ["bad.yaml", "'aug.mosaic_prob'", "[0, 1]"]),
    "bad_size": ("data: {test_size: [640, 600]}\n", [], ["bad.yaml", "'data.test_size'", "32"]),
    "size_len": ("data: {input_size: [640]}\n", [], ["bad.yaml", "'data.input_size'", "32"]),
    "zero_classes": ("model: {num_classes: 0}\n", [], ["bad.yaml", "'model.num_classes'", "> 0"]),
    "missing_base": ("__base__: nothere.yaml\n", [], ["bad.yaml", "nothere.yaml", "not found"]),
    "bad_base_type": ("__base__: 3\n", [], ["bad.yaml", "__base__"]),
    "malformed": ("model:\n  depth: 0.33\n  width: [0.5\n", [], ["bad.yaml:", "malformed YAML"]),
    "duplicate": ("model: {depth: 0.33}\nmodel: {width: 0.5}\n", [], ["bad.yaml:2", "duplicate key 'model'"]),
    "not_mapping": ("- a\n- b\n", [], ["bad.yaml", "mapping", "list"]),
    "empty": ("", [], ["bad.yaml", "empty"]),
    "override_unknown": ("{}\n", ["train.max_epochs=3"],
                         ["override 'train.max_epochs=3'", "did you mean 'train.max_epoch'"]),
    "override_no_equals": ("{}\n", ["train.max_epoch"], ["override 'train.max_epoch'", "key=value"]),
    "override_type": ("{}\n", ["model.depthwise=1"], ["override 'model.depthwise=1'", "bool"]),
    "override_value": ("{}\n", ["data.input_size=[320,330]"], ["override", "'data.input_size'", "32"]),
    "override_yaml": ("{}\n", ["data.input_size=[320"], ["override 'data.input_size=[320'", "YAML"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_config_raises_one_line_naming_it(case, tmp_path):
    text, overrides, fragments = BAD[case]
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_missing_file_and_base_name_both_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    _write(tmp_path / "mid.yaml", "__base__: sub/gone.yaml\n")
    top = _write(tmp_path / "top.yaml", "__base__: mid.yaml\n")
    with pytest.raises(ConfigError, match=r"mid\.yaml: __base__ file '.*sub/gone\.yaml' not found"):
        load_config(top)


def test_base_may_name_a_shipped_recipe_from_any_folder(tmp_path, monkeypatch):
    """``__base__: demo/yolox-nano-demo`` resolves as ``--config`` does (a file relative to the
    recipe first, then the shipped recipes by name), from a folder outside the clone."""
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "mine.yaml", "__base__: demo/yolox-nano-demo\nmodel:\n  num_classes: 2\n"
                                   "data:\n  classes: [cat, dog]\n")
    cfg = load_config("mine.yaml")
    demo = load_config("demo/yolox-nano-demo")
    assert cfg.model.num_classes == 2 and cfg.data.input_size == demo.data.input_size == [160, 160]
    assert cfg.train.basic_lr_per_img == demo.train.basic_lr_per_img and cfg.data.classes == ["cat", "dog"]
    _write(tmp_path / "s.yaml", "__base__: yolox-s.yaml\n")   # with the suffix too; bases of bases resolve
    assert load_config("s.yaml") == load_config(CONFIGS / "yolox-s.yaml")
    # a file of that name beside the recipe comes first
    _write(tmp_path / "local.yaml", "__base__: yolox-s.yaml\ntrain:\n  max_epoch: 7\n")
    _write(tmp_path / "yolox-s.yaml", "train:\n  max_epoch: 3\n")
    assert load_config("local.yaml").model.width == 1.0      # the local file (schema defaults), not yolox-s
    with pytest.raises(ConfigError, match=r"__base__ file '.*yolox-q' not found \(a path relative to that "
                                          r"file, or a shipped recipe by name: .*demo/yolox-nano-demo"):
        _write(tmp_path / "bad.yaml", "__base__: yolox-q\n")
        load_config("bad.yaml")


def _print_config(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "print_config.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_print_config_cli_prints_resolved_yaml():
    proc = _print_config("--config", "configs/yolox-tiny.yaml", "train.max_epoch=12")
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    assert printed["model"]["width"] == 0.375 and printed["train"]["max_epoch"] == 12
    assert printed == load_config(CONFIGS / "yolox-tiny.yaml", ["train.max_epoch=12"])


@pytest.mark.parametrize("case,names", [
    ("unknown_key", "train.max_epochs"), ("wrong_type", "model.depth"),
    ("missing_base", "nothere.yaml"), ("malformed", "bad.yaml"),
    ("override_unknown", "train.max_epochs"), ("override_no_equals", "train.max_epoch"),
])
def test_print_config_cli_bad_config_one_error_line(case, names, tmp_path):
    text, overrides, _ = BAD[case]
    path = _write(tmp_path / "bad.yaml", text)
    proc = _print_config("--config", str(path), *overrides)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0], proc.stderr


def test_run_cli_exit_codes(capsys):
    from mindyolox.commands._args import run_cli

    def bad():
        raise ConfigError("x.yaml: unknown key 'a.b'\n(continued)")

    def interrupted():
        raise KeyboardInterrupt

    for main, code in ((bad, 2), (interrupted, 130), (lambda: None, 0), (lambda: 3, 3)):
        with pytest.raises(SystemExit) as info:
            run_cli(main)
        assert info.value.code == code
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: x.yaml: unknown key 'a.b' (continued)", "interrupted"]
