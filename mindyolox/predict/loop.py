"""The one prediction loop over a frame source (:mod:`mindyolox.predict.source`), shared by
``predict.py`` (a Cell, :class:`~mindyolox.predict.predictor.Predictor`) and
``deploy/infer.py`` (an exported artifact, :func:`mindyolox.deploy.runners.predict_images`).

The model is any ``predict_batch(images) -> detections``: a list of BGR ``uint8 [h, w, 3]``
images in, one ``float32 [K, 7]`` array per image out (``x1, y1, x2, y2, obj, cls_conf,
cls``, boxes in that image's pixels). The loop hands it up to ``batch`` images at a time:
consecutive images of a folder, consecutive frames of a video, webcam or stream (the last
group may be shorter).

Two steps, so that a command can refuse bad input before it builds or opens a model:

1. :func:`plan_source` reads ``--source`` and, with a ``save_dir``, names every output
   (:mod:`mindyolox.runtime.outputs`: ``dog.jpg`` + ``dog.jpg.json`` per image, ``clip.avi.mp4``
   + ``clip.avi.json`` per video, ``webcam0.mp4`` / ``stream.mp4`` + ``.json`` for a webcam or
   stream, ``predictions.json``) and refuses, before anything is written, an output that would
   replace an input (a file of the source, or one of ``inputs``: weights, recipe, model) and
   two inputs sharing an output.
2. :func:`run_plan` predicts every item in the source's order, writes the outputs and the
   summary, and logs one line per item. Decided here (the same for both commands): in a
   folder, an unreadable image or video is skipped, named in a ``skipped: ...`` line and in
   the summary's ``skipped`` list, and the rest processed; a single unreadable file, or a
   folder of which nothing could be read, is one DataError line.
"""
import functools
import os
import sys
import time

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import DataError, MindYOLOXError
from ..runtime.outputs import check_outputs, prediction_outputs, save_json
from .labels import category_ids_for, coco_image_ids, coco_results, txt_name, yolo_rows
from .source import NOT_MEDIA, VideoFrames, is_stream, is_video, list_source, read_image, read_source, stream_stem
from .workers import Prefetch, Writer

__all__ = ["COCO_RESULTS", "SourcePlan", "plan_source", "run_plan", "print_outcome", "predict_video", "detections_to_records", "draw_detections",
           "format_result"]


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


def draw_detections(img, dets, class_names):
    """``img`` (BGR uint8) with the ``[K, 7]`` detections drawn (boxes, class names, scores)."""
    from ..utils.visualize import draw_boxes
    return draw_boxes(img, dets[:, :4], dets[:, 6].astype(np.int64), dets[:, 4] * dets[:, 5], class_names)


def format_result(path, result):
    """The one line printed per item: ``dog.jpg: 3 detections (dog 0.93, ...)`` for an image,
    ``clip.avi: 30 frames, 75 detections`` for a video, webcam or stream."""
    if result and isinstance(result[0], dict) and "frame" in result[0]:
        return f"{path}: {len(result)} frames, {sum(len(f['detections']) for f in result)} detections"
    top = ", ".join(f"{d['class_name']} {d['score']:.2f}" for d in result[:8])
    return f"{path}: {len(result)} detections" + (f" ({top}{', ...' if len(result) > 8 else ''})" if result else "")


class SourcePlan:
    """What :func:`plan_source` found: ``source`` (as given), ``kind`` (``image`` / ``video`` /
    ``dir`` / ``stream``; a glob pattern is a ``dir``), ``items`` (paths, or one capture target),
    ``ignored`` (files of a folder that are not media), ``outputs`` (``{item: (drawn path, json
    path)}``, empty without a save folder), ``summary`` (``predictions.json`` path or None),
    ``save_dir``; ``save_txt`` (YOLO txt labels wanted), ``coco`` (``predictions_coco.json``
    path or None) and ``coco_ids`` (``{image path: COCO image id}``), :mod:`.labels`."""

    def __init__(self, source, kind, items, ignored, outputs, summary, save_dir, save_txt=False, coco=None):
        self.source, self.kind, self.items, self.ignored = source, kind, list(items), list(ignored)
        self.outputs, self.summary, self.save_dir = outputs, summary, save_dir
        self.save_txt, self.coco = bool(save_txt and save_dir), coco
        images = [p for p in self.items if kind != "stream" and not is_video(p)]
        self.coco_ids = coco_image_ids(images) if coco else {}


COCO_RESULTS = "predictions_coco.json"


def plan_source(source, save_dir, inputs=(), streams=True, save_txt=False, save_coco=False):
    """Read ``source`` (:func:`~mindyolox.predict.source.read_source`; ``streams=False``: files
    and folders only) and plan the outputs in ``save_dir`` (None: nothing is written), after
    checking that no output replaces an input -- a file of the source or one of ``inputs`` --
    and no two share a path. ``save_txt`` / ``save_coco``: also YOLO txt labels under
    ``labels/`` and ``predictions_coco.json`` (:mod:`.labels`; two inputs with one stem are
    refused with ``save_txt``). Nothing is written here. Returns a :class:`SourcePlan`."""
    kind, items, ignored = read_source(source) if streams else list_source(source)
    if not save_dir:
        return SourcePlan(source, kind, items, ignored, {}, None, None)
    if kind == "stream":
        stem = stream_stem(items[0])
        outputs = {items[0]: (os.path.join(save_dir, f"{stem}.mp4"), os.path.join(save_dir, f"{stem}.json"))}
        _, summary = prediction_outputs([], save_dir, is_video)
        files = []
    else:
        outputs, summary = prediction_outputs(items, save_dir, is_video)
        files = list(items)
    outs = [(o, str(p)) for p, pair in outputs.items() for o in pair] + [(summary, "the summary")]
    coco = os.path.join(save_dir, COCO_RESULTS) if save_coco else None
    if coco:
        outs.append((coco, "the COCO results"))
    if save_txt:
        for p in items:
            if kind == "stream":
                stem, frame = stream_stem(p), 0
            else:
                stem, frame = os.path.splitext(os.path.basename(str(p)))[0], 0 if is_video(p) else None
            outs.append((os.path.join(save_dir, txt_name(stem, frame)), f"{p} (--save-txt)"))
    check_outputs(outs, files + list(ignored) + [p for p in inputs if p])
    return SourcePlan(source, kind, items, ignored, outputs, summary, save_dir, save_txt, coco)


class _Extras:
    """The optional outputs of a run (:mod:`.labels`): YOLO txt files and COCO results, with the
    image ids of ``plan`` and the next id for video frames."""

    def __init__(self, plan, class_names):
        self.txt = plan.save_dir if plan.save_txt else None
        self.coco = [] if plan.coco else None
        self.ids = plan.coco_ids
        self.next_id = max(self.ids.values(), default=0) + 1
        self.category_ids = category_ids_for(class_names)

    def image_id(self, path=None):
        """The COCO image id of image ``path``, or (None) the next video frame's."""
        if path is not None:
            return self.ids[path]
        self.next_id += 1
        return self.next_id - 1

    def add(self, records, shape, stem, frame=None, path=None):
        """Keep ``records`` for the COCO file and return ``(image id or None, txt job or None)``."""
        img_id = None
        if self.coco is not None:
            img_id = self.image_id(path)
            self.coco.extend(coco_results(img_id, records, self.category_ids))
        job = None
        if self.txt:
            out, text = os.path.join(self.txt, txt_name(stem, frame)), yolo_rows(records, shape[1], shape[0])
            job = _guarded(out, lambda: _write_text(out, text))
        return img_id, job


def _write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _guarded(path, fn):
    """``fn`` as a writer job whose OS / OpenCV error is one MindYOLOXError line naming ``path``."""
    def job():
        try:
            fn()
        except (OSError, cv2.error) as e:
            raise MindYOLOXError(f"cannot write {path}: {' '.join(str(e).split())}") from None
    return job


class _Rate:
    """Frames (or images) per second, shown as the progress bar's postfix: counted from the end
    of the first batch, so the graph compile of the first call is not in the figure."""

    def __init__(self, bar):
        self.bar, self.t0, self.n = bar, None, 0

    def update(self, n):
        self.bar.update(n)
        if self.t0 is None:
            self.t0 = time.perf_counter()
            return
        self.n += n
        dt = time.perf_counter() - self.t0
        if dt > 0:
            self.bar.set_postfix_str(f"{self.n / dt:.1f} frames/s", refresh=False)


def predict_video(predict_batch, target, out, class_names, batch=1, max_frames=0, draw=True, progress=True,
                  log=None, writer=None, extras=None):
    """The one video loop: per-frame records ``[{"frame": i, "detections": [...]}, ...]`` of a
    video file, webcam or stream, ``batch`` frames per ``predict_batch`` call. ``out``: ``(drawn
    path, json path)`` or None; the drawn video is MPEG-4 at the capture's frame rate.
    DataError when it cannot be opened or yields no frame.

    Frames are decoded by a reader thread (:class:`~.workers.Prefetch`, ``2 * batch`` frames
    ahead) and drawn / encoded by a writer thread (``writer``, a :class:`~.workers.Writer`; one
    of its own when None). A stream (webcam / URL) that stops delivering frames before
    ``max_frames`` is one ``log`` line, and the frames so far are kept. On any exception
    (Ctrl-C included) the video file is closed (playable, the frames so far) and the JSON
    written with ``"complete": false`` before the exception goes on.
    """
    frames, pending, state = [], [], {"vw": None}
    own = writer is None
    writer = Writer() if own else writer
    stem = stream_stem(target) if is_stream(target) else os.path.splitext(os.path.basename(str(target)))[0]
    complete = False
    try:
        with VideoFrames(target, max_frames) as video:
            desc = stream_stem(target) if video.stream else os.path.basename(str(target))
            bar = tqdm(total=video.count, desc=desc, unit="frame", disable=not progress, leave=False)
            rate = _Rate(bar)

            def write_frame(img, d, path):
                if state["vw"] is None:
                    h, w = img.shape[:2]
                    state["vw"] = _video_writer(path, video.fps, (w, h))
                state["vw"].write(draw_detections(img, d, class_names))

            def flush():
                for img, d in zip(pending, predict_batch(pending)):
                    rec = {"frame": len(frames), "detections": detections_to_records(d, class_names)}
                    if extras is not None:
                        img_id, job = extras.add(rec["detections"], img.shape, stem, frame=len(frames))
                        if img_id is not None:
                            rec["image_id"] = img_id
                        if job is not None:
                            writer.submit(job)
                    frames.append(rec)
                    if out and draw:
                        writer.submit(_guarded(out[0], functools.partial(write_frame, img, d, out[0])))
                rate.update(len(pending))
                pending.clear()
            reader = Prefetch(iter(video), depth=2 * batch)
            try:
                for frame in reader:
                    pending.append(frame)
                    if len(pending) >= batch:
                        flush()
                if pending:
                    flush()
            finally:
                reader.close()
                bar.close()
            if not frames:
                raise DataError(f"{video.name}: no frame could be read")
            if video.dropped and log is not None:
                log(f"{video.name}: the stream stopped delivering frames after {len(frames)} frame(s); "
                    f"the {len(frames)} frame(s) are kept")
        complete = True
    finally:
        writer.always(_release_job(state))   # the video file is closed even after a failed job
        if own:
            writer.__exit__(*(sys.exc_info() if not complete else (None, None, None)))
        if out and frames:
            save_json(out[1], {"source": str(target), "complete": complete, "frames": frames})
    return frames


def _release_job(state):
    def release():
        if state["vw"] is not None:
            state["vw"].release()
            state["vw"] = None
    return release


def _video_writer(path, fps, size):
    """An MPEG-4 ``cv2.VideoWriter`` at ``fps`` frames/s for frames of ``size`` ``(w, h)`` px."""
    return cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)


def _write_image(out, path, img, dets, records, class_names, draw, image_id=None):
    if draw:
        from ..utils.visualize import save_image
        save_image(out[0], draw_detections(img, dets, class_names))
    extra = {} if image_id is None else {"image_id": image_id}
    save_json(out[1], {"source": path, "height": img.shape[0], "width": img.shape[1], **extra, "detections": records})


def _read_items(plan):
    """The reader thread's items, in the source's order: ``("image", path, BGR image or the
    DataError of reading it)`` and ``("video", target, None)`` (a video is read by
    :func:`predict_video`'s own reader)."""
    for item in plan.items:
        if plan.kind == "stream" or is_video(item):
            yield "video", item, None
            continue
        try:
            yield "image", item, read_image(item)
        except DataError as e:
            yield "image", item, e


def run_plan(predict_batch, plan, class_names, batch=1, max_frames=0, draw=True, progress=True, log=print,
             desc="predict"):
    """Predict every item of ``plan`` (:func:`plan_source`) and write its outputs (module doc).

    Args:
        predict_batch: ``[BGR uint8 images] -> [float32 [K, 7] per image]`` (module doc).
        class_names: names by class id, for the records and the drawings.
        batch: images per ``predict_batch`` call (consecutive images of a folder, frames of
            a video); max_frames: stop a video / webcam / stream after N frames (0: all).
        draw: write the drawn image / video beside each JSON; log: per-item lines.
    Returns ``{"results": {item: records (image) or per-frame list}, "skipped": [(path,
    reason)], "images": images predicted, "seconds": wall seconds spent on images}``; the
    summary ``{"results", "skipped": [{"file", "reason"}], "complete"}`` goes to ``plan.summary``.

    Threads (:mod:`.workers`): images are decoded by a reader thread ``2 * batch`` ahead, and
    drawn / encoded / written by a writer thread, so the calling thread only runs the model
    and the postprocessing. On an exception (Ctrl-C included) the outputs submitted so far are
    written, and the summary (and ``predictions_coco.json``) with ``"complete": false``
    (summary) of what was done, before the exception goes on.
    """
    if plan.save_dir:
        os.makedirs(plan.save_dir, exist_ok=True)
    batch = max(1, int(batch))
    results, skipped = {}, [(p, NOT_MEDIA) for p in plan.ignored]
    if plan.ignored:
        shown = ", ".join(os.path.basename(p) for p in plan.ignored[:5]) + (", ..." if len(plan.ignored) > 5 else "")
        log(f"skipped {len(plan.ignored)} file(s) of {plan.source} that are not images or videos by their "
            f"extension ({shown})")
    folder = plan.kind == "dir"
    images = [p for p in plan.items if plan.kind != "stream" and not is_video(p)]
    bar = tqdm(total=len(images), desc=desc, unit="img", disable=not progress or len(images) < 2, leave=False)
    rate = _Rate(bar)
    stats = {"images": 0, "seconds": 0.0}
    pending = []   # (path, image) waiting for a full batch
    extras = _Extras(plan, class_names)
    writer = Writer()
    complete = False

    def skip(path, error):
        if not folder:
            raise error
        skipped.append((path, str(error)))
        log(f"skipped: {error}")

    def flush():
        t0 = time.perf_counter()
        dets = predict_batch([img for _, img in pending]) if pending else []
        for (path, img), d in zip(pending, dets):
            records = detections_to_records(d, class_names)
            results[path] = records
            img_id, job = extras.add(records, img.shape, os.path.splitext(os.path.basename(path))[0], path=path)
            if plan.outputs.get(path):
                out = plan.outputs[path]
                writer.submit(_guarded(out[1], functools.partial(_write_image, out, path, img, d, records,
                                                                 class_names, draw, img_id)))
            if job is not None:
                writer.submit(job)
            log(format_result(path, records))
        stats["images"] += len(pending)
        stats["seconds"] += time.perf_counter() - t0
        rate.update(len(pending))
        pending.clear()

    reader = Prefetch(_read_items(plan), depth=2 * batch)
    try:
        for what, item, img in reader:
            if what == "video":
                flush()
                try:
                    results[str(item)] = predict_video(predict_batch, item, plan.outputs.get(item), class_names,
                                                       batch, max_frames, draw, progress, log=log, writer=writer,
                                                       extras=extras)
                except DataError as e:
                    skip(item, e)
                    continue
                log(format_result(item, results[str(item)]))
                continue
            if isinstance(img, DataError):
                skip(item, img)
                continue
            pending.append((item, img))
            if len(pending) >= batch:
                flush()
        flush()
        complete = True
    finally:
        reader.close()
        bar.close()
        writer.__exit__(*(sys.exc_info() if not complete else (None, None, None)))
        if complete and folder and not results:
            raise DataError(f"--source {plan.source}: none of its {len(plan.items)} file(s) could be read")
        if complete or results:
            _save_summary(plan, results, skipped, extras, complete)
    return {"results": results, "skipped": skipped, **stats}


def _save_summary(plan, results, skipped, extras, complete):
    if plan.summary:
        save_json(plan.summary, {"results": results, "skipped": [{"file": p, "reason": r} for p, r in skipped],
                                 "complete": complete})
    if extras.coco is not None:
        save_json(plan.coco, extras.coco)


def print_outcome(out, save_dir):
    """The closing lines of ``predict.py`` / ``deploy/infer.py`` for :func:`run_plan`'s
    ``out``: how many files were skipped (not images or videos / unreadable) and where the
    results went."""
    if out["skipped"]:
        not_media = sum(reason == NOT_MEDIA for _, reason in out["skipped"])
        print(f"skipped {len(out['skipped'])} file(s): {not_media} not images or videos, "
              f"{len(out['skipped']) - not_media} unreadable")
    if save_dir:
        print(f"results written to {save_dir}")
