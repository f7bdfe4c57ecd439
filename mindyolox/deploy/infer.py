"""Run an exported YOLOX model (.onnx, .mindir, .om) on images, folders, videos, a webcam or
a stream, in real batches.

    python deploy/infer.py --model runs/export/nano416.onnx --source ../shared/data/images/dog.jpg
    python deploy/infer.py --model runs/export/nano416.mindir --source images/ --batch 4
    python deploy/infer.py --model nano416.onnx --source 0            # webcam 0
    python deploy/infer.py --model nano416.onnx --source rtsp://host/stream --max-frames 100

Everything about the model (input size, batch, what the graph contains, strides, class
names) comes from the ``.json`` written by deploy/export.py beside it. Same preprocessing
(``mindyolox.data.preproc``) and postprocessing (official ``postprocess``, demo defaults conf
0.25 / NMS 0.45; an end-to-end ``--nms`` graph's own NMS) as ``predict.py``, and the same
outputs in ``--save-dir`` (default runs/infer), named from the input's whole file name:
``dog.jpg`` / ``dog.jpg.json`` per image, ``clip.avi.mp4`` + per-frame ``clip.avi.json`` per
video (``webcam0.mp4`` / ``stream.mp4`` + JSON for a webcam or stream), ``predictions.json``.
As in ``predict.py``: an unreadable image or video inside a folder is skipped and named, the
rest processed and the summary written; an output that would replace an input, or a
``--save-dir`` in use by another process, is refused before anything is written.
``--batch`` images go through the graph at once (default: the graph's fixed batch, else 1).
"""
import argparse
import os
import time

import cv2
import numpy as np
from tqdm import tqdm

from ..data import preproc
from ..errors import ConfigError, DataError, MindYOLOXError
from ..utils.cli import run_cli
from ..runtime.outputs import check_outputs, claim_output_dir, prediction_outputs, save_json
from .runners import open_runner

__all__ = ["main", "run", "predict_images", "read_source"]


def _records(dets, r, names):
    from ..predict.predictor import detections_to_records
    d = dets.copy()
    d[:, :4] /= np.float32(r)
    return d, detections_to_records(d, names)


def predict_images(runner, images, conf, nms, agnostic):
    """BGR uint8 images -> per image ``[K, 7]`` detections in original pixels (one graph call
    per ``len(images)``, chunked by the runner for a fixed-batch graph)."""
    xs, rs = zip(*(preproc(img, runner.img_size) for img in images))
    outs = runner(np.stack(xs))
    dets = runner.detections(outs, conf, nms, agnostic)
    result = []
    for d, r in zip(dets, rs):
        d = np.asarray(d, np.float32).copy()
        d[:, :4] /= np.float32(r)
        result.append(d)
    return result


def read_source(source):
    """``(kind, items, ignored)``: ``("stream", [capture target], [])`` for a webcam index
    (digits) or a URL (``scheme://``), else :func:`mindyolox.predict.predictor.list_source`'s
    ``("image" | "video" | "dir", [paths], [other files of the folder])``."""
    from ..predict.predictor import list_source
    s = str(source)
    if s.isdigit():
        return "stream", [int(s)], []
    if "://" in s:
        return "stream", [s], []
    return list_source(s)


def _batches(seq, n):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _run_video(runner, target, args, names, out, stem):
    """Per-frame records of a video, webcam or stream; ``out``: ``(drawn path, json path)``
    or None."""
    from ..predict.predictor import _draw, detections_to_records
    stream = not isinstance(target, str) or "://" in target
    name = f"--source {target}" if stream else f"video {target}"
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        raise DataError(f"{name}: cannot be opened" + (" as a webcam or stream" if stream else ""))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer, frames, pending = None, [], []
    bar = tqdm(desc=str(stem), unit="frame", disable=args.no_progress, leave=False)

    def flush():
        nonlocal writer
        for img, d in zip(pending, predict_images(runner, pending, args.conf, args.nms, args.class_agnostic)):
            frames.append({"frame": len(frames), "detections": detections_to_records(d, names)})
            if out:
                if writer is None:
                    h, w = img.shape[:2]
                    writer = cv2.VideoWriter(out[0], cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                writer.write(_draw(img, d, names))
            bar.update(1)
        pending.clear()
    try:
        while args.max_frames <= 0 or len(frames) + len(pending) < args.max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            pending.append(frame)
            if len(pending) == args.batch:
                flush()
        if pending:
            flush()
    finally:
        bar.close()
        cap.release()
        if writer is not None:
            writer.release()
    if not frames:
        raise DataError(f"{name}: no frame could be read")
    if out:
        save_json(out[1], {"source": str(target), "frames": frames})
    return frames


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "--mindir", dest="model", required=True,
                        help="exported .onnx, .mindir or .om (with its .json beside it)")
    parser.add_argument("--source", required=True,
                        help="image, video, folder, webcam index (0) or stream URL (rtsp://, http://)")
    parser.add_argument("--img-size", type=int, nargs="+",
                        help="check: the input size the model must have (S or H W); default from the .json")
    parser.add_argument("--batch", type=int, help="images per graph call (default: the graph's batch, else 1)")
    parser.add_argument("--device", default=None, help="cpu | gpu | ascend (ONNX also cuda, tensorrt, openvino)")
    parser.add_argument("--backend", default="auto", choices=["auto", "mindspore", "lite"],
                        help="MindIR: MindSpore Lite when installed (auto), or mindspore GraphCell")
    parser.add_argument("--conf", type=float, default=0.25, help="score threshold obj*cls (default 0.25)")
    parser.add_argument("--nms", type=float, default=0.45, help="NMS IoU threshold (default 0.45; "
                        "an end-to-end graph uses its own)")
    parser.add_argument("--class-agnostic", action="store_true", help="NMS over all classes together")
    parser.add_argument("--max-frames", type=int, default=0, help="stop a video/webcam/stream after N frames (0: all)")
    parser.add_argument("--save-dir", default="runs/infer", help="output folder (default runs/infer)")
    parser.add_argument("--no-save", action="store_true", help="write nothing, print detections only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("conf", "nms"):
        v = getattr(args, name)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"--{name} must be in [0, 1], got {v}")
    kind, items, ignored = read_source(args.source)
    save_dir = None if args.no_save else args.save_dir
    plan, summary = _plan_outputs(kind, items, ignored, args.model, save_dir)
    with claim_output_dir(save_dir):
        n_img, seconds, skipped = _infer(args, kind, items, ignored, plan, summary)
    if skipped:
        from ..predict.predictor import NOT_MEDIA
        not_media = sum(reason == NOT_MEDIA for _, reason in skipped)
        print(f"skipped {len(skipped)} file(s): {not_media} not images or videos, "
              f"{len(skipped) - not_media} unreadable")
    if save_dir:
        print(f"results written to {save_dir}")
    if n_img:
        print(f"{n_img} image(s) in {seconds:.2f} s")
    return 0


def _infer(args, kind, items, ignored, plan, summary):
    """Open the model, check the flags against it, run every item, write the summary;
    returns ``(images done, seconds on images, skipped [(path, reason)])``."""
    runner = open_runner(args.model, args.device, args.backend)
    if args.img_size:
        want = tuple(args.img_size * 2 if len(args.img_size) == 1 else args.img_size[:2])
        if want != runner.img_size:
            raise MindYOLOXError(f"{args.model} takes {runner.img_size[0]}x{runner.img_size[1]} inputs, not "
                                 f"{want[0]}x{want[1]} (re-export with --img-size {want[0]} {want[1]})")
    if args.batch is not None and args.batch <= 0:
        raise ConfigError(f"--batch must be positive, got {args.batch}")
    args.batch = args.batch or runner.batch or 1
    if runner.batch is not None and args.batch > runner.batch and args.batch % runner.batch:
        raise MindYOLOXError(f"{args.model} has a fixed batch of {runner.batch}: --batch {args.batch} is not a "
                             f"multiple of it (re-export with --dynamic-batch or --batch {args.batch})")
    names = tuple(runner.meta.get("class_names") or ())
    if not names:
        from ..predict.predictor import COCO_CLASSES
        names = COCO_CLASSES
    b = "any batch" if runner.batch is None else f"batch {runner.batch}"
    print(f"running {args.model} with {runner.backend} (input {b} x 3 x {runner.img_size[0]} x "
          f"{runner.img_size[1]}, {runner.kind} outputs), {args.batch} image(s) per call")
    results, skipped, n_img, seconds = _run_source(runner, kind, items, ignored, args, names, plan)
    if summary:
        save_json(summary, {"results": results, "skipped": [{"file": p, "reason": r} for p, r in skipped]})
    return n_img, seconds, skipped


def _plan_outputs(kind, items, ignored, model, save_dir):
    """``({input: (drawn path, json path)}, summary path)`` in ``save_dir`` (``({}, None)``
    without one), after checking that no output replaces an input (the sources, ``model`` and
    its ``.json``) and no two share a path (:mod:`mindyolox.runtime.outputs`)."""
    if not save_dir:
        return {}, None
    from ..predict.predictor import is_video
    from .meta import meta_path
    if kind == "stream":
        stem = f"webcam{items[0]}" if isinstance(items[0], int) else "stream"
        plan = {items[0]: (os.path.join(save_dir, f"{stem}.mp4"), os.path.join(save_dir, f"{stem}.json"))}
        summary = os.path.join(save_dir, "predictions.json")
        files = []
    else:
        plan, summary = prediction_outputs(items, save_dir, is_video)
        files = list(items)
    outs = [(o, str(p)) for p, pair in plan.items() for o in pair] + [(summary, "the summary")]
    check_outputs(outs, files + list(ignored) + [model, meta_path(model)])
    return plan, summary


def _run_source(runner, kind, items, ignored, args, names, plan):
    """Predict every item; returns ``(results, skipped [(path, reason)], images done, seconds
    spent on images)``. In a folder an unreadable image or video is skipped and named, the rest
    processed; a single one (or a whole folder unreadable) raises DataError."""
    from ..predict.predictor import NOT_MEDIA, _draw, detections_to_records, is_video
    results, skipped = {}, [(p, NOT_MEDIA) for p in ignored]
    if ignored:
        shown = ", ".join(os.path.basename(p) for p in ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        print(f"skipped {len(ignored)} file(s) of {args.source} that are not images or videos by their extension "
              f"({shown})")
    t0, n_img = time.perf_counter(), 0
    if kind == "stream":
        stem = f"webcam{items[0]}" if isinstance(items[0], int) else "stream"
        frames = _run_video(runner, items[0], args, names, plan.get(items[0]), stem)
        results[str(items[0])] = frames
        print(f"{items[0]}: {len(frames)} frames, {sum(len(f['detections']) for f in frames)} detections")
        return results, skipped, 0, 0.0
    folder = kind == "dir"
    images = [p for p in items if not is_video(p)]
    videos = [p for p in items if is_video(p)]
    bar = tqdm(total=len(images), desc="infer", unit="img", disable=args.no_progress or len(images) < 2, leave=False)
    for group in _batches(images, args.batch):
        imgs, ok_paths = [], []
        for p in group:
            img = cv2.imread(p, cv2.IMREAD_COLOR)
            if img is None:
                reason = f"image {p} cannot be read (missing, empty or not an image)"
                if not folder:
                    raise DataError(reason)
                skipped.append((p, reason))
                print(f"skipped: {reason}")
                continue
            imgs.append(img)
            ok_paths.append(p)
        if not imgs:
            bar.update(len(group))
            continue
        for p, img, d in zip(ok_paths, imgs, predict_images(runner, imgs, args.conf, args.nms, args.class_agnostic)):
            recs = detections_to_records(d, names)
            results[p] = recs
            out = plan.get(p)
            if out:
                from ..utils.visualize import save_image
                save_image(out[0], _draw(img, d, names))
                save_json(out[1], {"source": p, "height": img.shape[0], "width": img.shape[1], "detections": recs})
            top = ", ".join(f"{r['class_name']} {r['score']:.2f}" for r in recs[:8])
            print(f"{p}: {len(recs)} detections" + (f" ({top}{', ...' if len(recs) > 8 else ''})" if recs else ""))
        n_img += len(imgs)
        bar.update(len(group))
    bar.close()
    seconds = time.perf_counter() - t0
    for p in videos:
        try:
            frames = _run_video(runner, p, args, names, plan.get(p), os.path.basename(p))
        except DataError as e:
            if not folder:
                raise
            skipped.append((p, str(e)))
            print(f"skipped: {e}")
            continue
        results[p] = frames
        print(f"{p}: {len(frames)} frames, {sum(len(f['detections']) for f in frames)} detections")
    if folder and not results:
        raise DataError(f"--source {args.source}: none of its {len(items)} file(s) could be read")
    return results, skipped, n_img, seconds

def run():
    """Console entry point (``mindyolox-infer``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
