"""Your own word, the whole path without a microphone: a long recording cut by `kws record --from-wav`, a short
training run from the shipped model's weights, export, and `edge.listen --wav` with the shipped model and the
new one hearing the new word and a command together."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import RATE, WORD_TONES, tone_clip
from edge.sources import file_chunks

pytest.importorskip("torch", reason="kws train and export: a training-side test")
ROOT = Path(__file__).resolve().parent.parent
LAMP = (2000.0, 3500.0)  # the new word: a chirp no other word of the tone data makes
SPEECH = Path(__file__).parent / "data" / "speech" / "1688-142285-0000.opus"


def _kws(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kws", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)


def _takes(rng: np.random.Generator, tones, count: int) -> np.ndarray:
    """`count` one-second takes of a tone word with a second of quiet after each, as said into a phone."""
    quiet = np.zeros(RATE, np.float32)
    parts = [part for _ in range(count) for part in (tone_clip(rng, *tones), quiet)]
    return (np.concatenate([quiet, *parts]) + rng.normal(0, 0.002, RATE * (2 * count + 1))).astype(np.float32)


def test_record_train_export_and_listen_to_your_word_beside_the_commands(tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "lamp.wav", _takes(rng, LAMP, 24), RATE)
    words = tmp_path / "my_words"
    cut = _kws("record", "lamp", "--out", str(words), "--from-wav", str(tmp_path / "lamp.wav"), "--speaker",
               "ann", cwd=tmp_path)
    assert cut.returncode == 0, cut.stderr
    assert len(list((words / "lamp").glob("ann_nohash_*.flac"))) == 24
    for word in ("yes", "happy"):  # other words of the house, heard as _unknown_
        sf.write(tmp_path / f"{word}.wav", _takes(rng, WORD_TONES[word], 12), RATE)
        other = _kws("record", word, "--out", str(words), "--from-wav", str(tmp_path / f"{word}.wav"),
                     "--speaker", "ann", cwd=tmp_path)
        assert other.returncode == 0, other.stderr
    for clip in (ROOT / "tests" / "data" / "clips").glob("*.flac"):  # real words, each its own folder
        (words / clip.name.split("_")[0]).mkdir(exist_ok=True)
        (words / clip.name.split("_")[0] / clip.name.split("_", 1)[1]).symlink_to(clip)
    # other speech: the first half of a real sentence (the stream below holds the second half)
    sentence = np.concatenate(list(file_chunks(SPEECH, RATE, RATE)))
    half = len(sentence) // 2
    speech = tmp_path / "other" / "librispeech" / "training" / "1688"
    speech.mkdir(parents=True)
    sf.write(speech / "1688-0.flac", sentence[:half], RATE)

    run = tmp_path / "run"
    trained = _kws("train", "--data", str(words), "--keywords", "lamp", "--out", str(run), "--keyword-examples",
                   "300", "--epochs", "15", "--init-from", str(ROOT / "models" / "kws.pt"), "--learning-rate", "0.003",
                   "--negatives", str(tmp_path / "other"), "--unknown-percent", "200", "--no-progress", cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    model = run / "model" / "kws.onnx"
    exported = _kws("export", "--checkpoint", str(run / "best.pt"), "--out", str(model), "--data", str(words),
                    "--speeds", "1", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr

    # the new word at 2 s, a real "left" at 6 s, the sentence's second half from 10 s on
    (left,) = (ROOT / "tests" / "data" / "clips").glob("left_*.flac")
    stream = np.zeros(10 * RATE + len(sentence) - half, np.float32)
    stream[2 * RATE:3 * RATE] = tone_clip(np.random.default_rng(7), *LAMP)
    stream[6 * RATE:7 * RATE] = sf.read(left, dtype="float32")[0]
    stream[10 * RATE:] = sentence[half:]
    sf.write(tmp_path / "stream.wav", stream, RATE)
    heard = subprocess.run([sys.executable, "-m", "edge.listen", "--model", str(ROOT / "models" / "kws.onnx"),
                            "--model", str(model), "--wav", str(tmp_path / "stream.wav"), "--json"],
                           capture_output=True, text=True, timeout=300)
    assert heard.returncode == 0, heard.stderr
    events = [(e["label"], round(e["time"]), Path(e["model"]).parent.name) for e in map(json.loads,
                                                                                          heard.stdout.splitlines())]
    assert events[:2] == [("lamp", 3, "model"), ("left", 7, "models")], events
    # The commands stay quiet on the speech. The new word does not yet: learnt from one voice and 12 s of
    # speech, it fires on it (README, "Your own words", has the figures of tools/few_shot.py).
    assert all(model == "model" for _, time_s, model in events if time_s > 10), events
