"""Generate the configuration reference (docs/configuration.md) from the recipes, so it cannot drift.

    python tools/gen_config_reference.py            # rewrite the section in docs/configuration.md
    python tools/gen_config_reference.py --check    # exit 1 when the page is out of date

The section between ``<!-- config-reference:start -->`` and ``<!-- config-reference:end -->``
holds (1) every key of ``configs/_base_/default.yaml`` with its default and the comment
written beside it there, one table per section, and (2) one section per shipped recipe
(``configs/*.yaml``, ``configs/demo/*.yaml``, ``configs/custom/*.yaml``; a list of key, value
and default) with the keys it sets differently from those defaults, resolved through ``__base__``. A key without a comment in the schema takes its text from ``EXTRA`` below; a
key with neither, or an ``EXTRA`` entry for a key the schema no longer has, is an error.
"""
import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mindyolox.config import load_config  # noqa: E402
from mindyolox.errors import ConfigError  # noqa: E402
from mindyolox.commands._args import run_cli  # noqa: E402

SCHEMA = ROOT / "configs" / "_base_" / "default.yaml"
PAGE = ROOT / "docs" / "configuration.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"

# Descriptions of schema keys that carry no comment in default.yaml.
EXTRA = {
    "model.num_classes": "number of classes (COCO: 80; must match the dataset)",
    "model.strides": "strides of the three output levels (anchor-free grid steps, pixels)",
    "data.val_ann": "COCO: validation annotation JSON, relative to data_dir",
    "data.val_images": "COCO: validation image folder, relative to data_dir",
    "data.num_workers": "data loader worker processes (0 = in the training process)",
    "aug.mosaic_prob": "probability of Mosaic (4 images) per sample",
    "aug.mixup_prob": "probability of MixUp per sample (when enable_mixup)",
    "aug.hsv_prob": "probability of the HSV colour jitter",
    "aug.flip_prob": "probability of the horizontal flip",
    "aug.enable_mixup": "MixUp on/off (after Mosaic)",
    "aug.mixup_scale": "scale range of the MixUp image",
    "aug.mosaic_scale": "scale range of the Mosaic affine",
    "train.max_epoch": "training epochs",
    "train.warmup_epochs": "epochs of quadratic LR warmup",
    "train.scheduler": "LR schedule: yoloxwarmcos (warmup, cosine, constant in the no-aug epochs)",
    "train.warmup_lr": "LR at the start of the warmup",
    "train.min_lr_ratio": "final LR as a fraction of the base LR",
    "train.ema": "keep an EMA of the weights (evaluated and saved as the model)",
    "train.momentum": "SGD momentum",
    "train.nesterov": "Nesterov momentum",
    "train.seed": "seed of the data order, augmentation and initialisation",
    "train.loss_scale_value": "initial (dynamic) or fixed (static) loss scale",
    "train.output_dir": "runs go to <output_dir>/<name> (name: the recipe file name)",
    "test.conf": "score threshold (obj * cls) for evaluation",
    "test.nms": "NMS IoU threshold",
    "test.class_agnostic": "NMS over all classes together",
    "test.batch_size": "evaluation batch size",
}

_SECTION = re.compile(r"^([A-Za-z_]\w*):\s*(?:#\s*(.*))?$")
_KEY = re.compile(r"^  ([A-Za-z_]\w*):\s*(.*?)\s*(?:#\s*(.*))?$")


def schema_entries(text):
    """``[(dotted key, default as YAML text, comment)]`` in file order from the schema text."""
    entries, section = [], None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _SECTION.match(line)
        if m:
            section = m.group(1)
            continue
        m = _KEY.match(line)
        if not m or section is None:
            raise ConfigError(f"{SCHEMA}:{n}: cannot read '{line.strip()}' (expected '  key: value  # comment')")
        entries.append((f"{section}.{m.group(1)}", m.group(2), (m.group(3) or "").strip()))
    return entries


def _fmt(value):
    """A resolved value as compact one-line YAML for a table cell."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    if text.endswith("\n..."):
        text = text[:-4].strip()
    return text.replace("...", "").strip().replace("|", "\\|")


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def recipes():
    """Shipped recipe paths, relative to the project root, in a stable order."""
    order = ["nano", "tiny", "s", "m", "l", "x", "darknet53"]
    rank = {f"yolox-{n}": i for i, n in enumerate(order)}
    top = sorted((ROOT / "configs").glob("*.yaml"), key=lambda p: (rank.get(p.stem, len(order)), p.stem))
    paths = top + sorted((ROOT / "configs" / "demo").glob("*.yaml")) + sorted((ROOT / "configs" / "custom").glob("*.yaml"))
    return [p.relative_to(ROOT).as_posix() for p in paths]


def render():
    """The generated Markdown (without the markers)."""
    text = SCHEMA.read_text()
    entries = schema_entries(text)
    keys = {k for k, _, _ in entries}
    stale = sorted(set(EXTRA) - keys)
    if stale:
        raise ConfigError(f"tools/gen_config_reference.py: EXTRA describes keys not in the schema: {', '.join(stale)}")
    defaults = _flatten(yaml.safe_load(text))
    lines = ["Every key, its default (`configs/_base_/default.yaml`) and meaning. Generated by "
             "`python tools/gen_config_reference.py` from the recipes; do not edit by hand.", ""]
    section = None
    for key, _, comment in entries:
        sec = key.split(".")[0]
        if sec != section:
            section = sec
            lines += ["", f"### `{sec}`", "", "| key | default | meaning |", "| --- | --- | --- |"]
        desc = comment or EXTRA.get(key)
        if not desc:
            raise ConfigError(f"{SCHEMA}: key '{key}' has no comment; add one there or to EXTRA "
                              f"in tools/gen_config_reference.py")
        lines.append(f"| `{key}` | `{_fmt(defaults[key])}` | {desc.replace('|', '/')} |")
    # per-recipe differences from the defaults
    paths = recipes()
    resolved = {p: _flatten(load_config(str(ROOT / p)).to_dict()) for p in paths}
    changed = [k for k, _, _ in entries if any(resolved[p][k] != defaults[k] for p in paths)]
    # one section per recipe, a list that wraps to the page (one table column per recipe scrolled
    # sideways and hid the demo recipes), the newcomer's recipes (demo, custom) first
    lines += ["", "### Per recipe", "",
              "Keys each shipped recipe sets differently from the defaults (resolved through `__base__`), "
              "one section per recipe, the demo and custom recipes first. Recipes: "
              + ", ".join(f"`{p}`" for p in paths) + "."]
    for p in sorted(paths, key=lambda p: p.count("/") == 1):
        lines += ["", f"#### `{Path(p).stem}`", "", f"`{p}` sets:", ""]
        lines += [f"- `{k}`: `{_fmt(resolved[p][k])}` (default `{_fmt(defaults[k])}`)"
                  for k in changed if resolved[p][k] != defaults[k]]
    out = [ln for i, ln in enumerate(lines) if ln or (i and lines[i - 1])]  # no double blanks
    return "\n".join(out).strip() + "\n"


def splice(page_text, body, name="docs/configuration.md"):
    """``page_text`` with the section between the markers replaced by ``body``."""
    if page_text.count(START) != 1 or page_text.count(END) != 1:
        raise ConfigError(f"{name} must hold exactly one {START} and one {END}")
    head, rest = page_text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{body}{END}{tail}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    p.add_argument("--page", default=str(PAGE), help="page to update (default: docs/configuration.md)")
    args = p.parse_args(argv)
    path = Path(args.page)
    if not path.is_file():
        raise ConfigError(f"page not found: {path}")
    old = path.read_text()
    new = splice(old, render(), str(path))
    if args.check:
        if new != old:
            print(f"{path}: configuration reference is out of date; run python tools/gen_config_reference.py",
                  file=sys.stderr)
            return 1
        print(f"{path}: configuration reference is up to date")
        return 0
    if new != old:
        path.write_text(new)
        print(f"{path}: configuration reference updated")
    else:
        print(f"{path}: configuration reference already up to date")
    return 0


if __name__ == "__main__":
    run_cli(main)
