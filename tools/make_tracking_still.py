"""Make the still of docs/tracking.md (docs/img/tracking.png, <= 100 KB): frame 70 of the
synthetic tracking sequence (``mindyolox-tools make-track-demo``, default settings) tracked by
ByteTrack, with ids and trails drawn exactly as ``track.py`` draws them.

    python tools/make_tracking_still.py            # rewrites docs/img/tracking.png

The detections are the sequence's ground truth made imperfect as in tests/test_track.py
(boxes jittered by 5 % of their size, one in ten dropped, a quarter of the scores below the
track threshold), so the picture shows the tracker, not a particular detector's training.
"""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mindyolox.data.demo import CLASSES  # noqa: E402
from mindyolox.data.demo_track import TrackSpec, draw_sequence  # noqa: E402
from mindyolox.track.bytetrack import ByteTracker  # noqa: E402
from mindyolox.track.draw import TRAIL, draw_tracks  # noqa: E402

OUT = ROOT / "docs" / "img" / "tracking.png"
FRAME = 70
MAX_BYTES = 100_000


def main():
    import cv2
    rng = np.random.default_rng(0)
    tracker, trails, still = ByteTracker(frame_rate=25), {}, None
    for f, img, rows in draw_sequence(TrackSpec()):
        rows = np.asarray(rows, np.float64).reshape(-1, 7)
        rows = rows[rng.random(len(rows)) > 0.1]
        xywh = rows[:, 1:5] + rng.normal(0, 0.05, (len(rows), 4)) * rows[:, [3, 4, 3, 4]]
        boxes = np.c_[xywh[:, :2], xywh[:, :2] + np.maximum(xywh[:, 2:], 4)]
        scores = np.where(rng.random(len(rows)) < 0.25, rng.uniform(0.15, 0.5, len(rows)),
                          rng.uniform(0.55, 0.98, len(rows)))
        tracks = tracker.update(boxes, scores, rows[:, 5].astype(np.int64) - 1)
        for t in tracks:
            trail = trails.setdefault(t.id, [])
            trail.append(((t.xyxy[0] + t.xyxy[2]) / 2, (t.xyxy[1] + t.xyxy[3]) / 2))
            del trail[:-TRAIL]
        if f == FRAME:
            still = draw_tracks(img, tracks, trails, CLASSES)
            break
    # the background's pixel noise does not compress: colours in steps of 16 keep the PNG small
    still = (still // 16 * 16 + 8).astype(np.uint8)
    ok, png = cv2.imencode(".png", still, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok or len(png) > MAX_BYTES:
        raise SystemExit(f"error: the still is {len(png)} bytes, over {MAX_BYTES}")
    OUT.write_bytes(png.tobytes())
    print(f"{OUT} written ({len(png) / 1000:.0f} KB, frame {FRAME})")


if __name__ == "__main__":
    main()
