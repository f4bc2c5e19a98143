"""Choose detection settings: score one long validation stream across thresholds, smoothing, the slower
sustained rule and suppression.

    python tools/stream_check.py --data ../shared/data/speech_commands [--model models/kws.onnx] [--minutes 10]
        [--thresholds 0.8,0.9] [--average-ms 200,300] [--sustained 0,800/0.7,1000/0.65] [--suppression-ms 1500]
        [--other ../shared/data/other_speech [--negatives FILE_OR_FOLDER]]

The runtime runs once over a seeded stream (as `kws eval-stream` builds it); the detector is then replayed
for each setting. With `--other`, the stream is the open-set measurement's (commands among other words and
real speech, `kws eval-open-set`), and each setting also gets its false alarms per hour on the held-out
speech without commands and the share of held-out other words it accepts. For one setting in depth (per
keyword, DET curve, timeline) use `kws eval-stream` or `kws eval-open-set`.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from edge.detect import DetectorSettings
from kws.eval_audio import validation_stream
from kws.eval_open_set import open_set_report, score_open_set
from kws.eval_scoring import detect, run_model, score_events

ROOT = Path(__file__).resolve().parent.parent


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give comma-separated numbers, e.g. 0.8,0.9") from None


def _sustained(text: str) -> tuple[tuple[float, float], ...]:
    """'0,1000/0.65' -> ((0, 1.0), (1000, 0.65)); a rule of 0 ms is off, whatever its threshold"""
    try:
        return tuple((0.0, 1.0) if v.strip() == "0" else tuple(float(x) for x in v.split("/", 1))
                     for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give MS/THRESHOLD pairs or 0, e.g. 0,1000/0.65") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "kws.onnx")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window-only", action="store_true", help="score with the window model, not the stream")
    parser.add_argument("--thresholds", type=_numbers, default=(0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95))
    parser.add_argument("--average-ms", type=_numbers, default=(100, 200, 300))
    parser.add_argument("--sustained", type=_sustained, default=((0, 1.0), (800, 0.7), (1000, 0.6), (1000, 0.65)),
                        help="slower rules to try, MS/THRESHOLD, comma-separated; 0 for none")
    parser.add_argument("--suppression-ms", type=_numbers, default=(1500,))
    parser.add_argument("--other", type=Path, help="other-speech folder: score the open-set measurement instead")
    parser.add_argument("--negatives", type=Path, action="append", default=[], metavar="FILE_OR_FOLDER",
                        help="with --other: more speech without commands, as `kws eval-open-set --negatives`")
    args = parser.parse_args()

    open_set = None
    if args.other is not None:
        open_set = score_open_set(args.model, args.data, args.other, negatives=tuple(args.negatives),
                                  minutes=args.minutes, seed=args.seed, progress=False)
        scores, words = open_set.stream, open_set.stream_words
    else:
        audio, words = validation_stream(args.model, args.data, args.minutes, args.seed)
        scores = run_model(args.model, audio, progress=False, streaming=not args.window_only)
    n_keywords = sum(w.is_keyword for w in words)
    print(f"{args.minutes:g} min stream, seed {args.seed}: {n_keywords} keywords, "
          f"{len(words) - n_keywords} other words{' and stretches of speech' if open_set else ''}; model {args.model}")
    print(f"{'threshold':>9} {'avg ms':>6} {'sustained':>9} {'supp ms':>7}  {'matched':>8} {'wrong':>6} {'FA/h':>6} "
          f"{'latency median / p90 s':>23}" + ("  speech FA/h  words FA/h  words accepted" if open_set else ""))
    for threshold, average_ms, (sustained_ms, sustained_threshold), suppression_ms in itertools.product(
            args.thresholds, args.average_ms, args.sustained, args.suppression_ms):
        settings = DetectorSettings(threshold, average_ms, suppression_ms, None, sustained_ms, sustained_threshold)
        result = score_events(detect(scores, settings), words, scores.seconds)
        latency = result.latencies_s or [np.nan]
        sustained = f"{sustained_ms:g}/{sustained_threshold:g}" if sustained_ms else "-"
        extra = ""
        if open_set is not None:
            figures = open_set_report(open_set, settings)
            extra = (f"  {figures['speech']['all']['false_alarms_per_hour']:>11.1f}  "
                     f"{figures['words_in_a_row']['all']['false_alarms_per_hour']:>10.1f}  "
                     f"{figures['words']['all']['accepted_percent']:>13.1f}%")
        print(f"{threshold:>9.2f} {average_ms:>6g} {sustained:>9} {suppression_ms:>7g}  "
              f"{100 * result.matched / result.keywords:>7.1f}% {100 * result.wrong / result.keywords:>5.1f}% "
              f"{result.false_alarms_per_hour:>6.1f} {np.median(latency):>11.2f} / {np.percentile(latency, 90):.2f}"
              + extra)


if __name__ == "__main__":
    from edge.cli import run_tool
    from kws.errors import KwsError

    raise SystemExit(run_tool("stream_check", main, KwsError))
