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
  ``<size>``), in the frame the image is decoded in (EXIF orientation, below). Another size
  means boxes in other pixels than the image's: the image is skipped.

EXIF orientation (decided rule; every decode of a dataset image -- training loader, mosaic,
RAM and disk caches, evaluation, previews -- goes through
:meth:`~mindyolox.data.base.DetectionDataset.load_image` with the flag decided here per
image, ``dataset.decode_flags[i]``). OpenCV >= 3.1 turns an image by its EXIF ``Orientation``
tag (0x0112) when it decodes with ``cv2.IMREAD_COLOR`` -- JPEG (the APP1 ``Exif`` segment) and
PNG (the ``eXIf`` chunk) here, checked with OpenCV 4.11 -- unless ``IMREAD_IGNORE_ORIENTATION``
is added. Official YOLOX reads with plain ``cv2.imread(path)``, so it sees the displayed
(turned) frame. The tag is read here without decoding; orientations 5-8 swap width and height,
2-4 mirror or turn by 180 degrees in place. The annotation's ``(width, height)`` decides:

- no tag, or orientation 1: the stored frame; the annotation must say its size;
- the annotated size is the displayed frame's and not the stored one's: decoded turned, as
  ``cv2.imread`` does (official parity), quietly;
- it is the stored frame's and not the displayed one's: the boxes were drawn on the stored
  pixels, so the image is decoded with ``IMREAD_IGNORE_ORIENTATION`` and the boxes stay where
  they were drawn; one warning per dataset names these images;
- it fits both (orientations 2-4, or a square image with 5-8): ambiguous -- decoded turned,
  as ``cv2.imread`` (official YOLOX) does; one warning per dataset names these images and says
  so (remove the tag, or turn the pixels, if the boxes were drawn on the stored frame);
- it fits neither: a wrong size, skipped as above.

Other formats (BMP, WebP, TIFF, ...) are decoded once both ways; only a turn that swaps the
size shows there, so orientations 2-4 of those formats are decoded as ``cv2.imread`` does.

Decisions: broken images leave the index (training never samples them; an evaluation still
counts their ground truth in COCO's own index, as an unreadable image did before), each is
recorded in the dataset's :class:`~mindyolox.data.base.EventLog` (one warning naming the file
and the reason, then one line with the count) and listed in ``dataset.broken``; the trainer's final summary
and ``metrics.jsonl`` carry the counts (:func:`data_summary`).
"""
import logging
import os
import struct
from concurrent.futures import ThreadPoolExecutor

import cv2

logger = logging.getLogger("mindyolox.data")   # the data room's logger (the one of data/base.py)

__all__ = ["check_image", "inspect_image", "probe_image", "exif_orientation", "verify_dataset", "require_boxes", "data_summary",
           "TAIL_BYTES", "DECODE_TURNED", "DECODE_STORED"]

DECODE_TURNED = cv2.IMREAD_COLOR                                    # as cv2.imread: EXIF orientation applied
DECODE_STORED = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION    # the stored pixels

TAIL_BYTES = 64 * 1024
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# SOFn markers (frame header with the size); C4 (DHT), C8 (JPG), CC (DAC) are not frames
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _tiff_orientation(t):
    """The ``Orientation`` (0x0112) of IFD0 of TIFF-structured EXIF bytes ``t``; 1 when absent
    or out of 1..8 (which OpenCV ignores too)."""
    bo = {b"II": "<", b"MM": ">"}.get(bytes(t[:2]))
    if bo is None or len(t) < 8:
        return 1
    (off,) = struct.unpack(bo + "I", t[4:8])
    if off + 2 > len(t):
        return 1
    (n,) = struct.unpack(bo + "H", t[off:off + 2])
    for k in range(n):
        e = off + 2 + 12 * k
        if e + 12 > len(t):
            break
        tag, typ = struct.unpack(bo + "HH", t[e:e + 4])
        if tag == 0x0112 and typ == 3:  # SHORT
            (v,) = struct.unpack(bo + "H", t[e + 8:e + 10])
            return v if 1 <= v <= 8 else 1
    return 1


def _png_orientation(f):
    """EXIF orientation from a PNG's ``eXIf`` chunk before the first ``IDAT`` (1 if none)."""
    f.seek(8)
    while True:
        head = f.read(8)
        if len(head) < 8:
            return 1
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IDAT":
            return 1
        if kind == b"eXIf":
            return _tiff_orientation(f.read(length))
        f.seek(length + 4, os.SEEK_CUR)


def exif_orientation(path):
    """EXIF orientation 1..8 of the JPEG or PNG at ``path`` (1: none, or another format)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:2] == b"\xff\xd8":
            info = _jpeg_size(f)
            return info[2] if info else 1
        if head == _PNG_SIG:
            return _png_orientation(f)
    return 1


def _jpeg_size(f):
    """``(h, w, orientation)`` from the first SOFn segment and the first APP1 ``Exif``
    segment before it, walking the marker segments from the start."""
    orientation = None
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
            return h, w, orientation or 1
        if marker == 0xDA:                                      # scan before any frame header
            return None
        if marker == 0xE1 and orientation is None:              # APP1: EXIF (or XMP)
            body = f.read(length - 2)
            if body[:6] == b"Exif\0\0":
                orientation = _tiff_orientation(body[6:])
        else:
            f.seek(length - 2, os.SEEK_CUR)
        b = f.read(1)
        if b != b"\xff":
            return None


def check_image(path, size=None):
    """Why the image at ``path`` cannot be used, or ``None`` when it is fine.

    size: ``(h, w)`` recorded for it (None: not compared). Returns a short reason such as
    ``"file not found"``, ``"empty file"``, ``"truncated JPEG (no end marker after the last
    scan)"``, ``"image is 120x80 (w x h), the annotation says 160x100"`` (module doc)."""
    return inspect_image(path, size)[0]


def probe_image(path):
    """``(reason, stored_hw, shown_hw)`` of the image at ``path`` from its header (no decode for
    JPEG/PNG): ``reason`` why it cannot be used (None: usable, then the sizes are set),
    ``stored_hw`` the ``(h, w)`` of the stored pixels, ``shown_hw`` the ``(h, w)`` of the frame
    ``cv2.imread`` shows (EXIF orientations 5-8 swap the two; the module doc)."""
    reason, hw, shown, _ = _probe(path)
    return reason, hw, shown


def _probe(path):
    """``(reason, stored_hw, shown_hw, orientation)`` (:func:`probe_image`; sizes None when
    ``reason`` is set)."""
    try:
        n = os.path.getsize(path)
    except OSError:
        return "file not found", None, None, 1
    if n == 0:
        return "empty file", None, None, 1
    orientation = 1
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head[:2] == b"\xff\xd8":
                f.seek(max(0, n - TAIL_BYTES))
                tail = f.read()
                eoi, sos = tail.rfind(b"\xff\xd9"), tail.rfind(b"\xff\xda")
                if eoi < 0 or eoi < sos:
                    return "truncated JPEG (no end marker after the last scan)", None, None, 1
                info = _jpeg_size(f)
                if info is None:
                    return "JPEG without a frame header (not decodable)", None, None, 1
                hw, orientation = info[:2], info[2]
                shown = hw[::-1] if orientation >= 5 else hw
            elif head[:8] == _PNG_SIG:
                f.seek(max(0, n - TAIL_BYTES))
                if f.read().rfind(b"IEND") < 0:
                    return "truncated PNG (no IEND chunk)", None, None, 1
                if head[12:16] != b"IHDR":
                    return "PNG without an IHDR chunk (not decodable)", None, None, 1
                w, h = struct.unpack(">II", head[16:24])
                hw, orientation = (h, w), _png_orientation(f)
                shown = hw[::-1] if orientation >= 5 else hw
            else:
                img = cv2.imread(str(path), DECODE_STORED)
                if img is None:
                    return "cannot be decoded", None, None, 1
                hw = img.shape[:2]
                shown = cv2.imread(str(path), DECODE_TURNED).shape[:2]
                orientation = 6 if tuple(shown) != tuple(hw) else 1
    except OSError as e:
        return f"cannot be read ({e.strerror})", None, None, 1
    return None, tuple(int(v) for v in hw), tuple(int(v) for v in shown), orientation


def inspect_image(path, size=None):
    """``(reason, flag, frame)`` of the image at ``path`` annotated as ``size = (h, w)``:
    ``reason`` as :func:`check_image` (None: usable); ``flag`` the ``cv2.imread`` flag to decode
    it with (:data:`DECODE_TURNED` or :data:`DECODE_STORED`); ``frame`` ``None`` (no EXIF
    turn), ``"turned"``, ``"stored"`` or ``"ambiguous"`` (the module doc's rule)."""
    reason, hw, shown, orientation = _probe(path)
    if reason is not None:
        return reason, DECODE_TURNED, None
    if size is None:
        return None, DECODE_TURNED, None if orientation == 1 else "turned"
    want = (int(size[0]), int(size[1]))
    if orientation == 1:
        if hw != want:
            return f"image is {hw[1]}x{hw[0]} (w x h), the annotation says {want[1]}x{want[0]}", DECODE_TURNED, None
        return None, DECODE_TURNED, None
    if shown == want and hw == want:
        return None, DECODE_TURNED, "ambiguous"
    if shown == want:
        return None, DECODE_TURNED, "turned"
    if hw == want:
        return None, DECODE_STORED, "stored"
    return (f"image is {shown[1]}x{shown[0]} (w x h) as its EXIF orientation {orientation} shows it, {hw[1]}x{hw[0]} "
            f"as stored; the annotation says {want[1]}x{want[0]}"), DECODE_TURNED, None


def _names(paths, limit=10):
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def verify_dataset(dataset, workers=8):
    """Check every image of ``dataset`` (a :class:`~mindyolox.data.base.DetectionDataset` just
    indexed) with :func:`check_image`; broken ones are recorded (one warning each), listed in
    ``dataset.broken`` and removed from the index (every per-image list the
    dataset keeps). Sets ``dataset.decode_flags`` (the EXIF decision of each image kept, module
    doc) and warns once per kind of EXIF decision that needs saying, naming the images.
    Returns ``[(path, reason), ...]`` of the removed images."""
    n = len(dataset.paths)
    if n == 0:
        dataset.decode_flags = []
        return []
    with ThreadPoolExecutor(max(1, min(int(workers), n))) as pool:  # I/O bound: reads release the GIL
        found = list(pool.map(inspect_image, dataset.paths, dataset.sizes))
    reasons = [r for r, _, _ in found]
    stored = [dataset.paths[i] for i, (r, _, fr) in enumerate(found) if r is None and fr == "stored"]
    ambiguous = [dataset.paths[i] for i, (r, _, fr) in enumerate(found) if r is None and fr == "ambiguous"]
    if stored:
        logger.warning("%s: %d image(s) with an EXIF orientation are annotated in their stored (not turned) frame: "
                       "decoded without the EXIF turn so the boxes stay where they were drawn: %s",
                       dataset.name, len(stored), _names(stored))
    if ambiguous:
        logger.warning("%s: the EXIF orientation of %d image(s) leaves their annotation frame ambiguous (the annotated "
                       "size fits the stored and the turned frame): decoded turned, as cv2.imread and official YOLOX "
                       "do; if their boxes were drawn on the stored pixels, remove the tag: %s",
                       dataset.name, len(ambiguous), _names(ambiguous))
    flags = [fl for _, fl, _ in found]
    bad = [i for i, r in enumerate(reasons) if r is not None]
    if not bad:
        dataset.decode_flags = flags
        return []
    out = []
    for i in bad:
        dataset.events.bad_image(dataset.paths[i], reasons[i])
        out.append((dataset.paths[i], reasons[i]))
    keep = [i for i in range(n) if reasons[i] is None]
    dataset.decode_flags = [flags[i] for i in keep]
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
    ``boxes_clipped`` (to the image) and ``images_without_boxes``; for a YOLO-format dataset
    also ``label_problems`` (label lines and files named while reading, unreadable images
    aside: :mod:`~mindyolox.data.yolo`)."""
    st = dataset.stats
    skipped = {p for p, _ in dataset.events.bad_images()}
    out = {"images": len(dataset), "images_skipped": len(skipped),
           "boxes_dropped": int(sum(v for k, v in st.items() if k.startswith("boxes_dropped"))
                                + dataset.events.dropped_labels()),
           "boxes_clipped": int(st.get("boxes_clipped_to_image", 0)),
           "images_without_boxes": int(sum(1 for b in dataset.boxes if len(b) == 0))}
    if hasattr(dataset, "label_problems"):
        out["label_problems"] = int(dataset.stats.get("label_problems", 0))
    return out
