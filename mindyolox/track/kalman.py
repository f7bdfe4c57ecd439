"""The constant-velocity Kalman filter of SORT / DeepSORT / ByteTrack, on one box.

State (8 numbers): ``(cx, cy, a, h, vcx, vcy, va, vh)`` -- box centre (px), aspect ratio
``a = w / h``, height (px) and their velocities (per frame). Measurement (4 numbers):
``(cx, cy, a, h)``. Motion: ``x' = x + v`` (one frame, ``dt = 1``), velocities constant.

Noise, as ByteTrack defines it (relative to the box height ``h``, ``wp = 1/20`` the position
weight, ``wv = 1/160`` the velocity weight):

- initial covariance (:meth:`KalmanFilter.initiate`): standard deviations
  ``(2wp h, 2wp h, 1e-2, 2wp h, 10wv h, 10wv h, 1e-5, 10wv h)``, velocities 0;
- process noise ``Q`` per :meth:`~KalmanFilter.predict`: ``(wp h, wp h, 1e-2, wp h, wv h, wv h,
  1e-5, wv h)`` with ``h`` the predicted-from state's height;
- measurement noise ``R`` (:meth:`~KalmanFilter.project`): ``(wp h, wp h, 1e-1, wp h)``.

Numpy only; float64 throughout.
"""
import numpy as np

__all__ = ["KalmanFilter", "xyxy_to_xyah", "xyah_to_xyxy"]

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160


def xyxy_to_xyah(box):
    """``(x1, y1, x2, y2)`` px -> ``(cx, cy, w / h, h)``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    return np.array([x1 + w / 2, y1 + h / 2, w / max(h, 1e-9), h], np.float64)


def xyah_to_xyxy(xyah):
    """``(cx, cy, a, h)`` -> ``(x1, y1, x2, y2)`` px (the first four numbers of a state)."""
    cx, cy, a, h = (float(v) for v in xyah[:4])
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float64)


class KalmanFilter:
    """Constant-velocity Kalman filter on ``(cx, cy, a, h)`` (module doc). Stateless: every
    method takes and returns ``mean`` float64 ``[8]`` and ``covariance`` float64 ``[8, 8]``."""

    def __init__(self):
        self.motion = np.eye(8)
        self.motion[:4, 4:] = np.eye(4)          # x' = x + v (dt = 1 frame)
        self.observe = np.eye(4, 8)              # z = first four state numbers

    @staticmethod
    def initiate(measurement):
        """New track from one measurement ``(cx, cy, a, h)``: its mean (velocities 0) and
        covariance."""
        z = np.asarray(measurement, np.float64)
        h = z[3]
        std = np.array([2 * STD_WEIGHT_POSITION * h, 2 * STD_WEIGHT_POSITION * h, 1e-2, 2 * STD_WEIGHT_POSITION * h,
                        10 * STD_WEIGHT_VELOCITY * h, 10 * STD_WEIGHT_VELOCITY * h, 1e-5,
                        10 * STD_WEIGHT_VELOCITY * h])
        return np.concatenate([z, np.zeros(4)]), np.diag(std ** 2)

    def predict(self, mean, covariance):
        """One frame ahead: ``(F mean, F P F^T + Q)`` with ``Q`` from the state's height."""
        h = mean[3]
        std = np.array([STD_WEIGHT_POSITION * h, STD_WEIGHT_POSITION * h, 1e-2, STD_WEIGHT_POSITION * h,
                        STD_WEIGHT_VELOCITY * h, STD_WEIGHT_VELOCITY * h, 1e-5, STD_WEIGHT_VELOCITY * h])
        mean = self.motion @ mean
        covariance = self.motion @ covariance @ self.motion.T + np.diag(std ** 2)
        return mean, covariance

    def project(self, mean, covariance):
        """The state in measurement space: ``(H mean [4], H P H^T + R [4, 4])``."""
        h = mean[3]
        std = np.array([STD_WEIGHT_POSITION * h, STD_WEIGHT_POSITION * h, 1e-1, STD_WEIGHT_POSITION * h])
        return self.observe @ mean, self.observe @ covariance @ self.observe.T + np.diag(std ** 2)

    def update(self, mean, covariance, measurement):
        """Correct a (predicted) state with a measurement ``(cx, cy, a, h)``: gain
        ``K = P H^T S^-1`` (``S`` the projected covariance), ``mean + K (z - H mean)``,
        ``P - K S K^T``."""
        projected, s = self.project(mean, covariance)
        gain = np.linalg.solve(s, (covariance @ self.observe.T).T).T   # S symmetric: (S^-1 H P)^T
        innovation = np.asarray(measurement, np.float64) - projected
        return mean + gain @ innovation, covariance - gain @ s @ gain.T
