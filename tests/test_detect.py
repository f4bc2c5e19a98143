import numpy as np
import pytest

from edge.detect import Detection, Detector, DetectorSettings

LABELS = ("_silence_", "_unknown_", "yes", "no")


def _scores(yes=0.0, no=0.0):
    rest = 1.0 - yes - no
    return np.array([rest / 2, rest / 2, yes, no])


def _run(detector, frames):
    """frames: (time_s, yes, no); returns detections."""
    out = [detector.update(_scores(yes, no), t) for t, yes, no in frames]
    return [d for d in out if d is not None]


def test_one_word_one_event_at_the_crossing():
    detector = Detector(LABELS, DetectorSettings(threshold=0.6, average_ms=1, suppression_ms=500))
    frames = [(0.03 * i, 0.9 if 10 <= i < 40 else 0.0, 0.0) for i in range(60)]  # high for 0.9 s
    assert _run(detector, frames) == [Detection("yes", 0.9, 0.3)]


def test_label_rearms_only_after_falling_below_threshold():
    detector = Detector(LABELS, DetectorSettings(threshold=0.6, average_ms=1, suppression_ms=100))
    high = [(0.03 * i, 0.9, 0.0) for i in range(100)]  # 3 s above threshold: still one word
    assert len(_run(detector, high)) == 1
    again = [(3.0 + 0.03 * i, 0.9 if i >= 10 else 0.1, 0.0) for i in range(20)]
    assert [d.time_s for d in _run(detector, again)] == [pytest.approx(3.3)]


def test_suppression_blocks_a_second_label_too_soon():
    detector = Detector(LABELS, DetectorSettings(threshold=0.6, average_ms=1, suppression_ms=1000))
    frames = [(0.0, 0.9, 0.0), (0.5, 0.0, 0.9), (1.2, 0.0, 0.9)]
    assert [(d.label, d.time_s) for d in _run(detector, frames)] == [("yes", 0.0), ("no", 1.2)]


def test_averaging_ignores_a_single_spike():
    detector = Detector(LABELS, DetectorSettings(threshold=0.6, average_ms=100, suppression_ms=500))
    frames = [(0.01 * i, 0.95 if i == 20 else 0.1, 0.0) for i in range(50)]
    assert _run(detector, frames) == []
    steady = [(0.5 + 0.01 * i, 0.95, 0.0) for i in range(15)]
    # fires once 6 of the last 10 steps are high: (6 * 0.95 + 4 * 0.1) / 10 >= 0.6
    assert [d.time_s for d in _run(detector, steady)] == [pytest.approx(0.55)]


def test_per_label_thresholds():
    settings = DetectorSettings(threshold=0.5, average_ms=1, suppression_ms=0, thresholds={"yes": 0.95})
    detector = Detector(LABELS, settings)
    assert _run(detector, [(0.0, 0.9, 0.0), (0.1, 0.0, 0.0), (0.2, 0.0, 0.6)]) == [Detection("no", 0.6, 0.2)]


def test_reset_forgets_history():
    detector = Detector(LABELS, DetectorSettings(threshold=0.6, average_ms=1, suppression_ms=10_000))
    assert len(_run(detector, [(0.0, 0.9, 0.0)])) == 1
    detector.reset()
    assert len(_run(detector, [(0.1, 0.9, 0.0)])) == 1
