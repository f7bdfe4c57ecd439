"""The tracking loop of ``track.py``: a detector on every frame of a video file, a folder of
frames, a webcam or a stream, ByteTrack on its detections, and the outputs.

The detector is any ``predict_batch(images) -> detections`` of the prediction loop
(:mod:`mindyolox.predict.loop`: BGR ``uint8 [h, w, 3]`` images in, ``float32 [K, 7]`` rows
``x1, y1, x2, y2, obj, cls_conf, cls`` out), i.e. the Cell ``Predictor`` or an exported model's
runner. A detection's score is ``obj * cls_conf``.

Sources (:mod:`mindyolox.predict.source`), decided here:

- a video file, a webcam index or a stream URL: its frames in order;
- a folder: ONE sequence, its images sorted by file name (a MOTChallenge ``img1/`` folder);
  video files and other files in it are named in one line and left out; an unreadable image
  is one ``skipped:`` line and counts as a frame without detections (frame numbers stay those
  of the sorted list, so they match a ground truth);
- a single image is refused (one line: tracking needs a sequence);
- a video file is opened and its first frame read while planning, so a 0-byte file or one
  that is not a video is one line before the model is built; a webcam or stream is opened
  (and released) while planning too, so a missing webcam is one line before the model.

Outputs in ``save_dir``, named from the sequence's stem (``clip`` for ``clip.mp4``, the
folder's name -- its parent's for a folder named ``img1`` --, ``webcam0`` / ``stream``):
``<stem>.txt`` in MOTChallenge format (``frame,id,x,y,w,h,score,-1,-1,-1``, frames 1-based,
px, written as the frames go) and ``<stem>.mp4`` (the frames with track boxes, ids and
trails, MPEG-4, at the source's frame rate; 25 frames/s for a folder). Checked before
anything is written: no output replaces an input (:mod:`mindyolox.runtime.outputs`). A source
that cannot be opened or yields no frame is one DataError line; a stream that stops, or
Ctrl-C, ends the run with every frame done so far in both files.
"""
import os
import time

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from ..predict.source import IMAGE_EXTS, VideoFrames, read_image, read_source, stream_stem
from ..runtime.outputs import check_outputs
from .bytetrack import make_tracker
from .draw import TRAIL, draw_tracks

__all__ = ["TrackPlan", "plan_track", "run_track", "select_classes"]

FOLDER_FPS = 25.0


class TrackPlan:
    """What :func:`plan_track` found: ``source``, ``kind`` (``video`` / ``dir`` / ``stream``),
    ``target`` (video path or capture target; None for a folder), ``frames`` (a folder's image
    paths), ``ignored`` (a folder's other files), ``stem``, ``txt`` / ``video`` (output paths or
    None), ``save_dir``."""

    def __init__(self, source, kind, target, frames, ignored, stem, save_dir):
        self.source, self.kind, self.target = source, kind, target
        self.frames, self.ignored, self.stem, self.save_dir = list(frames), list(ignored), stem, save_dir
        self.txt = os.path.join(save_dir, stem + ".txt") if save_dir else None
        self.video = os.path.join(save_dir, stem + ".mp4") if save_dir else None


def plan_track(source, save_dir, inputs=()):
    """Read ``source`` and name the outputs (module doc); refuse a single image, and an output
    that would replace an input (a file of the source or one of ``inputs``). Writes nothing."""
    kind, items, ignored = read_source(source)
    if kind == "image":
        raise DataError(f"--source {source}: one image is not a sequence; track a video, a folder of frames, "
                        f"a webcam or a stream")
    frames, target = [], None
    if kind == "dir":
        frames = [p for p in items if p.lower().endswith(IMAGE_EXTS)]
        ignored = list(ignored) + [p for p in items if p not in frames]
        if not frames:
            raise DataError(f"--source {source}: folder has no image frames ({', '.join(IMAGE_EXTS)}); "
                            f"track a video file directly")
        folder = os.path.abspath(str(source))
        stem = os.path.basename(folder.rstrip(os.sep))
        if stem == "img1":   # MOTChallenge: <seq>/img1/
            stem = os.path.basename(os.path.dirname(folder))
    elif kind == "stream":
        target, stem = items[0], stream_stem(items[0])
        with VideoFrames(target):   # a missing webcam / unreachable stream: one line before the model is built
            pass
    else:
        target = items[0]
        stem = os.path.splitext(os.path.basename(target))[0]
        _probe_video(target)
    plan = TrackPlan(source, kind, target, frames, ignored, stem, save_dir)
    if save_dir:
        outs = [(plan.txt, "the tracks"), (plan.video, "the drawn video")]
        check_outputs(outs, list(frames) + list(ignored) + ([target] if kind == "video" else []) +
                      [p for p in inputs if p])
    return plan


def _probe_video(path):
    """DataError (one line) unless OpenCV opens video file ``path`` and reads a first frame: a
    0-byte file or one that is not a video fails here, before any model is built."""
    if os.path.getsize(path) == 0:
        raise DataError(f"video {path}: empty file (0 bytes)")
    with VideoFrames(path, max_frames=1) as video:
        if next(iter(video), None) is None:
            raise DataError(f"video {path}: no frame could be read (not a video, or damaged)")


def select_classes(dets, classes):
    """Rows of ``dets [K, 7]`` whose class is in ``classes`` (None: all)."""
    if classes is None:
        return dets
    return dets[np.isin(dets[:, 6].astype(np.int64), np.asarray(sorted(classes), np.int64))]


def _folder_frames(plan, log, skipped):
    for path in plan.frames:
        try:
            yield read_image(path)
        except DataError as e:
            skipped.append((path, str(e)))
            log(f"skipped: {e}")
            yield None


def run_track(predict_batch, plan, class_names=(), classes=None, tracker_args=None, per_class=False, batch=1,
              max_frames=0, draw=True, progress=True, log=print):
    """Track every frame of ``plan`` (:func:`plan_track`) and write its outputs (module doc).

    Args:
        predict_batch: the detector (module doc); classes: class ids kept (None: all);
        tracker_args: :class:`~mindyolox.track.bytetrack.ByteTracker` keywords (``track_thresh``,
            ``match_thresh``, ``track_buffer``, ``low_thresh``); ``frame_rate`` is the source's;
        per_class: one tracker per class (else class-agnostic, as ByteTrack);
        batch: frames per ``predict_batch`` call; max_frames: stop after N frames (0: all).
    Returns ``{"frames", "tracks" (distinct ids), "boxes" (rows written), "skipped" [(path,
    reason)], "seconds"}``. DataError when nothing could be read.
    """
    if plan.save_dir:
        os.makedirs(plan.save_dir, exist_ok=True)
    if plan.ignored:
        shown = ", ".join(os.path.basename(p) for p in plan.ignored[:5]) + (", ..." if len(plan.ignored) > 5 else "")
        log(f"left out {len(plan.ignored)} file(s) of {plan.source} that are not image frames ({shown})")
    stats = {"frames": 0, "tracks": set(), "boxes": 0, "skipped": [], "seconds": 0.0}
    state = {"writer": None, "tracker": None, "trails": {}, "txt": None}
    t0 = time.perf_counter()

    def flush(images, fps):
        if state["tracker"] is None:   # the first frame: a source that yields none writes nothing
            state["tracker"] = make_tracker(per_class, frame_rate=fps, **(tracker_args or {}))
            state["txt"] = open(plan.txt, "w") if plan.txt else None
        real = [img for img in images if img is not None]
        dets = iter(predict_batch(real) if real else [])
        for img in images:
            d = select_classes(np.asarray(next(dets), np.float32).reshape(-1, 7), classes) if img is not None \
                else np.zeros((0, 7), np.float32)
            d = d[np.isfinite(d).all(1)]
            tracks = state["tracker"].update(d[:, :4], d[:, 4] * d[:, 5], d[:, 6].astype(np.int64))
            stats["frames"] += 1
            _write_rows(state["txt"], stats, tracks)
            for t in tracks:
                x1, y1, x2, y2 = t.xyxy
                trail = state["trails"].setdefault(t.id, [])
                trail.append(((x1 + x2) / 2, (y1 + y2) / 2))
                del trail[:-TRAIL]
            if img is not None and plan.video and draw:
                if state["writer"] is None:
                    state["writer"] = _video_writer(plan.video, fps, img.shape[1], img.shape[0])
                state["writer"].write(draw_tracks(img, tracks, state["trails"], class_names))
            bar.update(1)
        images.clear()

    try:
        if plan.kind == "dir":
            bar = tqdm(total=len(plan.frames), desc=plan.stem, unit="frame", disable=not progress, leave=False)
            _loop(_folder_frames(plan, log, stats["skipped"]), FOLDER_FPS, batch, max_frames, flush)
            if len(stats["skipped"]) == len(plan.frames):
                raise DataError(f"--source {plan.source}: none of its {len(plan.frames)} frame(s) could be read")
        else:
            with VideoFrames(plan.target, max_frames) as video:
                bar = tqdm(total=video.count, desc=plan.stem, unit="frame", disable=not progress, leave=False)
                _loop(video, video.fps, batch, max_frames, flush)
                if not stats["frames"]:
                    raise DataError(f"{video.name}: no frame could be read (empty, not a video, or a stream "
                                    f"that sent nothing)")
    finally:
        if "bar" in locals():
            bar.close()
        if state["txt"] is not None:
            state["txt"].close()
        if state["writer"] is not None:
            state["writer"].release()
        stats["seconds"] = time.perf_counter() - t0
    stats["tracks"] = len(stats["tracks"])
    return stats


def _loop(frames, fps, batch, max_frames, flush):
    pending = []
    for n, img in enumerate(frames, 1):
        pending.append(img)
        if len(pending) >= max(1, int(batch)):
            flush(pending, fps)
        if max_frames and n >= max_frames:
            break
    if pending:
        flush(pending, fps)


def _write_rows(txt, stats, tracks):
    """One MOTChallenge line per track of the frame ``stats["frames"]`` (flushed: a run cut
    short keeps every frame done)."""
    for t in tracks:
        stats["tracks"].add(t.id)
        stats["boxes"] += 1
        if txt is not None:
            x1, y1, x2, y2 = t.xyxy
            txt.write(f"{stats['frames']},{t.id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{t.score:.4f},-1,-1,-1\n")
    if txt is not None:
        txt.flush()


def _video_writer(path, fps, w, h):
    import cv2
    return cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (int(w), int(h)))
