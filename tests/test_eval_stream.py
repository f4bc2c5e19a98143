import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from conftest import RATE, tone_stream
from edge.detect import DetectorSettings
from edge.runtime import Recognizer
from kws.cli import main
from kws.calibrate import calibrate, write_thresholds
from kws.eval_audio import read_truth, write_truth
from kws.eval_scoring import StepScores, Word, detect, miss_causes, score_events
from kws.eval_stream import describe, report, table

LABELS = ("_silence_", "_unknown_", "yes", "no", "up", "go")
STEP_S = 0.03


def test_each_case_of_matching_is_counted_exactly():
    words = [Word("yes", 1.0, 1.5), Word("no", 3.0, 3.4), Word("go", 3.6, 4.0),  # no and go close together
             Word("_unknown_", 6.0, 6.5), Word("up", 8.0, 8.5)]
    events = [("yes", 1.6),  # matched
              ("yes", 1.7),  # a second event for the same word: a false alarm
              ("yes", 2.51),  # just past the word's end + 1 s: a false alarm
              ("go", 4.2),  # in reach of both "no" and "go": goes to "go"
              ("no", 4.3),  # then "no", still in reach, is matched too
              ("up", 6.3),  # during another word: a false alarm
              ("go", 8.9)]  # "up" answered with the wrong label
    result = score_events(events, words, seconds=3600)
    assert (result.keywords, result.matched, result.wrong, result.missed, result.false_alarms) == (4, 3, 1, 0, 3)
    assert result.false_alarms_per_hour == 3
    yes, up, go = result.per_label["yes"], result.per_label["up"], result.per_label["go"]
    assert (yes.spoken, yes.matched, yes.false_alarms) == (1, 1, 2)
    assert (up.spoken, up.matched, up.wrong, up.missed, up.false_alarms) == (1, 0, 1, 0, 1)
    assert (go.matched, go.false_alarms) == (1, 0)
    assert yes.latencies_s == pytest.approx((0.1,))
    assert score_events([], words, 3600).missed == 4


def _scores(bumps: list[tuple[str, float, float]], seconds: float) -> StepScores:
    """Made-up runtime output: silence everywhere, and each (label, time, height) a 0.3 s plateau."""
    times = np.arange(1, int(seconds / STEP_S) + 1) * STEP_S
    p = np.zeros((len(times), len(LABELS)))
    p[:, 0] = 1.0
    for label, time_s, height in bumps:
        inside = (times >= time_s) & (times < time_s + 0.3)
        p[inside] = (1 - height) / (len(LABELS) - 1)
        p[inside, LABELS.index(label)] = height
    return StepScores(LABELS, times, p, seconds, DetectorSettings(0.8, 90.0, 1000.0), STEP_S)


def test_detection_on_known_scores_gives_the_expected_counts():
    words = [Word("yes", 1.0, 1.5), Word("no", 5.0, 5.5), Word("up", 9.0, 9.4), Word("go", 13.0, 13.5)]
    scores = _scores([("yes", 1.5, 0.95), ("no", 5.6, 0.6), ("go", 9.5, 0.9), ("up", 20.0, 0.99),
                      ("go", 13.4, 0.85)], seconds=30.0)
    result = score_events(detect(scores, scores.settings), words, scores.seconds)
    # yes and go found, no too quiet for 0.8, up answered as go, one false alarm far from any word
    assert (result.matched, result.wrong, result.missed, result.false_alarms) == (2, 1, 1, 1)
    lower = score_events(detect(scores, scores.settings.with_threshold(0.5)), words, scores.seconds)
    assert (lower.matched, lower.wrong, lower.missed, lower.false_alarms) == (3, 1, 0, 1)
    figures = report(result, scores.settings, scores)
    assert figures["overall"]["matched_percent"] == 50.0
    assert list(figures["per_keyword"]) == ["yes", "no", "up", "go"]
    assert figures["per_keyword"]["up"]["wrong"] == 1
    # "no" scored 0.6, under the threshold: the model's miss, and its own row says so
    assert figures["per_keyword"]["no"]["missed_because"] == {"never_scored": 1, "not_held": 0, "suppressed": 0}
    assert figures["overall"]["missed_because"] == {"never_scored": 1, "not_held": 0, "suppressed": 0}
    rows = {line.split()[0]: line for line in table(figures).splitlines()[1:]}
    assert "1/0/0" in rows["no"] and "0/0/0" in rows["yes"] and "1/0/0" in rows["all"]


def test_each_miss_is_put_down_to_the_model_the_smoothing_or_the_detector():
    scores = _scores([("yes", 1.5, 0.6),  # never scores 0.8: the model's miss
                      ("up", 13.5, 0.95),  # matched: not a miss at all
                      ("go", 8.9, 0.95)], seconds=20.0)
    scores.probabilities[int(5.6 / STEP_S), scores.labels.index("no")] = 0.95  # one step: not its 90 ms average
    words = [Word("yes", 1.0, 1.5), Word("no", 5.0, 5.5), Word("up", 13.0, 13.5)]
    result = score_events(detect(scores, scores.settings), words, scores.seconds)
    assert result.matched == 1 and [w.label for w in result.missed_words] == ["yes", "no"]
    causes = miss_causes(scores, result.missed_words, scores.settings)
    assert causes["yes"] == {"never_scored": 1, "not_held": 0, "suppressed": 0}
    assert causes["no"] == {"never_scored": 0, "not_held": 1, "suppressed": 0}
    assert causes["up"] == causes["go"] == {"never_scored": 0, "not_held": 0, "suppressed": 0}
    # "go" said twice in a row: the event for the first is too close for the second to fire
    result = score_events(detect(scores, scores.settings), [Word("go", 8.6, 8.8), Word("go", 9.1, 9.3)],
                          scores.seconds)
    assert result.matched == 1 and result.missed_words == (Word("go", 9.1, 9.3),)
    causes = miss_causes(scores, result.missed_words, scores.settings)
    assert causes["go"] == {"never_scored": 0, "not_held": 0, "suppressed": 1}


@pytest.mark.parametrize("first_step", [0, 60])  # the stream's first step (the average not yet full), and later
def test_a_miss_is_not_held_exactly_when_the_detector_s_own_average_gives_no_event(first_step):
    """"yes" scored 0.95 for `held` steps, alone: the detector fires once it is held for its whole 90 ms
    average (3 steps) and compares nothing before that window is full; "not_held" says the same of it."""
    yes = LABELS.index("yes")
    for held in range(1, 6):
        scores = _scores([], seconds=4.0)
        scores.probabilities[first_step:first_step + held] = 0.01
        scores.probabilities[first_step:first_step + held, yes] = 0.95
        word = Word("yes", scores.times_s[first_step] - STEP_S, scores.times_s[first_step + held - 1])
        fired = bool(detect(scores, scores.settings))
        assert fired == (held >= 3), held
        # taken for a miss whether it fired or not: the average reached the threshold exactly when it fired
        assert miss_causes(scores, (word,), scores.settings)["yes"] == \
            {"never_scored": 0, "not_held": int(not fired), "suppressed": int(fired)}, held


@pytest.mark.parametrize("budget", [0.0, 60.0, 600.0])
def test_calibration_meets_its_budget_on_its_negative_audio(budget):
    rng = np.random.default_rng(0)
    bumps = [(str(rng.choice(LABELS[2:])), t, float(rng.uniform(0.3, 0.99))) for t in np.arange(2.0, 598.0, 2.0)]
    negatives = _scores(bumps, seconds=600.0)
    thresholds = calibrate(negatives, budget)
    assert set(thresholds) == set(LABELS[2:])
    fired = detect(negatives, DetectorSettings(0.8, 90.0, 1000.0, thresholds))
    assert len(fired) * 3600 / negatives.seconds <= budget
    if budget == 600.0:  # a generous budget lets thresholds come down
        assert min(thresholds.values()) < max(calibrate(negatives, 60.0).values())


def test_thresholds_round_trip_through_the_onnx_metadata(tiny_export, tmp_path):
    report_, _ = tiny_export
    for path in (report_.window, report_.stream):
        shutil.copy(path, tmp_path / path.name)
    model = tmp_path / report_.window.name
    write_thresholds(model, {"yes": 0.61, "no": 0.72, "stop": 0.93})
    settings = Recognizer.from_onnx(model).settings
    assert dict(settings.thresholds) == {"yes": 0.61, "no": 0.72, "stop": 0.93}
    assert settings.threshold_of("no") == 0.72
    assert (settings.average_ms, settings.suppression_ms) == (200.0, 1500.0)  # the rest is kept
    assert Recognizer.from_onnx(model, threshold=0.5).settings.threshold_of("no") == 0.5  # --threshold wins
    assert Recognizer.from_onnx(model).streaming  # the metadata still names the streaming twin


def test_sustained_rule_is_read_from_the_metadata_and_kept_by_threshold(tiny_export, tmp_path):
    from kws.export import update_metadata

    report_, _ = tiny_export
    for path in (report_.window, report_.stream):
        shutil.copy(path, tmp_path / path.name)
    model = tmp_path / report_.window.name
    update_metadata(model, lambda props: {**props, "detection": json.dumps(
        {"threshold": 0.95, "average_ms": 300, "suppression_ms": 1500, "sustained_ms": 1000,
         "sustained_threshold": 0.65})})
    settings = Recognizer.from_onnx(model).settings
    assert (settings.threshold, settings.sustained_ms, settings.sustained_threshold) == (0.95, 1000, 0.65)
    assert Recognizer.from_onnx(model, threshold=0.5).settings.sustained_ms == 1000
    assert "or 0.65 on 1000 ms" in describe(settings)


def test_truth_csv_round_trip_and_errors(tmp_path):
    words = [Word("yes", 1.0, 1.5), Word("_unknown_", 3.25, 3.75)]
    write_truth(tmp_path / "truth.csv", words)
    assert read_truth(tmp_path / "truth.csv") == words


@pytest.mark.parametrize("content, says", [
    ("word,when\nyes,1\n", "must be a CSV with columns label,start_s,end_s"),
    ("label,start_s,end_s\nyes,one,2\n", "must be a CSV with columns label,start_s,end_s"),
    ("label,start_s,end_s\nyes,2.0,1.5\n", "has a word that ends before it starts"),
], ids=["other-columns", "not-a-number", "ends-before-it-starts"])
def test_a_bad_truth_csv_is_a_one_line_error(tiny_export, tmp_path, capsys, content, says):
    """With a real model and recording, so that the refusal can only come from the CSV."""
    audio, _ = tone_stream([("yes", 0.5)], seconds=2.0)
    sf.write(tmp_path / "talk.wav", audio, RATE)
    (tmp_path / "bad.csv").write_text(content)
    assert main(["eval-stream", "--model", str(tiny_export[0].window), "--wav", str(tmp_path / "talk.wav"),
                 "--truth", str(tmp_path / "bad.csv"), "--no-progress"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"kws: error: truth file {tmp_path / 'bad.csv'}") and says in line


def test_eval_stream_and_calibrate_from_the_command_line(tiny_export, tmp_path, capsys):
    report_, _ = tiny_export
    for path in (report_.window, report_.stream):
        shutil.copy(path, tmp_path / path.name)
    model = tmp_path / report_.window.name
    said = [("yes", 1.0), ("no", 4.0), ("happy", 7.0), ("stop", 10.0)]
    audio, ends = tone_stream(said, seconds=13.0)
    sf.write(tmp_path / "talk.wav", audio, RATE)
    write_truth(tmp_path / "truth.csv", [Word("_unknown_" if w == "happy" else w, s, e)
                                         for (w, s), e in zip(said, ends)])
    out = tmp_path / "eval"
    assert main(["eval-stream", "--model", str(model), "--wav", str(tmp_path / "talk.wav"),
                 "--truth", str(tmp_path / "truth.csv"), "--out", str(out), "--no-progress"]) == 0
    figures = json.loads((out / "kws.stream_report.json").read_text())
    assert figures["overall"]["spoken"] == 3
    # the same figures as edge's own Recognizer gives on the file
    recognizer = Recognizer.from_onnx(model)
    events = [(d.label, d.time_s) for d in recognizer.process(np.concatenate([audio, np.zeros(RATE // 2)]))]
    expected = score_events(events, read_truth(tmp_path / "truth.csv"), len(audio) / RATE)
    assert (figures["overall"]["matched"], figures["overall"]["false_alarms"]) == (expected.matched,
                                                                                   expected.false_alarms)
    assert main(["eval-stream", "--model", str(model), "--wav", str(tmp_path / "talk.wav"), "--threshold", "0.5",
                 "--truth", str(tmp_path / "truth.csv"), "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "kws.stream_report.json").read_text())["overall"]["matched"] == 3
    assert (out / "kws.det.png").stat().st_size > 0 and (out / "kws.timeline.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "matched" in printed and "all" in printed

    negative, _ = tone_stream([("happy", 1.0), ("happy", 5.0)], seconds=9.0)
    sf.write(tmp_path / "quiet.wav", negative, RATE)
    assert main(["calibrate", "--model", str(model), "--negatives", str(tmp_path / "quiet.wav"),
                 "--budget", "0", "--no-progress"]) == 0
    assert "thresholds written" in capsys.readouterr().out
    assert set(Recognizer.from_onnx(model).settings.thresholds) == {"yes", "no", "stop"}


def test_eval_stream_needs_one_source(tiny_export, capsys):
    model = str(tiny_export[0].window)
    assert main(["eval-stream", "--model", model]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["calibrate", "--model", model, "--budget", "-1", "--negatives", "x.wav"]) == 2


def _split_audio():
    import torch

    from kws.data import SplitAudio

    rng = np.random.default_rng(1)
    clips = np.zeros((6, RATE), np.float32)
    for row in range(6):
        clips[row, 4000:10000] = rng.normal(0, 0.05 * (row + 1), 6000)  # words at very different levels
    labels = torch.tensor([2, 3, 2, 3, 1, 1])
    return SplitAudio(torch.from_numpy(clips), labels, torch.from_numpy(rng.normal(0, 0.3, 20 * RATE).astype(np.float32)), [])


def test_built_streams_put_words_at_the_chosen_signal_to_noise_ratio():
    from kws.config import Config
    from kws.eval_audio import build_stream

    labels = ("_silence_", "_unknown_", "yes", "no")
    audio, words = build_stream(_split_audio(), labels, Config(), 60.0, seed=0, snr_db=(10.0, 20.0),
                                noise_gain=(0.0, 0.1))
    assert len(words) >= 15 and {w.label for w in words} == {"yes", "no", "_unknown_"}
    noise_rms = 0.3 * 0.1
    for word in words:
        start = int(word.start_s * RATE) + 4000  # where the loud part of every clip lies
        mixed = audio[start:start + 6000]
        speech_rms = np.sqrt(max(np.mean(mixed ** 2) - noise_rms ** 2, 0))  # noise and speech add in power
        assert 9.0 <= 20 * np.log10(speech_rms / noise_rms) <= 21.0
    negative, negative_words = build_stream(_split_audio(), labels, Config(), 60.0, seed=0, keywords=False)
    assert negative_words and all(w.label == "_unknown_" for w in negative_words)
