"""Synthetic command clips for training: the keywords said by the text-to-speech voices Debian ships
(espeak-ng, flite, festival; `synth_negatives.py`'s engines, voices and per-clip variation of rate, pitch,
vocal-tract length and level), added to a linked copy of a data folder.

    sudo apt-get install --no-install-recommends espeak-ng flite festival festvox-kallpc16k sox
    python tools/synth_commands.py --data ../shared/data/speech_commands --out runs/data_plus [--per-word 120]
    kws train --data runs/data_plus ...

`--out` links every file and folder of `--data`, except each keyword's folder, which becomes a folder of
links to its real clips plus the synthetic ones. The synthetic clips themselves land in
`--out/_synthetic/<engine>/<word>/<voice>_nohash_<n>.wav` (a folder `kws` does not read as a word). A
synthetic voice is a speaker: only the voices whose name the data set's hash puts in training are added,
so validation and testing stay the real recordings they were, and every figure measured on them still
speaks of real speakers. Nothing in `--data` is written to. Do not commit the output.

On the eight commands it was measured on two seeds and is not part of the recipe (model card, "Synthetic
commands in training"); judge it on real held-out speakers, as the card does. A keyword written with an
underscore ("lights_on") is said as two words.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # kws, for a script run from anywhere

from synth_negatives import DEFAULT_KEYWORDS, ENGINES, _engines, _keywords, synthesize_with  # noqa: E402
from kws.config import DataConfig  # noqa: E402
from kws.data import hash_split  # noqa: E402

SYNTHETIC = "_synthetic"  # under --out; a leading "_" keeps `kws.data.scan` from reading it as a word


def linked_copy(data: Path, synthetic: Path, out: Path, keywords: tuple[str, ...],
                config: DataConfig = DataConfig()) -> dict[str, int]:
    """Fill `out` (empty) with links to everything in `data`, each keyword folder holding links to its real
    clips and to the synthetic clips under `synthetic/<engine>/<word>/` whose voice hashes to training.
    Returns per keyword the synthetic clips added, and "left_out" for those of other voices."""
    data = data.resolve()
    counts = {word: 0 for word in keywords}
    counts["left_out"] = 0
    for item in sorted(data.iterdir()):
        if item.is_dir() and item.name in keywords:
            (out / item.name).mkdir()
            for clip in sorted(item.iterdir()):
                os.symlink(clip, out / item.name / clip.name)
        else:
            os.symlink(item, out / item.name)
    for clip in sorted(synthetic.glob("*/*/*.wav")):
        word = clip.parent.name
        if word not in keywords or not (out / word).is_dir():
            continue
        if hash_split(clip, config.validation_percent, config.testing_percent) == "training":
            # relative, so the link survives `out` being renamed with the synthetic clips inside it
            os.symlink(os.path.relpath(clip.resolve(), (out / word).resolve()), out / word / clip.name)
            counts[word] += 1
        else:
            counts["left_out"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="Speech Commands-style folder (read only)")
    parser.add_argument("--out", type=Path, required=True, help="new folder: the linked copy with synthetic clips")
    parser.add_argument("--per-word", type=int, default=120,
                        help="clips of each keyword from espeak; flite makes half as many, festival a quarter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engines", type=_engines, default=ENGINES, help="comma-separated")
    parser.add_argument("--keywords", type=_keywords, default=DEFAULT_KEYWORDS, help="the words to synthesize")
    args = parser.parse_args(argv)
    if args.per_word < 1:
        parser.error("--per-word must be at least 1")
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder")
    missing = [w for w in args.keywords if not (args.data / w).is_dir()]
    if missing:
        parser.error(f"--data has no folder for {', '.join(missing)}")
    if args.out.exists():
        parser.error(f"--out {args.out} exists; give a new folder")
    if shutil.which("sox") is None:
        print("sox is not installed (sudo apt-get install sox)", file=sys.stderr)
        return 2

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside --out and renamed at the end: an interrupted run leaves no half-made data folder.
    building = Path(tempfile.mkdtemp(prefix=f".{args.out.name}-", dir=args.out.parent))
    try:
        engines_used = synthesize_with(args.engines, list(args.keywords), args.per_word, args.seed,
                                       building / SYNTHETIC)
        if not engines_used:
            print("no engine worked; nothing written", file=sys.stderr)
            return 2
        added = linked_copy(args.data, building / SYNTHETIC, building, args.keywords)
        building.rename(args.out)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    left_out = added.pop("left_out")
    print(f"{args.out}: the data of {args.data} with {sum(added.values())} synthetic training clips "
          f"({', '.join(f'{w} {n}' for w, n in added.items())}); {left_out} more left out, their voices "
          "hash to validation or testing")
    return 0


if __name__ == "__main__":
    from edge.cli import run_tool
    from kws.errors import KwsError

    raise SystemExit(run_tool("synth_commands", main, KwsError))
