"""Shared fixtures: a tiny synthetic Speech Commands-style data set that trains in seconds, and the small
committed model trained on it; the `service` mark for tests that need a program of the system; reading a
child's pipe with a deadline. Without PyTorch (a device's `.[edge,test]` install) the training side's test
files are left out and the edge tests run on the committed model."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

RATE = 16000
# KWS_REQUIRE_SERVICES=1 (set by .ci/run): a test marked `service` fails where its program is missing, so that a
# CI image without Mosquitto or PulseAudio cannot pass by skipping them
REQUIRE_SERVICES = os.environ.get("KWS_REQUIRE_SERVICES") == "1"
# Each "word" is a tone pattern a small model can learn in a few epochs; "happy" is the non-keyword.
WORD_TONES = {"yes": (500.0, 500.0), "no": (1500.0, 1500.0), "stop": (600.0, 2400.0), "happy": (3000.0, 300.0)}
SPEAKERS = [f"{i:08x}" for i in range(0x1000, 0x1000 + 10)]
VALIDATION_SPEAKERS = SPEAKERS[:2]


def tone_clip(rng: np.random.Generator, start_hz: float, end_hz: float) -> np.ndarray:
    """A 0.4-0.6 s chirp at a random place in one second, with a little noise."""
    length = int(rng.uniform(0.4, 0.6) * RATE)
    freq = np.linspace(start_hz, end_hz, length)
    tone = 0.5 * np.sin(2 * np.pi * np.cumsum(freq) / RATE) * np.hanning(length)
    clip = rng.normal(0, 0.01, RATE)
    start = rng.integers(0, RATE - length)
    clip[start:start + length] += tone * rng.uniform(0.5, 1.0)
    return clip.astype(np.float32)


def make_dataset(root: Path, clips_per_speaker: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    validation = []
    for word, (f0, f1) in WORD_TONES.items():
        (root / word).mkdir(parents=True)
        for speaker in SPEAKERS:
            for n in range(clips_per_speaker):
                name = f"{speaker}_nohash_{n}.wav"
                sf.write(root / word / name, tone_clip(rng, f0, f1), RATE, subtype="PCM_16")
                if speaker in VALIDATION_SPEAKERS:
                    validation.append(f"{word}/{name}")
    noise_dir = root / "_background_noise_"
    noise_dir.mkdir()
    sf.write(noise_dir / "hum.wav", (0.1 * rng.standard_normal(10 * RATE)).astype(np.float32), RATE)
    (root / "validation_list.txt").write_text("\n".join(validation) + "\n")
    (root / "testing_list.txt").write_text("")
    return root


# A test file that imports torch or kws at its top is a training-side test: where PyTorch is not installed it is
# not collected, and the summary says how many were left out.
HAVE_TORCH = importlib.util.find_spec("torch") is not None
_TRAINING_SIDE = re.compile(r"^(import torch|from kws[ .]|import kws)", re.M)
_left_out: set[str] = set()


def pytest_ignore_collect(collection_path, config):
    if HAVE_TORCH or not (collection_path.name.startswith("test_") and collection_path.suffix == ".py"):
        return None
    if _TRAINING_SIDE.search(collection_path.read_text()):
        _left_out.add(collection_path.name)
        return True
    return None


def pytest_terminal_summary(terminalreporter):
    if _left_out:
        terminalreporter.write_line(f"without PyTorch: {len(_left_out)} training-side test files not collected "
                                    f"({', '.join(sorted(_left_out))}); install the train extra to run them")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Read-only shared data set; tests that change files make their own with make_dataset."""
    return make_dataset(tmp_path_factory.mktemp("tiny_data"))


def tone_model_config(hidden_size: int, epochs: int):
    """Settings that learn the tone words in seconds: three frames per step, few other words, every one alike
    (the committed tests/data/tiny model is one of these: tools/make_test_model.py)."""
    from kws.config import Config, DataConfig, ModelConfig, TrainConfig

    return Config(data=DataConfig(unknown_percent=10.0, unknown_weighting="clip"),
                  model=ModelConfig(hidden_size=hidden_size, frame_stack=3, dropout=0.0),
                  train=TrainConfig(epochs=epochs, batch_size=16, learning_rate=1e-2, warmup_epochs=0.5))


@contextlib.contextmanager
def interrupted_in_epoch(index: int):
    """kws.train stopped by Ctrl+C as its epoch `index` (from 0) begins; the block must raise it."""
    import kws.train

    real_epoch = kws.train._train_epoch

    def dies(*args):
        if args[5] == index:  # the epoch index
            raise KeyboardInterrupt
        return real_epoch(*args)

    kws.train._train_epoch = dies
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        kws.train._train_epoch = real_epoch


@pytest.fixture
def tiny_config():
    return tone_model_config(hidden_size=24, epochs=3)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_data):
    """A small model trained on the tone words and exported with int8 copies: (report, checkpoint path)."""
    from kws.export import export_checkpoint
    from kws.train import train

    root = tmp_path_factory.mktemp("tiny_export")
    train(tiny_data, root / "run", tone_model_config(hidden_size=32, epochs=12), progress=False,
          echo=lambda line: None)
    report = export_checkpoint(root / "run" / "best.pt", root / "models" / "kws.onnx", tiny_data, int8=True)
    return report, root / "run" / "best.pt"


def tone_stream(words: list[tuple[str, float]], seconds: float, seed: int = 0, noise: float = 0.01):
    """A long recording with tone words starting at the given times; returns (audio, word end times)."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, noise, int(seconds * RATE)).astype(np.float32)
    ends = []
    for word, start_s in words:
        length = int(0.5 * RATE)
        freq = np.linspace(*WORD_TONES[word], length)
        tone = 0.5 * np.sin(2 * np.pi * np.cumsum(freq) / RATE) * np.hanning(length)
        start = int(start_s * RATE)
        audio[start:start + length] += tone.astype(np.float32)
        ends.append((start + length) / RATE)
    return audio, ends


STREAM_WORDS = [("yes", 1.0), ("stop", 3.0), ("happy", 5.0), ("yes", 7.2)]  # what `stream_wav` says, and when


TINY_MODEL = Path(__file__).parent / "data" / "tiny" / "kws.onnx"


@pytest.fixture(scope="session")
def model() -> Path:
    """The small committed window model (its streaming twin beside it), trained on the tone words as
    `tiny_export` is: the edge tests run on it without PyTorch, and may expect exact events of it, which a
    model trained during the run would not give on every CPU. Made by tools/make_test_model.py."""
    return TINY_MODEL


@pytest.fixture(scope="session")
def stream_wav(tmp_path_factory) -> Path:
    """9 s of tone words (STREAM_WORDS) over quiet noise, as a 16-bit WAV."""
    audio, _ = tone_stream(STREAM_WORDS, 9.0)
    path = tmp_path_factory.mktemp("wav") / "stream.wav"
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "service(available, reason): needs a program of the system (Mosquitto, "
                                       "PulseAudio): skipped without it, failed instead with KWS_REQUIRE_SERVICES=1")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("service"):
        available, reason = mark.args
        if not available:
            if REQUIRE_SERVICES:
                pytest.fail(f"{reason}; KWS_REQUIRE_SERVICES=1 makes this a failure, not a skip", pytrace=False)
            pytest.skip(reason)


def read_line(stream, timeout_s: float = 60.0) -> str:
    """One line from a child process's pipe, or AssertionError after `timeout_s`: a child that hangs fails its
    test instead of blocking the suite. ("" at the end of the stream, as readline gives.) On failure the
    caller should kill the child, which ends the reading thread left behind."""
    got: list = []

    def read():
        try:
            got.append(stream.readline())
        except (OSError, ValueError) as error:  # the pipe closed under it
            got.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    if reader.is_alive():
        raise AssertionError(f"no line from the child process within {timeout_s:g} s")
    if isinstance(got[0], Exception):
        raise got[0]
    return got[0]
