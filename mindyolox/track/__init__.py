"""Multi-object tracking on top of any detector the suite runs: ByteTrack (:mod:`.bytetrack`,
its Kalman filter :mod:`.kalman`), the frame loop writing MOTChallenge text and a drawn video
(:mod:`.run`), and MOTA / IDF1 / HOTA of a tracking result (:mod:`.metrics`)."""
