"""How good is a model of your own word from a few recordings? Prints a table.

Takes a word the data holds from many speakers (`happy`: about 760) as the "new" word and trains as a user
would (the own-words recipe's settings), on a few clips of a few training speakers (none of that word in the negatives), for each
`--shots CLIPSxSPEAKERS`, from fresh weights and from the shipped model's (`--start`). Then, through the
edge runtime at the exported model's stored settings:
- recall: the share of the word's validation clips (every validation speaker) with an event for it, each
  clip alone with silence around it;
- false alarms per hour on the held-out continuous speech of `--other`'s testing speakers (and `--speech`).
With `--budget N`, the thresholds are first chosen as `kws calibrate --speech` chooses them: for N false
alarms per hour on `--other`'s validation speakers (never trained on, never measured).

    python tools/few_shot.py --data ../shared/data/speech_commands --negatives runs/negatives \\
        --other eval/other --speech eval/asterisk --out runs/few_shot
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kws.config import Config, DataConfig, TrainConfig  # noqa: E402
from kws.data import scan, speaker_id  # noqa: E402
from kws.errors import KwsError  # noqa: E402
from kws.recipe import load_recipe  # noqa: E402

OWN_WORDS = load_recipe("own-words").step(None)  # a user's training settings (kws/recipes/own-words.toml)

LISTS = ("validation_list.txt", "testing_list.txt")
SILENCE_S = 0.5  # around each clip heard alone


def _shots(text: str) -> tuple[int, int]:
    try:
        clips, speakers = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give CLIPSxSPEAKERS, e.g. 20x4, not {text!r}") from None
    if speakers < 1 or clips < speakers or clips % speakers:
        raise argparse.ArgumentTypeError(f"{text}: as many clips from each speaker, at least one each")
    return clips, speakers


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="few_shot", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="Speech Commands-style data holding --word")
    p.add_argument("--word", default="happy", help="the word to learn as new (default: %(default)s)")
    p.add_argument("--negatives", type=Path, action="append", default=[], required=True,
                   help="other speech for training, as kws train --negatives (repeatable)")
    p.add_argument("--other", type=Path, required=True, help="other speech whose testing speakers' continuous "
                   "speech counts false alarms (as kws eval-open-set --other)")
    p.add_argument("--speech", type=Path, action="append", default=[],
                   help="also count false alarms on this recording or folder (repeatable; default: none)")
    p.add_argument("--shots", type=_shots, action="append", default=None, metavar="CLIPSxSPEAKERS",
                   help="training clips and the speakers they come from (repeatable; default: 5x1, 20x4, 50x10)")
    p.add_argument("--start", type=Path, default=ROOT / "models" / "kws.pt",
                   help="the trained model to start from in the second row of each size (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=OWN_WORDS["epochs"],
                   help="training epochs per run (default: the own-words recipe's, %(default)s)")
    p.add_argument("--keyword-examples", type=int, default=OWN_WORDS["keyword_examples"],
                   help="keyword examples per epoch (kws train --keyword-examples; default: the own-words "
                        "recipe's, %(default)s)")
    p.add_argument("--unknown-percent", type=float, default=OWN_WORDS["unknown_percent"],
                   help="other words per epoch, in percent of the keyword examples (kws train --unknown-percent; "
                        "default: the own-words recipe's, %(default)s)")
    p.add_argument("--starts", choices=("both", "shipped", "fresh"), default="both",
                   help="which starting weights to train from (default: %(default)s)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="add N takes of the word said by "
                   "espeak-ng voices to the training clips, as `kws record --synthetic N` does (default: none)")
    p.add_argument("--budget", type=float, default=None, help="calibrate each model's thresholds for this many "
                   "false alarms per hour on --other's validation speech (default: the stored settings)")
    p.add_argument("--seed", type=int, default=0, help="which speakers and clips, and the training seed "
                   "(default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="folder for the data folders, runs and report")
    return p


def _listed(data: Path) -> dict[str, str]:
    """'word/file' stem -> 'validation' or 'testing', from the data set's lists."""
    split = {}
    for name in LISTS:
        path = data / name
        if path.exists():
            for line in path.read_text().split():
                split[str(Path(line).with_suffix(""))] = name.split("_")[0]
    return split


def _rank(text: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()


def few_shot_data(data: Path, word: str, clips: int, speakers: int, seed: int, out: Path,
                  synthetic: int = 0) -> tuple[Path, int]:
    """A data folder of links: every other word whole; of `word`, `clips` training clips from at least
    `speakers` training speakers (up to clips / speakers from each, the speakers with most clips first:
    Speech Commands holds at most about five of a word per speaker, so 20 clips take five of them) and all
    its validation and testing clips; and `synthetic` takes said by espeak-ng voices (`kws record
    --synthetic`). Returns the folder and the speakers used."""
    if not (data / word).is_dir():
        raise KwsError(f"{data / word} does not exist: --data must hold the --word as a folder of clips")
    listed = _listed(data)
    files = sorted(p for p in (data / word).iterdir() if p.is_file())
    by_speaker: dict[str, list[Path]] = {}
    for path in files:
        if f"{word}/{path.stem}" not in listed:
            by_speaker.setdefault(speaker_id(path), []).append(path)
    each = -(-clips // speakers)
    ranked = sorted(by_speaker, key=lambda s: (-min(each, len(by_speaker[s])), _rank(s, seed)))
    kept: list[Path] = []
    used = 0
    for speaker in ranked:
        if len(kept) >= clips:
            break
        kept += sorted(by_speaker[speaker], key=lambda p: _rank(p.name, seed))[:min(each, clips - len(kept))]
        used += 1
    if len(kept) < clips:
        raise KwsError(f"{data / word} has {len(kept)} training clips, not {clips}")
    kept += [p for p in files if f"{word}/{p.stem}" in listed]
    folder = out / (f"data-{clips}x{speakers}" + (f"-synth{synthetic}" if synthetic else ""))
    (folder / word).mkdir(parents=True, exist_ok=True)
    if synthetic and not any((folder / word).glob("espeak-*")):
        from kws.record import record_synthetic

        record_synthetic(word, folder / word, synthetic, seed)
    for path in kept:
        link = folder / word / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    for entry in data.iterdir():
        link = folder / entry.name
        if entry.name != word and not link.exists():
            link.symlink_to(entry.resolve())
    return folder, used


def recall(model: Path, data: Path, word: str) -> tuple[int, int]:
    """(clips with an event for `word`, validation clips of `word`), each clip alone through the runtime."""
    from edge.runtime import Recognizer
    from kws.data import load_audio
    from kws.eval_scoring import detect, run_model

    recognizer = Recognizer.from_onnx(model)
    silence = np.zeros(int(SILENCE_S * recognizer.sample_rate), np.float32)
    clips = [c for c in scan(data).clips_of("validation")  # real voices only: synthetic ones split by voice too
             if c.word == word and not speaker_id(c.path).startswith("espeak-")]
    heard = 0
    for clip in clips:
        audio = np.concatenate([silence, load_audio(clip.path, recognizer.sample_rate), silence])
        heard += any(label == word for label, _ in detect(run_model(recognizer, audio, progress=False),
                                                          recognizer.settings))
    return heard, len(clips)


def calibrated(model: Path, other: Path, budget: float, folder: Path) -> Path:
    """A copy of `model` (and its streaming twin) in `folder`, its thresholds chosen for `budget` false alarms
    per hour on `other`'s validation speech."""
    import shutil

    from kws.calibrate import calibrate, write_thresholds
    from kws.eval_open_set import held_out_speech
    from kws.eval_scoring import run_model

    folder.mkdir(parents=True, exist_ok=True)
    for twin in model.parent.glob(f"{model.stem}*.onnx"):
        shutil.copy(twin, folder / twin.name)
    copy = folder / model.name
    write_thresholds(copy, calibrate(run_model(copy, held_out_speech(copy, other), progress=False), budget))
    return copy


def run(args, clips: int, speakers: int, start: Path | None) -> dict:
    from kws.eval_open_set import speech_false_alarms
    from kws.export import export_checkpoint
    from kws.train import train

    data, used = few_shot_data(args.data, args.word, clips, speakers, args.seed, args.out, args.synthetic)
    name = f"{clips}x{speakers}-{'shipped' if start else 'fresh'}" + (f"-synth{args.synthetic}" if args.synthetic else "")
    config = Config(data=DataConfig(keywords=(args.word,), keyword_examples=args.keyword_examples,
                                    unknown_percent=args.unknown_percent),
                    train=TrainConfig(epochs=args.epochs, seed=args.seed, select_by=OWN_WORDS["select_by"],
                                      learning_rate=OWN_WORDS["learning_rate"] if start else 3e-3))
    started = time.monotonic()
    run_dir = args.out / name
    budget = "" if args.budget is None else f"_budget{args.budget:g}"
    done = run_dir / f"few_shot{budget}.json"
    if done.exists():  # measured before: the same figures
        return json.loads(done.read_text())
    if not (run_dir / "config.json").exists():  # a finished run is measured again, not retrained
        train(data, run_dir, config, resume=(run_dir / "last.pt").exists(), progress=False,
              echo=lambda line: None, init_from=start, negatives=tuple(args.negatives))
    model = run_dir / "model" / "kws.onnx"
    if not model.exists():
        export_checkpoint(run_dir / "best.pt", model, data, verify_clips=100)
    if args.budget is not None:
        model = calibrated(model, args.other, args.budget, run_dir / f"model{budget}")
    heard, spoken = recall(model, data, args.word)
    speech = speech_false_alarms(model, args.other, "testing", tuple(args.speech))["all"]
    row = {"run": name, "speakers": used, "recall": heard / spoken, "spoken": spoken,
           "false_alarms": speech["false_alarms"], "per_hour": speech["false_alarms_per_hour"],
           "minutes": speech["minutes"], "seconds": time.monotonic() - started}
    done.write_text(json.dumps(row))
    return row


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    shots = args.shots or [(5, 1), (20, 4), (50, 10)]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"'{args.word}' learnt from a few clips; recall on its validation clips, false alarms on held-out speech")
    print(f"{'clips x speakers':<18} {'start':<8} {'recall':>14} {'false alarms':>22} {'time':>7}")
    try:
        starts = {"both": (args.start, None), "shipped": (args.start,), "fresh": (None,)}[args.starts]
        for start in starts:  # the recipe's way first
            for clips, speakers in shots:
                row = run(args, clips, speakers, start)
                print(f"{clips:>5} x {row['speakers']:<10} {'shipped' if start else 'fresh':<8} "
                      f"{100 * row['recall']:6.1f}% of {row['spoken']:<4} {row['per_hour']:6.1f}/h "
                      f"({row['false_alarms']} in {row['minutes']:.0f} min) {row['seconds'] / 60:5.1f} m",
                      flush=True)
    except KwsError as error:
        print(f"few_shot: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
