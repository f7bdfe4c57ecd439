"""Augmented training samples drawn with their boxes: what the model is fed
(``tools/visualize_dataset.py``, the TensorBoard ``train/augmented`` images)."""
import numpy as np
from tqdm import tqdm

from ..utils.visualize import draw_boxes
from .loader import build_dataset
from .mosaic import MosaicMixup
from .transforms import cxcywh2xyxy

__all__ = ["render_samples"]


def render_samples(data_cfg, aug_cfg, seed=0, n=8, mosaic=True, split="train", dataset=None, progress=True):
    """``n`` augmented samples drawn with boxes + names: list of BGR uint8 ``[H, W, 3]``."""
    dataset = dataset if dataset is not None else build_dataset(data_cfg, split)
    size = tuple(int(v) for v in data_cfg["input_size"])
    builder = MosaicMixup(dataset, size, aug_cfg, int(data_cfg["max_labels"]))
    order = np.random.default_rng([int(seed), 0]).permutation(len(dataset))
    out = []
    for k in tqdm(range(n), desc="samples", unit="img", leave=False, disable=not progress):
        index = int(order[k % len(order)])
        image, labels = builder.sample(index, size, np.random.default_rng([int(seed), 0, index, k]),
                                       mosaic=mosaic)
        valid = labels[:, 3] > 0
        boxes = cxcywh2xyxy(labels[valid, 1:5])
        img = np.ascontiguousarray(image.transpose(1, 2, 0))
        out.append(draw_boxes(img, boxes, labels[valid, 0].astype(int), class_names=dataset.class_names))
    return out, dataset
