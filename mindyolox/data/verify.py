"""Image verification when a dataset is indexed: every image file is checked once, broken ones
are named (one warning each), counted and taken out of the index, so nothing trains on an image
that OpenCV would decode partly (a truncated JPEG decodes with its missing rows grey and only
libjpeg's "Premature end of JPEG file" on stderr, without the file name).

Checks, per file (two small reads, no decode, so indexing COCO's 118k images stays in seconds):

- it exists and is not empty;
- JPEG (``FF D8`` at the start): the stream is complete -- in the last 64 KiB there is an end
  marker ``EOI`` (``FF D9``) after the last start-of-scan ``SOS`` (``FF DA``). Entropy-coded
  data never holds ``FF D9`` (a data ``FF`` is stuffed as ``FF 00``), so a file cut inside
  its scan has no EOI after its last SOS, while an EXIF thumbnail's EOI lies before the main
  image's SOS; data a camera appends after the EOI (another JPEG, e.g. MPF) ends with its
  own EOI. The frame size comes from the ``SOFn`` marker;
- PNG (the 8-byte signature): the ``IEND`` chunk is present at the end (trailing bytes
  allowed); the size comes from ``IHDR``;
- other formats (BMP, WebP, ...): decoded once with OpenCV (``None`` = broken);
- the size is the one recorded in the annotation file (``height``/``width`` of COCO, VOC's
  ``<size>``): ``(h, w)`` or, for JPEGs that OpenCV turns by their EXIF orientation, ``(w, h)``.
  Another size means boxes in other pixels than the image's: the image is skipped.

Decisions: broken images leave the index (training never samples them; an evaluation still
counts their ground truth in COCO's own index, as an unreadable image did before), each is
recorded in the dataset's :class:`~mindyolox.data.base.EventLog` (one warning naming the file
and the reason, then one line with the count) and listed in ``dataset.broken``; the trainer's final summary
and ``metrics.jsonl`` carry the counts (:func:`data_summary`).
"""
import os
import struct
from concurrent.futures import ThreadPoolExecutor

import cv2

__all__ = ["check_image", "verify_dataset", "require_boxes", "data_summary", "TAIL_BYTES"]

TAIL_BYTES = 64 * 1024
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# SOFn markers (frame header with the size); C4 (DHT), C8 (JPG), CC (DAC) are not frames
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f):
    """``(h, w)`` from the first SOFn segment, walking the marker segments from the start."""
    f.seek(2)
    while True:
        b = f.read(1)
        while b == b"\xff":          # fill bytes before a marker
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:   # no length field
            b = f.read(1)
            if b != b"\xff":
                return None
            continue
        head = f.read(2)
        if len(head) < 2:
            return None
        (length,) = struct.unpack(">H", head)
        if marker in _SOF:
            body = f.read(5)
            if len(body) < 5:
                return None
            _, h, w = struct.unpack(">BHH", body)
            return h, w
        if marker == 0xDA:                                      # scan before any frame header
            return None
        f.seek(length - 2, os.SEEK_CUR)
        b = f.read(1)
        if b != b"\xff":
            return None


def check_image(path, size=None):
    """Why the image at ``path`` cannot be used, or ``None`` when it is fine.

    size: ``(h, w)`` recorded for it (None: not compared). Returns a short reason such as
    ``"file not found"``, ``"empty file"``, ``"truncated JPEG (no end marker after the last
    scan)"``, ``"image is 120x80, the annotation says 160x100"`` (module doc)."""
    try:
        n = os.path.getsize(path)
    except OSError:
        return "file not found"
    if n == 0:
        return "empty file"
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head[:2] == b"\xff\xd8":
                f.seek(max(0, n - TAIL_BYTES))
                tail = f.read()
                eoi, sos = tail.rfind(b"\xff\xd9"), tail.rfind(b"\xff\xda")
                if eoi < 0 or eoi < sos:
                    return "truncated JPEG (no end marker after the last scan)"
                hw = _jpeg_size(f)
                if hw is None:
                    return "JPEG without a frame header (not decodable)"
            elif head[:8] == _PNG_SIG:
                f.seek(max(0, n - TAIL_BYTES))
                if f.read().rfind(b"IEND") < 0:
                    return "truncated PNG (no IEND chunk)"
                if head[12:16] != b"IHDR":
                    return "PNG without an IHDR chunk (not decodable)"
                w, h = struct.unpack(">II", head[16:24])
                hw = (h, w)
            else:
                img = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if img is None:
                    return "cannot be decoded"
                hw = img.shape[:2]
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if size is not None:
        want = (int(size[0]), int(size[1]))
        if tuple(hw) != want and tuple(hw) != want[::-1]:
            return f"image is {hw[1]}x{hw[0]} (w x h), the annotation says {want[1]}x{want[0]}"
    return None


def verify_dataset(dataset, workers=8):
    """Check every image of ``dataset`` (a :class:`~mindyolox.data.base.DetectionDataset` just
    indexed) with :func:`check_image`; broken ones are recorded (one warning each), listed in
    ``dataset.broken`` and removed from the index (every per-image list the
    dataset keeps). Returns ``[(path, reason), ...]`` of the removed images."""
    n = len(dataset.paths)
    if n == 0:
        return []
    with ThreadPoolExecutor(max(1, min(int(workers), n))) as pool:  # I/O bound: reads release the GIL
        reasons = list(pool.map(check_image, dataset.paths, dataset.sizes))
    bad = [i for i, r in enumerate(reasons) if r is not None]
    if not bad:
        return []
    out = []
    for i in bad:
        dataset.events.bad_image(dataset.paths[i], reasons[i])
        out.append((dataset.paths[i], reasons[i]))
    keep = [i for i in range(n) if reasons[i] is None]
    for attr in ("ids", "paths", "sizes", "boxes", "classes", "difficult"):
        seq = getattr(dataset, attr, None)
        if isinstance(seq, list) and len(seq) == n:
            setattr(dataset, attr, [seq[i] for i in keep])
    if dataset.stats.get("images_without_boxes"):  # counted while indexing: recount without the broken
        dataset.stats["images_without_boxes"] = sum(1 for b in dataset.boxes if len(b) == 0)
    dataset.broken = out
    return out


def require_boxes(dataset, background_only=False):
    """A training set without a single box trains the detector that nothing is there: an
    error naming the dataset, unless ``data.background_only`` says that is meant."""
    if background_only or any(len(b) for b in dataset.boxes):
        return
    from ..errors import DataError
    raise DataError(f"training set {dataset.name} has no boxes at all in its {len(dataset)} images (wrong "
                    "annotation file?); set data.background_only=true to fine-tune on background-only images")


def data_summary(dataset):
    """Counts of what indexing and loading left out of ``dataset``: ``images`` (in the index),
    ``images_skipped`` (broken at indexing + unreadable later, each file once),
    ``boxes_dropped`` (zero size / outside the image / beyond ``data.max_labels``),
    ``boxes_clipped`` (to the image) and ``images_without_boxes``."""
    st = dataset.stats
    skipped = {p for p, _ in dataset.events.bad_images()}
    return {"images": len(dataset), "images_skipped": len(skipped),
            "boxes_dropped": int(sum(v for k, v in st.items() if k.startswith("boxes_dropped"))
                                 + dataset.events.dropped_labels()),
            "boxes_clipped": int(st.get("boxes_clipped_to_image", 0)),
            "images_without_boxes": int(sum(1 for b in dataset.boxes if len(b) == 0))}
