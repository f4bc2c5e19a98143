"""The `kws` command: train, eval, data download. Every user mistake ends in one line and exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from edge.errors import EdgeError
from kws.config import AugmentConfig, Config, DataConfig, FeatureConfig, ModelConfig, TrainConfig
from kws.errors import KwsError
from kws.recipe import default_export_settings, load_recipe

# flag -> (config section, field, type); flags left unset keep the stored or default value
_OVERRIDES = {
    "epochs": ("train", "epochs", int),
    "batch_size": ("train", "batch_size", int),
    "learning_rate": ("train", "learning_rate", float),
    "seed": ("train", "seed", int),
    "label_smoothing": ("train", "label_smoothing", float),
    "sequence_ms": ("train", "sequence_ms", int),
    "hidden_size": ("model", "hidden_size", int),
    "layers": ("model", "num_layers", int),
    "dropout": ("model", "dropout", float),
    "frame_stack": ("model", "frame_stack", int),
    "n_mfcc": ("features", "n_mfcc", int),
    "speed_change": ("augment", "speed_change", float),
    "level_db": ("augment", "level_db", float),
    "noise_gain_max": ("augment", "noise_gain_max", float),
    "unknown_percent": ("data", "unknown_percent", float),
    "silence_percent": ("data", "silence_percent", float),
    "keyword_examples": ("data", "keyword_examples", int),
    "unknown_weighting": ("data", "unknown_weighting", str),
    "on_off_fold": ("data", "on_off_fold", int),
    "select_by": ("train", "select_by", str),
    "speech_gaps": ("train", "speech_gaps", float),
}
_DEFAULTS = {"features": FeatureConfig(), "train": TrainConfig(), "model": ModelConfig(), "data": DataConfig(), "augment": AugmentConfig()}
# flag -> what it does and the values it takes, for `kws train --help` (the default is added from the config)
_HELP = {
    "epochs": "passes over the training data, 1 or more",
    "batch_size": "clips per training step, 1 or more",
    "learning_rate": "AdamW's rate after a linear warm-up, falling to zero on a cosine, above 0",
    "seed": "seed of the weights, batches and augmentation: the same seed and data give the same run",
    "label_smoothing": "share of each target spread over the other labels, 0 to 1",
    "sequence_ms": "train on stretches of this many ms holding several clips, with a target at every step; "
                   "0: on single aligned clips",
    "hidden_size": "LSTM units per layer, 1 or more",
    "layers": "LSTM layers, 1 or more (1 or 2 stay compact)",
    "dropout": "dropout between the LSTM layers and before the head, 0 to 1",
    "frame_stack": "10 ms feature frames the LSTM reads per step, 1 or more (a step of 2: 20 ms)",
    "n_mfcc": "MFCC coefficients per frame, 1 to 40 (the mel bands)",
    "speed_change": "speaking rate changed at random by up to this share either way, 0 to 1 (0.1: 10 percent)",
    "level_db": "each clip made up to this many dB quieter (speakers near and far), 0 or more",
    "noise_gain_max": "background noise mixed in at an amplitude gain of up to this, 0 or more",
    "unknown_percent": "_unknown_ clips per epoch, in percent of the keyword clips, 0 or more",
    "silence_percent": "_silence_ clips per epoch, in percent of the keyword clips, 0 or more",
    "keyword_examples": "at least this many keyword examples per epoch, 0 or more: a few recordings of your "
                        "own words are drawn again, each time augmented anew; 0: each clip once",
    "unknown_weighting": "how _unknown_ clips are drawn: 'clip' (every clip alike) or 'source' (each source of "
                         "other speech, and the data's own other words, an equal share)",
    "on_off_fold": "hold out fold K (0, 1 or 2) of the speakers who said 'on' and 'off' in the other speech "
                   "(none of their clips trained on) and measure on/off on them; -1: no folds",
    "select_by": "which epoch becomes best.pt: 'accuracy' on the validation clips, or 'open-set' (the mean of "
                 "that and the validation other speech rejected; needs --negatives)",
    "speech_gaps": "with --sequence-ms and --negatives: share of the gaps between clips that hold real speech, 0 to 1",
}


def _keywords(text: str) -> tuple[str, ...]:
    words = tuple(w.strip() for w in text.split(",") if w.strip())
    if not words:
        raise argparse.ArgumentTypeError("give comma-separated words, e.g. yes,no,stop, or 'all'")
    return words


def _add_recipe(p, text: str) -> None:
    p.add_argument("--recipe", default=None, metavar="FILE_OR_NAME", help=text)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a keyword model", description="Train a KeywordLSTM on a "
                       "Speech Commands-style folder; writes best.pt, last.pt, metrics.csv/json to --out. "
                       "`--recipe default --step clips`, then `--step tuned`, trains the shipped model.")
    _add_recipe(p, "take one training step's settings (--step) from this recipe file, or from a shipped recipe "
                "by name: 'default' is the shipped model's (kws/recipes/default.toml); flags given win "
                "(default: no recipe)")
    p.add_argument("--step", default=None, help="the recipe's step to run, e.g. clips, then tuned (default: "
                   "the recipe's only step, where it has one)")
    p.add_argument("--data", type=Path, help="folder with one sub-folder per word, Speech Commands style (a "
                   "_background_noise_ folder and validation/testing lists if it has them) (default: the "
                   "recipe's; one of the two is needed)")
    p.add_argument("--out", type=Path, help="run folder for checkpoints and metrics, new or (with --resume) the "
                   "run to continue (default: the recipe's; one of the two is needed)")
    p.add_argument("--keywords", type=_keywords, default=None,
                   help="comma-separated words, or 'all' (default: those of the ten Speech Commands commands "
                        "yes, no, up, down, left, right, on, off, stop, go that have a folder in the data; "
                        "eight in ../shared/data/speech_commands)")
    for flag, (section, field, kind) in _OVERRIDES.items():
        default = getattr(_DEFAULTS[section], field)
        p.add_argument(f"--{flag.replace('_', '-')}", type=kind, default=None,
                       help=f"{_HELP.get(flag, '')} (default: {default})")
    p.add_argument("--negatives", type=Path, action="append", default=[], metavar="FOLDER",
                   help="other speech without the keywords (e.g. ../shared/data/other_speech): its training "
                        "speakers are added as _unknown_ (repeatable; default: none)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--init-from", type=Path, default=None, metavar="CHECKPOINT",
                   help="start from these weights (same words and network), e.g. to fine-tune models/kws.pt "
                        "(default: random weights)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to train: cuda (a GPU, with bfloat16 mixed precision), cpu, or auto: cuda when "
                        "PyTorch sees one. Under torchrun --nproc-per-node N each process trains a share of "
                        "every batch (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes that draw and augment the batches beside training, each batch from a seed "
                        "of its own (the same model for any N of 1 or more; 0: in the training process, from "
                        "the epoch's one seed) (default: 0 on the CPU; on a GPU the cores but one, at most 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs stay)")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="accuracy, per-class table and confusion matrix of a checkpoint",
                       description="Classify every clip of one split of a data folder with a checkpoint or an "
                       "exported model: accuracy, a per-class table and a confusion matrix picture.")
    p.add_argument("--checkpoint", required=True, type=Path, help="a .pt checkpoint or an exported .onnx model")
    p.add_argument("--data", required=True, type=Path, help="the data folder to classify, with the model's words")
    p.add_argument("--split", default="validation", choices=["training", "validation", "testing"],
                   help="which clips: training, validation or testing (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="where to write the report (default: next to the checkpoint)")


# export flag -> what it sets, for the flags whose default is the shipped recipe's (kws/recipes/default.toml)
_EXPORT_SETTINGS = {
    "threshold": "score in (0, 1] a keyword's smoothed score must reach",
    "average_ms": "ms of scores averaged into the smoothed score, more than 0",
    "suppression_ms": "ms after an event in which no other fires, 0 or more",
    "peak_ms": "ms an event may wait for its score's peak, which it reports as its score; 0: reported at the "
               "crossing",
    "sustained_ms": "also fire on a keyword whose score averages --sustained-threshold over this many ms; 0: off",
    "sustained_threshold": "score in (0, 1] the --sustained-ms rule needs",
    "speeds": "speeds edge.listen hears the stream at, from 0.8 to 1.25 with 1 among them, averaging the scores, "
              "e.g. 1,0.95,1.05: fewer false alarms for one more model pass per speed",
    "stream_steps": "LSTM steps per streaming call, 1 or more; a step is frame-stack x 10 ms (20 ms for the "
                    "shipped model)",
}


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write the ONNX window and streaming models, verified against PyTorch",
                       description="Export a checkpoint as the ONNX window model and its streaming twin (MFCC "
                       "and LSTM in one graph, labels and settings in the metadata), verify both against PyTorch "
                       "on validation clips, and only then put them in place. Detection settings given neither as "
                       "flags nor in --recipe are the shipped recipe's (kws/recipes/default.toml); the command "
                       "prints what it stored.")
    _add_recipe(p, "take the [export] settings of this recipe file, or of a shipped recipe by name ('default': "
                "the shipped model's checkpoint, files and settings); flags given win (default: no recipe)")
    needed = "(default: the recipe's; one of the two is needed)"
    p.add_argument("--checkpoint", type=Path, help=f"a .pt checkpoint from kws train (best.pt) {needed}")
    p.add_argument("--out", type=Path, help="window model path, e.g. models/kws.onnx; the streaming model goes "
                   f"beside it as NAME.stream.onnx {needed}")
    p.add_argument("--data", type=Path, help=f"data folder whose validation clips verify the export {needed}")
    p.add_argument("--int8", action="store_true", default=None, help="also write dynamically quantized NAME.int8.onnx copies "
                   "(default: float only)")
    p.add_argument("--force", action="store_true", help="replace model files already in the --out folder "
                   "(without it, export refuses, so that a shipped model is not overwritten by accident)")
    p.add_argument("--verify-clips", type=int, default=400, metavar="N",
                   help="validation clips compared with PyTorch, 1 or more (default: %(default)s)")
    shipped = default_export_settings()
    for flag, text in _EXPORT_SETTINGS.items():
        value = tuple(shipped[flag]) if flag == "speeds" else shipped[flag]
        shown = ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"
        kind = {"speeds": _speeds, "stream_steps": int}.get(flag, float)
        p.add_argument(f"--{flag.replace('_', '-')}", type=kind, default=None,
                       metavar="LIST" if flag == "speeds" else None,
                       help=f"{text}; stored for edge.listen and edge.serve (default: the shipped recipe's {shown})")


def _export_settings(args) -> tuple[dict, tuple[float, ...], int, str]:
    """(detection settings, speeds, stream steps, a line saying what was stored): each setting from its flag
    or --recipe, or else the shipped recipe's."""
    shipped = _flag_values(build_parser(), "export", default_export_settings(), "the shipped recipe")
    chosen = {flag: getattr(args, flag) if getattr(args, flag) is not None else shipped[flag]
              for flag in _EXPORT_SETTINGS}
    if chosen["stream_steps"] < 1:
        raise KwsError("--stream-steps must be at least 1")
    detection = dataclasses.asdict(_detector_settings(
        **{k: v for k, v in chosen.items() if k not in ("speeds", "stream_steps")}))
    given = [f"--{flag.replace('_', '-')}" for flag in _EXPORT_SETTINGS if flag in args.given]
    from_recipe = [flag for flag in _EXPORT_SETTINGS if flag in args.recipe_values and flag not in args.given]
    shipped_left = len(_EXPORT_SETTINGS) - len(given) - len(from_recipe)
    sources = [f"from {', '.join(given)}"] if given else []
    if from_recipe:
        sources.append(f"{', '.join(from_recipe)} from recipe {args.recipe}" if shipped_left
                       else f"{'the rest from' if given else 'from'} recipe {args.recipe}")
    if shipped_left:
        sources.append(f"{'the rest from' if sources else 'from'} the shipped recipe, kws/recipes/default.toml")
    stored = (f"stored: threshold {chosen['threshold']:g} on a {chosen['average_ms']:g} ms average, events "
              f"{chosen['suppression_ms']:g} ms apart, reported at their peak within {chosen['peak_ms']:g} ms"
              + (f", or {chosen['sustained_threshold']:g} on {chosen['sustained_ms']:g} ms" if chosen["sustained_ms"]
                 else "")
              + f"; speeds {','.join(f'{v:g}' for v in chosen['speeds'])}; {chosen['stream_steps']} step(s) per "
              f"streaming call ({'; '.join(sources)})")
    return detection, chosen["speeds"], chosen["stream_steps"], stored


def _speeds(text: str) -> tuple[float, ...]:
    from edge.runtime import check_speeds

    try:
        return check_speeds(text.split(","))
    except EdgeError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _snr(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give two numbers in dB, e.g. 5,20") from None
    if low > high:
        raise argparse.ArgumentTypeError("the first SNR must not exceed the second")
    return low, high


def _add_stream_source(p, minutes: float, seed: int) -> None:
    p.add_argument("--model", required=True, type=Path, help="an exported window model, e.g. models/kws.onnx")
    p.add_argument("--data", type=Path, help="build the stream from this folder's validation clips (default: none)")
    p.add_argument("--minutes", type=float, default=minutes, help="length of the built stream (default: %(default)s)")
    p.add_argument("--seed", type=int, default=seed, help="seed of the built stream: which clips, where, how loud "
                   "(default: %(default)s)")
    p.add_argument("--snr-db", type=_snr, default=None, metavar="LOW,HIGH",
                   help="scale each word to a signal-to-noise ratio in this range (default: recorded levels "
                        "x0.5-1 over noise drifting in loudness)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_eval_stream(sub) -> None:
    p = sub.add_parser("eval-stream", help="matched %%, wrong labels, false alarms per hour and latency on long audio",
                       description="Run the edge runtime over long audio and score its detections against the "
                       "truth: a seeded stream built from --data, or your own --wav with a --truth CSV "
                       "(label,start_s,end_s; other words as _unknown_).")
    _add_stream_source(p, 10.0, 0)
    p.add_argument("--wav", type=Path, help="your own recording instead of --data (default: none)")
    p.add_argument("--truth", type=Path, help="CSV of the words in --wav: label,start_s,end_s (default: none)")
    p.add_argument("--threshold", type=float, default=None, help="one threshold for all keywords, a score in "
                   "(0, 1] (default: the model's)")
    p.add_argument("--window-only", action="store_true", help="score with the window model, not the stream")
    p.add_argument("--out", type=Path, default=None,
                   help="write the JSON report, a DET curve and a timeline picture here (default: print only)")
    p.add_argument("--save-stream", action="store_true", help="with --data and --out: also write the built "
                   "stream.wav and its truth.csv")


def _add_eval_open_set(sub) -> None:
    p = sub.add_parser("eval-open-set", help="false alarms on speech without commands, other words accepted, "
                       "commands among other speech", description="Measure what the model does with speech "
                       "that holds none of its commands, on speakers, words and recordings that training never "
                       "saw, through the edge runtime with the model's stored settings.")
    p.add_argument("--model", required=True, type=Path, help="an exported window model, e.g. models/kws.onnx")
    p.add_argument("--data", required=True, type=Path, help="the model's data folder: its validation commands "
                   "and other words")
    p.add_argument("--other", required=True, type=Path, metavar="FOLDER",
                   help="other speech, split by speaker as `kws train --negatives` splits it")
    p.add_argument("--split", default="validation", choices=["validation", "testing"],
                   help="the other-speech speakers to measure on: validation chooses a model, testing is "
                        "reported once (default: %(default)s)")
    p.add_argument("--negatives", type=Path, action="append", default=[], metavar="FILE_OR_FOLDER",
                   help="also count false alarms on this recording, or on every audio file in this folder "
                        "(repeatable; default: none)")
    p.add_argument("--minutes", type=float, default=30.0, help="length of the stream of commands among other "
                   "speech (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stream of commands among other speech "
                   "(default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report into this folder (default: "
                   "print only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="per-keyword thresholds for a false-alarm budget, stored in the model",
                       description="Choose each keyword's threshold as low as a false-alarm budget allows on "
                       "audio without keywords (built from --data's other words and noise, --speech, or "
                       "--negatives), and write them into the model's metadata for edge.listen.")
    _add_stream_source(p, 30.0, 1)
    p.add_argument("--speech", type=Path, help="an other-speech folder (as kws train --negatives takes): its "
                   "--split speakers' speech and words, instead of --data (default: none)")
    p.add_argument("--split", choices=("validation", "testing"), default="validation",
                   help="which held-out speakers of --speech: validation (never trained on) or testing (kept for "
                   "reporting) (default: %(default)s)")
    p.add_argument("--negatives", type=Path, help="your own recording with no keywords in it, instead of --data "
                   "(default: none)")
    p.add_argument("--budget", type=float, default=6.0, help="false alarms per hour, all keywords together "
                   "(default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the thresholds, leave the model as it is")


def _add_explain(sub) -> None:
    p = sub.add_parser("explain", help="a picture of why a keyword fired on a recording, or did not",
                       description="Run the edge runtime over one clip or recording at the model's stored settings "
                       "and speeds, and draw the waveform with the events, each keyword's step and smoothed scores "
                       "against its threshold, and the LSTM's gates (from NAME.pt beside an exported model, or a "
                       ".pt checkpoint); prints the events and each keyword's highest scores.")
    p.add_argument("recording", type=Path, metavar="CLIP_OR_RECORDING",
                   help="an audio file libsndfile reads (wav, flac, ...), resampled to the model's rate if need be")
    p.add_argument("--model", type=Path, default=Path("models/kws.onnx"), help="an exported .onnx model (its "
                   "NAME.pt beside it gives the gates) or a .pt checkpoint (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, metavar="PICTURE.png",
                   help="where to write the picture, a .png file (default: RECORDING_NAME.explain.png in the "
                        "current folder)")
    p.add_argument("--word", default=None, help="draw only this keyword's scores, one of the model's keywords "
                   "(default: each keyword whose step score reaches 0.1)")


def _add_record(sub) -> None:
    from edge.cli import add_device_arguments
    from kws.record import COUNT

    p = sub.add_parser("record", help="record your own clips of a word from the microphone, or cut them from a "
                       "recording", description="Prompt for a word, record it from the microphone, find it by "
                       "energy and save it as a one-second clip (16 kHz FLAC) in the Speech Commands layout, "
                       "DIR/WORD/SPEAKER_nohash_N.flac, numbered after the files already there. Takes that are "
                       "empty, too quiet, clipped, cut off or longer than the clip are refused with the reason and "
                       "asked for again. Needs no PyTorch.")
    p.add_argument("word", nargs="?", metavar="WORD", help="the word, also its folder's name: letters, digits, - "
                   "or ', e.g. lights (needed unless --list-devices)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="the data folder; clips go to DIR/WORD "
                   "(default: none; needed unless --list-devices)")
    p.add_argument("--count", type=int, default=None, metavar="N",
                   help=f"good takes to record from the microphone, 1 or more (default: {COUNT})")
    p.add_argument("--speaker", default=None, metavar="NAME", help="who speaks, the file names' speaker id: "
                   "letters, digits and -, one name per person (default: your login name made safe)")
    p.add_argument("--from-wav", type=Path, default=None, metavar="LONG.wav",
                   help="instead of the microphone, cut a recording of the word said many times with a pause "
                        "(half a second or more) after each into clips, any rate, e.g. from a phone; refused "
                        "stretches are reported (default: the microphone)")
    p.add_argument("--synthetic", type=int, default=None, metavar="N",
                   help="instead of the microphone, N takes said by espeak-ng's English voices at random pitch "
                        "and rate, each voice its own speaker (needs espeak-ng) (default: none)")
    add_device_arguments(p)


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="data set tools", description="Data set tools: `kws data download` fetches "
                       "Speech Commands.")
    data_sub = p.add_subparsers(dest="data_command", required=True, help="download: the only tool so far")
    d = data_sub.add_parser("download", help="download and extract Speech Commands v0.02 (2.3 GB)",
                            description="Download Speech Commands v0.02 (2.3 GB), check its size and checksum, "
                            "resume a broken download, and extract it safely.")
    d.add_argument("--out", required=True, type=Path, help="folder for the archive and the extracted data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kws", description="Train and evaluate compact LSTM keyword spotters.")
    sub = parser.add_subparsers(dest="command", required=True, help="what to do; kws COMMAND --help for its options")
    _add_train(sub)
    _add_eval(sub)
    _add_export(sub)
    _add_eval_stream(sub)
    _add_eval_open_set(sub)
    _add_calibrate(sub)
    _add_explain(sub)
    _add_record(sub)
    _add_data(sub)
    return parser


def _train_config(args) -> Config:
    """Defaults, or the resumed run's stored config, with the flags the user gave on top."""
    base = Config()
    last = args.out / "last.pt"
    if args.resume and last.exists():
        from kws.checkpoint import load_checkpoint

        base = Config.from_dict(load_checkpoint(last)["config"])
    sections = {name: {} for name in _DEFAULTS}
    for flag, (section, field, _) in _OVERRIDES.items():
        if getattr(args, flag) is not None:
            sections[section][field] = getattr(args, flag)
    if args.keywords is not None:
        sections["data"]["keywords"] = args.keywords
    for name, values in sections.items():
        if values:
            base = dataclasses.replace(base, **{name: dataclasses.replace(getattr(base, name), **values)})
    return base


def _run(args) -> int:
    if args.command == "train":
        from kws.train import train

        train(args.data, args.out, _train_config(args), resume=args.resume,
              progress=not args.no_progress and sys.stderr.isatty(), init_from=args.init_from,
              negatives=tuple(args.negatives), device=args.device, workers=args.workers)
        return 0
    if args.command == "eval":
        from kws.evaluate import evaluate_checkpoint

        report, picture = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.out)
        print(report.table())
        print(f"confusion matrix: {picture}")
        return 0
    if args.command == "export":
        from kws.export import export_checkpoint

        if args.verify_clips < 1:
            raise KwsError("--verify-clips must be at least 1")
        detection, speeds, stream_steps, stored = _export_settings(args)
        report = export_checkpoint(args.checkpoint, args.out, args.data, bool(args.int8), args.verify_clips,
                                   stream_steps, detection, overwrite=args.force, speeds=speeds)
        print(report.summary())
        print(stored)
        return 0
    if args.command == "eval-stream":
        return _eval_stream(args)
    if args.command == "eval-open-set":
        return _eval_open_set(args)
    if args.command == "calibrate":
        return _calibrate(args)
    if args.command == "explain":
        from kws.explain import draw, explain, summary

        out = args.out or Path(f"{args.recording.stem}.explain.png")
        if out.suffix.lower() != ".png":
            raise KwsError(f"--out must name a .png file, not {out}")
        explanation = explain(args.recording, args.model, args.word)
        print(summary(explanation))
        print(f"wrote {draw(explanation, out, args.word)}")
        return 0
    if args.command == "record":
        from kws.record import run

        return run(args)
    if args.command == "data":
        from kws.download import download_speech_commands

        print(f"data ready in {download_speech_commands(args.out)}")
        return 0
    raise AssertionError(args.command)  # argparse only lets known commands through


def _detector_settings(**values):
    from edge.detect import DetectorSettings

    try:
        return DetectorSettings(**values)
    except ValueError as error:
        raise KwsError(f"detection settings: {error}") from None


def _eval_stream(args) -> int:
    from kws.eval_audio import read_truth, recording, validation_stream, write_truth
    from kws.eval_stream import describe, evaluate_stream, table

    if (args.data is None) == (args.wav is None) or (args.wav is None) != (args.truth is None):
        raise KwsError("give either --data (to build a stream) or --wav with --truth")
    if args.threshold is not None:
        _detector_settings(threshold=args.threshold)  # refuse a bad value before the long run
    if args.data is not None:
        audio, words = validation_stream(args.model, args.data, args.minutes, args.seed, args.snr_db)
        source = f"{args.minutes:g} min stream of {args.data} (seed {args.seed})"
    else:
        audio, words = recording(args.wav, args.model), read_truth(args.truth)
        source = str(args.wav)
    result = evaluate_stream(args.model, audio, words, args.out, args.threshold,
                                         not args.no_progress and sys.stderr.isatty(), not args.window_only)
    overall = result.figures["overall"]
    print(f"{source}: {overall['spoken']} keywords, "
          f"{sum(not w.is_keyword for w in words)} other words, model {args.model}")
    print(f"detection: {describe(result.settings, result.speeds)}")
    print(table(result.figures))
    if args.out is not None and args.save_stream and args.data is not None:
        import soundfile as sf

        from edge.runtime import read_model_info

        sf.write(args.out / "stream.wav", audio, read_model_info(args.model).sample_rate, subtype="PCM_16")
        write_truth(args.out / "truth.csv", words)
        print(f"stream: {args.out / 'stream.wav'}, truth: {args.out / 'truth.csv'}")
    for path in result.files:
        print(f"wrote {path}")
    return 0


def _eval_open_set(args) -> int:
    from kws.eval_open_set import open_set_report, score_open_set, table
    from kws.eval_stream import describe, save_json

    scores = score_open_set(args.model, args.data, args.other, args.split, tuple(args.negatives), args.minutes,
                            args.seed, not args.no_progress and sys.stderr.isatty())
    figures = {"model": str(args.model), "split": args.split,
               "detection": describe(scores.stream.settings, scores.stream.speeds),
               "speeds": list(scores.stream.speeds), **open_set_report(scores)}
    print(f"{args.model} on {args.split} speakers of {args.other}; detection: {figures['detection']}")
    print(table(figures))
    if args.out is not None:
        path = args.out / f"{args.model.stem}.open_set_{args.split}.json"
        save_json(path, figures)
        print(f"wrote {path}")
    return 0


def _calibrate(args) -> int:
    from kws.calibrate import calibrate, write_thresholds
    from kws.eval_audio import recording, validation_stream
    from kws.eval_scoring import detect, run_model

    if sum(source is not None for source in (args.data, args.speech, args.negatives)) != 1:
        raise KwsError("give one of --data (to build negative audio), --speech or --negatives")
    if args.budget < 0:
        raise KwsError("--budget must be at least 0")
    if args.data is not None:
        audio, _ = validation_stream(args.model, args.data, args.minutes, args.seed, args.snr_db,
                                                 keywords=False)
    elif args.speech is not None:
        from kws.eval_open_set import held_out_speech

        audio = held_out_speech(args.model, args.speech, args.split, args.seed)
    else:
        audio = recording(args.negatives, args.model)
    negatives = run_model(args.model, audio, not args.no_progress and sys.stderr.isatty())
    thresholds = calibrate(negatives, args.budget)
    events = detect(negatives, dataclasses.replace(negatives.settings, thresholds=thresholds))
    print(f"{negatives.seconds / 60:.1f} min without keywords; budget {args.budget:g} false alarms per hour")
    for label, threshold in thresholds.items():
        fired = sum(event[0] == label for event in events)
        print(f"  {label:<10} threshold {threshold:.2f}  {fired} false alarm(s)")
    print(f"  all: {len(events)} false alarm(s), {len(events) * 3600 / negatives.seconds:.1f} per hour")
    if args.dry_run:
        print("dry run: the model was not changed")
    else:
        write_thresholds(args.model, thresholds)
        print(f"thresholds written into {args.model}")
    return 0


_REQUIRED = {"train": ("data", "out"), "export": ("checkpoint", "out", "data")}


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


def _flag_values(parser: argparse.ArgumentParser, command: str, values: dict, where: str) -> dict:
    """A recipe's values for `command`, each checked and converted as its flag's text would be."""
    actions = {a.dest: a for a in _subparser(parser, command)._actions}
    converted = {}
    for key, value in values.items():
        action = actions.get(key)
        if action is None or key in ("recipe", "step", "help"):
            raise KwsError(f"{where}: {key!r} is not a `kws {command}` setting; see kws {command} --help")
        if action.nargs == 0:  # a switch such as --int8
            if not isinstance(value, bool):
                raise KwsError(f"{where}: {key} must be true or false, not {value!r}")
            converted[key] = value
            continue
        if isinstance(value, list) and not isinstance(action, argparse._AppendAction):
            value = ",".join(map(str, value))  # a list flag such as --speeds 1,0.9,1.1
        try:
            convert = action.type or str
            converted[key] = ([convert(str(v)) for v in value] if isinstance(value, list)
                              else convert(str(value)))
        except (argparse.ArgumentTypeError, ValueError) as error:
            raise KwsError(f"{where}: {key} = {value!r}: {error}") from None
    return converted


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, over the --recipe's settings where one is given; `args.given` names the flags
    given on the command line, `args.recipe_values` what the recipe set."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.given = {key for key, value in vars(args).items() if value not in (None, False, [])}
    args.recipe_values = {}
    if getattr(args, "step", None) is not None and args.recipe is None:
        raise KwsError("--step names a step of a --recipe; give the recipe too (e.g. --recipe default)")
    if getattr(args, "recipe", None) is not None:
        recipe = load_recipe(args.recipe)
        values = recipe.step(args.step) if args.command == "train" else recipe.export
        where = f"{recipe.path} [{'steps.' + (args.step or '') if args.command == 'train' else 'export'}]"
        defaults = _flag_values(parser, args.command, values, where)
        _subparser(parser, args.command).set_defaults(**defaults)
        given, args = args, parser.parse_args(argv)
        for key in given.given & defaults.keys():  # a repeatable flag given replaces the recipe's list
            setattr(args, key, getattr(given, key))
        args.given, args.recipe_values = given.given, defaults
    missing = [f"--{name}" for name in _REQUIRED.get(args.command, ()) if getattr(args, name) is None]
    if missing:
        raise KwsError(f"kws {args.command} needs {', '.join(missing)} (as flags or in a --recipe)")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        args = _parse(argv)
    except KwsError as error:
        print(f"kws: error: {error}", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except (KwsError, EdgeError) as error:  # EdgeError: what the runtime refuses, e.g. a stale streaming twin
        print(f"kws: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] in {"torch", "torchaudio", "tqdm", "matplotlib", "librosa", "onnx"}:
            print(f"kws: error: {error.name} is not installed; install the training extra: "
                  "pip install '.[train]'", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        if args.command == "train":
            print("\nkws: interrupted; run the same command with --resume to continue from the last "
                  "finished epoch", file=sys.stderr)
        return 130
