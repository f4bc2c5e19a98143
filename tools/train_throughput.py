"""How fast does `kws train` learn here? Examples per second of training (validation and data loading left
out) for one CPU process, two CPU processes under torchrun (DDP, gloo), and a GPU where PyTorch sees one.
Prints a table.

    python tools/train_throughput.py --data ../shared/data/speech_commands
    python tools/train_throughput.py --data ../shared/data/speech_commands -- --sequence-ms 3000   # step 2

Each row is a real `kws train --epochs 1` run into a temporary folder (arguments after `--` go to it);
its figure is metrics.json's examples_per_second. Every run loads the data itself first (minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the data folder to train on")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], metavar="N",
                   help="CPU rows: one per process count; above 1 runs under torchrun (default: 1 2)")
    p.add_argument("--no-gpu", action="store_true", help="no GPU row even where PyTorch sees one")
    p.add_argument("train_args", nargs="*", help="more `kws train` flags, after --")
    return p


def _command(processes: int, device: str, data: Path, out: Path, extra: list[str]) -> list[str]:
    train = ["kws", "train", "--data", str(data), "--out", str(out), "--epochs", "1", "--device", device,
             "--no-progress", *extra]
    if processes == 1:
        return [sys.executable, "-m", *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            "-m", *train]


def measure(processes: int, device: str, data: Path, extra: list[str]) -> dict:
    """One `kws train --epochs 1` run: its examples per second, threads per process and wall time."""
    threads = max(1, (os.cpu_count() or 1) // processes)
    with tempfile.TemporaryDirectory(prefix="kws-throughput-") as folder:
        out = Path(folder) / "run"
        done = subprocess.run(_command(processes, device, data, out, extra), capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{processes} process(es) on {device}: kws train failed (exit {done.returncode}): {last}")
        row = json.loads((out / "metrics.json").read_text())[-1]
    return {"processes": processes, "device": device, "threads": threads,
            "examples_per_second": row["examples_per_second"], "epoch_seconds": row["seconds"]}


def main(argv: list[str] | None = None) -> int:
    import torch

    args = build_parser().parse_args(argv)
    if not args.data.is_dir():
        print(f"train_throughput: error: --data {args.data} is not a folder", file=sys.stderr)
        return 2
    runs = [(n, "cpu") for n in args.processes]
    if torch.cuda.is_available() and not args.no_gpu:
        runs.append((1, "cuda"))
    print(f"kws train, one epoch on {args.data}{' ' + ' '.join(args.train_args) if args.train_args else ''}")
    print(f"{'processes':>9}  {'device':<6} {'threads each':>12} {'examples/s':>11} {'epoch (with validation)':>24}")
    for processes, device in runs:
        try:
            row = measure(processes, device, args.data, args.train_args)
        except RuntimeError as error:
            print(f"train_throughput: error: {error}", file=sys.stderr)
            return 2
        print(f"{processes:>9}  {device:<6} {row['threads']:>12} {row['examples_per_second']:>11.0f} "
              f"{row['epoch_seconds']:>22.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
