"""Drawing of tracks: a box in the track's own colour, ``#id class score`` above it and its
trail (the box centres of its last :data:`TRAIL` frames) as a polyline."""
import cv2
import numpy as np

__all__ = ["TRAIL", "track_colour", "draw_tracks"]

TRAIL = 30   # frames of trail drawn behind each track


def track_colour(track_id):
    """A BGR colour of track ``track_id``, fixed per id (golden-ratio hues, full saturation)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 180)
    px = np.array([[[hue, 220, 255]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0])


def draw_tracks(img, tracks, trails, class_names=()):
    """``img`` (BGR uint8 ``[h, w, 3]``, drawn on a copy) with ``tracks`` (objects with ``id``,
    ``xyxy``, ``score``, ``cls``) and ``trails`` (``{id: [(cx, cy), ...]}`` px, oldest first)."""
    out = img.copy()
    for t in tracks:
        colour = track_colour(t.id)
        pts = trails.get(t.id, [])[-TRAIL:]
        if len(pts) > 1:
            cv2.polylines(out, [np.round(np.asarray(pts)).astype(np.int32)], False, colour, 2, cv2.LINE_AA)
        x1, y1, x2, y2 = (int(round(v)) for v in t.xyxy)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        name = class_names[t.cls] if 0 <= t.cls < len(class_names) else str(t.cls)
        label = f"#{t.id} {name} {t.score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        ty = max(y1, th + base + 1)
        cv2.rectangle(out, (x1, ty - th - base - 1), (x1 + tw + 2, ty), colour, -1)
        cv2.putText(out, label, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return out
