"""The built-in demo dataset: a deterministic synthetic detection dataset in COCO format.

Six shape classes (``circle``, ``square``, ``triangle``, ``star``, ``ring``, ``cross``)
drawn on textured backgrounds (smooth colour fields, stripes / checkers / grids, pixel
noise) with varied size (``min_size`` px to half the shorter image side, log-uniform),
colour, aspect ratio (0.7..1.4), rotation and overlap. Later shapes occlude earlier ones;
a placement is rejected when it would leave an earlier shape less than ``MIN_VISIBLE``
(70 %) visible, so every drawn shape is labelled and still recognisable.

Version 2 (the quickstart's dataset) chose its defaults so that YOLOX-nano learns it from
scratch in minutes on a CPU: shapes of at least 24 px (at 12 px a hexagon and a circle, or
a small star and a square, are barely distinguishable even for a person; version 1 had 12 px
shapes and hexagons), at most 4 shapes per image, occluded shapes at least 70 % visible,
1500 training images (the same 1860 training steps reached AP50 71 % on 500 images, which
they overfit, and 84 % on 1500).

Boxes are the tight extent of each shape's *visible* pixels (the COCO convention), ``area``
its visible pixel count.

Layout written under ``out_dir`` (the COCO layout the recipes expect)::

    annotations/instances_train.json   annotations/instances_val.json
    train/000000.jpg ...               val/000000.jpg ...
    demo_manifest.json                 (generator version and parameters)

Everything is a function of ``(seed, split, image index)`` only, so the dataset is the
same on every machine and for any order of generation.

Recipes use it through ``data.data_dir: demo:<dir>`` (see :func:`resolve_data_dir`): the
dataset is generated into ``<dir>`` the first time it is needed and reused afterwards.

Command line (:mod:`mindyolox.commands.demo`)::

    python -m mindyolox.commands.demo --out datasets/demo [--train 1000 --val 200 --seed 0]
    mindyolox-tools demo-data --out datasets/demo             # the same, installed
"""
import json
import os
import sys
import time

import numpy as np

from ..errors import DataError
from ..utils.files import new_folder

__all__ = ["CLASSES", "DEMO_PREFIX", "MIN_VISIBLE", "VERSION", "DemoSpec", "draw_image", "generate",
           "ensure_demo", "resolve_data_dir"]

VERSION = 2
CLASSES = ("circle", "square", "triangle", "star", "ring", "cross")
MIN_VISIBLE = 0.7  # an occluded shape keeps at least this share of its pixels
DEMO_PREFIX = "demo:"
MANIFEST = "demo_manifest.json"
_SPLIT_CODE = {"train": 1, "val": 2}
# settings that change how images are drawn (the CLI sets only counts and seed)
_DRAWING_KEYS = ("sizes", "min_size", "max_objects", "jpeg_quality")


class DemoSpec:
    """Generator parameters. Image sides are drawn from ``sizes`` (pixels, height and width
    independently); shapes are ``min_size`` px up to half the shorter side; ``max_objects``
    shapes at most per image (at least one)."""

    def __init__(self, num_train=1500, num_val=200, seed=0, sizes=(160, 192, 224),
                 min_size=24, max_objects=4, jpeg_quality=92):
        self.num_train, self.num_val, self.seed = int(num_train), int(num_val), int(seed)
        self.sizes = tuple(int(s) for s in sizes)
        self.min_size, self.max_objects = int(min_size), int(max_objects)
        self.jpeg_quality = int(jpeg_quality)
        if self.num_train < 1 or self.num_val < 1:
            raise DataError(f"demo dataset needs at least one train and one val image, got "
                            f"{self.num_train} / {self.num_val}")
        if not self.sizes or min(self.sizes) < 4 * self.min_size:
            raise DataError(f"demo image sizes {self.sizes} too small for min_size {self.min_size}")
        if self.max_objects < 1:
            raise DataError(f"demo max_objects must be >= 1, got {self.max_objects}")

    def as_dict(self):
        return {"version": VERSION, "num_train": self.num_train, "num_val": self.num_val,
                "seed": self.seed, "sizes": list(self.sizes), "min_size": self.min_size,
                "max_objects": self.max_objects, "jpeg_quality": self.jpeg_quality,
                "classes": list(CLASSES)}


# ----------------------------------------------------------------------------- shapes
def _template(cls):
    """Outline of class ``cls``: a list of float64 ``[N, 2]`` contours in the unit box
    [-1, 1]^2, the first the outer one (a ring has a second contour, its hole: filled
    even-odd, the hole shows the background)."""
    name = CLASSES[cls]
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], 1)
    if name == "circle":
        return [circle]
    if name == "ring":
        return [circle, 0.5 * circle[::-1]]
    if name == "square":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)]
    if name == "triangle":
        return [np.array([[0, -1], [1, 1], [-1, 1]], np.float64)]
    if name == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return [np.stack([r * np.cos(t), r * np.sin(t)], 1)]
    # cross: a plus sign with arms a third of the width
    a = 1.0 / 3.0
    return [np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1],
                      [-a, a], [-1, a], [-1, -a], [-a, -a]], np.float64)]


_TEMPLATES = [_template(c) for c in range(len(CLASSES))]


def _shape_points(rng, cls, size, hw):
    """Integer contours (list of ``[N, 2]``, x, y pixels) of one randomly placed shape whose
    longer side is about ``size`` px, fully inside an image of ``hw`` = (H, W)."""
    h, w = hw
    aspect = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    sx, sy = size / 2 * np.sqrt(aspect), size / 2 / np.sqrt(aspect)
    angle = np.deg2rad(rng.uniform(-45, 45))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    contours = [(c * [sx, sy]) @ rot.T for c in _TEMPLATES[cls]]
    lo, hi = contours[0].min(0), contours[0].max(0)
    cx = rng.uniform(-lo[0], w - 1 - hi[0]) if w - 1 - hi[0] > -lo[0] else w / 2
    cy = rng.uniform(-lo[1], h - 1 - hi[1]) if h - 1 - hi[1] > -lo[1] else h / 2
    return [np.round(c + [cx, cy]).astype(np.int32) for c in contours]


# ----------------------------------------------------------------------------- images
def _hsv_to_bgr(h, s, v):
    """One colour: hue in [0, 180), saturation and value in [0, 255] -> BGR ints."""
    import cv2
    px = np.array([[[h, s, v]]], np.uint8)
    return [int(c) for c in cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0]]


def _background(rng, hw):
    """Textured background uint8 ``[H, W, 3]`` BGR and its mean value (brightness, 0..255)."""
    import cv2
    h, w = hw
    base_v = rng.uniform(50, 205)
    base = np.array(_hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 120), base_v), np.float32)
    # smooth colour field: a coarse random grid upsampled
    coarse = rng.normal(0, 22, (int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3)).astype(np.float32)
    img = base + cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    kind = int(rng.integers(0, 4))  # 0 plain, 1 stripes, 2 checker, 3 grid lines
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = float(rng.uniform(6, 28))
    amp = float(rng.uniform(8, 22))
    if kind == 1:
        t = rng.uniform(0, np.pi)
        img += amp * np.sin((xx * np.cos(t) + yy * np.sin(t)) * 2 * np.pi / period)[..., None]
    elif kind == 2:
        img += amp * (((xx // period + yy // period) % 2) * 2 - 1)[..., None]
    elif kind == 3:
        lines = ((xx % period) < 1.5) | ((yy % period) < 1.5)
        img += np.where(lines, amp * 1.5, 0)[..., None].astype(np.float32)
    img += rng.normal(0, 5, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), base_v


def _object_colour(rng, bg_v):
    """A saturated colour whose brightness differs from the background's by >= 70."""
    if bg_v < 70:
        v = rng.uniform(bg_v + 70, 255)
    elif bg_v > 185:
        v = rng.uniform(0, bg_v - 70)
    else:
        v = rng.uniform(bg_v + 70, 255) if rng.random() < 0.5 else rng.uniform(0, bg_v - 70)
    return _hsv_to_bgr(rng.uniform(0, 180), rng.uniform(90, 255), v)


def draw_image(seed, split, index, spec=None, background_only=False):
    """Draw image ``index`` of ``split`` ("train" / "val").

    Returns ``(image uint8 [H, W, 3] BGR, objects)`` where each object is a dict with
    ``class`` (0..5), ``bbox`` (x, y, w, h) in pixels (tight extent of the visible pixels,
    inclusive-exclusive: a shape covering columns 10..19 has x=10, w=10), ``area`` (visible
    pixels), ``full_area`` (its pixels before later shapes covered part of it) and ``mask``
    (bool ``[H, W]``, the visible pixels). ``background_only``: the
    same image before any shape is drawn (no objects), for checking what the shapes changed.
    """
    import cv2
    spec = spec or DemoSpec(seed=seed)
    rng = np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index), VERSION])
    hw = (int(rng.choice(spec.sizes)), int(rng.choice(spec.sizes)))
    img, bg_v = _background(rng, hw)
    if background_only:
        return img, []
    owner = np.full(hw, -1, np.int16)          # which shape each pixel shows
    full_area = []
    n_target = int(rng.integers(1, spec.max_objects + 1))
    max_size = min(hw) / 2
    classes, tries = [], 0
    while len(classes) < n_target and tries < 4 * n_target:
        tries += 1
        cls = int(rng.integers(0, len(CLASSES)))
        size = float(np.exp(rng.uniform(np.log(spec.min_size), np.log(max_size))))
        pts = _shape_points(rng, cls, size, hw)
        mask = np.zeros(hw, np.uint8)
        cv2.fillPoly(mask, pts, 1)
        inside = mask.astype(bool)
        if inside.sum() < 0.25 * spec.min_size ** 2:
            continue
        # reject a placement that leaves an earlier shape less than MIN_VISIBLE visible
        covered = np.bincount(owner[inside & (owner >= 0)], minlength=len(classes))
        visible = np.array([np.count_nonzero(owner == k) for k in range(len(classes))])
        if len(classes) and np.any((visible - covered) < MIN_VISIBLE * np.asarray(full_area)):
            continue
        colour = _object_colour(rng, bg_v)
        cv2.fillPoly(img, pts, colour, lineType=cv2.LINE_AA)
        if rng.random() < 0.3:  # an outline of another colour
            cv2.polylines(img, pts, True, _object_colour(rng, bg_v), 1, cv2.LINE_AA)
        owner[inside] = len(classes)
        classes.append(cls)
        full_area.append(int(inside.sum()))
    objects = []
    for k, cls in enumerate(classes):
        vis = owner == k
        ys, xs = np.nonzero(vis)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        objects.append({"class": cls, "bbox": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)],
                        "area": int(vis.sum()), "full_area": full_area[k], "mask": vis})
    return img, objects


# ----------------------------------------------------------------------------- dataset
def _write_split(out_dir, split, n, spec, progress):
    import cv2
    img_dir = os.path.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    images, anns = [], []
    t0 = time.time()
    for i in range(n):
        img, objects = draw_image(spec.seed, split, i, spec)
        name = f"{i:06d}.jpg"
        if not cv2.imwrite(os.path.join(img_dir, name), img,
                           [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality]):
            raise DataError(f"could not write {os.path.join(img_dir, name)}")
        images.append({"id": i + 1, "file_name": name, "height": img.shape[0], "width": img.shape[1]})
        for o in objects:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": o["class"] + 1,
                         "bbox": o["bbox"], "area": o["area"], "iscrowd": 0})
        if progress and ((i + 1) % 100 == 0 or i + 1 == n):
            print(f"demo dataset: {split} {i + 1}/{n} images ({time.time() - t0:.1f} s)",
                  file=sys.stderr, flush=True)
    coco = {"info": {"description": "mindyolox synthetic shapes demo", **spec.as_dict()},
            "licenses": [], "images": images, "annotations": anns,
            "categories": [{"id": c + 1, "name": name, "supercategory": "shape"}
                           for c, name in enumerate(CLASSES)]}
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    with open(os.path.join(out_dir, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump(coco, f)
    return len(images), len(anns)


def generate(out_dir, spec=None, progress=True):
    """Write the demo dataset into ``out_dir`` (created; must not exist or be empty).
    The folder appears complete or not at all (written beside it, then renamed).
    Returns ``out_dir``."""
    spec = spec or DemoSpec()
    out_dir = os.path.abspath(os.path.expanduser(str(out_dir)))
    with new_folder(out_dir, what="--out", error=DataError, prefix=".demo-") as tmp:
        t0 = time.time()
        stats = {s: _write_split(tmp, s, n, spec, progress)
                 for s, n in (("train", spec.num_train), ("val", spec.num_val))}
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump({**spec.as_dict(), "images": {s: v[0] for s, v in stats.items()},
                       "annotations": {s: v[1] for s, v in stats.items()}}, f, indent=1)
    if progress:
        print(f"demo dataset written to {out_dir} ({stats['train'][0]} train / {stats['val'][0]} val "
              f"images, {time.time() - t0:.1f} s)", file=sys.stderr, flush=True)
    return out_dir


def ensure_demo(out_dir, spec=None, progress=True):
    """``out_dir`` holding a demo dataset: reused when it has a manifest of this generator
    version and drawing settings (any number of images or seed, e.g. one made by the CLI),
    generated with ``spec`` (default: :class:`DemoSpec`) when ``out_dir`` is missing or empty,
    an error otherwise."""
    out_dir = os.path.abspath(os.path.expanduser(str(out_dir)))
    manifest = os.path.join(out_dir, MANIFEST)
    if os.path.isfile(manifest):
        try:
            with open(manifest) as f:
                have = json.load(f)
        except (OSError, ValueError) as e:
            raise DataError(f"{manifest}: unreadable demo manifest ({e}); remove {out_dir} to regenerate") from None
        if have.get("version") != VERSION or have.get("classes") != list(CLASSES):
            raise DataError(f"{out_dir} holds a demo dataset of generator version {have.get('version')} "
                            f"(this is version {VERSION}); remove the folder to regenerate it")
        want = DemoSpec().as_dict()
        stale = [k for k in _DRAWING_KEYS if have.get(k) != want[k]]
        if stale:
            raise DataError(f"{out_dir} holds a demo dataset drawn with other settings ({', '.join(stale)}); "
                            f"remove the folder to regenerate it")
        return out_dir
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise DataError(f"{out_dir} is not a demo dataset (no {MANIFEST}); point data.data_dir "
                        f"'{DEMO_PREFIX}<dir>' at an empty or new folder")
    if progress:
        print(f"demo dataset: generating into {out_dir} (first use)", file=sys.stderr, flush=True)
    try:
        return generate(out_dir, spec or DemoSpec(), progress)
    except OSError as e:
        if os.path.isfile(manifest):  # another process finished it first
            return out_dir
        raise DataError(f"could not write the demo dataset to {out_dir}: {e}") from None


def resolve_data_dir(data_dir, progress=True):
    """A recipe's ``data.data_dir`` as a folder: ``demo:<dir>`` generates the demo dataset
    into ``<dir>`` when it is not there yet (``~`` expanded, relative to the working
    directory) and returns ``<dir>``; any other value is returned unchanged."""
    data_dir = str(data_dir)
    if not data_dir.startswith(DEMO_PREFIX):
        return data_dir
    target = data_dir[len(DEMO_PREFIX):].strip()
    if not target:
        raise DataError(f"data.data_dir '{data_dir}': name a folder after '{DEMO_PREFIX}', "
                        f"e.g. '{DEMO_PREFIX}datasets/demo'")
    return ensure_demo(target, progress=progress)


if __name__ == "__main__":   # the program moved to the commands (no import up from data/ to commands/)
    print("error: the demo dataset generator is `python -m mindyolox.commands.demo --out DIR` "
          "(installed: `mindyolox-tools demo-data --out DIR`)", file=sys.stderr)
    sys.exit(2)
