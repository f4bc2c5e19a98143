"""The shipped default model through the real command line, on real Speech Commands clips."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "kws.onnx"
CLIPS = Path(__file__).parent / "data" / "clips"
SPEECH = Path(__file__).parent / "data" / "speech"
RATE = 16000


def _clip(word: str) -> tuple[Path, np.ndarray]:
    (path,) = CLIPS.glob(f"{word}_*.flac")
    audio, rate = sf.read(path, dtype="float32")
    assert rate == RATE
    return path, audio


def _word_end_s(audio: np.ndarray) -> float:
    """End of the loud part of a clip: the last 10 ms frame above 10% of the loudest one."""
    frames = np.sqrt((audio[: len(audio) // 160 * 160].reshape(-1, 160) ** 2).mean(axis=1))
    return (np.nonzero(frames > 0.1 * frames.max())[0][-1] + 1) * 160 / RATE


def _listen(*args: str) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "edge.listen", "--json", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_labels_agree_across_files():
    pytest.importorskip("torch")  # the checkpoint: a training-side check
    from kws.checkpoint import load_checkpoint
    from kws.config import Config

    meta = {p.key: p.value for p in onnx.load(str(MODEL)).metadata_props}
    labels = json.loads(meta["labels"])
    assert labels[:2] == ["_silence_", "_unknown_"]
    assert (ROOT / "models" / "labels.txt").read_text().split() == labels
    assert json.loads(meta["config"])["data"]["keywords"] == labels[2:]
    checkpoint = load_checkpoint(ROOT / "models" / "kws.pt")
    config = Config.from_dict(checkpoint["config"])
    assert checkpoint["labels"] == labels and list(config.data.keywords) == labels[2:]
    assert config == Config.from_dict(json.loads(meta["config"]))
    stream = {p.key: p.value for p in onnx.load(str(MODEL.with_name("kws.stream.onnx"))).metadata_props}
    assert json.loads(stream["labels"]) == labels


def test_the_shipped_model_is_compact():
    """At most 250K parameters, all members of an ensemble together."""
    meta = {p.key: p.value for p in onnx.load(str(MODEL)).metadata_props}
    assert 0 < int(meta["parameter_count"]) <= 250_000


@pytest.mark.parametrize("word", ["yes", "no", "up", "down", "left", "right", "stop", "go"])
def test_each_command_clip_is_heard_by_default(word):
    path, _ = _clip(word)
    assert [e["label"] for e in _listen("--wav", str(path))] == [word]


def test_long_recording_reports_each_keyword_once_at_the_right_time(tmp_path):
    """Keywords and other words at known times, over quiet noise: each keyword once, nothing else."""
    rng = np.random.default_rng(7)
    words = ["yes", "bed", "no", "up", "happy", "down", "left", "right", "stop", "go"]
    audio = [np.zeros(int(1.5 * RATE), np.float32)]
    truth = []
    position = len(audio[0])
    for word in words:
        _, clip = _clip(word)
        start_s = position / RATE
        truth.append((word, start_s, start_s + _word_end_s(clip)))
        gap = np.zeros(int(rng.uniform(1.5, 2.5) * RATE), np.float32)
        audio += [clip, gap]
        position += len(clip) + len(gap)
    stream = np.concatenate(audio)
    stream += (0.003 * rng.standard_normal(len(stream))).astype(np.float32)  # a quiet room
    sf.write(tmp_path / "long.wav", stream, RATE, subtype="PCM_16")

    events = _listen("--wav", str(tmp_path / "long.wav"))
    expected = [(w, s, e) for w, s, e in truth if w not in ("bed", "happy")]
    assert [e["label"] for e in events] == [w for w, _, _ in expected], (events, truth)
    for event, (word, start_s, end_s) in zip(events, expected):
        assert start_s < event["time"] <= end_s + 1.0, (word, event, start_s, end_s)


def test_no_event_is_timed_after_the_end_of_the_file(tmp_path):
    """A file that stops as the word ends: the word still completes in the silence added after the end,
    and its event is timed at the end of the file at the latest, never in that silence."""
    heard = 0
    for word in ["yes", "no", "up", "down", "left", "right", "stop", "go"]:
        _, clip = _clip(word)
        end_s = round(_word_end_s(clip) * RATE) / RATE
        sf.write(tmp_path / "cut.wav", clip[:round(end_s * RATE)], RATE, subtype="PCM_16")
        events = _listen("--wav", str(tmp_path / "cut.wav"))
        assert all(event["time"] <= end_s for event in events), (word, end_s, events)
        heard += [event["label"] for event in events] == [word]
    assert heard >= 6


def test_event_scores_say_how_sure_the_model_was():
    """Each clear command's score is the peak of its smoothed score over the word, not the score at the
    step that crossed the threshold (which always lies just above it): they spread over the range above."""
    scores = [event["score"] for word in ["yes", "no", "up", "down", "left", "right", "stop", "go"]
              for event in _listen("--wav", str(_clip(word)[0]))]
    threshold = json.loads({p.key: p.value for p in onnx.load(str(MODEL)).metadata_props}["detection"])["threshold"]
    assert len(scores) >= 6 and all(score >= threshold for score in scores)
    assert sum(score > threshold + 0.05 for score in scores) >= len(scores) // 2, scores


def test_stays_quiet_on_a_sentence_without_commands():
    """15 s of a read sentence by a LibriSpeech speaker that no training run hears: no event at all."""
    assert _listen("--wav", str(SPEECH / "1688-142285-0000.opus")) == []


def test_streaming_runtime_equals_one_pytorch_pass_over_a_long_recording():
    """kws_streaming's check, at the runtime level: the real 15 s sentence plus two commands fed to
    Recognizer in random chunk sizes gives, at every step, the probabilities the PyTorch model computes
    over the whole recording in one pass (state carried across every chunk). Heard at one speed: the
    other speeds' share is tested in test_edge."""
    torch = pytest.importorskip("torch")

    from edge import Recognizer
    from edge.sources import file_chunks
    from kws.checkpoint import load_checkpoint, model_from_checkpoint

    sentence = np.concatenate(list(file_chunks(SPEECH / "1688-142285-0000.opus", RATE, RATE)))
    audio = np.concatenate([_clip("yes")[1], sentence, _clip("stop")[1]]).astype(np.float32)
    recognizer = Recognizer.from_onnx(MODEL, speeds=(1,))
    rng = np.random.default_rng(3)
    steps, start = [], 0
    while start < len(audio):
        size = int(rng.integers(1, 4000))
        steps += recognizer.scores(audio[start:start + size])
        start += size

    model, config, _ = model_from_checkpoint(load_checkpoint(ROOT / "models" / "kws.pt"))
    context = np.zeros(config.features.fft_samples - config.features.hop_samples, np.float32)
    with torch.no_grad():  # the runtime starts as if after silence: `context` zeros before the audio
        logits = model(torch.from_numpy(np.concatenate([context, audio]))[None])[0].numpy()
    readout = config.features.frames(config.features.clip_samples) // config.model.frame_stack
    assert len(steps) == len(logits) == len(audio) // round(recognizer.step_s * RATE)
    worst = 0.0
    for i, (time_s, probabilities) in enumerate(steps):
        pooled = logits[max(0, i + 1 - readout): i + 1].max(axis=0)  # the "max" readout over the last clip
        expected = np.exp(pooled - pooled.max()) / np.exp(pooled - pooled.max()).sum()
        worst = max(worst, float(np.abs(probabilities - expected).max()))
        assert time_s == pytest.approx((i + 1) * recognizer.step_s)
    assert worst < 1e-3, worst
