"""Score the runtime on a long stream built from validation clips, across detection settings.

    python tools/stream_check.py --data ../shared/data/speech_commands [--model models/kws.onnx] [--minutes 10]

Builds a seeded stream (validation keywords and other words, 1-3 s apart, over held-out background noise
at drifting levels), runs the edge Recognizer over it once, then replays its scores through the detector
for each setting and prints matched %, wrong-label %, false alarms per hour and latency after the word.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from edge.detect import Detector, DetectorSettings
from edge.runtime import Recognizer
from kws.data import load_split, scan
from kws.evaluate import load_predictor
from kws.streams import build_stream, score_events

ROOT = Path(__file__).resolve().parent.parent


def _save(folder: Path, stream: np.ndarray, words, rate: int) -> None:
    import csv

    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "stream.wav", stream, rate, subtype="PCM_16")
    with open(folder / "truth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "start_s", "end_s"])
        writer.writerows((w.label, f"{w.start_s:.3f}", f"{w.end_s:.3f}") for w in words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "kws.onnx")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window-only", action="store_true", help="score with the window model, not the stream")
    parser.add_argument("--save", type=Path, default=None, metavar="DIR",
                        help="also write the stream (stream.wav) and its ground truth (truth.csv) there")
    args = parser.parse_args()

    _, config, labels = load_predictor(args.model)
    audio = load_split(scan(args.data, config.data), "validation", labels[2:], config)
    seconds = 60 * args.minutes
    stream, words = build_stream(audio, labels, config, seconds, seed=args.seed)
    if args.save is not None:
        _save(args.save, stream, words, config.features.sample_rate)
    recognizer = Recognizer.from_onnx(args.model, streaming=not args.window_only)
    scores = [s for i in range(0, len(stream), 1600) for s in recognizer.scores(stream[i:i + 1600])]
    n_keywords = sum(not w.label.startswith("_") for w in words)
    print(f"{seconds / 60:.0f} min stream, seed {args.seed}: {n_keywords} keywords, "
          f"{len(words) - n_keywords} other words; model {args.model}")
    print(f"{'threshold':>9} {'avg ms':>6} {'supp ms':>7}  {'matched':>8} {'wrong':>6} {'FA/h':>6} "
          f"{'latency median / p90 s':>23}")
    for threshold, average_ms, suppression_ms in itertools.product(
            (0.5, 0.6, 0.7, 0.8, 0.85), (30, 100, 200), (1000, 1500)):
        detector = Detector(labels, DetectorSettings(threshold, average_ms, suppression_ms))
        events = []
        for time_s, probabilities in scores:
            detection = detector.update(probabilities, time_s)
            if detection is not None:
                events.append((detection.label, detection.time_s))
        result = score_events(events, words, seconds)
        latency = [t - w.end_s for label, t in events for w in words
                   if w.label == label and w.start_s <= t <= w.end_s + 1.0]
        print(f"{threshold:>9.2f} {average_ms:>6} {suppression_ms:>7}  "
              f"{100 * result.matched / result.keywords:>7.1f}% {100 * result.wrong / result.keywords:>5.1f}% "
              f"{result.false_alarms_per_hour:>6.1f} {np.median(latency):>11.2f} / {np.percentile(latency, 90):.2f}")


if __name__ == "__main__":
    main()
