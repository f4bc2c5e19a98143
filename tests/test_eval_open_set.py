"""The open-set measurement on a small tone model: planted detections in negative audio are false alarms,
planted keywords among other words are accepted, and commands among other speech are matched."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from kws.cli import main
from kws.data import hash_split, held_out_word
from kws.eval_open_set import open_set_report, score_open_set

from conftest import RATE, WORD_TONES, tone_clip, tone_stream


def _speakers(rule, count: int) -> list[str]:
    names = (f"{i:08x}" for i in range(0x3000, 0x4000))
    return [name for name in names if rule(name)][:count]


@pytest.fixture(scope="module")
def other_speech(tmp_path_factory):
    """Held-out "speech": noise sentences, "happy" tones as another word, and "bogus", another word whose
    recordings are in fact the keyword "yes" (a planted detection)."""
    root = tmp_path_factory.mktemp("other")
    rng = np.random.default_rng(1)
    for speaker in _speakers(lambda s: hash_split(f"{s}_nohash_", 50, 50) == "validation", 2):
        folder = root / "sentences" / "validation" / speaker
        folder.mkdir(parents=True)
        sf.write(folder / "a.wav", rng.normal(0, 0.01, 6 * RATE).astype(np.float32), RATE)
    assert not held_out_word("happy", 5.0) and not held_out_word("bogus", 5.0)
    for speaker in _speakers(lambda s: hash_split(f"{s}_nohash_", 20, 20) == "validation", 3):
        for word, tone in (("happy", "happy"), ("bogus", "yes")):
            (root / "words" / word).mkdir(parents=True, exist_ok=True)
            sf.write(root / "words" / word / f"{speaker}_nohash_0.wav", tone_clip(rng, *WORD_TONES[tone]), RATE)
    return root


@pytest.fixture(scope="module")
def negatives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("negatives")
    quiet, _ = tone_stream([], 20.0, seed=3)
    planted, _ = tone_stream([("yes", 9.0)], 20.0, seed=4)
    sf.write(folder / "quiet.wav", quiet, RATE)
    sf.write(folder / "planted.wav", planted, RATE)
    return folder


def test_planted_words_count_as_false_alarms_and_commands_as_matches(tiny_export, tiny_data, other_speech,
                                                                   negatives):
    model = tiny_export[0].window
    scores = score_open_set(model, tiny_data, other_speech, "validation",
                            (negatives / "quiet.wav", negatives / "planted.wav"), minutes=1.0, progress=False)
    figures = open_set_report(scores)
    speech = figures["speech"]
    assert speech[str(negatives / "planted.wav")]["false_alarms"] == 1
    assert speech[str(negatives / "planted.wav")]["fired_as"] == {"yes": 1}
    assert speech[str(negatives / "quiet.wav")]["false_alarms"] == 0
    assert speech["sentences"]["false_alarms"] == 0 and speech["sentences"]["minutes"] > 0.2
    assert speech["all"]["false_alarms"] == sum(row["false_alarms"] for key, row in speech.items() if key != "all")
    assert figures["words_in_a_row"]["words"]["false_alarms"] == 3  # the three "bogus" words, one after another

    words = figures["words"]
    assert words["per_word"]["bogus"]["accepted"] == 3 and words["per_word"]["bogus"]["fired_as"] == {"yes": 3}
    assert words["per_word"]["happy"]["accepted"] == 0
    source = words["per_source"]["words"]
    assert (source["clips"], source["accepted"], source["accepted_percent"]) == (6, 3, 50.0)
    assert words["per_word"]["bogus"]["classified_as"] == {"yes": 3}  # the clip classifier hears "yes" too
    assert source["called_command"] == 3 + words["per_word"]["happy"]["called_command"]
    assert words["per_source"]["speech_commands"]["clips"] == 4  # the data set's own validation "happy" clips

    stream = figures["stream"]["overall"]
    assert stream["spoken"] >= 5 and figures["stream"]["other_words"] >= 5
    assert stream["matched"] >= 0.9 * stream["spoken"] and stream["wrong"] == 0


def test_a_stricter_threshold_replays_without_running_the_model_again(tiny_export, tiny_data, other_speech,
                                                                     monkeypatch):
    import onnxruntime

    scores = score_open_set(tiny_export[0].window, tiny_data, other_speech, minutes=0.5, progress=False)
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", lambda *a, **k: pytest.fail("the model ran again"))
    normal = open_set_report(scores)
    deaf = dataclasses.replace(scores.stream.settings.with_threshold(1.0), sustained_ms=0)  # hardly anything fires
    strict = open_set_report(scores, deaf)
    assert normal["words"]["per_word"]["bogus"]["accepted"] == 3  # the planted "yes" words
    assert strict["words"]["per_word"]["bogus"]["accepted"] == 0
    assert normal["stream"]["overall"]["matched"] > 0 and strict["stream"]["overall"]["matched"] == 0


def test_command_line_writes_the_report(tiny_export, tiny_data, other_speech, negatives, tmp_path, capsys):
    model = tiny_export[0].window
    assert main(["eval-open-set", "--model", str(model), "--data", str(tiny_data), "--other", str(other_speech),
                 "--negatives", str(negatives), "--minutes", "0.5", "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "false alarms on speech without commands" in printed and "commands among other speech" in printed
    figures = json.loads((tmp_path / f"{model.stem}.open_set_validation.json").read_text())
    assert figures["speech"][str(negatives)]["false_alarms"] == 1  # a folder: all its files together
    assert main(["eval-open-set", "--model", str(model), "--data", str(tiny_data), "--other", str(other_speech),
                 "--split", "testing"]) == 2  # no testing speakers in this folder: a clear error
    assert "no testing recordings" in capsys.readouterr().err


def test_a_stale_streaming_twin_is_a_one_line_error(tiny_export, tiny_data, other_speech, tmp_path, capsys):
    """The runtime's refusal (an EdgeError) ends `kws` as its own errors do: one line, exit code 2."""
    from kws.export import update_metadata

    report = tiny_export[0]
    for path in (report.window, report.stream):
        shutil.copy(path, tmp_path / path.name)
    update_metadata(tmp_path / report.stream.name, lambda props: {**props, "weights_id": "0123456789ab"})
    assert main(["eval-open-set", "--model", str(tmp_path / report.window.name), "--data", str(tiny_data),
                 "--other", str(other_speech), "--minutes", "0.5", "--no-progress"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("kws: error:") and "does not belong to" in line and "export the model again" in line


def test_calibrate_on_held_out_speech_silences_what_fired_there(tiny_export, other_speech, tmp_path, capsys):
    """`kws calibrate --speech`: thresholds for a budget on the split's speech and words (the planted "yes"
    tones fire at the stored settings); with them, the runtime is quiet on that speech."""
    from kws.eval_open_set import speech_false_alarms

    for path in (tiny_export[0].window, tiny_export[0].stream):
        shutil.copy(path, tmp_path / path.name)
    model = tmp_path / tiny_export[0].window.name
    words_before = open_set_words_fired(model, other_speech)
    assert words_before > 0
    assert main(["calibrate", "--model", str(model), "--speech", str(other_speech), "--budget", "0",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "thresholds written" in printed and "all: 0 false alarm(s)" in printed
    assert open_set_words_fired(model, other_speech) == 0
    assert speech_false_alarms(model, other_speech)["all"]["false_alarms"] == 0
    assert main(["calibrate", "--model", str(model), "--speech", str(other_speech), "--split", "testing"]) == 2
    assert "no testing recordings" in capsys.readouterr().err
    assert main(["calibrate", "--model", str(model), "--speech", str(other_speech), "--negatives", "x.wav"]) == 2
    assert "give one of" in capsys.readouterr().err


def open_set_words_fired(model, other_speech) -> int:
    """Detections on the split's words one after another, at the model's stored settings."""
    from edge.runtime import Recognizer
    from kws.eval_open_set import held_out_speech

    audio = held_out_speech(model, other_speech)
    return len(Recognizer.from_onnx(model).process(np.concatenate([audio, np.zeros(RATE // 2, np.float32)])))
