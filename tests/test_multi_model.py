"""Several models at once (edge.multi.MultiRecognizer, `--model A --model B`): the shipped commands (real
clips) and the committed tone model, or the tone model and a copy of it under other words, hearing one
stream; one event per spoken word, each naming its model. Runs without PyTorch."""

import asyncio
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf

from edge import Detection, DetectorSettings, EdgeError, MultiRecognizer, Recognizer, Step
from edge.listen import main

from conftest import RATE, STREAM_WORDS, TINY_MODEL, read_line, tone_stream

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "kws.onnx"
CLIPS = ROOT / "tests" / "data" / "clips"
# tone words (heard by the tone model) and spoken clips (heard by the shipped model), 3 s apart: farther than
# either model's suppression time, so none is taken for another; "yes" is a word of both models
MIXED = [("tone", "yes", 1.0), ("clip", "left", 4.0), ("tone", "stop", 7.0), ("clip", "go", 10.0),
         ("tone", "no", 13.0), ("clip", "yes", 15.5)]
MIXED_HEARD = [("tones", "yes"), ("kws", "left"), ("tones", "stop"), ("kws", "go"), ("tones", "no"), ("kws", "yes")]


def _variant(folder: Path, name: str, **metadata) -> Path:
    """A copy of the tone model as folder/NAME/NAME.onnx (its streaming twin beside it), with metadata
    entries replaced: labels, detection (merged into the stored settings), sample_rate."""
    proto = onnx.load(str(TINY_MODEL))
    for entry in proto.metadata_props:
        if entry.key == "detection" and "detection" in metadata:
            entry.value = json.dumps({**json.loads(entry.value), **metadata["detection"]})
        elif entry.key in metadata:
            entry.value = json.dumps(metadata[entry.key])
    (folder / name).mkdir(parents=True)
    onnx.save(proto, str(folder / name / f"{name}.onnx"))
    shutil.copy(TINY_MODEL.with_name("kws.stream.onnx"), folder / name / "kws.stream.onnx")
    return folder / name / f"{name}.onnx"


def _clip(word: str) -> np.ndarray:
    (path,) = CLIPS.glob(f"{word}_*.flac")
    audio, rate = sf.read(path, dtype="float32")
    assert rate == RATE
    return audio


def _mixed_stream(seconds: float = 18.0) -> np.ndarray:
    """MIXED: tone words and spoken clips over quiet noise, 16 kHz float32."""
    audio, _ = tone_stream([(word, at) for kind, word, at in MIXED if kind == "tone"], seconds)
    for kind, word, at in MIXED:
        if kind == "clip":
            clip = _clip(word)
            audio[int(at * RATE):int(at * RATE) + len(clip)] += clip
    return audio


def _feed(recognizer, audio: np.ndarray, sizes: list[int]) -> list[Detection]:
    recognizer.reset()
    out, start, i = [], 0, 0
    while start < len(audio):
        out += recognizer.process(audio[start:start + sizes[i % len(sizes)]])
        start, i = start + sizes[i % len(sizes)], i + 1
    return out + recognizer.finish()


def _heard(detections: list[Detection]) -> list[tuple[str | None, str]]:
    return [(d.model, d.label) for d in detections]


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    """The tone model under another file name (so its events are told apart from the shipped kws.onnx)."""
    return _variant(tmp_path_factory.mktemp("tones"), "tones")


@pytest.fixture(scope="module")
def mixed_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mixed") / "mixed.wav"
    sf.write(path, _mixed_stream(), RATE, subtype="PCM_16")
    return path


def test_each_model_hears_its_own_words_once_named_by_its_model(tones):
    """(a) The shipped model and the tone model on one stream: every word once, from the model that knows
    it, with its own stored settings; the events are those of each model alone, in time order."""
    audio = _mixed_stream()
    both = MultiRecognizer.from_onnx([SHIPPED, tones])
    assert list(both.models) == ["kws", "tones"] and both.sample_rate == RATE
    assert both.models["kws"].settings.suppression_ms == 1000 and both.models["tones"].settings.suppression_ms == 1500
    assert both.hold_s == 1.5  # the longer of the two suppression times
    assert both.labels[:2] == ("_silence_", "_unknown_") and both.labels.count("yes") == 1
    merged = _feed(both, audio, [1600])
    assert _heard(merged) == MIXED_HEARD
    alone = [(d.time_s, name, d) for name, path in (("kws", SHIPPED), ("tones", tones))
             for d in _feed(Recognizer.from_onnx(path), audio, [1600])]
    assert [(d.label, d.score, d.time_s) for d in merged] == [(d.label, d.score, d.time_s) for *_, d in sorted(alone)]
    for (kind, word, at), event in zip(MIXED, merged):
        assert at < event.time_s <= at + 1.5, (word, event)


def test_two_models_firing_on_one_word_give_the_higher_score(tmp_path):
    """(b) The tone model and a copy under other words with a shorter average: both fire on every tone word,
    at nearly the same time; one event comes out per word, the higher-scored of the two. On an equal score
    (a copy that differs in its words only) the model given first wins."""
    audio, _ = tone_stream(STREAM_WORDS, 9.0)
    lights = _variant(tmp_path, "lights", labels=["_silence_", "_unknown_", "lamp", "fan", "dark"],
                      detection={"average_ms": 100.0, "suppression_ms": 1000.0})
    alone = {name: _feed(Recognizer.from_onnx(path, threshold=0.5), audio, [1600])
             for name, path in (("kws", TINY_MODEL), ("lights", lights))}
    words = [word for word, _ in STREAM_WORDS if word != "happy"]
    assert [d.label for d in alone["kws"]] == words and len(alone["lights"]) == len(words)
    assert all(abs(a.time_s - b.time_s) < 0.2 for a, b in zip(alone["kws"], alone["lights"]))  # the same words
    best = [max((a, "kws"), (b, "lights"), key=lambda pair: pair[0].score)
            for a, b in zip(alone["kws"], alone["lights"])]
    merged = _feed(MultiRecognizer.from_onnx([TINY_MODEL, lights], threshold=0.5), audio, [1600])
    assert [(d.model, d.label, d.score, d.time_s) for d in merged] == \
        [(name, d.label, d.score, d.time_s) for d, name in best]
    assert "lights" in {d.model for d in merged}  # not merely the first model given

    twin = _variant(tmp_path, "twin", labels=["_silence_", "_unknown_", "oui", "non", "halte"])
    for order, names in (([TINY_MODEL, twin], {"kws"}), ([twin, TINY_MODEL], {"twin"})):
        tied = _feed(MultiRecognizer.from_onnx(order, threshold=0.5), audio, [1600])
        assert len(tied) == len(words) and {d.model for d in tied} == names


def test_one_model_gives_exactly_its_recognizers_events_at_the_same_calls(model):
    """(c) With one model nothing is held: each call returns exactly what Recognizer.process returns for
    it (labels, scores, times; no model name), and finish() the same."""
    audio, _ = tone_stream(STREAM_WORDS, 9.0)
    one, alone = MultiRecognizer.from_onnx([model], threshold=0.5), Recognizer.from_onnx(model, threshold=0.5)
    assert one.hold_s == 0.0 and one.labels == alone.labels
    calls = []
    for start in range(0, len(audio), 1000):
        chunk = audio[start:start + 1000]
        calls.append((one.process(chunk), alone.process(chunk)))
    calls.append((one.finish(), alone.finish()))
    assert all(mine == theirs for mine, theirs in calls)
    assert sum(len(theirs) for _, theirs in calls) == 3 and all(d.model is None for mine, _ in calls for d in mine)


def test_merged_events_do_not_depend_on_chunk_size(tmp_path):
    """(d) However the audio is cut, the same events come out (only the calls that return them differ). The
    second model reports at the crossing (no wait for the peak), so its events come first and lower: they
    must wait for the first model's."""
    audio, _ = tone_stream(STREAM_WORDS, 9.0)
    lights = _variant(tmp_path, "lights", labels=["_silence_", "_unknown_", "lamp", "fan", "dark"],
                      detection={"peak_ms": 0.0, "suppression_ms": 1000.0})
    both = MultiRecognizer.from_onnx([TINY_MODEL, lights], threshold=0.5)
    reference = _feed(both, audio, [160])
    assert _heard(reference) == [("kws", "yes"), ("kws", "stop"), ("kws", "yes")]
    for sizes in ([1000], [4000], [1, 7, 480, 3333, 90], [len(audio)]):
        assert _feed(both, audio, sizes) == reference


def test_an_event_is_held_until_the_other_model_has_heard_past_it_by_the_window(tmp_path):
    """The added latency: an event comes once the other model's clock is `hold_s` past it, not before."""
    audio, _ = tone_stream(STREAM_WORDS, 11.0)  # the last word ends at 7.7 s: its event comes before the end
    lights = _variant(tmp_path, "lights", labels=["_silence_", "_unknown_", "lamp", "fan", "dark"])
    both = MultiRecognizer.from_onnx([TINY_MODEL, lights], threshold=0.5)
    reported = []
    for start in range(0, len(audio), 160):
        reported += [(both.seconds_heard, d) for d in both.process(audio[start:start + 160])]
    assert len(reported) == 3
    for at, detection in reported:
        assert detection.time_s + both.hold_s <= at <= detection.time_s + both.hold_s + 0.05, (at, detection)


class _Scripted:
    """A stand-in for one model's Recognizer that reports given (time, score) events once its clock reaches
    them: to put events exactly where a rule needs them."""

    sample_rate, labels = RATE, ("_silence_", "_unknown_", "word")

    def __init__(self, name: str, events: list[tuple[float, float]], suppression_ms: float = 1500.0):
        self.path, self.settings = Path(f"{name}.onnx"), DetectorSettings(suppression_ms=suppression_ms)
        self._events = events
        self.reset()

    def reset(self) -> None:
        self._samples, self._told = 0, 0

    @property
    def seconds_processed(self) -> float:
        return self._samples / RATE

    seconds_heard = seconds_processed

    def _steps_of(self, audio: np.ndarray) -> list[Step]:
        self._samples += len(audio)
        due = [Detection("word", score, at) for at, score in self._events[self._told:] if at <= self.seconds_processed]
        self._told += len(due)
        return [Step(self.seconds_processed, {}, tuple(due))]

    def finish(self) -> list[Detection]:
        rest, self._told = self._events[self._told:], len(self._events)
        return [Detection("word", score, at) for at, score in rest]


def test_best_first_over_a_chain_of_rivals():
    """a@1.0 and b@2.0 are rivals, and so are b@2.0 and a@3.2, but the two of a are not (one model's own
    events are never rivals): best first keeps a@3.2, which drops b, which leaves a@1.0 with no better rival,
    so two events. a@1.0 can only be decided after that: once b's clock is past 3.2 s + 1.5 s."""
    both = MultiRecognizer({"a": _Scripted("a", [(1.0, 0.9), (3.2, 0.97)]), "b": _Scripted("b", [(2.0, 0.95)])})
    silence = np.zeros(6 * RATE, np.float32)
    reported = []
    for start in range(0, len(silence), 160):
        reported += [(both.seconds_heard, d) for d in both.process(silence[start:start + 160])]
    assert [(d.model, d.time_s) for _, d in reported] == [("a", 1.0), ("a", 3.2)]
    assert all(at == pytest.approx(4.7) for at, _ in reported)
    for sizes in ([1], [16000], [len(silence)]):
        assert [(d.model, d.time_s) for d in _feed(both, silence, sizes)] == [("a", 1.0), ("a", 3.2)]


def test_skip_moves_every_models_clock_on(tmp_path):
    """Audio lost between two stretches: words after the gap are timed after it, and a word just before it is
    not lost."""
    audio, _ = tone_stream(STREAM_WORDS, 9.0)
    lights = _variant(tmp_path, "lights", labels=["_silence_", "_unknown_", "lamp", "fan", "dark"],
                      detection={"average_ms": 100.0, "suppression_ms": 1000.0})
    both = MultiRecognizer.from_onnx([TINY_MODEL, lights], threshold=0.5)
    whole = _feed(both, audio, [1600])
    split = int(4.2 * RATE)  # after "stop" has ended, before "happy"
    both.reset()
    heard = both.process(audio[:split])
    both.skip(5.0)
    heard += both.process(audio[split:]) + both.finish()
    assert _heard(heard) == _heard(whole)
    assert [d.time_s for d in heard] == pytest.approx([d.time_s + (5.0 if d.time_s > 4.2 else 0.0) for d in whole],
                                                      abs=0.2)


def test_a_bad_chunk_is_counted_and_warned_about_once_for_all_models(tones, caplog):
    both = MultiRecognizer.from_onnx([TINY_MODEL, tones])
    both.process(np.full(1600, np.nan, np.float32))
    assert both.bad_chunks == 1 and all(r.bad_chunks == 0 for r in both.models.values())
    assert [r.message for r in caplog.records].count(
        "a chunk of 1600 samples held NaN or infinite values; it was replaced by silence") == 1
    assert both.seconds_heard == pytest.approx(0.1)  # heard as silence: time stays true


def test_models_of_different_sample_rates_are_refused_in_one_line(tmp_path, stream_wav, capsys):
    """(f)"""
    slow = _variant(tmp_path, "slow", sample_rate=8000)
    with pytest.raises(EdgeError, match="share a sample rate"):
        MultiRecognizer.from_onnx([TINY_MODEL, slow])
    assert main(["--model", str(TINY_MODEL), "--model", str(slow), "--wav", str(stream_wav)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("edge.listen: error: models heard together must share a sample rate")
    assert "8000 Hz" in err and "16000 Hz" in err


def test_mistakes_with_several_models_are_one_line_errors(tones, stream_wav, capsys):
    for flags, says in ((["--model", str(TINY_MODEL), "--model", str(TINY_MODEL)], "given twice"),
                        (["--model", str(TINY_MODEL), "--model", str(tones), "--json", "--step-scores"],
                         "--step-scores shows one model's scores"),
                        (["--model", str(TINY_MODEL), "--model", str(tones), "--meter"], "--meter shows one"),
                        (["--model", str(TINY_MODEL), "--model", str(ROOT / "missing.onnx")], "not found")):
        assert main([*flags, "--wav", str(stream_wav)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
    with pytest.raises(EdgeError, match="at least one"):
        MultiRecognizer({})
    recognizer = Recognizer.from_onnx(TINY_MODEL)
    with pytest.raises(EdgeError, match="of its own"):
        MultiRecognizer({"a": recognizer, "b": recognizer})


def test_models_that_share_a_file_name_are_named_by_their_paths(tmp_path):
    other = tmp_path / "mine" / "kws.onnx"
    other.parent.mkdir()
    shutil.copy(TINY_MODEL, other)
    shutil.copy(TINY_MODEL.with_name("kws.stream.onnx"), other.with_name("kws.stream.onnx"))
    assert list(MultiRecognizer.from_onnx([TINY_MODEL, other]).models) == [str(TINY_MODEL), str(other)]


def test_listen_with_two_models_prints_both_models_events(tones, mixed_wav, capsys):
    """(e) edge.listen --wav with two --model: JSON lines name the model; text lines end with it."""
    assert main(["--model", str(SHIPPED), "--model", str(tones), "--wav", str(mixed_wav), "--json"]) == 0
    out = capsys.readouterr()
    events = [json.loads(line) for line in out.out.splitlines()]
    assert all(set(e) == {"label", "score", "time", "wall_time", "model"} for e in events)
    assert [(e["model"], e["label"]) for e in events] == MIXED_HEARD
    assert f"{len(MIXED_HEARD)} event(s)" in out.err
    assert main(["--model", str(SHIPPED), "--model", str(tones), "--wav", str(mixed_wav)]) == 0
    fields = [line.split() for line in capsys.readouterr().out.splitlines()]  # time, "s", label, score, model
    assert [(model, label) for _, _, label, _, model in fields] == MIXED_HEARD


def test_listen_hook_is_told_the_model(tones, mixed_wav, tmp_path, capsys):
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\necho "$KWS_MODEL $KWS_LABEL" >> {tmp_path / "heard.txt"}\n')
    script.chmod(0o755)
    assert main(["--model", str(SHIPPED), "--model", str(tones), "--wav", str(mixed_wav),
                 "--on-detect", str(script)]) == 0
    heard = sorted(tuple(line.split()) for line in (tmp_path / "heard.txt").read_text().splitlines())
    assert heard == sorted(MIXED_HEARD)


# --- edge.serve: a Wyoming client with two models behind the server -------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _utterance(uri: str, audio: np.ndarray):
    """describe, then one utterance in 100 ms chunks; returns (info, the events answered to the audio)."""
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncClient
    from wyoming.info import Describe, Info

    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    async with AsyncClient.from_uri(uri) as client:
        await client.write_event(Describe().event())
        info = Info.from_event(await asyncio.wait_for(client.read_event(), timeout=30))
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        size = RATE // 10 * 2  # bytes of 100 ms
        for start in range(0, len(pcm), size):
            await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=pcm[start:start + size]).event())
        await client.write_event(AudioStop().event())
        await client.write_event(Describe().event())  # its answer marks the end of the answers to the audio
        answers = []
        while not Info.is_type((event := await asyncio.wait_for(client.read_event(), timeout=60)).type):
            answers.append(event)
        return info, answers


def test_serve_with_two_models_announces_both_and_answers_a_client(tmp_path):
    """(g) Describe announces every model's commands once; a client hears a spoken command (shipped model)
    and a tone word (the other model, which also knows "yes")."""
    pytest.importorskip("wyoming")
    from wyoming.wake import Detection as WyomingDetection

    lights = _variant(tmp_path, "lights", labels=["_silence_", "_unknown_", "yes", "lamp", "dark"])
    uri = f"tcp://127.0.0.1:{_free_port()}"
    server = subprocess.Popen([sys.executable, "-m", "edge.serve", "--uri", uri, "--model", str(SHIPPED),
                               "--model", str(lights)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        while "Wyoming service on" not in (line := read_line(server.stderr)):
            assert line, "edge.serve did not start"
        assert line.rstrip().endswith("stop, go, lamp, dark"), line
        audio, _ = tone_stream([("no", 4.0)], 7.0)  # the tone "no" is "lamp" to the second model
        left = _clip("left")
        audio[RATE:RATE + len(left)] += left
        info, answers = asyncio.run(_utterance(uri, audio))
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0 and "Traceback" not in err, err
    (program,) = info.wake
    names = [m.name for m in program.models]
    assert names == ["yes", "no", "up", "down", "left", "right", "stop", "go", "lamp", "dark"]
    yes = program.models[0]
    assert "kws.onnx" in yes.description and "lights.onnx" in yes.description and "+" in yes.version
    heard = [WyomingDetection.from_event(e).name for e in answers if WyomingDetection.is_type(e.type)]
    assert heard == ["left", "lamp"]
