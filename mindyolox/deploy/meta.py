"""The export metadata (``<model>.json`` beside every exported file) and its reader.

Keys a runner uses: ``input`` (name, shape with ``"B"`` for a dynamic batch, dtype, layout),
``preprocess`` (:data:`PREPROCESS`, exactly :func:`mindyolox.data.preproc`), ``graph`` (what is
inside: ``bn_folded``, ``decode``, ``nms`` settings or null, ``conv``, ``dtype``, ``opset``, node
counts), ``outputs`` (name, shape, meaning), ``strides``, ``num_classes``, ``class_names``.
"""
import json
import os

from ..errors import MindYOLOXError

__all__ = ["PREPROCESS", "write_meta", "read_meta", "meta_path"]

PREPROCESS = {
    "color": "BGR",
    "range": "0..255 (no scaling)",
    "mean": None,
    "std": None,
    "resize": "r = min(H / h, W / w); cv2.resize to (int(w * r), int(h * r)), INTER_LINEAR",
    "pad": "top-left on an H x W canvas filled with 114",
    "boxes_back": "divide by r",
    "function": "mindyolox.data.preproc",
}


def meta_path(model_path):
    return os.path.splitext(str(model_path))[0] + ".json"


def write_meta(path, meta):
    with open(path, "w") as f:
        json.dump(meta, f, indent=1)


def read_meta(model_path, required=True):
    """The metadata beside ``model_path`` (``{}`` when absent and not ``required``)."""
    path = meta_path(model_path)
    if not os.path.isfile(path):
        if required:
            raise MindYOLOXError(f"{model_path}: no export metadata {path} beside it (written by deploy/export.py)")
        return {}
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise MindYOLOXError(f"export metadata {path} is unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise MindYOLOXError(f"export metadata {path}: not a JSON object")
    return meta
