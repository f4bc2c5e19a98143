"""Choose detection settings: score one long validation stream across thresholds, smoothing and suppression.

    python tools/stream_check.py --data ../shared/data/speech_commands [--model models/kws.onnx] [--minutes 10]

The runtime runs once over a seeded stream (as `kws eval-stream` builds it); the detector is then replayed
for each setting. For one setting in depth (per keyword, DET curve, timeline) use `kws eval-stream`.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from edge.detect import DetectorSettings
from kws.stream_eval import detect, run_model, validation_stream
from kws.streams import score_events

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "kws.onnx")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window-only", action="store_true", help="score with the window model, not the stream")
    args = parser.parse_args()

    audio, words = validation_stream(args.model, args.data, args.minutes, args.seed)
    scores = run_model(args.model, audio, progress=False, streaming=not args.window_only)
    n_keywords = sum(w.is_keyword for w in words)
    print(f"{args.minutes:g} min stream, seed {args.seed}: {n_keywords} keywords, "
          f"{len(words) - n_keywords} other words; model {args.model}")
    print(f"{'threshold':>9} {'avg ms':>6} {'supp ms':>7}  {'matched':>8} {'wrong':>6} {'FA/h':>6} "
          f"{'latency median / p90 s':>23}")
    for threshold, average_ms, suppression_ms in itertools.product(
            (0.5, 0.6, 0.7, 0.8, 0.85, 0.9), (30, 100, 200, 300), (1000, 1500)):
        result = score_events(detect(scores, DetectorSettings(threshold, average_ms, suppression_ms)), words,
                              scores.seconds)
        latency = result.latencies_s or [np.nan]
        print(f"{threshold:>9.2f} {average_ms:>6} {suppression_ms:>7}  "
              f"{100 * result.matched / result.keywords:>7.1f}% {100 * result.wrong / result.keywords:>5.1f}% "
              f"{result.false_alarms_per_hour:>6.1f} {np.median(latency):>11.2f} / {np.percentile(latency, 90):.2f}")


if __name__ == "__main__":
    main()
