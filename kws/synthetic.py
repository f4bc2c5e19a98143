"""Takes of a word said by espeak-ng's voices, for `kws record --synthetic`: a few real speakers' takes
widened by many machine voices (README, "Your own words")."""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import Iterator

import numpy as np

from kws.config import FeatureConfig
from kws.errors import KwsError

# accents (en-gb-x-gbcwmd left out: its takes hold exact zeros inside the word, which the level finder skips)
ESPEAK_VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan")
ESPEAK_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6))  # vocal tracts, voicing
ESPEAK_PITCH = (20, 80)  # espeak-ng -p, of 0-99
ESPEAK_RATE = (120, 220)  # espeak-ng -s, words per minute


def synthetic_takes(word: str, count: int, seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """`count` takes of `word` said by espeak-ng, each (speaker, audio at 16 kHz): an accent and a variant
    (the voice's "speaker" name) at a random pitch and speaking rate, drawn from `seed`."""
    import soundfile as sf
    import soxr

    if shutil.which("espeak-ng") is None:
        raise KwsError("--synthetic needs espeak-ng (Debian and Ubuntu: apt-get install espeak-ng)")
    rng = np.random.default_rng(seed)
    rate = FeatureConfig().sample_rate
    for _ in range(count):
        voice, variant = str(rng.choice(ESPEAK_VOICES)), str(rng.choice(ESPEAK_VARIANTS))
        pitch, speed = int(rng.integers(*ESPEAK_PITCH)), int(rng.integers(*ESPEAK_RATE))
        said = subprocess.run(["espeak-ng", "-v", f"{voice}+{variant}", "-p", str(pitch), "-s", str(speed),
                               "--stdout", word], capture_output=True, timeout=60)
        if said.returncode != 0 or not said.stdout:
            raise KwsError(f"espeak-ng failed on voice {voice}+{variant}: "
                           f"{said.stderr.decode(errors='replace').strip()[:200] or 'no audio'}")
        audio, source_rate = sf.read(io.BytesIO(said.stdout), dtype="float32")
        quiet = np.zeros(int(0.5 * rate), np.float32)  # espeak-ng may start on the word's first sample
        yield f"espeak-{voice}-{variant}", np.concatenate([quiet, soxr.resample(audio, source_rate, rate), quiet])
