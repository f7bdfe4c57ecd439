"""The one frame source of prediction: an image, a folder, a video file, a webcam or a stream,
read the same way by ``predict.py`` (a Cell) and ``deploy/infer.py`` (an exported artifact).

``--source`` is read by :func:`read_source`:

- a webcam index (digits, e.g. ``0``) or a URL (``rtsp://``, ``http://``, any ``scheme://``):
  kind ``"stream"``, one capture target (an ``int`` for a webcam, the URL string);
- a glob pattern (``imgs/*.jpg``, ``data/**/*.png``; not an existing path): kind ``"dir"``, the
  matching image and video files (sorted), handled as a folder;
- a folder: kind ``"dir"``, its image and video files (top level only, sorted by path), the
  other files listed as ``ignored`` (they are named in the summary as not media);
- a file with an image extension (:data:`IMAGE_EXTS`): kind ``"image"``; a video extension
  (:data:`VIDEO_EXTS`): kind ``"video"``.

Anything else (missing path, unknown extension, a folder without media) is one
:class:`~mindyolox.errors.DataError` line naming ``--source``.

Frames: :func:`read_image` (BGR ``uint8 [h, w, 3]``, one ``DataError`` line when unreadable)
and :class:`VideoFrames` (the frames of a video file, webcam or stream, BGR ``uint8
[h, w, 3]`` each, with the capture's frame rate in frames/s).
"""
import glob
import os

import cv2

from ..errors import DataError

__all__ = ["IMAGE_EXTS", "VIDEO_EXTS", "NOT_MEDIA", "is_video", "is_stream", "is_glob", "stream_stem", "list_source",
           "glob_source", "read_source", "read_image", "VideoFrames"]

NOT_MEDIA = "not an image or video (extension)"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")


def is_video(path):
    """True for a path with a video extension (:data:`VIDEO_EXTS`, any case)."""
    return str(path).lower().endswith(VIDEO_EXTS)


def is_stream(target):
    """True for a webcam index (an ``int``, or digits) or a URL (``scheme://...``)."""
    return isinstance(target, int) or str(target).isdigit() or "://" in str(target)


def stream_stem(target):
    """Output stem of a webcam / stream: ``webcam<N>`` for webcam N, ``stream`` for a URL."""
    return f"webcam{target}" if isinstance(target, int) or str(target).isdigit() else "stream"


def list_source(source):
    """``(kind, files, ignored)`` for a file or folder ``source``: ``("image", [path], [])``,
    ``("video", [path], [])`` or ``("dir", [image and video paths, sorted], [other files,
    sorted])`` (a folder is not searched below its top level). Raises DataError when it does
    not exist, has an unknown extension, is a 0-byte file, or (a folder) holds no image or video."""
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
    empty = os.path.isfile(source) and os.path.getsize(source) == 0   # refused before a model is built
    if ext in IMAGE_EXTS:
        if empty:
            raise DataError(f"image {source} cannot be read (empty file, 0 bytes)")
        return "image", [source], []
    if ext in VIDEO_EXTS:
        if empty:
            raise DataError(f"video {source}: cannot be opened (empty file, 0 bytes)")
        return "video", [source], []
    raise DataError(f"--source {source}: unknown extension '{ext}' (images: {', '.join(IMAGE_EXTS)}; "
                    f"videos: {', '.join(VIDEO_EXTS)})")


def is_glob(source):
    """True for a glob pattern (``*``, ``?`` or ``[``) that is not an existing path."""
    s = str(source)
    return any(c in s for c in "*?[") and not os.path.exists(s)


def glob_source(pattern):
    """``("dir", [image and video files matching pattern, sorted], [other matching files,
    sorted])`` (``**`` matches folders recursively; quote the pattern in a shell). A pattern
    is treated as a folder: an unreadable file is skipped and named. DataError when it
    matches no image or video."""
    hits = sorted(p for p in glob.glob(str(pattern), recursive=True) if os.path.isfile(p))
    media = [p.lower().endswith(IMAGE_EXTS + VIDEO_EXTS) for p in hits]
    files = [p for p, m in zip(hits, media) if m]
    if not files:
        raise DataError(f"--source {pattern}: the pattern matches no images or videos "
                        f"({len(hits)} file(s) matched; {', '.join(IMAGE_EXTS + VIDEO_EXTS)})")
    return "dir", files, [p for p, m in zip(hits, media) if not m]


def read_source(source):
    """``(kind, items, ignored)``: ``("stream", [capture target], [])`` for a webcam index
    (digits -> ``int``) or a URL, :func:`glob_source`'s answer for a glob pattern (``imgs/*.jpg``),
    else :func:`list_source`'s answer."""
    s = str(source)
    if s.isdigit():
        return "stream", [int(s)], []
    if "://" in s:
        return "stream", [s], []
    if is_glob(s):
        return glob_source(s)
    return list_source(s)


def read_image(path):
    """BGR ``uint8 [h, w, 3]`` image of ``path``; DataError (one line) when it cannot be read."""
    if os.path.isfile(str(path)) and os.path.getsize(str(path)) == 0:
        raise DataError(f"image {path} cannot be read (empty file, 0 bytes)")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"image {path} cannot be read (missing, empty or not an image)")
    return img


class VideoFrames:
    """The frames of a video file, a webcam (``int`` index) or a stream URL, as a context
    manager that releases the capture on exit::

        with VideoFrames("clip.avi", max_frames=0) as video:
            for frame in video:        # BGR uint8 [h, w, 3]
                ...

    ``name``: how messages name it (``video clip.avi`` or ``--source 0``); ``fps``: the
    capture's frame rate (frames/s; 25 when the container does not say); ``count``: its frame
    count when known, else None. ``max_frames`` > 0 stops after that many frames. Opening a
    target OpenCV cannot open is one DataError line (``video X: cannot be opened (empty file, 0
    bytes)``, ``video X: cannot be opened (not a video OpenCV can decode)``, ``--source 0: cannot
    be opened as a webcam or stream``). ``dropped``: True after iterating when a webcam / stream
    stopped delivering frames before ``max_frames`` (a video file just ends).
    """

    def __init__(self, target, max_frames=0):
        self.target = target
        self.stream = is_stream(target)
        self.name = f"--source {target}" if self.stream else f"video {target}"
        self.max_frames = int(max_frames or 0)
        self._cap = None
        self.fps, self.count, self.dropped = 25.0, None, False

    def __enter__(self):
        if not self.stream and os.path.isfile(str(self.target)) and os.path.getsize(str(self.target)) == 0:
            raise DataError(f"{self.name}: cannot be opened (empty file, 0 bytes)")
        self._cap = cv2.VideoCapture(self.target)
        if not self._cap.isOpened():
            self._cap.release()
            why = " as a webcam or stream" if self.stream else (
                " (not a video OpenCV can decode)" if os.path.isfile(str(self.target)) else " (no such file)")
            raise DataError(f"{self.name}: cannot be opened{why}")
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        if self.count is not None and self.max_frames > 0:
            self.count = min(self.count, self.max_frames)
        return self

    def __iter__(self):
        n = 0
        while self.max_frames <= 0 or n < self.max_frames:
            try:
                ok, frame = self._cap.read()
            except cv2.error as e:   # a decoder failure mid-way: one line; the frames so far are the caller's
                raise DataError(f"{self.name}: decoding failed after {n} frame(s) "
                                f"({' '.join(str(e).split())[:200]})") from None
            if not ok:
                self.dropped = self.stream
                return
            n += 1
            yield frame

    def __exit__(self, *exc):
        self._cap.release()
        return False
