"""Speaker variants of real clips: new voices of training speakers only, each in its speaker's split."""

import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from kws.config import DataConfig
from kws.data import hash_split
from kws.other_speech import scan_other_speech

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import speaker_variants

RATE = 16000
SPEAKERS = [f"{i:08x}" for i in range(0x3000, 0x3000 + 12)]


def _voice(f0: float) -> np.ndarray:
    """Half a second of a voiced vowel-like sound at f0 between quiet padding: one second in all."""
    t = np.arange(RATE // 2) / RATE
    vowel = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12)) * np.hanning(t.size)
    return np.pad(0.3 * vowel / np.abs(vowel).max(), RATE // 4).astype(np.float32)


def _f0(audio: np.ndarray) -> float:
    """The strongest autocorrelation lag between 60 and 400 Hz, as a frequency."""
    loud = np.flatnonzero(np.abs(audio) > 0.3 * np.abs(audio).max())
    middle = audio[loud[0]: loud[-1] + 1]
    ac = np.correlate(middle, middle, "full")[middle.size - 1:]
    lo, hi = RATE // 400, RATE // 60
    return RATE / (lo + int(np.argmax(ac[lo:hi])))


def test_only_training_speakers_are_copied_and_each_variant_stays_in_its_speakers_split(tmp_path):
    other = tmp_path / "other"
    for speaker in SPEAKERS:
        for word in ("on", "off", "dog"):
            path = other / "sc_words" / word / f"{speaker}_nohash_0.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _voice(120.0), RATE)
    config = DataConfig()
    splits = {s: hash_split(f"{s}_nohash_", config.other_validation_percent, config.other_testing_percent)
              for s in SPEAKERS}
    training = {s for s, split in splits.items() if split == "training"}
    assert training and len(training) < len(SPEAKERS)  # the fixture holds held-out speakers too

    written = speaker_variants.make_variants(other, ("on", "off"), 3, 0, tmp_path / "variants")

    assert written == {"on": 3 * len(training), "off": 3 * len(training)}
    recordings = scan_other_speech(tmp_path / "variants")
    assert {r.source for r in recordings} == {"sc_words_variants"}
    assert {r.word for r in recordings} == {"on", "off"}  # "dog" was not asked for
    assert {r.speaker for r in recordings} == training
    assert {r.split for r in recordings} == {"training"}

    f0s = []
    for recording in recordings:
        audio, rate = sf.read(recording.path, dtype="float32")
        assert rate == RATE and 0.7 * RATE < audio.size < 1.4 * RATE  # the speaking rate varies +-15%
        assert 10 ** (-24 / 20) - 0.01 <= np.abs(audio).max() <= 10 ** (-1 / 20) + 0.01
        f0s.append(_f0(audio))
    # Each variant is another voice: f0 spread over +-300 cents of the recording's 120 Hz, not all at it.
    assert all(120 * 2 ** (-3.3 / 12) < f < 120 * 2 ** (3.3 / 12) for f in f0s)
    assert max(f0s) / min(f0s) > 2 ** (2 / 12)


def test_a_rerun_finishes_an_interrupted_run_and_rewrites_nothing(tmp_path):
    other = tmp_path / "other"
    speaker = next(s for s in SPEAKERS if hash_split(f"{s}_nohash_", 20.0, 20.0) == "training")
    path = other / "sc_words" / "off" / f"{speaker}_nohash_0.flac"
    path.parent.mkdir(parents=True)
    sf.write(path, _voice(150.0), RATE)
    out = tmp_path / "variants"
    speaker_variants.make_variants(other, ("off",), 2, 0, out)
    first, second = sorted(out.rglob("*.wav"))
    before = first.read_bytes()
    second.unlink()  # as if the first run had stopped there

    speaker_variants.make_variants(other, ("off",), 2, 0, out)

    assert first.read_bytes() == before and second.exists()
    assert not list(out.rglob("*.tmp"))


def test_voices_are_drawn_within_their_ranges():
    rng = random.Random(0)
    voices = [speaker_variants.draw_voice(rng) for _ in range(200)]
    assert all(0.85 <= v.formant <= 1.18 and 0.85 <= v.rate <= 1.15 and -300 <= v.pitch_cents <= 300
               and -24 <= v.peak_db <= -1 for v in voices)
    assert min(v.formant for v in voices) < 0.9 and max(v.formant for v in voices) > 1.1  # spread, not one voice
