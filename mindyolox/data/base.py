"""Common dataset machinery: the item format, image reading with skip-and-count, RAM cache,
and a cross-process event log (bad images, labels beyond ``max_labels``).

Item format (``dataset[i]``, a dict):

- ``image``: BGR uint8 ``[h, w, 3]`` as decoded by OpenCV;
- ``boxes``: float32 ``[N, 4]`` ``(x1, y1, x2, y2)`` in pixels of that image (cleaned: clipped
  to the image, zero-size boxes and crowd regions removed);
- ``classes``: int64 ``[N]`` contiguous class ids ``0..C-1``;
- ``image_id``: the dataset's own id (COCO: the JSON ``id``, any type; VOC: the file stem);
- ``orig_size``: ``(h, w)`` from the annotation file.

Every image is verified when the dataset is indexed (:mod:`~mindyolox.data.verify`: complete
JPEG/PNG stream, size as recorded); broken ones are named, counted and left out of the index.
An image that becomes unreadable later raises :class:`ImageUnreadable` from ``dataset[i]``; the
training and evaluation loaders catch it, name the file once in the log, count it and go on.
"""
import atexit
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections import Counter

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import DataError
from .transforms import resize_to

logger = logging.getLogger("mindyolox.data")

__all__ = ["DetectionDataset", "ImageUnreadable", "EventLog", "logger"]


class ImageUnreadable(DataError):
    """An image file is missing or cannot be decoded."""


class EventLog:
    """Data problems found at run time, shared by the loader's worker processes.

    Each event is a small file in a private temporary folder, created with ``O_EXCL``, so a
    bad image is named once in the log however many workers meet it, and the main process
    can count what its workers saw. The folder is removed when the creating process exits;
    folders left by processes that were killed (no exit handler ran) are removed by the next
    EventLog (their owner's pid is in the name).
    """
    PREFIX = "mindyolox_data_events_"

    def __init__(self, root=None):
        if root is None:
            self._remove_orphans()
            root = tempfile.mkdtemp(prefix=f"{self.PREFIX}{os.getpid()}_")
        self.root = root
        self._owner = os.getpid()
        atexit.register(self._cleanup, self.root, self._owner)

    @classmethod
    def _remove_orphans(cls):
        tmp = tempfile.gettempdir()
        for name in os.listdir(tmp):
            pid = name[len(cls.PREFIX):].split("_", 1)[0]
            if not (name.startswith(cls.PREFIX) and pid.isdigit()):
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
            except PermissionError:  # alive, another user's
                continue

    @staticmethod
    def _cleanup(root, owner):
        if os.getpid() == owner:
            shutil.rmtree(root, ignore_errors=True)

    def _write(self, kind, key, text):
        name = f"{kind}-{hashlib.sha1(str(key).encode()).hexdigest()[:20]}"
        try:
            fd = os.open(os.path.join(self.root, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except FileNotFoundError:  # folder removed: the owning process has exited
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True

    def bad_image(self, path, reason):
        """Record an unreadable image; logs a warning the first time this file is seen."""
        if self._write("badimage", path, f"{path}\t{reason}"):
            logger.warning("skipping image %s (%s); counted, the run goes on without it", path, reason)

    def labels_dropped(self, where, n, max_labels):
        """Record ``n`` ground truths dropped because a sample had more than ``max_labels``."""
        self._seq = getattr(self, "_seq", 0) + 1
        key = f"{where}#{os.getpid()}#{self._seq}#{time.monotonic_ns()}"
        if self._write("dropped", key, f"{where}\t{int(n)}"):
            if self._write("droppedwarn", "once", ""):
                logger.warning("%s: %d ground truths beyond data.max_labels=%d dropped "
                               "(counted; raise data.max_labels to keep them)", where, n, max_labels)

    def _entries(self, kind):
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.startswith(kind + "-"):
                with open(os.path.join(self.root, name)) as f:
                    out.append(f.read().split("\t"))
        return out

    def bad_images(self):
        """``[(path, reason), ...]`` of every image skipped so far (all processes)."""
        return [tuple(e) for e in self._entries("badimage")]

    def dropped_labels(self):
        """Total number of ground truths dropped for ``max_labels`` so far (all processes)."""
        return sum(int(e[1]) for e in self._entries("dropped"))

    def summary(self):
        """``{"bad_images": n, "dropped_labels": n}``."""
        return {"bad_images": len(self.bad_images()), "dropped_labels": self.dropped_labels()}


class DetectionDataset:
    """Base of :class:`~mindyolox.data.coco.COCODataset` and :class:`~mindyolox.data.voc.VOCDataset`.

    Subclasses fill, per image ``i``: ``self.ids[i]`` (image id), ``self.paths[i]`` (image
    file), ``self.sizes[i]`` (``(h, w)``), ``self.boxes[i]`` (float32 ``[N, 4]`` xyxy),
    ``self.classes[i]`` (int64 ``[N]``), and ``self.class_names`` (tuple, index = class id).
    ``self.stats`` (Counter) holds the annotation problems found while loading.
    """

    def __init__(self, name):
        self.name = name
        self.ids, self.paths, self.sizes, self.boxes, self.classes = [], [], [], [], []
        self.class_names = ()
        self.stats = Counter()
        self.events = EventLog()
        self._cache = None          # images resized for _cache_size: a list (ram) or a DiskImageCache
        self._cache_size = None     # (H, W) the cached images were resized for
        self.decode_flags = None    # per image: the cv2.imread flag (EXIF decision, data.verify); None: IMREAD_COLOR

    # ------------------------------------------------------------------ basic access
    def __len__(self):
        return len(self.ids)

    @property
    def num_classes(self):
        return len(self.class_names)

    def image_id(self, index):
        return self.ids[index]

    def orig_size(self, index):
        """``(h, w)`` of image ``index`` in pixels, from the annotation file."""
        return self.sizes[index]

    def load_anno(self, index):
        """``(boxes float32 [N, 4] xyxy pixels, classes int64 [N])`` of image ``index`` (copies)."""
        return self.boxes[index].copy(), self.classes[index].copy()

    def labeled_indices(self):
        """Indices of images with at least one box (mixup partners)."""
        return [i for i, b in enumerate(self.boxes) if len(b)]

    def decode_flag(self, index):
        """The ``cv2.imread`` flag of image ``index``: ``IMREAD_COLOR`` (EXIF orientation applied,
        as official YOLOX's ``cv2.imread``) or, for an image annotated in its stored frame,
        with ``IMREAD_IGNORE_ORIENTATION`` (the rule: :mod:`~mindyolox.data.verify`)."""
        flags = self.decode_flags
        return int(flags[index]) if flags is not None else cv2.IMREAD_COLOR

    def load_image(self, index):
        """Decode image ``index`` as BGR uint8 ``[h, w, 3]`` in the frame its annotation is in
        (:meth:`decode_flag`); raises :class:`ImageUnreadable`."""
        path = self.paths[index]
        img = cv2.imread(path, self.decode_flag(index))
        if img is None:
            reason = "file not found" if not os.path.exists(path) else "cannot be decoded"
            raise ImageUnreadable(f"image {path} (record {self.ids[index]!r} of {self.name}): {reason}")
        return img

    def read_image(self, index):
        """Like :meth:`load_image` but returns ``None`` for an unreadable image, which is
        recorded in ``self.events`` (named once in the log, counted)."""
        try:
            return self.load_image(index)
        except ImageUnreadable as e:
            reason = str(e).rsplit(": ", 1)[-1]
            self.events.bad_image(self.paths[index], reason)
            return None

    def __getitem__(self, index):
        boxes, classes = self.load_anno(index)
        return {"image": self.load_image(index), "boxes": boxes, "classes": classes,
                "image_id": self.ids[index], "orig_size": self.sizes[index]}

    # ------------------------------------------------------------------ resized images + cache
    def load_resized(self, index, size):
        """Image ``index`` resized by ``r = min(H/h, W/w)`` for ``size=(H, W)`` (the official
        ``load_resized_img``) with its boxes scaled by ``r``.

        Returns ``(img uint8 [int(h*r), int(w*r), 3], boxes float64 [N, 4], classes int64 [N])``,
        or ``None`` if the image is unreadable (recorded). Served from the RAM cache when
        :meth:`cache_images` was called for this ``size``.
        """
        size = (int(size[0]), int(size[1]))
        h0, w0 = self.sizes[index]
        if self._cache is not None and self._cache_size == size:
            img = self._cache[index]
            if img is None:
                self.events.bad_image(self.paths[index], "unreadable when caching")
                return None
        else:
            img = self.read_image(index)
            if img is None:
                return None
            img = resize_to(img, size)
        # boxes are scaled by the ratio of the annotation size, as the official code does
        r = min(size[0] / h0, size[1] / w0)
        return img, self.boxes[index].astype(np.float64) * r, self.classes[index].copy()

    def cache_images(self, size, mode="ram", folder=None, copies=1):
        """Decode every image once, resized for ``size=(H, W)``, and serve :meth:`load_resized`
        from it. ``mode="ram"``: kept in this process's RAM (uint8, about ``N * H * W * 3``
        bytes at most; worker processes started afterwards share it through fork), refused in
        one line before anything is decoded when ``copies`` of it (the ranks of this machine)
        would not fit in the available memory (:func:`~mindyolox.data.cache.check_ram_cache`);
        ``"disk"``: one file per machine in ``folder``, shared by every process
        (:mod:`mindyolox.data.cache`). Unreadable images are recorded and stay unreadable."""
        size = (int(size[0]), int(size[1]))
        if mode == "disk":
            from .cache import open_disk_cache
            self._cache, self._cache_size = open_disk_cache(self, size, folder), size
            return
        from .cache import check_ram_cache
        need = check_ram_cache(self, size, copies)
        logger.info("data.cache=ram: caching %d images of %s at %dx%d: %.2f GB in this process", len(self),
                    self.name, size[0], size[1], need / 1e9)
        cache = []
        for i in tqdm(range(len(self)), desc=f"caching {self.name} at {size[0]}x{size[1]}",
                      unit="img", leave=False):
            img = self.read_image(i)
            cache.append(None if img is None else resize_to(img, size))
        nbytes = sum(c.nbytes for c in cache if c is not None)
        logger.info("cached %d images of %s in RAM (%.1f MiB)", len(cache), self.name, nbytes / 2**20)
        self._cache, self._cache_size = cache, size

    def verify_images(self):
        """Check every indexed image once (complete JPEG/PNG stream, size as recorded); broken
        ones are named, counted and removed from the index (:mod:`mindyolox.data.verify`)."""
        from .verify import verify_dataset
        bad = verify_dataset(self)
        if bad:
            logger.warning("%s: %d of %d images skipped as broken (named above); they are not trained on",
                           self.name, len(bad), len(bad) + len(self))
        return bad

    # ------------------------------------------------------------------ reporting
    def log_stats(self):
        """Log what loading cleaned: problems (clipped/dropped boxes, ...) as one warning line,
        normal facts (crowd boxes left out, negatives) as one info line."""
        normal = {"crowd_boxes_ignored", "images_without_boxes"}
        for level, keys in ((logging.INFO, normal), (logging.WARNING, set(self.stats) - normal)):
            parts = ", ".join(f"{k.replace('_', ' ')}: {self.stats[k]}" for k in sorted(keys) if self.stats[k])
            if parts:
                logger.log(level, "%s: %s", self.name, parts)

    def __repr__(self):
        n_boxes = sum(len(b) for b in self.boxes)
        return (f"{type(self).__name__}({self.name!r}, images={len(self)}, boxes={n_boxes}, "
                f"classes={self.num_classes})")

