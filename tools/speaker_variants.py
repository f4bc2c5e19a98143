"""Speaker variants of a few real recordings: the same word said by many more voices than were recorded.

The data holds only 15 real "on" and "off" clips, the words a command model confuses most ("off" heard
as "up"). This writes copies of the *training* speakers' clips of chosen words, each as another voice:
a longer or shorter vocal tract (formants), another pitch, another speaking rate and level.

    python tools/speaker_variants.py --other ../shared/data/other_speech --words on,off --out runs/variants \
        [--per-clip 24] [--seed 0]
    kws train ... --negatives runs/negatives --negatives runs/variants

Needs `sox` (Debian). Writes `OUT/<source>_variants/<word>/<speaker>_nohash_<n>_v<k>.wav` (16 kHz mono):
the part before `_nohash_` stays the recorded speaker, so `kws.other_speech` puts every variant in its
speaker's split, and clips of validation and testing speakers are never copied at all. The variants form
one more source of `_unknown_` for `--unknown-weighting source`.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # kws, for a script run from anywhere

# tools/ is on the path of a script run from it
from synth_negatives import Variation, sox_voice, write_at_peak

from kws.config import DataConfig
from kws.errors import KwsError
from kws.other_speech import scan_other_speech


def draw_voice(rng: random.Random) -> Variation:
    """One new voice: a longer or shorter vocal tract (formants), f0 within +-300 cents of the recording's,
    speaking rate +-15%, peak level."""
    formant = math.exp(rng.uniform(math.log(0.85), math.log(1.18)))
    return Variation(pitch_cents=rng.uniform(-300, 300), rate=rng.uniform(0.85, 1.15), formant=formant,
                     peak_db=rng.uniform(-24, -1))  # drawn in this order since the first runs: same voices


def make_variants(other: Path, words: tuple[str, ...], per_clip: int, seed: int, out: Path) -> dict[str, int]:
    """Write `per_clip` variants of every training clip of `words` in `other`. Returns clips written per word."""
    recordings = [r for r in scan_other_speech(other, DataConfig()) if r.word in words and r.split == "training"]
    if not recordings:
        raise KwsError(f"no training clips of {', '.join(words)} in {other}")
    written = {word: 0 for word in words}
    for recording in recordings:
        rng = random.Random(f"{seed}/{recording.source}/{recording.word}/{recording.path.name}")
        for k in range(per_clip):
            path = (out / f"{recording.source}_variants" / recording.word
                    / f"{recording.path.stem}_v{k}.wav")
            voice = draw_voice(rng)
            if not path.exists():  # a rerun finishes an interrupted one
                audio = sox_voice(recording.path, voice, rate=voice.rate)
                if not np.any(np.abs(audio) >= 1e-4):
                    raise KwsError(f"{recording.path} is silent")
                write_at_peak(audio, voice.peak_db, path)
            written[recording.word] += 1
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--other", type=Path, required=True, help="folder of other speech (the kws.other_speech layout)")
    p.add_argument("--words", default="on,off", help="comma-separated words to vary (default: on,off)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--per-clip", type=int, default=24, help="variants of each training clip (default 24)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.per_clip < 1:
        p.error("--per-clip must be at least 1")
    words = tuple(w.strip() for w in args.words.split(",") if w.strip())
    written = make_variants(args.other, words, args.per_clip, args.seed, args.out)
    print(f"wrote {', '.join(f'{n} {w}' for w, n in written.items())} variants to {args.out}")
    return 0


if __name__ == "__main__":
    from edge.cli import run_tool
    from kws.errors import KwsError

    raise SystemExit(run_tool("speaker_variants", main, KwsError))
