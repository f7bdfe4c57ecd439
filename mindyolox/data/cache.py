"""``data.cache: disk``: one file of resized training images per dataset, input size and
machine, shared by every rank and every data worker.

Layout (official YOLOX's disk cache, plus a completion record): ``<name>_<H>x<W>_<key>.u8``
holds image ``i`` resized by ``r = min(H/h, W/w)`` (:meth:`DetectionDataset.load_resized`),
top-left in an ``H x W x 3`` uint8 slot at byte ``i * H * W * 3``; ``<same>.json`` beside it
records each image's ``(h, w)`` after resizing and the unreadable ones, and is written last
(atomically), so a cache without it, or whose data file has another length, is a half-written
one: it is rebuilt with a message. ``key`` hashes the image paths, their annotated sizes, how
each is decoded (its EXIF decision, :mod:`~mindyolox.data.verify`) and the input size, so
another dataset, subset or size gets another file.

Keyed by content (decision): the record also holds every image file's ``(size in bytes,
mtime_ns, ctime_ns)`` when it was cached, compared with the files' ``stat`` at every start; an
image replaced, edited or removed since makes the cache rebuilt in place, with a warning naming
the first changed file and the count. ``stat`` and not a hash: hashing reads every byte of the
dataset at every start (COCO train2017: 18 GB, minutes), a ``stat`` is microseconds per file.
``ctime`` besides ``mtime`` because copies that keep times (``cp -p``, ``rsync -a``, ``tar x``)
set the old ``mtime`` on new pixels, while ``ctime`` cannot be set back: any such change, even a
``chmod``, rebuilds the cache (a wasted rebuild at worst, never stale pixels).

The first process to take the file lock (``<same>.lock``) builds the cache with a pool of
threads (decode + resize + ``pwrite``, a progress bar); the others wait on the lock and
then open the finished file. Its size is printed before it is built, and a disk without room
for it is refused in one line. Reads are one ``pread`` of the image's rows per sample: the
file's pages live in the kernel's page cache, counted once per machine however many ranks
and workers read it, and a process's own memory (RSS) does not grow with the dataset.
The default folder is ``~/.cache/mindyolox/images`` (``data.cache_dir``): local to each
machine, so on several nodes each builds its own.
"""
import fcntl
import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from .transforms import resize_to

logger = logging.getLogger("mindyolox.data")

__all__ = ["DiskImageCache", "open_disk_cache", "DEFAULT_CACHE_DIR", "available_memory", "ram_cache_bytes",
           "check_ram_cache"]

VERSION = 2  # 2: content record (file stats), the EXIF decode decision in the key
DEFAULT_CACHE_DIR = "~/.cache/mindyolox/images"


class DiskImageCache:
    """Read side of a finished cache: ``cache[i]`` -> uint8 ``[h, w, 3]`` (a fresh array) or
    None for an image that was unreadable when the cache was built. Picklable (worker
    processes open their own file descriptor). ``built``: this process wrote the file."""

    def __init__(self, path, size, shapes, bad, built=False):
        self.built = bool(built)
        self.path, self.size = str(path), (int(size[0]), int(size[1]))
        self.shapes = np.asarray(shapes, np.int64).reshape(-1, 2)
        self.bad = set(int(i) for i in bad)
        self.slot = self.size[0] * self.size[1] * 3
        self._fd, self._pid = None, None

    def __len__(self):
        return len(self.shapes)

    @property
    def nbytes(self):
        return len(self) * self.slot

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_fd", "_pid")}

    def __setstate__(self, state):
        self.__dict__.update(state, _fd=None, _pid=None)

    def __getitem__(self, index):
        index = int(index)
        if index in self.bad:
            return None
        if self._pid != os.getpid():  # one descriptor per process (forked workers included)
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        h, w = (int(v) for v in self.shapes[index])
        row = self.size[1] * 3
        buf = os.pread(self._fd, h * row, index * self.slot)
        if len(buf) != h * row:
            raise DataError(f"image cache {self.path}: short read at image {index} (file changed while in use?)")
        return np.frombuffer(buf, np.uint8).reshape(h, self.size[1], 3)[:, :w].copy()


def _key(dataset, size):
    h = hashlib.sha1(f"v{VERSION} {size[0]}x{size[1]}".encode())
    for i, (path, hw) in enumerate(zip(dataset.paths, dataset.sizes)):
        h.update(f"\n{path}\t{hw[0]}x{hw[1]}\t{dataset.decode_flag(i)}".encode())
    return h.hexdigest()[:12]


def file_stats(paths):
    """``[[size, mtime_ns, ctime_ns], ...]`` of each file (``[-1, -1, -1]``: missing), the
    content record of the cache (module doc)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append([st.st_size, st.st_mtime_ns, st.st_ctime_ns])
        except OSError:
            out.append([-1, -1, -1])
    return out


def _changed(meta, stats):
    """Indices of the images whose file differs from when the cache was built."""
    old = meta.get("files")
    if not isinstance(old, list) or len(old) != len(stats):
        return list(range(len(stats)))
    return [i for i, (a, b) in enumerate(zip(old, stats)) if list(a) != b]


def _paths(folder, dataset, size):
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(dataset.name).stem)
    base = Path(folder).expanduser() / f"{stem}_{size[0]}x{size[1]}_{_key(dataset, size)}"
    return base.with_suffix(".u8"), base.with_suffix(".json"), base.with_suffix(".lock")


def _read_record(data, record, nbytes):
    """The completion record if ``data`` is whole (``None``, with a reason, otherwise)."""
    if not record.is_file():
        return None, "no completion record (a build that did not finish)"
    try:
        meta = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        return None, "unreadable completion record"
    if not data.is_file() or data.stat().st_size != nbytes or meta.get("bytes") != nbytes:
        have = data.stat().st_size if data.is_file() else 0
        return None, f"{have} of {nbytes} bytes (truncated or replaced)"
    return meta, ""


# ----------------------------------------------------------------------------- building
def _fill(ds, size, fd, index):
    """Decode, resize and write image ``index`` into its slot; returns ``(index, h, w)``
    (``h = w = -1``: unreadable). OpenCV's decode / resize and ``pwrite`` release the GIL,
    so threads fill in parallel (no fork of a process whose MindSpore threads run)."""
    img = ds.read_image(index)
    if img is None:
        return index, -1, -1
    img = resize_to(img, size)
    h, w = img.shape[:2]
    slot = np.zeros((h, size[1], 3), np.uint8)
    slot[:, :w] = img
    os.pwrite(fd, slot.tobytes(), index * size[0] * size[1] * 3)
    return index, h, w


def _build(dataset, size, data, record, workers, stats):
    nbytes = len(dataset) * size[0] * size[1] * 3
    free = shutil.disk_usage(data.parent).free + (data.stat().st_size if data.is_file() else 0)
    if free < nbytes * 1.02:
        raise DataError(f"data.cache=disk: {data.parent} has {free / 1e9:.2f} GB free, the cache of {dataset.name} "
                        f"at {size[0]}x{size[1]} needs {nbytes / 1e9:.2f} GB (set data.cache_dir elsewhere, or "
                        "data.cache=ram / false)")
    logger.info("data.cache=disk: writing %d images of %s at %dx%d into %s: %.2f GB, one file for every rank "
                "and worker of this machine", len(dataset), dataset.name, size[0], size[1], data, nbytes / 1e9)
    record.unlink(missing_ok=True)
    shapes, bad = np.zeros((len(dataset), 2), np.int64), []
    workers = max(1, min(int(workers), len(dataset)))
    fd = os.open(data, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, nbytes)
        with ThreadPoolExecutor(workers) as pool:
            it = pool.map(lambda i: _fill(dataset, size, fd, i), range(len(dataset)))
            for index, h, w in tqdm(it, total=len(dataset), desc=f"caching {dataset.name} at {size[0]}x{size[1]}",
                                    unit="img", leave=False):
                shapes[index] = (h, w)
                if h < 0:
                    bad.append(index)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp = record.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"version": VERSION, "dataset": dataset.name, "size": list(size), "bytes": nbytes,
                               "shapes": shapes.tolist(), "bad": bad, "files": stats}))
    os.replace(tmp, record)
    return DiskImageCache(data, size, shapes, bad, built=True)


def open_disk_cache(dataset, size, folder=None, workers=None):
    """The :class:`DiskImageCache` of ``dataset`` at ``size = (H, W)`` in ``folder`` (default
    :data:`DEFAULT_CACHE_DIR`), built first by whichever process gets the lock (module doc).
    ``workers``: build threads (default: the CPU count, at most 32)."""
    size = (int(size[0]), int(size[1]))
    folder = Path(folder or DEFAULT_CACHE_DIR).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"data.cache_dir {folder}: cannot create it ({e.strerror})") from None
    data, record, lock = _paths(folder, dataset, size)
    nbytes = len(dataset) * size[0] * size[1] * 3
    with open(lock, "a") as lf:
        fcntl.flock(lf, fcntl.LOCK_EX)  # a build in another process finishes first
        stats = file_stats(dataset.paths)  # taken before the build reads the files: a change during it shows next time
        meta, why = _read_record(data, record, nbytes)
        if meta is not None:
            changed = _changed(meta, stats)
            if changed:
                first = dataset.paths[changed[0]]
                logger.warning("data.cache=disk: %d image file(s) changed since %s was built (e.g. %s: other size or "
                               "time stamps): rebuilding it", len(changed), data, first)
                return _build(dataset, size, data, record, workers or min(os.cpu_count() or 1, 32), stats)
            logger.info("data.cache=disk: %s (%.2f GB, %d images at %dx%d) ready", data, nbytes / 1e9, len(dataset),
                        size[0], size[1])
            return DiskImageCache(data, size, meta["shapes"], meta["bad"])
        if data.exists():
            logger.warning("data.cache=disk: %s is incomplete (%s): rebuilding it", data, why)
        return _build(dataset, size, data, record, workers or min(os.cpu_count() or 1, 32), stats)


# ----------------------------------------------------------------------------- data.cache: ram
RAM_KEEP_FRACTION = 0.2     # of the available memory left to training (model, compile, workers)
RAM_KEEP_MIN = 2 * 2**30    # ... and at least this many bytes


def _meminfo(path="/proc/meminfo"):
    """``{field: bytes}`` of ``/proc/meminfo`` (empty when unreadable)."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    except OSError:
        pass
    return out


def _cgroup_room(root="/sys/fs/cgroup"):
    """Bytes this process's memory cgroup still allows (limit - usage, reclaimable page cache
    not counted as usage), or None without a limit. cgroup v2 (``memory.max``,
    ``memory.current``, ``inactive_file`` of ``memory.stat``), else v1 (``memory/``)."""
    for limit_f, usage_f, stat_f in (("memory.max", "memory.current", "memory.stat"),
                                     ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes",
                                      "memory/memory.stat")):
        try:
            limit = open(os.path.join(root, limit_f)).read().strip()
            usage = int(open(os.path.join(root, usage_f)).read().strip())
        except (OSError, ValueError):
            continue
        if not limit.isdigit() or int(limit) >= 2**60:      # "max" / v1's "no limit" (about 2**63)
            return None
        inactive = 0
        try:
            with open(os.path.join(root, stat_f)) as f:   # "key value" lines
                for line in f:
                    k, _, v = line.partition(" ")
                    if k in ("inactive_file", "total_inactive_file") and v.strip().isdigit():
                        inactive = int(v)
                        break
        except OSError:
            inactive = 0
        return max(0, int(limit) - max(0, usage - inactive))
    return None


def available_memory():
    """``(bytes, source)``: memory a new allocation can get without swapping or an OOM kill.
    ``MemAvailable`` of ``/proc/meminfo`` (Linux >= 3.14); without it ``MemFree + Buffers +
    Cached``; without ``/proc/meminfo`` the free pages of ``os.sysconf``; the smaller of that and
    the room left by this process's memory cgroup limit (a container's own limit is what
    OOM-kills it; /proc/meminfo shows the host's). ``(None, reason)`` when nothing tells."""
    info = _meminfo()
    if "MemAvailable" in info:
        avail, source = info["MemAvailable"], "MemAvailable in /proc/meminfo"
    elif "MemFree" in info:
        avail = info["MemFree"] + info.get("Buffers", 0) + info.get("Cached", 0)
        source = "MemFree + Buffers + Cached in /proc/meminfo"
    else:
        try:
            avail, source = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free pages (sysconf)"
        except (ValueError, OSError, AttributeError):
            return None, "no /proc/meminfo nor sysconf"
    room = _cgroup_room()
    if room is not None and room < avail:
        avail, source = room, "room left under this container's memory limit (cgroup)"
    return int(avail), source


def ram_cache_bytes(sizes, size):
    """Bytes of ``data.cache=ram`` for images of annotated ``sizes`` ``[(h, w), ...]`` resized
    for ``size = (H, W)``: the sum of ``int(h*r) * int(w*r) * 3`` with ``r = min(H/h, W/w)``
    (:func:`~mindyolox.data.transforms.resize_to`; the decoded frame is the annotated one,
    :mod:`~mindyolox.data.verify`) -- exact, not counting each array's ~100-byte header."""
    total = 0
    for h, w in sizes:
        r = min(size[0] / h, size[1] / w)
        total += int(h * r) * int(w * r) * 3
    return total


def check_ram_cache(dataset, size, copies=1, available=None):
    """Refuse ``data.cache=ram`` in one line before decoding anything when it does not fit.

    Needed: :func:`ram_cache_bytes` times ``copies``, the processes of this machine that each
    hold one (every training rank caches in its own process -- the cache is a list in the
    dataset object; its data-loader workers share it through fork's copy-on-write pages, the
    arrays' pages are never written). Decision: ``copies`` is the run's world size, exact on
    one machine and too high on several (``data.cache=disk``, one copy per machine, is the
    cache for several nodes). It fits when it leaves :data:`RAM_KEEP_FRACTION` of the available
    memory, at least :data:`RAM_KEEP_MIN`, to the rest of training (the model, the graph
    compile, the loader's batch queues). ``available``: ``(bytes, source)`` (tests); default
    :func:`available_memory`; an unknown figure lets the cache go ahead with a warning.
    Returns the bytes needed by this process."""
    need = ram_cache_bytes(dataset.sizes, size)
    total = need * max(1, int(copies))
    avail, source = available if available is not None else available_memory()
    if avail is None:
        logger.warning("data.cache=ram: cannot tell the free memory (%s); caching %.2f GB without a check",
                       source, total / 1e9)
        return need
    keep = max(RAM_KEEP_FRACTION * avail, RAM_KEEP_MIN)
    if total > avail - keep:
        per = f" ({need / 1e9:.2f} GB in each of {copies} ranks on this machine)" if copies > 1 else ""
        raise DataError(f"data.cache=ram: caching the {len(dataset)} images of {dataset.name} at {size[0]}x{size[1]} "
                        f"needs {total / 1e9:.2f} GB of RAM{per}, but {avail / 1e9:.2f} GB is available "
                        f"({source}) and {keep / 1e9:.2f} GB of it stays for training; use data.cache=disk "
                        "(one copy per machine), a smaller data.input_size, or data.cache=false")
    return need
