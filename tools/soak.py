"""Soak test: hours of audio through one Recognizer, faster than real time, watching memory and steps.

    python tools/soak.py --minutes 60 [--model models/kws.onnx]

The audio is the committed test clips (commands and other words) at random gains and gaps over noise
(three different minutes, cycled), with
a NaN chunk now and then (the runtime must drop it and go on). Memory is the process's resident set,
read after a warm-up minute and at the end; every chunk must come out as model steps. Exit code 1 if
memory grew by more than --max-growth-mb or a step is missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.runtime import Recognizer  # noqa: E402
from edge.sources import file_chunks  # noqa: E402


def resident_mb() -> float:
    """Current resident memory of this process (Linux /proc), in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 1e6


def _minute_of_audio(clips: list[np.ndarray], rate: int, rng: np.random.Generator) -> np.ndarray:
    audio = rng.normal(0, rng.uniform(0.001, 0.02), 60 * rate).astype(np.float32)
    position = int(rng.uniform(0.5, 2.0) * rate)
    while position + rate < len(audio):
        clip = clips[rng.integers(len(clips))]
        audio[position:position + len(clip)] += clip * rng.uniform(0.3, 1.0)
        position += len(clip) + int(rng.uniform(0.5, 3.0) * rate)
    return np.clip(audio, -1, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "kws.onnx")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--chunk-ms", type=int, default=100)
    parser.add_argument("--max-growth-mb", type=float, default=5.0)
    parser.add_argument("--verbose", action="store_true", help="print memory after every minute")
    args = parser.parse_args()

    recognizer = Recognizer.from_onnx(args.model)
    rate = recognizer.sample_rate
    clips = [np.concatenate(list(file_chunks(p, rate, rate))) for p in sorted((ROOT / "tests/data/clips").glob("*.flac"))]
    rng = np.random.default_rng(0)
    chunk = rate * args.chunk_ms // 1000
    minutes = max(2, int(np.ceil(args.minutes)))
    fed = broken = detections = 0
    started = time.monotonic()
    warm_mb = None
    # a few different minutes made up front and cycled, so making audio does not show as runtime memory
    pool = [_minute_of_audio(clips, rate, rng) for _ in range(3)]
    for minute in range(minutes):
        audio = pool[minute % len(pool)]
        for start in range(0, len(audio), chunk):
            piece = audio[start:start + chunk]
            if rng.random() < 0.001:  # a broken chunk from a driver: heard as silence with a warning, not fatal
                piece = piece.copy()
                piece[0] = np.nan
                broken += 1
            fed += len(piece)
            detections += len(recognizer.process(piece))
        if minute == 0:
            warm_mb = resident_mb()
        if args.verbose:
            print(f"minute {minute + 1}: {resident_mb():.1f} MB", flush=True)
    end_mb = resident_mb()
    # the clock counts every sample, broken chunks too
    missing = abs(fed / rate - recognizer.seconds_heard) > 1e-3
    growth = end_mb - warm_mb
    print(f"{minutes} min of audio in {time.monotonic() - started:.1f} s: {detections} detections, "
          f"{recognizer.bad_chunks} NaN chunk(s) heard as silence (of {broken} sent), "
          f"{recognizer.seconds_heard:.2f} s heard of {fed / rate:.2f} s fed "
          f"({recognizer.seconds_processed:.2f} s in whole model calls)")
    print(f"resident memory after the first minute {warm_mb:.1f} MB, at the end {end_mb:.1f} MB "
          f"(growth {growth:+.2f} MB, limit {args.max_growth_mb} MB)")
    ok = growth <= args.max_growth_mb and not missing and recognizer.bad_chunks == broken
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    from edge.cli import run_tool

    raise SystemExit(run_tool("soak", main))
