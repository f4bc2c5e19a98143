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


def test_stays_quiet_on_a_sentence_without_commands():
    """15 s of a read sentence by a LibriSpeech speaker that no training run hears: no event at all."""
    assert _listen("--wav", str(SPEECH / "1688-142285-0000.opus")) == []
