"""Tracking (issue 39 items 2-4): ByteTrack against an independent implementation on the
synthetic sequence, the Kalman filter by hand, track-eval on hand-made cases, the synthetic
sequence's layout, track.py's bad sources, and track.py end to end with the demo model.

The independent ByteTrack (:class:`RefByteTrack`) is written here in plain numpy from the
published definition (Zhang et al. 2022, Algorithm 1, and the defaults and the three
association steps of its repository), without calling project code: the ByteTrack packages on
PyPI do not install here (``bytetracker`` 0.3.2 builds ``lap`` from source and fails,
``supervision`` 0.31.2 no longer has ``ByteTrack``, ``trackers`` 2.6.1 needs NumPy 2). Both
are scored by the same evaluation package (py-motmetrics, through track-eval).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from tests.conftest import ROOT


# ----------------------------------------------------------------------------- the reference
def _iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = min(p[2], q[2]) - max(p[0], q[0])
            ih = min(p[3], q[3]) - max(p[1], q[1])
            inter = max(iw, 0) * max(ih, 0)
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def _assign(cost, limit):
    """lapjv with cost_limit: every row / column may stay unmatched at limit / 2."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return [], set(range(n)), set(range(m))
    big = np.full((n + m, n + m), 1e9)
    big[:n, :m] = cost
    for i in range(n):
        big[i, m + i] = limit / 2
    for j in range(m):
        big[n + j, j] = limit / 2
    big[n:, m:] = 0
    r, c = linear_sum_assignment(big)
    pairs = [(i, j) for i, j in zip(r, c) if i < n and j < m and cost[i, j] < limit]
    return pairs, set(range(n)) - {i for i, _ in pairs}, set(range(m)) - {j for _, j in pairs}


class _RefTrack:
    wp, wv = 1 / 20, 1 / 160

    def __init__(self, box, score):
        self.box, self.score = np.array(box, float), score
        x1, y1, x2, y2 = box
        z = np.array([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / (y2 - y1), y2 - y1])
        h = z[3]
        self.x = np.r_[z, 0, 0, 0, 0]
        self.P = np.diag(np.square([2 * self.wp * h, 2 * self.wp * h, 1e-2, 2 * self.wp * h,
                                    10 * self.wv * h, 10 * self.wv * h, 1e-5, 10 * self.wv * h]))
        self.id, self.active, self.lost, self.start = 0, False, False, 0

    def xyxy(self):
        cx, cy, a, h = self.x[:4]
        return np.array([cx - a * h / 2, cy - h / 2, cx + a * h / 2, cy + h / 2])

    def predict(self):
        if self.lost:
            self.x[7] = 0
        F = np.eye(8) + np.eye(8, k=4)
        h = self.x[3]
        Q = np.diag(np.square([self.wp * h, self.wp * h, 1e-2, self.wp * h, self.wv * h, self.wv * h, 1e-5, self.wv * h]))
        self.x, self.P = F @ self.x, F @ self.P @ F.T + Q

    def correct(self, det, frame):
        H = np.eye(4, 8)
        h = self.x[3]
        S = H @ self.P @ H.T + np.diag(np.square([self.wp * h, self.wp * h, 1e-1, self.wp * h]))
        K = self.P @ H.T @ np.linalg.inv(S)
        x1, y1, x2, y2 = det.box
        z = np.array([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / (y2 - y1), y2 - y1])
        self.x = self.x + K @ (z - H @ self.x)
        self.P = (np.eye(8) - K @ H) @ self.P
        self.score, self.last, self.active, self.lost = det.score, frame, True, False


class RefByteTrack:
    """BYTE from the paper: high detections with all tracks (fused IoU*score cost, 0.8),
    low detections with the remaining tracked ones (IoU, 0.5), unconfirmed with the rest of the
    high ones (0.7), new tracks from high >= thresh + 0.1, lost kept 30 frames."""

    def __init__(self, thresh=0.5, match=0.8, buffer=30, low=0.1):
        self.thresh, self.match, self.buffer, self.low = thresh, match, buffer, low
        self.tracks, self.frame, self.next = [], 0, 1

    def _cost(self, tracks, dets, fuse):
        iou = _iou([t.xyxy() for t in tracks], [d.box for d in dets])
        if fuse and len(dets):
            iou = iou * np.array([d.score for d in dets])[None]
        return 1 - iou

    def step(self, boxes, scores):
        self.frame += 1
        f = self.frame
        high = [_RefTrack(b, s) for b, s in zip(boxes, scores) if s > self.thresh]
        low = [_RefTrack(b, s) for b, s in zip(boxes, scores) if self.low < s <= self.thresh]
        unconf = [t for t in self.tracks if not t.active]
        pool = [t for t in self.tracks if t.active]
        for t in pool:
            t.predict()
        pairs, ut, ud = _assign(self._cost(pool, high, True), self.match)
        for i, j in pairs:
            pool[i].correct(high[j], f)
        rest = [pool[i] for i in sorted(ut) if not pool[i].lost]
        pairs, ur, _ = _assign(self._cost(rest, low, False), 0.5)
        for i, j in pairs:
            rest[i].correct(low[j], f)
        for i in ur:
            rest[i].lost = True
        left = [high[j] for j in sorted(ud)]
        pairs, uu, ud = _assign(self._cost(unconf, left, True), 0.7)
        for i, j in pairs:
            unconf[i].correct(left[j], f)
        gone = {id(unconf[i]) for i in uu}
        for j in sorted(ud):
            if left[j].score >= self.thresh + 0.1:
                t = left[j]
                t.id, t.start, t.last, t.active = self.next, f, f, f == 1
                self.next += 1
                self.tracks.append(t)
        self.tracks = [t for t in self.tracks if id(t) not in gone and not (t.lost and f - t.last > self.buffer)]
        # a tracked and a lost track that overlap (1 - IoU < 0.15) are one: the younger goes
        on = [t for t in self.tracks if not t.lost]
        off = [t for t in self.tracks if t.lost]
        if on and off:
            d = 1 - _iou([t.xyxy() for t in on], [t.xyxy() for t in off])
            drop = set()
            for i, j in zip(*np.nonzero(d < 0.15)):
                a, b = on[i], off[j]
                drop.add(id(b) if a.last - a.start > b.last - b.start else id(a))
            self.tracks = [t for t in self.tracks if id(t) not in drop]
        return [t for t in self.tracks if t.active and not t.lost and t.last == f]


# ----------------------------------------------------------------------------- helpers
def _detections_from_gt(gt, seed=0):
    """Per frame ``(boxes [K, 4] xyxy, scores [K], classes [K])`` from gt rows: boxes jittered
    (5 % of their size), 10 % of the boxes and frames 20-22, 61 dropped, a quarter of the
    scores in (0.15, 0.5) (below track_thresh), a few low-score false positives."""
    rng = np.random.default_rng(seed)
    last = int(gt[:, 0].max())
    out = []
    for f in range(1, last + 1):
        rows = gt[gt[:, 0] == f]
        if f in (20, 21, 22, 61):
            out.append((np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)))
            continue
        keep = rng.random(len(rows)) > 0.1
        rows = rows[keep]
        xywh = rows[:, 2:6] + rng.normal(0, 0.05, (len(rows), 4)) * rows[:, [4, 5, 4, 5]]
        xywh[:, 2:] = np.maximum(xywh[:, 2:], 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        scores = np.where(rng.random(len(rows)) < 0.25, rng.uniform(0.15, 0.5, len(rows)),
                          rng.uniform(0.55, 0.98, len(rows)))
        if rng.random() < 0.2:   # a false positive
            x, y = rng.uniform(0, 260), rng.uniform(0, 180)
            boxes = np.vstack([boxes, [x, y, x + 30, y + 30]])
            scores = np.r_[scores, rng.uniform(0.1, 0.4)]
        out.append((boxes, scores, np.zeros(len(scores), np.int64)))
    return out


def _write_mot(path, frames):
    with open(path, "w") as f:
        for n, tracks in enumerate(frames, 1):
            for tid, (x1, y1, x2, y2), s in tracks:
                f.write(f"{n},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.4f},-1,-1,-1\n")


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    from mindyolox.data.demo_track import TrackSpec, write_sequence
    out = tmp_path_factory.mktemp("track") / "seq"
    write_sequence(out, TrackSpec(frames=120, objects=10, seed=1))   # 10 objects: crossings, a few id switches
    return out


# ----------------------------------------------------------------------------- tests
def test_synthetic_sequence_is_mot_layout_with_moving_occluding_ids(sequence):
    import cv2
    gt = np.loadtxt(sequence / "gt" / "gt.txt", delimiter=",")
    info = (sequence / "seqinfo.ini").read_text()
    assert "imDir=img1" in info and "seqLength=120" in info and "imWidth=320" in info
    assert len(list((sequence / "img1").glob("*.jpg"))) == 120
    assert cv2.imread(str(sequence / "img1" / "000001.jpg")).shape == (240, 320, 3)
    assert gt.shape[1] == 9 and set(gt[:, 1].astype(int)) == set(range(1, 11))
    assert set(gt[:, 7].astype(int)) <= set(range(1, 7))        # demo classes 1..6
    assert (gt[:, 8] < 0.7).sum() > 10                          # objects occlude each other
    moved = [np.ptp(gt[gt[:, 1] == i, 2]) for i in range(1, 11)]
    assert min(moved) > 20                                       # every object moves


def test_bytetrack_matches_an_independent_implementation_on_the_synthetic_sequence(sequence, tmp_path):
    from mindyolox.commands.tools import track_eval
    from mindyolox.track.bytetrack import ByteTracker
    from mindyolox.track.metrics import evaluate_mot
    gt_path = sequence / "gt" / "gt.txt"
    dets = _detections_from_gt(np.loadtxt(gt_path, delimiter=","))
    ours, ref = ByteTracker(frame_rate=30), RefByteTrack()
    ours_rows, ref_rows = [], []
    for boxes, scores, classes in dets:
        ours_rows.append([(t.id, t.xyxy, t.score) for t in ours.update(boxes, scores, classes)])
        ref_rows.append([(t.id, t.xyxy(), t.score) for t in ref.step(boxes, scores)])
    _write_mot(tmp_path / "ours.txt", ours_rows)
    _write_mot(tmp_path / "ref.txt", ref_rows)
    a, b = evaluate_mot(str(gt_path), str(tmp_path / "ours.txt")), evaluate_mot(str(gt_path), str(tmp_path / "ref.txt"))
    print("ours", a, "\nreference", b)
    assert abs(a["mota"] - b["mota"]) <= 0.01 and abs(a["idf1"] - b["idf1"]) <= 0.01
    assert a["mota"] > 0.6 and a["idf1"] > 0.7      # it tracks: not just agreeing with the reference
    assert a["id_switches"] < 10
    # without association (a new id per box) identities are lost: IDF1 collapses
    naive = [[(k + 1000 * n, box, s) for k, (_, box, s) in enumerate(rows)] for n, rows in enumerate(ours_rows)]
    _write_mot(tmp_path / "naive.txt", naive)
    assert evaluate_mot(str(gt_path), str(tmp_path / "naive.txt"))["idf1"] < a["idf1"] - 0.3
    assert track_eval.main(["--gt", str(gt_path), "--pred", str(tmp_path / "ours.txt")]) == 0


def test_kalman_predict_and_update_by_hand():
    from mindyolox.track.kalman import KalmanFilter
    kf = KalmanFilter()
    mean, cov = kf.initiate([100.0, 50.0, 0.5, 40.0])             # h = 40: position std 2*40/20 = 4
    assert np.allclose(mean, [100, 50, 0.5, 40, 0, 0, 0, 0])
    assert np.isclose(cov[0, 0], 16.0) and np.isclose(cov[4, 4], 2.5 ** 2) and np.isclose(cov[2, 2], 1e-4)
    mean, cov = kf.predict(mean, cov)
    # P' = F P F^T + Q: cx variance 16 + 6.25 + (40/20)^2, cx-vx covariance 6.25, vx 6.25 + (40/160)^2
    assert np.isclose(cov[0, 0], 26.25) and np.isclose(cov[0, 4], 6.25) and np.isclose(cov[4, 4], 6.3125)
    mean, cov = kf.update(mean, cov, [104.0, 50.0, 0.5, 40.0])
    s = 26.25 + 4.0                                               # S = H P H^T + R, R std 40/20 = 2
    assert np.isclose(mean[0], 100 + 4 * 26.25 / s) and np.isclose(mean[4], 4 * 6.25 / s)
    assert np.isclose(cov[0, 0], 26.25 - 26.25 ** 2 / s) and np.isclose(mean[1], 50) and np.isclose(mean[3], 40)
    # constant velocity: a second predict moves the centre by the estimated velocity
    m2, _ = kf.predict(mean, cov)
    assert np.isclose(m2[0], mean[0] + mean[4])


def test_bytetrack_keeps_identity_through_a_low_score_frame_and_a_gap():
    from mindyolox.track.bytetrack import ByteTracker
    t = ByteTracker()
    ids = []
    for f in range(12):
        box = [10 + 4 * f, 20, 50 + 4 * f, 70]
        if f in (6, 7):               # missed twice: the track is lost, then re-found with its id
            out = t.update(np.zeros((0, 4)), [])
        else:
            out = t.update([box, [200, 200, 240, 250]], [0.3 if f == 3 else 0.9, 0.9])   # f 3: a low box
        ids.append([tr.id for tr in out])
    assert ids[0] == [1, 2] and ids[3] == [1, 2] and ids[6] == [] and ids[8] == [1, 2] and ids[11] == [1, 2]
    # a low-score box alone never starts a track; one above track_thresh + 0.1 does
    t = ByteTracker()
    assert t.update([[0, 0, 10, 10]], [0.55]) == [] and [x.id for x in t.update([[50, 50, 60, 60]], [0.7])] == []


def test_track_eval_on_hand_cases(tmp_path, capsys, monkeypatch):
    from mindyolox.commands.tools import track_eval
    from mindyolox.track.metrics import evaluate_mot
    gt = tmp_path / "gt.txt"
    gt.write_text("".join(f"{f},1,10,10,20,20,1,1,1\n" for f in range(1, 5)))
    pred = tmp_path / "pred.txt"     # perfect boxes, id switch after frame 2
    pred.write_text("".join(f"{f},{1 if f <= 2 else 2},10,10,20,20,0.9,-1,-1,-1\n" for f in range(1, 5)))
    s = evaluate_mot(str(gt), str(pred))
    # MOTA = 1 - (FN + FP + IDsw) / GT = 1 - 1/4; IDF1 = 2 IDTP / (GT + pred) = 4 / 8;
    # HOTA: DetA 1, each TP's association 2 / (4 + 2 - 2) -> AssA 0.5 -> sqrt(0.5)
    assert np.isclose(s["mota"], 0.75) and np.isclose(s["idf1"], 0.5) and s["id_switches"] == 1
    assert np.isclose(s["deta"], 1.0) and np.isclose(s["assa"], 0.5) and np.isclose(s["hota"], np.sqrt(0.5))
    # a box shifted to IoU 1/3 is a match for alpha <= 1/3 only: 6 of the 19 alphas
    pred.write_text("1,1,20,10,20,20,0.9,-1,-1,-1\n")
    gt.write_text("1,1,10,10,20,20,1,1,1\n")
    assert np.isclose(evaluate_mot(str(gt), str(pred))["deta"], 6 / 19)
    pred.write_text("1,1,10,10,20\n")
    monkeypatch.setattr(sys, "argv", ["track-eval", "--gt", str(gt), "--pred", str(pred)])
    with pytest.raises(SystemExit) as e:
        track_eval.run()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pred.txt line 1" in err and len(err.splitlines()) == 1


def _run_track(args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, str(ROOT / "track.py"), *args], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)


def test_track_bad_sources_are_one_line(tmp_path, capsys, monkeypatch):
    from mindyolox.commands import track
    from tests.conftest import shared_path
    weights = str(shared_path("weights", "yolox_nano.pth"))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.avi"
    text.write_text("not a video\n" * 100)
    cases = {str(tmp_path / "missing.mp4"): "no such file", str(empty): "empty file",
             str(text): "cannot be opened", str(shared_path("data", "images", "dog.jpg")): "not a sequence",
             "17": "--source 17: cannot be opened as a webcam or stream"}
    for source, words in cases.items():
        monkeypatch.setattr(sys, "argv", ["track.py", "--config", "yolox-nano", "--weights", weights, "--source", source,
                                          "--save-dir", str(tmp_path / "out")])
        with pytest.raises(SystemExit) as e:
            track.run()
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.startswith("error: ") and words in err, err
        assert len(err.splitlines()) == 1, err
        assert not (tmp_path / "out").exists()        # nothing written, no model built for a bad source


def test_track_run_keeps_frames_done_when_cut_short(sequence, tmp_path):
    from mindyolox.track.run import plan_track, run_track
    gt = np.loadtxt(sequence / "gt" / "gt.txt", delimiter=",")
    calls = {"n": 0}

    def detector(images):   # ground-truth boxes as detections, then Ctrl-C on frame 11
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt
        rows = gt[gt[:, 0] == calls["n"]]
        return [np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6], np.full(len(rows), 0.9), np.ones(len(rows)),
                      rows[:, 7] - 1].astype(np.float32)]

    plan = plan_track(str(sequence / "img1"), str(tmp_path / "out"))
    assert plan.stem == "seq" and plan.txt.endswith("seq.txt")
    with pytest.raises(KeyboardInterrupt):
        run_track(detector, plan, progress=False, classes={0, 1, 2, 3, 4, 5})
    rows = np.loadtxt(plan.txt, delimiter=",")
    assert set(rows[:, 0].astype(int)) == set(range(1, 11)) and (rows[:, 7:] == -1).all()
    assert os.path.getsize(plan.video) > 0


@pytest.mark.slow
def test_track_py_end_to_end_with_a_real_detector(tmp_path):
    """track.py with a detector's own detections: the official YOLOX-Nano at 320 px on 12 frames
    panned across dog.jpg (a 640x480 window moving 4 px a frame), 4 frames per graph call. The
    dog, the bicycle and the car are each one track through every frame (ids constant), the
    MOT rows are well formed and the drawn video has 12 frames. (The quickstart's demo model,
    trained for 2 short epochs, detects nothing on the synthetic shapes: it could not show an id
    being kept.)"""
    import cv2
    from tests.conftest import shared_path
    img = cv2.imread(str(shared_path("data", "images", "dog.jpg")))
    frames = tmp_path / "pan"
    frames.mkdir()
    for k in range(12):
        cv2.imwrite(str(frames / f"{k + 1:06d}.jpg"), img[40:520, 4 * k:4 * k + 640])
    out = tmp_path / "out"
    r = _run_track(["--config", "configs/yolox-nano.yaml", "--weights", str(shared_path("weights", "yolox_nano.pth")),
                    "--img-size", "320", "--source", str(frames), "--save-dir", str(out), "--batch", "4",
                    "--no-progress"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pan: 12 frames" in r.stdout and "frames/s" in r.stdout
    rows = np.loadtxt(out / "pan.txt", delimiter=",", ndmin=2)
    assert rows.shape[1] == 10 and rows[:, 0].min() == 1 and rows[:, 0].max() == 12 and (rows[:, 1] >= 1).all()
    frames_of = {int(i): set(rows[rows[:, 1] == i, 0].astype(int)) for i in np.unique(rows[:, 1])}
    full = [i for i, f in frames_of.items() if len(f) >= 11]   # confirmed on frame 1 or 2, then every frame
    assert len(full) >= 3, frames_of
    for f in range(1, 13):   # one row per track and frame
        ids = rows[rows[:, 0] == f, 1]
        assert len(ids) == len(set(ids)), (f, ids)
    cap = cv2.VideoCapture(str(out / "pan.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 12


def test_classes_filter_and_per_class_association():
    from mindyolox.commands.track import class_ids
    from mindyolox.errors import ConfigError
    from mindyolox.track.bytetrack import make_tracker
    from mindyolox.track.run import select_classes
    names = ("circle", "square", "triangle")
    assert class_ids(["0", "triangle"], names) == {0, 2} and class_ids(None, names) is None
    with pytest.raises(ConfigError, match="unknown class 'hexagon'"):
        class_ids(["hexagon"], names)
    dets = np.array([[0, 0, 10, 10, 0.9, 1, 0], [20, 20, 30, 30, 0.9, 1, 1], [40, 40, 50, 50, 0.9, 1, 2]], np.float32)
    assert select_classes(dets, {0, 2})[:, 6].tolist() == [0, 2]
    # an object whose detected class flips: class-agnostic ByteTrack keeps its id (the track
    # takes the new class); per class, the new class starts a track of its own
    agnostic, per_class = make_tracker(), make_tracker(per_class=True)
    for f, cls in enumerate([0, 1, 1]):
        a = agnostic.update([[0, 0, 10, 10]], [0.9], [cls])
        p = per_class.update([[0, 0, 10, 10]], [0.9], [cls])
    assert [(t.id, t.cls) for t in a] == [(1, 1)]
    assert [(t.id, t.cls) for t in p] == [(2, 1)]


def test_track_outputs_never_replace_inputs(tmp_path):
    import cv2
    from mindyolox.errors import MindYOLOXError
    from mindyolox.track.run import plan_track
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    with pytest.raises(MindYOLOXError, match="would overwrite the input"):
        plan_track(str(clip), str(tmp_path))            # the drawn clip.mp4 would be the input
    plan = plan_track(str(clip), str(tmp_path / "out"))
    assert plan.stem == "clip" and plan.video == str(tmp_path / "out" / "clip.mp4")
