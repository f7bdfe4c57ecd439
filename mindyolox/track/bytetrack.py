"""ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection
Box", ECCV 2022): BYTE association of every detection box with Kalman-predicted tracks.

One call of :meth:`ByteTracker.update` per frame, with that frame's detections (boxes
``x1, y1, x2, y2`` px, scores, classes). The steps, with the paper's / its repository's
defaults:

1. detections split by score: high ``score > track_thresh`` (0.5), low ``low_thresh <
   score <= track_thresh`` (0.1); lower ones are dropped;
2. the confirmed tracks and the lost tracks are predicted one frame (Kalman,
   :mod:`mindyolox.track.kalman`; a lost track's height velocity is zeroed first) and matched
   to the high detections on ``1 - IoU * score`` (the repository's ``fuse_score``), a pair
   allowed below ``match_thresh`` (0.8); a matched lost track is re-found (same id);
3. the confirmed tracks still unmatched are matched to the low detections on ``1 - IoU``
   below 0.5; a track unmatched after this becomes lost;
4. unconfirmed tracks (born on the previous frame) are matched to the high detections left,
   on ``1 - IoU * score`` below 0.7; an unmatched one is removed;
5. a high detection left with ``score >= track_thresh + 0.1`` starts a new track (confirmed at
   once on the first frame, else unconfirmed until its next match);
6. a lost track not seen for more than ``track_buffer * frame_rate / 30`` frames is removed;
   a tracked and a lost track overlapping with ``IoU > 0.85`` are one: the shorter-lived goes.

The output of a frame: the confirmed tracks matched on this frame, with their Kalman-filtered
boxes. Assignment: the linear assignment of the repository's ``lap.lapjv(cost_limit=...)``
-- the cheapest set of pairs where each side may also stay unmatched at cost ``limit / 2`` --
solved with SciPy's ``linear_sum_assignment`` (SciPy is installed with MindSpore) on the
extended ``(n + m) x (m + n)`` matrix.

Decided here (the issue leaves it open): association is class-agnostic, as ByteTrack's
(``per_class=False``; a track's class is the class of the detection that last updated it);
``per_class=True`` runs one tracker per class with one id counter. Ids start at 1 for each
:class:`ByteTracker`. IoU is the plain ratio of areas (no ``+1`` pixel convention). The MOT17
pedestrian filters of the repository's demo (aspect ratio > 1.6, area < 10 px) are not applied
(any class can be tracked).
"""
import numpy as np
from scipy.optimize import linear_sum_assignment

from .kalman import KalmanFilter, xyah_to_xyxy, xyxy_to_xyah

__all__ = ["Track", "ByteTracker", "MultiClassTracker", "box_iou", "linear_assignment", "make_tracker"]

TRACKED, LOST, REMOVED = "tracked", "lost", "removed"


def box_iou(a, b):
    """IoU ``[N, M]`` of boxes ``a [N, 4]`` and ``b [M, 4]`` (x1, y1, x2, y2)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def linear_assignment(cost, limit):
    """``(matches [(row, col)], unmatched rows, unmatched cols)`` of ``cost [n, m]``: the pairs
    minimising their summed cost plus ``limit / 2`` per unmatched row and per unmatched column
    (lapjv's ``cost_limit`` semantics: no pair of cost >= ``limit`` is ever worth taking)."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    big = 1e6
    ext = np.full((n + m, m + n), big)
    ext[:n, :m] = cost
    ext[:n, m:][np.diag_indices(n)] = limit / 2
    ext[n:, :m][np.diag_indices(m)] = limit / 2
    ext[n:, m:] = 0
    rows, cols = linear_sum_assignment(ext)
    matches = [(int(r), int(c)) for r, c in zip(rows, cols) if r < n and c < m and cost[r, c] < limit]
    mr, mc = {r for r, _ in matches}, {c for _, c in matches}
    return matches, [r for r in range(n) if r not in mr], [c for c in range(m) if c not in mc]


class Track:
    """One track. ``id`` (int, from 1), ``xyxy`` (float64 ``[4]``, the Kalman estimate, px),
    ``score`` (of the last matched detection), ``cls`` (its class), ``age`` (frames since the
    track started, 1 on its first frame), ``start_frame`` / ``frame`` (first and last frame
    it was matched, 1-based), ``state`` (``tracked`` / ``lost`` / ``removed``),
    ``confirmed`` (the repository's ``is_activated``)."""

    def __init__(self, xyxy, score, cls):
        self._det = np.asarray(xyxy, np.float64)
        self.score, self.cls = float(score), int(cls)
        self.id, self.mean, self.cov = 0, None, None
        self.state, self.confirmed = TRACKED, False
        self.start_frame = self.frame = 0
        self.hits = 0

    @property
    def xyxy(self):
        return self._det if self.mean is None else xyah_to_xyxy(self.mean)

    @property
    def age(self):
        return self.frame - self.start_frame + 1

    def activate(self, kf, track_id, frame):
        self.id, self.start_frame, self.frame = track_id, frame, frame
        self.mean, self.cov = kf.initiate(xyxy_to_xyah(self._det))
        self.state, self.confirmed = TRACKED, frame == 1

    def update(self, kf, det, frame):
        """Correct with detection ``det`` (a :class:`Track` holding it) matched on ``frame``."""
        self.mean, self.cov = kf.update(self.mean, self.cov, xyxy_to_xyah(det._det))
        self.score, self.cls, self.frame = det.score, det.cls, frame
        self.state, self.confirmed = TRACKED, True
        self.hits += 1

    def __repr__(self):
        return f"Track(id={self.id}, xyxy={np.round(self.xyxy, 1).tolist()}, score={self.score:.2f}, cls={self.cls})"


class ByteTracker:
    """BYTE multi-object tracker (module doc for the steps and decisions).

    Args:
        track_thresh: high/low split of detection scores (0.5); new tracks need
            ``track_thresh + 0.1``.
        match_thresh: first association: pairs with ``1 - IoU * score`` below it (0.8).
        track_buffer: frames a lost track is kept at 30 frames/s (30).
        low_thresh: detections at or below it are ignored (0.1).
        frame_rate: of the sequence (frames/s); the buffer scales with it.
        next_id: a callable giving the next track id (default: 1, 2, ... per tracker).
    """

    def __init__(self, track_thresh=0.5, match_thresh=0.8, track_buffer=30, low_thresh=0.1, frame_rate=30.0,
                 next_id=None):
        self.track_thresh, self.match_thresh = float(track_thresh), float(match_thresh)
        self.low_thresh = float(low_thresh)
        self.new_thresh = self.track_thresh + 0.1
        self.max_lost = int(float(frame_rate) / 30.0 * int(track_buffer))
        self.kf = KalmanFilter()
        self.frame = 0
        self.tracked, self.lost = [], []
        if next_id is None:
            counter = iter(range(1, 1 << 62))
            next_id = lambda: next(counter)  # noqa: E731
        self.next_id = next_id

    def update(self, boxes, scores, classes=None):
        """Advance one frame. ``boxes`` float ``[K, 4]`` (x1, y1, x2, y2 px), ``scores [K]``,
        ``classes [K]`` (ints; default 0). Returns the confirmed tracks updated on this frame
        (a list of :class:`Track`, by id)."""
        self.frame += 1
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        classes = np.zeros(len(scores), np.int64) if classes is None else np.asarray(classes).reshape(-1)
        high = [Track(b, s, c) for b, s, c in zip(boxes, scores, classes) if s > self.track_thresh]
        low = [Track(b, s, c) for b, s, c in zip(boxes, scores, classes) if self.low_thresh < s <= self.track_thresh]

        unconfirmed = [t for t in self.tracked if not t.confirmed]
        confirmed = [t for t in self.tracked if t.confirmed]
        pool = _union(confirmed, self.lost)
        for t in pool:
            if t.state != TRACKED:
                t.mean = t.mean.copy()
                t.mean[7] = 0.0
            t.mean, t.cov = self.kf.predict(t.mean, t.cov)
        updated, refound, newly_lost, removed = [], [], [], []

        # high-score detections with every predicted track
        matches, u_track, u_det = linear_assignment(self._cost(pool, high, fuse=True), self.match_thresh)
        for it, idet in matches:
            (updated if pool[it].state == TRACKED else refound).append(pool[it])
            pool[it].update(self.kf, high[idet], self.frame)
        # low-score detections with the tracked ones left
        rest = [pool[i] for i in u_track if pool[i].state == TRACKED]
        matches, u_rest, _ = linear_assignment(self._cost(rest, low, fuse=False), 0.5)
        for it, idet in matches:
            updated.append(rest[it])
            rest[it].update(self.kf, low[idet], self.frame)
        for i in u_rest:
            rest[i].state = LOST
            newly_lost.append(rest[i])
        # unconfirmed tracks with the high detections left
        high = [high[i] for i in u_det]
        matches, u_unconf, u_det = linear_assignment(self._cost(unconfirmed, high, fuse=True), 0.7)
        for it, idet in matches:
            unconfirmed[it].update(self.kf, high[idet], self.frame)
            updated.append(unconfirmed[it])
        for i in u_unconf:
            unconfirmed[i].state = REMOVED
            removed.append(unconfirmed[i])
        # new tracks
        for i in u_det:
            if high[i].score >= self.new_thresh:
                high[i].activate(self.kf, self.next_id(), self.frame)
                updated.append(high[i])
        # lost tracks past the buffer
        for t in self.lost:
            if self.frame - t.frame > self.max_lost:
                t.state = REMOVED
                removed.append(t)

        tracked = _union(_union([t for t in self.tracked if t.state == TRACKED], updated), refound)
        lost = _minus(_minus(self.lost, tracked) + newly_lost, removed)
        self.tracked, self.lost = _drop_duplicates(tracked, lost)
        return sorted((t for t in self.tracked if t.confirmed and t.frame == self.frame), key=lambda t: t.id)

    @staticmethod
    def _cost(tracks, dets, fuse):
        """``1 - IoU`` (``fuse``: ``1 - IoU * det score``) ``[len(tracks), len(dets)]``."""
        if not tracks or not dets:
            return np.zeros((len(tracks), len(dets)))
        iou = box_iou(np.stack([t.xyxy for t in tracks]), np.stack([d._det for d in dets]))
        if fuse:
            iou = iou * np.array([d.score for d in dets])[None, :]
        return 1.0 - iou


class MultiClassTracker:
    """``per_class=True``: one :class:`ByteTracker` per class, sharing one id counter (ids stay
    unique across classes); same ``update`` interface and arguments."""

    def __init__(self, **kwargs):
        counter = iter(range(1, 1 << 62))
        self._next = lambda: next(counter)
        self._kwargs, self._trackers, self.frame = kwargs, {}, 0

    def update(self, boxes, scores, classes=None):
        self.frame += 1
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        classes = np.zeros(len(scores), np.int64) if classes is None else np.asarray(classes).reshape(-1).astype(np.int64)
        for c in set(classes.tolist()) - set(self._trackers):
            tracker = ByteTracker(next_id=self._next, **self._kwargs)
            tracker.frame = self.frame - 1   # a tracker made late starts on this frame (not its frame 1)
            self._trackers[c] = tracker
        out = []
        for c, tracker in self._trackers.items():
            keep = classes == c
            out += tracker.update(boxes[keep], scores[keep], classes[keep])
        return sorted(out, key=lambda t: t.id)


def make_tracker(per_class=False, **kwargs):
    """A :class:`ByteTracker` (class-agnostic) or, ``per_class``, a :class:`MultiClassTracker`."""
    return MultiClassTracker(**kwargs) if per_class else ByteTracker(**kwargs)


def _union(a, b):
    """``a`` then the tracks of ``b`` whose id is not in ``a``."""
    ids = {t.id for t in a}
    return list(a) + [t for t in b if t.id not in ids]


def _minus(a, b):
    ids = {t.id for t in b}
    return [t for t in a if t.id not in ids]


def _drop_duplicates(tracked, lost):
    """Tracked/lost pairs with ``1 - IoU < 0.15`` are one object: the one tracked for fewer
    frames is dropped."""
    if not tracked or not lost:
        return tracked, lost
    dist = 1.0 - box_iou(np.stack([t.xyxy for t in tracked]), np.stack([t.xyxy for t in lost]))
    drop_t, drop_l = set(), set()
    for i, j in zip(*np.nonzero(dist < 0.15)):
        if tracked[i].frame - tracked[i].start_frame > lost[j].frame - lost[j].start_frame:
            drop_l.add(j)
        else:
            drop_t.add(i)
    return ([t for i, t in enumerate(tracked) if i not in drop_t], [t for j, t in enumerate(lost) if j not in drop_l])
