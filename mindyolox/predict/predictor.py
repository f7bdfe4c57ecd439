"""The Cell predictor of ``predict.py``: the same preprocessing and postprocessing as
``deploy/infer.py`` (an exported artifact), and the same loop over the same frame source
(:mod:`mindyolox.predict.loop`, :mod:`mindyolox.predict.source`).

- Preprocessing: :func:`mindyolox.data.preproc` (letterbox by ``r = min(H/h, W/w)`` on a 114
  canvas, BGR, 0..255, CHW float32), ``batch`` images stacked (:class:`Predictor`).
- The network: any callable ``images float32 [N, 3, H, W] -> outputs [N, A, 5+C]``, either
  decoded (cx, cy, w, h px) or raw (dx, dy, log w, log h; ``raw_outputs=True``), decoded here
  with :func:`mindyolox.utils.postprocess.decode_outputs`.
- Postprocessing: official ``postprocess`` (demo defaults conf 0.25, NMS 0.45), boxes divided
  by ``r`` -> original image pixels, not clipped to the image (as the official demo).

Outputs of :func:`run_prediction` in ``save_dir``, named from the input's whole file name
(:mod:`mindyolox.runtime.outputs`): ``dog.jpg`` (annotated image) and ``dog.jpg.json`` per
image, ``clip.avi.mp4`` + ``clip.avi.json`` (per frame) per video, and ``predictions.json``
(everything, keyed by source file). Nothing is written when an output would replace an input.
"""
import json
import os

import numpy as np

from ..data import preproc
from ..errors import DataError
from ..utils.postprocess import decode_outputs, postprocess
from .labels import COCO_CLASSES
from .loop import plan_source, run_plan

__all__ = ["COCO_CLASSES", "class_names_for", "Predictor", "run_prediction"]



def class_names_for(cfg):
    """Class names of a recipe, in class-id order: ``data.classes`` when it lists
    ``model.num_classes`` names; for a COCO recipe the categories of its annotation JSON
    (``data_dir`` + ``val_ann``, else ``train_ann``; sorted by id, as the dataset maps them)
    when that file is there and holds ``num_classes`` of them; for a YOLO recipe the ``names`` of
    its dataset YAML (``data.yaml``) when it is there and has ``num_classes`` of them; the 80 COCO names for an
    80-class model, the 20 VOC names for a 20-class VOC recipe; else ``"0", "1", ...``."""
    from ..data import VOC_CLASSES
    n = int(cfg.model.num_classes)
    names = list(cfg.data.get("classes") or [])
    if len(names) == n:
        return tuple(names)
    if str(cfg.data.format).lower() == "coco":
        names = _json_class_names(cfg.data)
        if names is not None and len(names) == n:
            return names
    if str(cfg.data.format).lower() == "yolo" and os.path.isfile(os.path.expanduser(str(cfg.data.get("yaml") or ""))):
        from ..data.yolo import load_dataset_yaml
        names = tuple(load_dataset_yaml(cfg.data.yaml)["names"])
        if len(names) == n:
            return names
    if n == len(COCO_CLASSES):
        return COCO_CLASSES
    if n == len(VOC_CLASSES) and str(cfg.data.format).lower() == "voc":
        return VOC_CLASSES
    return tuple(str(i) for i in range(n))


def _json_class_names(data_cfg):
    """Category names (sorted by id) of the recipe's val (else train) annotation JSON, or None
    when neither file is there. A ``demo:<dir>`` data_dir is read, never generated, here."""
    from ..data.demo import DEMO_PREFIX
    data_dir = str(data_cfg["data_dir"])
    data_dir = os.path.expanduser(data_dir[len(DEMO_PREFIX):].strip() if data_dir.startswith(DEMO_PREFIX) else data_dir)
    for key in ("val_ann", "train_ann"):
        path = os.path.join(data_dir, str(data_cfg[key]))
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    cats = json.load(f)["categories"]
                return tuple(str(c.get("name", c["id"])) for c in sorted(cats, key=lambda c: c["id"]))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise DataError(f"{path}: cannot read the class names (categories) of the annotation JSON: "
                                f"{' '.join(str(e).split())}") from None
    return None


class Predictor:
    """Images -> detections in original pixels.

    Args:
        network: callable ``float32 [N, 3, H, W] numpy -> [N, A, 5+C]`` (numpy or Tensor).
        img_size: ``(H, W)`` network input size.
        conf, nms, class_agnostic: postprocess settings.
        raw_outputs: the network returns undecoded boxes (an export with
            ``decode_in_inference=False``); ``strides`` are used to decode them.
        batch: images per network call in :meth:`predict_batch` (``N``). Decided: every call
            has exactly ``N`` images -- a shorter last group (the end of a folder or video) is
            padded with blank 114-grey inputs whose outputs are dropped -- so a GRAPH_MODE Cell
            is compiled once, for ``[N, 3, H, W]``: MindSpore keys a Cell's compiled graph by
            its arguments' shapes (``mindspore/graph/api.py:2311``, ``generate_arguments_key``),
            so a second batch size would be a second compile, dearer than the padded rows.
    Calling it with a BGR uint8 ``[h, w, 3]`` image returns float32 ``[K, 7]`` rows
    ``(x1, y1, x2, y2, obj, cls_conf, cls)`` in that image's pixels, by descending score (one
    network call of batch 1, whatever ``batch`` is).
    """

    def __init__(self, network, img_size, conf=0.25, nms=0.45, class_agnostic=False,
                 raw_outputs=False, strides=(8, 16, 32), batch=1):
        self.network = network
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.conf, self.nms, self.class_agnostic = float(conf), float(nms), bool(class_agnostic)
        self.raw_outputs = bool(raw_outputs)
        self.strides = tuple(strides)
        self.batch = max(1, int(batch))

    def _outputs(self, x):
        """Decoded network outputs ``[n, A, 5+C]`` of the preprocessed batch ``x`` ``[n, 3, H, W]``."""
        out = self.network(x)
        out = out.asnumpy() if hasattr(out, "asnumpy") else np.asarray(out)
        if self.raw_outputs:
            out = decode_outputs(out, self.img_size, self.strides)
        return out

    def forward(self, img):
        """Network outputs ``[A, 5+C]`` (decoded) and the letterbox ratio for one image."""
        x, r = preproc(img, self.img_size)
        return self._outputs(x[None])[0], r

    def __call__(self, img):
        out, r = self.forward(img)
        dets = postprocess(out[None], self.conf, self.nms, self.class_agnostic)[0]
        dets[:, :4] /= np.float32(r)
        return dets

    def predict_batch(self, images):
        """The loop's protocol (:mod:`mindyolox.predict.loop`): BGR uint8 images -> one float32
        ``[K, 7]`` per image, ``batch`` images per network call (the last group padded to
        ``batch``, see the class doc)."""
        result = []
        for i in range(0, len(images), self.batch):
            group = images[i:i + self.batch]
            xs, rs = zip(*(preproc(img, self.img_size) for img in group))
            x = np.stack(xs)
            if len(group) < self.batch:
                x = np.concatenate([x, np.full((self.batch - len(group),) + x.shape[1:], 114.0, x.dtype)])
            out = self._outputs(np.ascontiguousarray(x))[:len(group)]
            for d, r in zip(postprocess(out, self.conf, self.nms, self.class_agnostic), rs):
                d[:, :4] /= np.float32(r)
                result.append(d)
        return result


def run_prediction(predictor, source, save_dir, class_names, draw=True, progress=True, log=print, inputs=(),
                   max_frames=0, streams=False, batch=None):
    """Predict on ``source`` (image, folder or video; ``streams=True``: also a webcam index or a
    stream URL) and write the outputs to ``save_dir`` (None: write nothing; names in the module
    doc). ``predictor``: a callable ``BGR image -> [K, 7]`` (e.g. :class:`Predictor`). ``inputs``:
    other files the run read (weights, recipe) that no output may replace. Returns ``{"results":
    {path: detections records (image) or per-frame list (video)}, "skipped": [(path, reason)],
    "images", "seconds"}`` (:func:`mindyolox.predict.loop.run_plan`).

    A single unreadable image or video raises DataError; inside a folder it is skipped,
    reported through ``log`` and listed in ``skipped``, and the rest is processed. Files of
    a folder whose extension is neither an image's nor a video's are listed in ``skipped``
    too, and counted in one ``log`` line. ``batch``: images per ``predict_batch`` call (default:
    the predictor's ``batch``, else 1).
    """
    plan = plan_source(source, save_dir, inputs, streams=streams)
    fn = getattr(predictor, "predict_batch", None) or (lambda images: [predictor(img) for img in images])
    batch = batch or getattr(predictor, "batch", 1)
    return run_plan(fn, plan, class_names, batch=batch, max_frames=max_frames, draw=draw, progress=progress, log=log)
