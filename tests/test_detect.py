import numpy as np
import pytest

from edge.detect import Detection, Detector, DetectorSettings

LABELS = ("_silence_", "_unknown_", "yes", "no")
STEP_S = 0.02


def _scores(yes=0.0, no=0.0):
    rest = 1.0 - yes - no
    return np.array([rest / 2, rest / 2, yes, no])


def _run(detector, steps, start=0):
    """steps: (yes, no) per model step; returns (label, step index) of every event, and checks that each
    event carries the time of the step that fired it."""
    events = []
    for i, (yes, no) in enumerate(steps, start):
        time_s = (i + 1) * STEP_S
        detection = detector.update(_scores(yes, no), time_s)
        if detection is not None:
            assert detection.time_s == time_s
            events.append((detection.label, i))
    return events


def _settings(**values):
    return DetectorSettings(**{"threshold": 0.6, "average_ms": STEP_S * 1000, "suppression_ms": 500, **values})


def test_one_word_one_event_at_the_crossing():
    detector = Detector(LABELS, _settings(), STEP_S)
    steps = [(0.9 if 10 <= i < 40 else 0.0, 0.0) for i in range(60)]
    assert _run(detector, steps) == [("yes", 10)]


def test_no_event_before_the_averaging_window_is_full():
    """After a start or a reset, one high step must not fire a 300 ms rule on its own."""
    detector = Detector(LABELS, _settings(average_ms=300), STEP_S)
    assert _run(detector, [(1.0, 0.0)] * 14) == []  # 14 of the 15 steps
    detector.reset()
    assert _run(detector, [(1.0, 0.0)] * 20) == [("yes", 14)]


def test_windows_are_counted_in_steps_whatever_the_clock_says():
    """A 300 ms window is 15 steps of 20 ms even where a clock that adds up step lengths has drifted by
    a rounding error (cut by float times, the window held 15 or 16 steps)."""
    settings = _settings(threshold=0.5, average_ms=300)
    steps = [0.0] * 20 + [0.95] * 10
    for start_s in (0.0, 3.46, 1234.5):
        detector, time_s, fired = Detector(LABELS, settings, STEP_S), start_s, []
        for i, yes in enumerate(steps):
            time_s += STEP_S
            if detector.update(_scores(yes), time_s) is not None:
                fired.append(i)
        assert fired == [27]  # 8 high steps of 15: 8 * 0.95 / 15 = 0.507; of 16 it would be 0.475


def test_a_label_crossing_during_suppression_does_not_fire_when_it_ends():
    detector = Detector(LABELS, _settings(suppression_ms=1000), STEP_S)
    steps = [(0.9, 0.0)] * 5 + [(0.0, 0.9)] * 60  # "no" crosses 0.1 s after "yes" and stays high
    assert _run(detector, steps) == [("yes", 0)]
    later = [(0.0, 0.0)] * 5 + [(0.0, 0.9)] * 5  # a new "no", after it fell: fires at once
    assert _run(detector, later, start=65) == [("no", 70)]


def test_suppression_lets_a_new_word_through_after_it_ends():
    detector = Detector(LABELS, _settings(suppression_ms=1000), STEP_S)
    steps = [(0.9, 0.0)] + [(0.0, 0.0)] * 59 + [(0.0, 0.9)]
    assert _run(detector, steps) == [("yes", 0), ("no", 60)]


def test_a_dip_inside_a_word_does_not_fire_it_twice():
    detector = Detector(LABELS, _settings(threshold=0.95, suppression_ms=100), STEP_S)
    steps = [(0.97, 0.0)] * 20 + [(0.93, 0.0)] * 3 + [(0.97, 0.0)] * 20  # dips to just under threshold
    assert _run(detector, steps) == [("yes", 0)]
    again = [(0.5, 0.0)] * 3 + [(0.97, 0.0)] * 3  # falls well below the threshold: a new word
    assert _run(detector, again, start=43) == [("yes", 46)]


def test_release_one_rearms_as_soon_as_the_score_falls_below_threshold():
    detector = Detector(LABELS, _settings(threshold=0.95, suppression_ms=0, release=1.0), STEP_S)
    steps = [(0.97, 0.0)] * 3 + [(0.93, 0.0)] + [(0.97, 0.0)] * 3
    assert _run(detector, steps) == [("yes", 0), ("yes", 4)]


def test_averaging_ignores_a_single_spike():
    detector = Detector(LABELS, _settings(average_ms=200), STEP_S)
    assert _run(detector, [(0.95 if i == 20 else 0.1, 0.0) for i in range(50)]) == []
    # fires once 6 of the last 10 steps are high: (6 * 0.95 + 4 * 0.1) / 10 >= 0.6
    assert _run(detector, [(0.95, 0.0)] * 15, start=50) == [("yes", 55)]


def test_per_label_thresholds():
    detector = Detector(LABELS, _settings(threshold=0.5, suppression_ms=0, thresholds={"yes": 0.95}), STEP_S)
    assert _run(detector, [(0.9, 0.0), (0.0, 0.0), (0.0, 0.6)]) == [("no", 2)]


def test_reset_forgets_history():
    detector = Detector(LABELS, _settings(suppression_ms=10_000), STEP_S)
    assert _run(detector, [(0.9, 0.0)]) == [("yes", 0)]
    detector.reset()
    assert _run(detector, [(0.9, 0.0)]) == [("yes", 0)]


def test_sustained_rule_fires_on_a_steady_middling_score_and_reports_its_average():
    settings = _settings(threshold=0.9, average_ms=100, sustained_ms=500, sustained_threshold=0.6)
    detector = Detector(LABELS, settings, STEP_S)
    scores = [detector.update(_scores(0.7), (i + 1) * STEP_S) for i in range(40)]  # never 0.9, steady 0.7
    fired = [(i, d) for i, d in enumerate(scores) if d is not None]
    assert fired == [(24, Detection("yes", pytest.approx(0.7), 25 * STEP_S))]  # once its 25 steps are full
    assert _run(Detector(LABELS, _settings(threshold=0.9, average_ms=100), STEP_S), [(0.7, 0.0)] * 40) == []


def test_sustained_rule_waits_for_its_average_and_ignores_a_short_burst():
    settings = _settings(threshold=0.95, average_ms=100, sustained_ms=500, sustained_threshold=0.6)
    burst = [(0.8 if 30 <= i < 40 else 0.1, 0.0) for i in range(100)]  # 0.2 s at 0.8
    assert _run(Detector(LABELS, settings, STEP_S), burst) == []
    # from silence, a steady 0.8 lifts the 25-step average over 0.6 once 19 of its steps are 0.8
    steady = [(0.8 if i >= 30 else 0.0, 0.0) for i in range(100)]
    assert _run(Detector(LABELS, settings, STEP_S), steady) == [("yes", 48)]


def test_quick_rule_still_fires_first_when_the_sustained_rule_is_on():
    settings = _settings(suppression_ms=1500, sustained_ms=1000, sustained_threshold=0.6)
    steps = [(0.9 if i >= 60 else 0.0, 0.0) for i in range(100)]
    assert _run(Detector(LABELS, settings, STEP_S), steps) == [("yes", 60)]


@pytest.mark.parametrize("values, message", [
    ({"average_ms": 0}, "average_ms must be more than 0"),
    ({"threshold": 1.5}, "threshold must be in"),
    ({"suppression_ms": -1}, "suppression_ms must be at least 0"),
    ({"release": 2.0}, "release must be in"),
])
def test_impossible_settings_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        _settings(**values)


def test_thresholds_for_labels_the_model_lacks_are_refused():
    with pytest.raises(ValueError, match="not keywords of the model"):
        Detector(LABELS, _settings(thresholds={"stop": 0.9}), STEP_S)
