"""A synthetic tracking sequence from the demo generator (:mod:`mindyolox.data.demo`): the demo
shapes (the classes the demo model ``configs/demo/`` learns) moving over one textured
background, crossing and occluding each other, with ground-truth identities, in the
MOTChallenge layout::

    <out>/seqinfo.ini      [Sequence] name, imDir=img1, frameRate, seqLength, imWidth, imHeight, imExt
    <out>/img1/000001.jpg  ... one JPEG per frame (1-based, 6 digits)
    <out>/gt/gt.txt        frame,id,x,y,w,h,1,class,visibility  (one row per visible object)

Motion: each object has a constant velocity (0.5..3 px/frame per axis, any sign), bounces
off the image border, and keeps its class, colour, size, aspect and rotation; objects are
drawn in a fixed depth order (a later id covers an earlier one). Ground truth follows the
MOTChallenge convention: the box is the object's full (amodal) extent, also where covered,
clipped to the image; ``class`` is the demo class id + 1 (1 circle .. 6 cross);
``visibility`` the share of its pixels that are seen (0..1, a row is written when at least one
pixel is); ids start at 1. Everything is a function of the seed and the
:class:`TrackSpec` only.
"""
import os

import numpy as np

from ..errors import DataError
from ..utils.files import new_folder
from .demo import CLASSES, _background, _object_colour, _TEMPLATES

__all__ = ["TrackSpec", "draw_sequence", "write_sequence"]


class TrackSpec:
    """Sequence parameters: ``frames`` (count), ``objects`` (count), ``size`` (``(W, H)`` px),
    object sizes ``min_size..max_size`` px (longer side), ``fps`` (frames/s in seqinfo.ini),
    ``seed``, ``jpeg_quality``."""

    def __init__(self, frames=120, objects=6, size=(320, 240), min_size=28, max_size=56, fps=25, seed=0,
                 jpeg_quality=92):
        self.frames, self.objects = int(frames), int(objects)
        self.size = (int(size[0]), int(size[1]))
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.fps, self.seed, self.jpeg_quality = int(fps), int(seed), int(jpeg_quality)
        if self.frames < 1 or self.objects < 1:
            raise DataError(f"a tracking sequence needs at least one frame and one object, got "
                            f"{self.frames} frames, {self.objects} objects")
        if min(self.size) < 2 * self.max_size or not 4 <= self.min_size <= self.max_size:
            raise DataError(f"tracking sequence: image {self.size[0]}x{self.size[1]} too small for objects of "
                            f"{self.min_size}..{self.max_size} px (needs each side >= 2 x max size)")


def _objects(rng, spec):
    """Per object: class, colour, contours in its own frame (centred), start centre, velocity."""
    w, h = spec.size
    objs = []
    for _ in range(spec.objects):
        cls = int(rng.integers(0, len(CLASSES)))
        size = float(rng.uniform(spec.min_size, spec.max_size))
        aspect = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
        sx, sy = size / 2 * np.sqrt(aspect), size / 2 / np.sqrt(aspect)
        angle = np.deg2rad(rng.uniform(-45, 45))
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        contours = [(c * [sx, sy]) @ rot.T for c in _TEMPLATES[cls]]
        half = np.abs(contours[0]).max(0)
        centre = np.array([rng.uniform(half[0], w - 1 - half[0]), rng.uniform(half[1], h - 1 - half[1])])
        speed = rng.uniform(0.5, 3.0, 2) * rng.choice([-1.0, 1.0], 2)
        objs.append({"class": cls, "contours": contours, "half": half, "centre": centre, "velocity": speed})
    return objs


def draw_sequence(spec):
    """Yield ``(frame index from 1, image uint8 [H, W, 3] BGR, rows)`` for every frame; ``rows``:
    ``[(id, x, y, w, h, class 1..6, visibility)]`` (px, module doc)."""
    import cv2
    w, h = spec.size
    rng = np.random.default_rng([spec.seed, 7])
    background, bg_v = _background(rng, (h, w))
    objs = _objects(rng, spec)
    for o in objs:
        o["colour"] = _object_colour(rng, bg_v)
    for f in range(1, spec.frames + 1):
        img = background.copy()
        owner = np.full((h, w), -1, np.int16)
        full = []
        for k, o in enumerate(objs):
            pts = [np.round(c + o["centre"]).astype(np.int32) for c in o["contours"]]
            mask = np.zeros((h, w), np.uint8)
            cv2.fillPoly(mask, pts, 1)
            cv2.fillPoly(img, pts, o["colour"], lineType=cv2.LINE_AA)
            owner[mask.astype(bool)] = k
            full.append((int(mask.sum()), pts[0]))
        rows = []
        for k, o in enumerate(objs):
            visible = int(np.count_nonzero(owner == k))
            if visible == 0:
                continue
            x0, y0 = np.clip(full[k][1].min(0), 0, [w, h])
            x1, y1 = np.clip(full[k][1].max(0) + 1, 0, [w, h])
            rows.append((k + 1, int(x0), int(y0), int(x1 - x0), int(y1 - y0), o["class"] + 1,
                         round(visible / max(full[k][0], 1), 3)))
        yield f, img, rows
        for o in objs:   # move, bouncing off the borders
            c = o["centre"] + o["velocity"]
            for a, limit in ((0, w - 1), (1, h - 1)):
                if c[a] - o["half"][a] < 0 or c[a] + o["half"][a] > limit:
                    o["velocity"][a] = -o["velocity"][a]
                    c[a] = np.clip(c[a], o["half"][a], limit - o["half"][a])
            o["centre"] = c


def write_sequence(out_dir, spec=None, name="demo-track"):
    """Write the sequence in the MOTChallenge layout (module doc) into ``out_dir`` (new or empty;
    it appears complete or not at all). Returns ``(out_dir, frames, ground-truth rows)``."""
    import cv2
    spec = spec or TrackSpec()
    out_dir = os.path.abspath(os.path.expanduser(str(out_dir)))
    n_rows = 0
    with new_folder(out_dir, error=DataError, prefix=".track-demo-") as tmp:
        os.makedirs(os.path.join(tmp, "img1"))
        os.makedirs(os.path.join(tmp, "gt"))
        with open(os.path.join(tmp, "gt", "gt.txt"), "w") as gt:
            for f, img, rows in draw_sequence(spec):
                path = os.path.join(tmp, "img1", f"{f:06d}.jpg")
                if not cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality]):
                    raise DataError(f"could not write {path}")
                for i, x, y, bw, bh, c, vis in rows:
                    gt.write(f"{f},{i},{x},{y},{bw},{bh},1,{c},{vis}\n")
                n_rows += len(rows)
        with open(os.path.join(tmp, "seqinfo.ini"), "w") as f:
            f.write(f"[Sequence]\nname={name}\nimDir=img1\nframeRate={spec.fps}\nseqLength={spec.frames}\n"
                    f"imWidth={spec.size[0]}\nimHeight={spec.size[1]}\nimExt=.jpg\n")
    return out_dir, spec.frames, n_rows
