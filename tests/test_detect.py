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
    """Settings whose events are reported at the crossing (peak_ms 0), unless a test asks otherwise."""
    return DetectorSettings(**{"threshold": 0.6, "average_ms": STEP_S * 1000, "suppression_ms": 500, "peak_ms": 0,
                               **values})


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


def _reported(detector, steps):
    """(label, step index, score) of every event, as update() reports them."""
    out = []
    for i, (yes, no) in enumerate(steps):
        detection = detector.update(_scores(yes, no), (i + 1) * STEP_S)
        if detection is not None:
            out.append((detection.label, i, round(detection.score, 6)))
    return out


def test_an_event_is_reported_when_its_score_stops_rising_with_that_peak():
    """The score says how sure the model was of the word, not how far it had got when it crossed."""
    detector = Detector(LABELS, _settings(peak_ms=300), STEP_S)
    steps = [(0.0, 0.0)] * 5 + [(0.7, 0.0), (0.8, 0.0), (0.95, 0.0), (0.9, 0.0)] + [(0.0, 0.0)] * 20
    assert _reported(detector, steps) == [("yes", 8, 0.95)]  # crossed at step 5, peaked at 7, fell at 8
    crossing = Detector(LABELS, _settings(peak_ms=0), STEP_S)
    assert _reported(crossing, steps) == [("yes", 5, 0.7)]


def test_an_event_is_reported_peak_ms_after_its_crossing_at_the_latest():
    detector = Detector(LABELS, _settings(peak_ms=100), STEP_S)  # 5 steps
    rising = [(0.0, 0.0)] * 3 + [(0.6 + 0.01 * i, 0.0) for i in range(30)]
    assert _reported(detector, rising) == [("yes", 8, 0.65)]


def test_peak_ms_beyond_the_suppression_is_cut_to_it_and_the_next_word_still_fires():
    detector = Detector(LABELS, _settings(peak_ms=5000, suppression_ms=200), STEP_S)  # 10 steps
    steps = [(0.9, 0.0)] * 30 + [(0.0, 0.0)] * 5 + [(0.0, 0.9)] * 3 + [(0.0, 0.0)] * 20
    assert _reported(detector, steps) == [("yes", 9, 0.9), ("no", 38, 0.9)]  # "no" held 3 steps from 35


def test_which_events_fire_does_not_depend_on_peak_ms():
    rng = np.random.default_rng(5)
    steps = []
    for _ in range(200):  # words of random length, height and shape, some close together, among quiet
        level, length, which = rng.uniform(0.3, 1.0), int(rng.integers(2, 40)), int(rng.integers(2))
        shape = level * np.sin(np.linspace(0, np.pi, length)) ** rng.uniform(0.2, 3)
        steps += [(v, 0.0) if which == 0 else (0.0, v) for v in shape]
        steps += [(0.0, 0.0)] * int(rng.integers(0, 30))
    settings = dict(average_ms=60, suppression_ms=400, threshold=0.5)
    at_crossing = _reported(Detector(LABELS, _settings(**settings), STEP_S), steps)
    at_peak = _reported(Detector(LABELS, _settings(**settings, peak_ms=300), STEP_S), steps)
    assert len(at_crossing) > 20
    assert [label for label, _, _ in at_peak] == [label for label, _, _ in at_crossing]
    for (_, crossed, score), (_, reported, peak) in zip(at_crossing, at_peak):
        assert crossed <= reported <= crossed + 15 and peak >= score


def test_flush_reports_the_event_still_waiting_for_its_peak():
    detector = Detector(LABELS, _settings(peak_ms=300), STEP_S)
    assert _reported(detector, [(0.0, 0.0)] * 3 + [(0.7, 0.0), (0.8, 0.0)]) == []
    assert detector.flush(1.0) == Detection("yes", pytest.approx(0.8), 1.0)
    assert detector.flush(1.0) is None


def test_smoothed_scores_are_the_average_the_threshold_is_compared_with():
    detector = Detector(LABELS, _settings(average_ms=3 * STEP_S * 1000), STEP_S)
    for yes in (0.3, 0.6, 0.9, 0.0):
        detector.update(_scores(yes), 0.0)
    assert detector.smoothed[LABELS.index("yes")] == pytest.approx(0.5)  # (0.6 + 0.9 + 0.0) / 3


@pytest.mark.parametrize("values, message", [
    ({"average_ms": 0}, "average_ms must be more than 0"),
    ({"threshold": 1.5}, "threshold must be in"),
    ({"suppression_ms": -1}, "suppression_ms must be at least 0"),
    ({"release": 2.0}, "release must be in"),
    ({"peak_ms": -1}, "peak_ms must be at least 0"),
])
def test_impossible_settings_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        _settings(**values)


def test_thresholds_for_labels_the_model_lacks_are_refused():
    with pytest.raises(ValueError, match="not keywords of the model"):
        Detector(LABELS, _settings(thresholds={"stop": 0.9}), STEP_S)
