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


def test_sustained_rule_fires_on_a_steady_middling_score_and_reports_its_average():
    settings = DetectorSettings(threshold=0.9, average_ms=100, suppression_ms=1500,
                                sustained_ms=500, sustained_threshold=0.6)
    frames = [(0.01 * i, 0.7, 0.0) for i in range(80)]  # 0.7 for 0.8 s: never 0.9, steady above 0.6
    assert _run(Detector(LABELS, settings), frames) == [Detection("yes", pytest.approx(0.7), 0.0)]
    off = DetectorSettings(threshold=0.9, average_ms=100, suppression_ms=1500)
    assert _run(Detector(LABELS, off), frames) == []


def test_sustained_rule_waits_for_its_average_and_ignores_a_short_burst():
    settings = DetectorSettings(threshold=0.95, average_ms=100, suppression_ms=1500,
                                sustained_ms=500, sustained_threshold=0.6)
    burst = [(0.01 * i, 0.8 if 10 <= i < 30 else 0.1, 0.0) for i in range(100)]  # 0.2 s at 0.8
    assert _run(Detector(LABELS, settings), burst) == []
    # from silence, a steady 0.8 lifts the 0.5 s average over 0.6 once 38 of its 50 steps are 0.8
    steady = [(0.01 * i, 0.8 if i >= 50 else 0.0, 0.0) for i in range(150)]
    (event,) = _run(Detector(LABELS, settings), steady)
    assert event.label == "yes" and event.time_s == pytest.approx(0.87)


def test_quick_rule_still_fires_first_when_the_sustained_rule_is_on():
    settings = DetectorSettings(threshold=0.6, average_ms=1, suppression_ms=1500,
                                sustained_ms=1000, sustained_threshold=0.6)
    frames = [(0.03 * i, 0.9 if i >= 10 else 0.0, 0.0) for i in range(60)]
    assert _run(Detector(LABELS, settings), frames) == [Detection("yes", 0.9, 0.3)]
