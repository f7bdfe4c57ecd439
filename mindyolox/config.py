"""YAML recipes: ``__base__`` inheritance, dotted overrides, validation against the schema.

A recipe is a YAML mapping of sections (``model``, ``data``, ``aug``, ``train``, ``test``).
``configs/_base_/default.yaml`` is the schema: it lists every valid key with its default
(the official YOLOX 0.3.0 Exp). Resolution order, later layers on top:

1. the schema defaults (always the bottom layer, so a recipe outside the repo that names
   no base still gets every key);
2. each ``__base__`` file in the order listed (a string or a list of strings, paths relative
   to the file naming them, or -- when no such file exists -- a shipped recipe by name, the
   same names ``--config`` takes: ``yolox-s``, ``demo/yolox-nano-demo``,
   ``custom/yolox-nano-cpu``; bases may have bases of their own, cycles are an error);
3. the file itself;
4. dotted overrides ``section.key=value`` (value parsed as YAML).

Dicts merge key by key; lists and scalars are replaced whole.

Numbers are read as YAML 1.2 writes them: ``1e-12`` and ``5e4`` are numbers (PyYAML's YAML
1.1 would read them as strings). Types follow the default value: an int is accepted (and
stored as a float) where a float is expected, a list default requires a list, bools are strict (``1`` is not a bool). An
override value is typed by the key it replaces: for a string key the raw text is kept
(``train.output_dir=123`` gives ``"123"``). Duplicate keys in one YAML mapping are an error
(PyYAML would silently keep the last one). Every problem raises ``ConfigError`` with one
line naming the file (or override) and the dotted key.
"""
import difflib
import os
import re
from pathlib import Path

import yaml

from .errors import ConfigError

__all__ = ["Config", "load_config", "dump_config", "DEFAULT_CONFIG"]

# the recipes: inside the installed package (pip install .), else the clone's configs/
RECIPES = next((d for d in (Path(__file__).resolve().parent / "configs", Path(__file__).resolve().parents[1] / "configs")
                if (d / "_base_" / "default.yaml").is_file()), Path(__file__).resolve().parents[1] / "configs")
DEFAULT_CONFIG = RECIPES / "_base_" / "default.yaml"


def find_recipe(path):
    """``path`` as given when it exists, else the shipped recipe of that name (``yolox-s``,
    ``yolox-s.yaml``, ``demo/yolox-nano-demo``) in :data:`RECIPES`; unchanged when neither."""
    path = Path(path).expanduser()
    if path.exists() or path.is_absolute():
        return path
    for candidate in (RECIPES / path, RECIPES / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    return path


def shipped_recipes():
    """Names of the shipped recipes (``yolox-s``, ``demo/yolox-nano-demo``, ...), sorted."""
    return sorted(p.relative_to(RECIPES).with_suffix("").as_posix() for p in RECIPES.rglob("*.yaml")
                  if p.parent.name != "_base_")


def _base_path(base, parent):
    """A ``__base__`` entry of a file in folder ``parent``: the file relative to ``parent`` when
    it exists, else the shipped recipe of that name, else the relative path (reported missing)."""
    local = Path(os.path.normpath(parent / Path(base).expanduser()))
    if local.is_file() or Path(base).expanduser().is_absolute():
        return local
    for candidate in (RECIPES / base, RECIPES / f"{base}.yaml"):
        if candidate.is_file():
            return candidate
    return local


BASE_KEY = "__base__"


class Config(dict):
    """A dict of dicts with attribute access: ``cfg.model.depth == cfg["model"]["depth"]``."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def __setitem__(self, key, value):
        if isinstance(value, dict) and not isinstance(value, Config):
            value = Config(value)
        super().__setitem__(key, value)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def to_dict(self):
        """Plain nested dicts (and lists), e.g. for ``yaml.safe_dump``."""
        return {k: v.to_dict() if isinstance(v, Config) else _plain(v) for k, v in self.items()}

    def to_yaml(self):
        """The config as YAML text that ``load_config`` reads back to an equal config."""
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False)


class _Dumper(yaml.SafeDumper):
    """Block-style mappings; lists of scalars on one line (``input_size: [640, 640]``)."""


def _represent_list(dumper, data):
    flow = all(not isinstance(x, (dict, list)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _plain(v):
    if isinstance(v, Config):
        return v.to_dict()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def dump_config(cfg, path):
    """Write ``cfg`` (a Config or plain dict) as YAML to ``path``, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Config(cfg).to_yaml(), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- reading YAML
class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys in a mapping."""


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.2 numbers that PyYAML (YAML 1.1) reads as strings: an exponent without a dot or
# without a sign (1e-12, 5e4, 1.0e5, .5e3). Added after PyYAML's own float resolver, so every
# number it reads is unchanged; a quoted '1e-12' stays a string.
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _one_line(text):
    return " ".join(str(text).split())


def _read_yaml(path, referenced_by=None):
    """Parsed top-level mapping of ``path``; ConfigError for a missing, malformed or non-mapping file."""
    if not path.is_file():
        if referenced_by is not None:
            raise ConfigError(f"{referenced_by}: __base__ file '{path}' not found (a path relative to that "
                              f"file, or a shipped recipe by name: {', '.join(shipped_recipes())})")
        raise ConfigError(f"{path}: config file not found (shipped recipes, by name: {', '.join(shipped_recipes())})")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: malformed YAML: {_one_line(problem)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {_one_line(e)}") from None
    if data is None:
        raise ConfigError(f"{path}: file is empty; expected a mapping of sections (model, data, ...)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _base_list(data, path):
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: __base__ must be a path or a list of paths")
    return bases


def _display(path):
    """A path for messages: relative to the working directory when inside it, else absolute."""
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _layers(path, stack=(), referenced_by=None):
    """[(display path, mapping)] for ``path`` and its bases, bases first, file last."""
    real = Path(path).resolve()
    if real in stack:
        chain = " -> ".join(str(_display(p)) for p in (*stack, real))
        raise ConfigError(f"{_display(stack[-1])}: __base__ cycle: {chain}")
    shown = _display(path)
    data = _read_yaml(shown, referenced_by)
    out = []
    for base in _base_list(data, shown):
        out += _layers(_base_path(base, Path(path).parent), (*stack, real), referenced_by=shown)
    out.append((shown, data))
    return out


# ----------------------------------------------------------------------------- schema
_SCHEMA_CACHE = {}


def _schema():
    """The merged defaults of default.yaml (itself allowed to use __base__), as plain dicts."""
    key = DEFAULT_CONFIG.stat().st_mtime_ns if DEFAULT_CONFIG.is_file() else None
    if key not in _SCHEMA_CACHE:
        merged = {}
        for _, data in _layers(DEFAULT_CONFIG):
            _merge(merged, data)
        _SCHEMA_CACHE.clear()
        _SCHEMA_CACHE[key] = merged
    return _SCHEMA_CACHE[key]


def _merge(dst, src):
    """Deep-merge mapping ``src`` into ``dst`` in place: dicts merge, anything else replaces."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = _copy(v)
    return dst


def _copy(v):
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def _all_keys(schema, prefix=""):
    keys = []
    for k, v in schema.items():
        name = f"{prefix}{k}"
        keys.append(name)
        if isinstance(v, dict):
            keys += _all_keys(v, name + ".")
    return keys


def _unknown(source, dotted, schema):
    close = difflib.get_close_matches(dotted, _all_keys(schema), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{source}: unknown key '{dotted}'{hint}")


# Element type for list keys whose default is empty (others take the default's first element).
_EMPTY_LIST_ITEM = {"data.classes": str, "data.random_size": int, "train.freeze": str, "train.loggers": str}
# keys taking a bool or a word (checked in _check_values), not the type of their default
_BOOL_OR_WORD = {"data.cache": (False, True, "ram", "disk"), "runtime.cpu_kernels": (False, True, "auto")}
# VOC splits: one name or a list of them (several years under one VOCdevkit data_dir)
_STR_OR_LIST = ("data.train_split", "data.val_split")
_TYPE_NAMES = {bool: "a bool (true/false)", int: "an integer", float: "a number",
               str: "a string", list: "a list", dict: "a mapping"}


def _describe(v):
    return "null" if v is None else f"{type(v).__name__} {v!r}"


def _coerce_scalar(value, kind, source, dotted):
    """``value`` as ``kind`` (int -> float allowed; bool strict) or ConfigError."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is str:
        ok = isinstance(value, str)
    else:
        ok = value is None or isinstance(value, (bool, int, float, str))
    if not ok:
        raise ConfigError(f"{source}: '{dotted}' must be {_TYPE_NAMES.get(kind, kind.__name__)}, "
                          f"got {_describe(value)}")
    return value


def _typed(value, default, source, dotted):
    """``value`` checked and coerced to the type of ``default``."""
    if dotted in _BOOL_OR_WORD:
        return _coerce_scalar(value, object, source, dotted)
    if dotted in _STR_OR_LIST and isinstance(value, list):
        if not value:
            raise ConfigError(f"{source}: '{dotted}' must be a split name or a non-empty list of them")
        return [_coerce_scalar(x, str, source, f"{dotted}[{i}]") for i, x in enumerate(value)]
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{dotted}' must be a list, got {_describe(value)}")
        kind = type(default[0]) if default else _EMPTY_LIST_ITEM.get(dotted, object)
        return [_coerce_scalar(x, kind, source, f"{dotted}[{i}]") for i, x in enumerate(value)]
    return _coerce_scalar(value, type(default), source, dotted)


def _check_layer(data, schema, source, sources, prefix=""):
    """Validate keys and types of one layer in place; note in ``sources`` who set each key."""
    for k in list(data):
        dotted = f"{prefix}{k}"
        if not isinstance(k, str) or k not in schema:
            raise _unknown(source, dotted, _schema())
        default, value = schema[k], data[k]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{dotted}' must be a mapping (a section), "
                                  f"got {_describe(value)}")
            _check_layer(value, default, source, sources, dotted + ".")
        else:
            data[k] = _typed(value, default, source, dotted)
            sources[dotted] = source


# ----------------------------------------------------------------------------- value checks
_CHOICES = {
    "model.backbone": ("cspdarknet", "darknet53"),
    "model.act": ("silu", "relu", "lrelu"),
    "data.format": ("coco", "voc", "yolo"),
    "train.amp_level": ("O0", "O1", "O2", "O3"),
    "train.loss_scale": ("auto", "none", "static", "dynamic"),
    "runtime.device": ("auto", "CPU", "GPU", "Ascend"),
    "runtime.conv": ("auto", "native", "im2col"),
    "runtime.decode_exp": ("auto", "float64", "float32"),
    "runtime.precision_mode": ("auto", "none", "force_fp16", "allow_fp32_to_fp16", "allow_mix_precision",
                               "must_keep_origin_dtype", "force_fp32", "allow_fp32_to_bf16",
                               "allow_mix_precision_fp16", "allow_mix_precision_bf16"),
    "runtime.jit_level": ("auto", "O0", "O1", "O2"),
    "train.wandb_mode": ("offline", "online", "disabled"),
}
# list keys whose every item is one of these (training/hooks/experiment.py LOGGERS)
_LIST_CHOICES = {"train.loggers": ("tensorboard", "mlflow", "wandb")}
_UNIT_INTERVAL = ("aug.mosaic_prob", "aug.mixup_prob", "aug.hsv_prob", "aug.flip_prob",
                  "aug.translate", "train.min_lr_ratio", "train.ema_decay", "train.momentum",
                  "test.conf", "test.nms", "train.overflow_warn_share", "test.analysis_conf",
                  "test.analysis_iou")
_POSITIVE = ("model.depth", "model.width", "model.num_classes", "data.max_labels",
             "train.batch_size", "train.max_epoch", "train.basic_lr_per_img",
             "train.loss_scale_value", "train.print_interval", "train.eval_interval", "train.ema_tau",
             "test.batch_size", "train.accumulate")
_NON_NEGATIVE = ("data.multiscale_range", "data.num_workers", "aug.degrees", "aug.shear",
                 "train.warmup_epochs", "train.warmup_lr", "train.no_aug_epochs",
                 "train.weight_decay", "train.save_interval", "train.checkpoint_interval", "train.patience",
                 "train.bn_calibration_images", "train.overflow_stop_steps", "test.analysis_worst")


def _lookup(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None, False
        node = node[part]
    return node, True


def _check_values(cfg, sources):
    """Range and choice checks on the merged config; errors name the layer that set the key."""
    def fail(dotted, msg):
        raise ConfigError(f"{sources.get(dotted, 'config')}: '{dotted}' {msg}")

    def get(dotted):
        return _lookup(cfg, dotted)

    for dotted, allowed in _CHOICES.items():
        v, present = get(dotted)
        if present and v not in allowed:
            fail(dotted, f"must be one of {', '.join(allowed)}, got {v!r}")
    for dotted, allowed in _LIST_CHOICES.items():
        v, present = get(dotted)
        for item in (v or []) if present else []:
            if item not in allowed:
                fail(dotted, f"lists {item!r}; each must be one of {', '.join(allowed)}")
    for dotted, allowed in _BOOL_OR_WORD.items():
        v, present = get(dotted)
        if present and not any(v is a or (isinstance(a, str) and v == a) for a in allowed):
            fail(dotted, f"must be one of {', '.join(str(a).lower() for a in allowed)}, got {v!r}")
    for dotted in _UNIT_INTERVAL:
        v, present = get(dotted)
        if present and not 0.0 <= v <= 1.0:
            fail(dotted, f"must be in [0, 1], got {v!r}")
    for dotted in _POSITIVE:
        v, present = get(dotted)
        if present and not v > 0:
            fail(dotted, f"must be > 0, got {v!r}")
    for dotted in _NON_NEGATIVE:
        v, present = get(dotted)
        if present and v < 0:
            fail(dotted, f"must be >= 0, got {v!r}")
    for dotted in ("data.input_size", "data.test_size"):
        v, present = get(dotted)
        if present and not (len(v) == 2 and all(x > 0 and x % 32 == 0 for x in v)):
            fail(dotted, f"must be two positive multiples of 32 [h, w], got {v!r}")
    for dotted in ("model.in_channels", "model.strides"):
        v, present = get(dotted)
        if present and not (len(v) == 3 and all(x > 0 for x in v)):
            fail(dotted, f"must be three positive integers (one per level), got {v!r}")
    v, present = get("data.random_size")
    if present and v and not (len(v) == 2 and 0 < v[0] <= v[1]):
        fail("data.random_size", f"must be [] or [min, max] with 0 < min <= max, got {v!r}")
    for dotted in ("aug.mosaic_scale", "aug.mixup_scale"):
        v, present = get(dotted)
        if present and not (len(v) == 2 and 0 < v[0] <= v[1]):
            fail(dotted, f"must be [low, high] with 0 < low <= high, got {v!r}")
    # VOC: data.classes are the classes; COCO: the JSON's categories are, and data.classes only
    # names them for predict/export when it lists num_classes names (predictor.class_names_for),
    # so the demo recipe's six names do not stand in the way of a 2-class COCO dataset
    classes, _ = get("data.classes")
    num_classes, _ = get("model.num_classes")
    fmt, _ = get("data.format")
    if fmt == "voc" and classes and num_classes is not None and len(classes) != num_classes:
        fail("data.classes", f"lists {len(classes)} names but model.num_classes is {num_classes}")


# ----------------------------------------------------------------------------- overrides
def _override_layer(text, schema):
    """One ``section.key=value`` override as a nested mapping, typed by the schema."""
    source = f"override '{text}'"
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"{source}: expected key=value, e.g. train.max_epoch=10")
    dotted, raw = (s.strip() for s in text.split("=", 1))
    parts = dotted.split(".")
    if not dotted or not all(parts):
        raise ConfigError(f"{source}: expected a dotted key such as train.max_epoch before '='")
    node = schema
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            raise _unknown(source, dotted, schema)
        node = node[part]
    if isinstance(node, str) and dotted not in _BOOL_OR_WORD and not (dotted in _STR_OR_LIST and raw.startswith("[")):
        value = raw
    else:
        try:
            value = yaml.load(raw, Loader=_StrictLoader)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e)
            raise ConfigError(f"{source}: value is not valid YAML: {_one_line(problem)}") from None
    layer = value
    for part in reversed(parts):
        layer = {part: layer}
    return source, layer


# ----------------------------------------------------------------------------- entry point
def load_config(path, overrides=None):
    """Resolve recipe ``path`` (bases, then the file, then ``overrides``) into a validated Config.

    ``overrides``: iterable of ``"section.key=value"`` strings (value parsed as YAML).
    Raises ``ConfigError`` (one line naming the file or override and the key) on any problem.
    """
    schema = _schema()
    merged, sources = _copy(schema), {}
    layers = _layers(find_recipe(path))
    layers += [_override_layer(o, schema) for o in (overrides or [])]
    for source, data in layers:
        _check_layer(data, schema, source, sources)
        _merge(merged, data)
    _check_values(merged, sources)
    return Config(merged)
