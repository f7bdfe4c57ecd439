"""Prediction on images, folders and videos, shared by ``predict.py`` (a Cell) and
``deploy/infer.py`` (an exported MindIR): same preprocessing, same postprocessing.

- Preprocessing: :func:`mindyolox.data.preproc` (letterbox by ``r = min(H/h, W/w)`` on a 114
  canvas, BGR, 0..255, CHW float32), batch of one image.
- The network: any callable ``images float32 [1, 3, H, W] -> outputs [1, A, 5+C]``, either
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

import cv2
import numpy as np
from tqdm import tqdm

from ..data import preproc
from ..errors import DataError
from ..runtime.outputs import check_outputs, prediction_outputs, save_json
from ..utils.postprocess import decode_outputs, postprocess

__all__ = ["COCO_CLASSES", "IMAGE_EXTS", "VIDEO_EXTS", "class_names_for", "Predictor",
           "list_source", "run_prediction", "detections_to_records"]

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
NOT_MEDIA = "not an image or video (extension)"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")


def class_names_for(cfg):
    """Class names of a recipe, in class-id order: ``data.classes`` when it lists
    ``model.num_classes`` names; for a COCO recipe the categories of its annotation JSON
    (``data_dir`` + ``val_ann``, else ``train_ann``; sorted by id, as the dataset maps them)
    when that file is there and holds ``num_classes`` of them; the 80 COCO names for an
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
    """Image -> detections in original pixels.

    Args:
        network: callable ``float32 [1, 3, H, W] numpy -> [1, A, 5+C]`` (numpy or Tensor).
        img_size: ``(H, W)`` network input size.
        conf, nms, class_agnostic: postprocess settings.
        raw_outputs: the network returns undecoded boxes (an export with
            ``decode_in_inference=False``); ``strides`` are used to decode them.
    Calling it with a BGR uint8 ``[h, w, 3]`` image returns float32 ``[K, 7]`` rows
    ``(x1, y1, x2, y2, obj, cls_conf, cls)`` in that image's pixels, by descending score.
    """

    def __init__(self, network, img_size, conf=0.25, nms=0.45, class_agnostic=False,
                 raw_outputs=False, strides=(8, 16, 32)):
        self.network = network
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.conf, self.nms, self.class_agnostic = float(conf), float(nms), bool(class_agnostic)
        self.raw_outputs = bool(raw_outputs)
        self.strides = tuple(strides)

    def forward(self, img):
        """Network outputs ``[A, 5+C]`` (decoded) and the letterbox ratio for one image."""
        x, r = preproc(img, self.img_size)
        out = self.network(x[None])
        out = out.asnumpy() if hasattr(out, "asnumpy") else np.asarray(out)
        if self.raw_outputs:
            out = decode_outputs(out, self.img_size, self.strides)
        return out[0], r

    def __call__(self, img):
        out, r = self.forward(img)
        dets = postprocess(out[None], self.conf, self.nms, self.class_agnostic)[0]
        dets[:, :4] /= np.float32(r)
        return dets


def detections_to_records(dets, class_names):
    """``[K, 7]`` detections -> JSON-able list of ``{"bbox": [x1, y1, x2, y2] px, "score":
    obj*cls_conf, "obj", "cls_conf", "class_id", "class_name"}``. Rows with a non-finite value
    (an untrained model's ``exp`` overflow) are left out: JSON has no inf/NaN."""
    out = []
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 7)
    for d in dets[np.isfinite(dets).all(axis=1)]:
        c = int(d[6])
        out.append({"bbox": [float(v) for v in d[:4]], "score": float(d[4] * d[5]),
                    "obj": float(d[4]), "cls_conf": float(d[5]), "class_id": c,
                    "class_name": class_names[c] if 0 <= c < len(class_names) else str(c)})
    return out


def list_source(source):
    """``(kind, files, ignored)`` for ``source``: ``("image", [path], [])``, ``("video",
    [path], [])`` or ``("dir", [image and video paths, sorted], [other files, sorted])`` (a
    folder is not searched below its top level). Raises DataError when it does not exist,
    has an unknown extension, or (a folder) holds no image or video."""
    source = str(source)
    if os.path.isdir(source):
        entries = sorted(os.path.join(source, f) for f in os.listdir(source))
        entries = [p for p in entries if os.path.isfile(p)]
        media = [p.lower().endswith(IMAGE_EXTS + VIDEO_EXTS) for p in entries]
        files = [p for p, m in zip(entries, media) if m]
        if not files:
            raise DataError(f"--source {source}: folder has no images or videos "
                            f"({', '.join(IMAGE_EXTS + VIDEO_EXTS)})")
        return "dir", files, [p for p, m in zip(entries, media) if not m]
    if not os.path.exists(source):
        raise DataError(f"--source {source}: no such file or folder")
    ext = os.path.splitext(source)[1].lower()
    if ext in IMAGE_EXTS:
        return "image", [source], []
    if ext in VIDEO_EXTS:
        return "video", [source], []
    raise DataError(f"--source {source}: unknown extension '{ext}' (images: {', '.join(IMAGE_EXTS)}; "
                    f"videos: {', '.join(VIDEO_EXTS)})")


def _predict_image(predictor, path, out, class_names, draw):
    """Detections records of image ``path``; ``out``: ``(drawn path, json path)`` or None."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"image {path} cannot be read (missing, empty or not an image)")
    dets = predictor(img)
    records = detections_to_records(dets, class_names)
    if out:
        from ..utils.visualize import save_image
        if draw:
            save_image(out[0], _draw(img, dets, class_names))
        save_json(out[1], {"source": path, "height": img.shape[0], "width": img.shape[1], "detections": records})
    return records


def _draw(img, dets, class_names):
    from ..utils.visualize import draw_boxes
    return draw_boxes(img, dets[:, :4], dets[:, 6].astype(np.int64), dets[:, 4] * dets[:, 5], class_names)


def _predict_video(predictor, path, out, class_names, draw, progress):
    """Per-frame records of video ``path``; ``out``: ``(drawn path, json path)`` or None."""
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise DataError(f"video {path} cannot be opened")
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    frames = []
    bar = tqdm(total=n, desc=os.path.basename(path), unit="frame", disable=not progress, leave=False)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            dets = predictor(frame)
            frames.append({"frame": len(frames), "detections": detections_to_records(dets, class_names)})
            if out and draw:
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(out[0], cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                writer.write(_draw(frame, dets, class_names))
            bar.update(1)
    finally:
        bar.close()
        cap.release()
        if writer is not None:
            writer.release()
    if not frames:
        raise DataError(f"video {path}: no frame could be decoded")
    if out:
        save_json(out[1], {"source": path, "frames": frames})
    return frames


def is_video(path):
    return str(path).lower().endswith(VIDEO_EXTS)


def check_prediction_outputs(source, save_dir, inputs=()):
    """Raise (one line, nothing written) when an output of predicting ``source`` into
    ``save_dir`` would replace an input -- a file of ``source`` or one of ``inputs`` (weights,
    recipe) -- or two inputs would share an output (:func:`mindyolox.runtime.outputs.check_outputs`).
    Returns ``(list_source(source), plan, summary path)``."""
    listed = list_source(source)
    _, files, ignored = listed
    plan, summary = prediction_outputs(files, save_dir, is_video)
    outs = [(o, p) for p, pair in plan.items() for o in pair] + [(summary, "the summary")]
    check_outputs(outs, list(files) + list(ignored) + [p for p in inputs if p])
    return listed, plan, summary


def run_prediction(predictor, source, save_dir, class_names, draw=True, progress=True, log=print, inputs=()):
    """Predict on ``source`` (image, folder or video) and write the outputs to ``save_dir``
    (None: write nothing; names in the module doc). ``inputs``: other files the run read
    (weights, recipe) that no output may replace. Returns ``{"results": {path: detections records (image) or
    per-frame list (video)}, "skipped": [(path, reason)]}``.

    A single unreadable image or video raises DataError; inside a folder it is skipped,
    reported through ``log`` and listed in ``skipped``, and the rest is processed. Files of
    a folder whose extension is neither an image's nor a video's are listed in ``skipped``
    too, and counted in one ``log`` line.
    """
    if save_dir:
        (kind, files, ignored), plan, summary = check_prediction_outputs(source, save_dir, inputs)
        os.makedirs(save_dir, exist_ok=True)
    else:
        (kind, files, ignored), plan, summary = list_source(source), {}, None
    skipped = [(p, NOT_MEDIA) for p in ignored]
    if ignored:
        names = ", ".join(os.path.basename(p) for p in ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        log(f"skipped {len(ignored)} file(s) of {source} that are not images or videos by their extension "
            f"({names})")
    results = {}
    many = len(files) > 1
    bar = tqdm(files, desc="predict", unit="file", disable=not (progress and many), leave=False)
    for path in bar:
        try:
            if is_video(path):
                results[path] = _predict_video(predictor, path, plan.get(path), class_names, draw, progress)
            else:
                results[path] = _predict_image(predictor, path, plan.get(path), class_names, draw)
        except DataError as e:
            if kind != "dir":
                raise
            skipped.append((path, str(e)))
            log(f"skipped: {e}")
    if kind == "dir" and not results:
        raise DataError(f"--source {source}: none of its {len(files)} file(s) could be read")
    if save_dir:
        save_json(summary, {"results": results, "skipped": [{"file": p, "reason": r} for p, r in skipped]})
    return {"results": results, "skipped": skipped}
