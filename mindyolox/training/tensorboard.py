"""``train.tensorboard``: the run's records as a TensorBoard event file, ``<run>/tensorboard/``.

Every record that goes to ``metrics.jsonl`` goes here too (rank 0), at its global iteration
``step``: ``train/<term>`` (loss terms, lr, ms per step, memory ...), ``eval/AP50_95``,
``eval/AP50``, ``eval/<COCO stat>``, ``eval/eval_s`` / ``wait_s`` and ``time/<part>``; plus
images: ``train/augmented`` (8 training samples as the model gets them, boxes drawn) when
training starts and when Mosaic/MixUp stop, and ``eval/detections`` (the first val images
with the EMA model's detections, score >= 0.3) at each evaluation; an early model's
non-finite boxes are clipped or left out there (:func:`~mindyolox.utils.visualize.draw_boxes`),
never an error. Written with
``tensorboardX`` (no torch, no TensorFlow); view with ``tensorboard --logdir runs/train``.
"""
import cv2
import numpy as np

from ..evaluation.evaluator import COCO_STAT_NAMES

__all__ = ["TensorBoardLog"]

SCORE_THRESHOLD = 0.3
_SKIP = ("type", "step", "epoch", "iter", "steps", "size", "event", "time")


class TensorBoardLog:
    """A ``tensorboardX.SummaryWriter`` in ``log_dir`` fed with the trainer's records."""

    def __init__(self, log_dir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            from ..errors import ConfigError
            raise ConfigError("train.tensorboard: the tensorboardX package is not installed "
                              "(pip install tensorboardX, or set train.tensorboard=false)") from None
        self.writer = SummaryWriter(str(log_dir), flush_secs=20)

    def record(self, rec):
        """Scalars of one ``metrics.jsonl`` record (train / eval / time; events are left out)."""
        kind, step = rec.get("type"), int(rec.get("step", 0) or 0)
        if kind not in ("train", "eval", "time"):
            return
        for key, value in rec.items():
            if key in _SKIP or isinstance(value, bool) or value is None:
                continue
            if key == "stats" and kind == "eval":
                names = COCO_STAT_NAMES if len(value) == len(COCO_STAT_NAMES) else [f"stat{i}" for i in range(len(value))]
                for name, v in zip(names, value):
                    if name not in rec:  # AP50_95 / AP50 are keys of the record too
                        self.writer.add_scalar(f"eval/{name}", float(v), step)
            elif isinstance(value, (int, float)):
                self.writer.add_scalar(f"{kind}/{key}", float(value), step)

    def image(self, tag, bgr, step):
        """A BGR uint8 ``[H, W, 3]`` image."""
        self.writer.add_image(tag, np.ascontiguousarray(bgr[..., ::-1]), int(step), dataformats="HWC")

    def detections(self, samples, dataset, step):
        """``samples`` ``{dataset index: dets [K, 7]}`` (original pixels) drawn on their images."""
        from ..utils.visualize import draw_boxes, make_grid
        tiles = []
        for index, dets in sorted(samples.items()):
            img = dataset.read_image(index)
            if img is None:
                continue
            score = dets[:, 4] * dets[:, 5]
            dets = dets[np.isfinite(score) & (score >= SCORE_THRESHOLD)]  # non-finite boxes: draw_boxes
            tile = draw_boxes(img, dets[:, :4], dets[:, 6].astype(np.int64), dets[:, 4] * dets[:, 5],
                              dataset.class_names)
            scale = 320.0 / max(tile.shape[:2])
            tiles.append(cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
        if tiles:
            self.image("eval/detections", make_grid(tiles, ncols=len(tiles)), step)

    def close(self):
        self.writer.close()
