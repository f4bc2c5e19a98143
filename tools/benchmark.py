"""Benchmark the edge runtime against PyTorch eager on the same audio, one thread each.

    python tools/benchmark.py [--model models/kws.onnx] [--checkpoint models/kws.pt] [--seconds 60]

Each runtime runs in a fresh child process, so start-up time and peak memory (max RSS) are its own.
Prints model compute per second of audio (streaming and window), peak memory and start-up time, their
PyTorch / edge ratios, and what the whole `python -m edge.listen --wav` process costs on
`--listen-seconds` of audio (OMP_NUM_THREADS=1, start-up included): CPU time per second of audio, as a
share of one core listening in real time, and peak memory, at the model's stored settings and at one
speed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 1600  # 100 ms, what edge.listen feeds


def _audio(seconds: float) -> np.ndarray:
    """Real clips from tests/data/clips end to end with quiet noise between them, repeated to length."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    parts = []
    for path in sorted((ROOT / "tests" / "data" / "clips").glob("*.flac")):
        parts += [sf.read(path, dtype="float32")[0], np.zeros(8000, np.float32)]
    one = np.concatenate(parts)
    audio = np.tile(one, int(np.ceil(seconds * 16000 / len(one))))[: int(seconds * 16000)]
    return audio + (0.003 * rng.standard_normal(len(audio))).astype(np.float32)


def _edge(model: Path, audio: np.ndarray, streaming: bool) -> dict:
    started = time.perf_counter()
    from edge import Recognizer

    recognizer = Recognizer.from_onnx(model, streaming=streaming)
    recognizer.process(np.zeros(CHUNK, np.float32))  # first call: ORT's lazy initialisation
    ready = time.perf_counter()
    recognizer.reset()
    detections = 0
    for i in range(0, len(audio), CHUNK):
        detections += len(recognizer.process(audio[i:i + CHUNK]))
    return {"startup_s": ready - started, "compute_s": time.perf_counter() - ready, "detections": detections}


def _torch(checkpoint: Path, audio: np.ndarray, streaming: bool) -> dict:
    started = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    from kws.checkpoint import load_checkpoint, model_from_checkpoint
    from kws.export import StreamGraph, StreamLayout, state_shape_of

    model, config, _ = model_from_checkpoint(load_checkpoint(checkpoint), checkpoint)
    layout = StreamLayout.of(config, 1)
    ready = time.perf_counter()
    samples = torch.from_numpy(audio)
    with torch.inference_mode():
        if streaming:  # the same O(chunk) scheme as the ONNX streaming model
            graph = StreamGraph(model).eval()
            h = torch.zeros(state_shape_of(config))
            c = torch.zeros_like(h)
            for start in range(0, len(samples) - layout.chunk_samples + 1, layout.step_samples):
                _, h, c = graph(samples[None, start:start + layout.chunk_samples], h, c)
        else:  # the whole last second, once per step
            clip = config.features.clip_samples
            for end in range(clip, len(samples) + 1, layout.step_samples):
                model.clip_logits(samples[None, end - clip:end])
    return {"startup_s": ready - started, "compute_s": time.perf_counter() - ready, "detections": None}


def child(kind: str, args) -> None:
    audio = _audio(args.seconds)
    if kind.startswith("edge"):
        result = _edge(args.model, audio, kind == "edge-stream")
    else:
        result = _torch(args.checkpoint, audio, kind == "torch-stream")
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["torch_loaded"] = "torch" in sys.modules
    print(json.dumps(result))


RUNS = [("edge-stream", "edge, streaming ONNX"), ("edge-window", "edge, window ONNX"),
        ("torch-stream", "PyTorch eager, streaming"), ("torch-window", "PyTorch eager, window")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "kws.onnx")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "kws.pt")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--listen-seconds", type=float, default=600.0,
                        help="length of the audio for the whole-process edge.listen cost (0: skip it)")
    parser.add_argument("--child", choices=[kind for kind, _ in RUNS], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    listen = _listen_costs(args.model, args.listen_seconds, env) if args.listen_seconds > 0 else None
    results = {}
    for kind, _ in RUNS:
        if kind.startswith("torch") and not args.checkpoint.is_file():
            continue
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--model", str(args.model),
                              "--checkpoint", str(args.checkpoint), "--seconds", str(args.seconds)],
                             env=env, capture_output=True, text=True, check=True, cwd=ROOT)
        results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.seconds:g} s of audio (real clips and noise), one thread, {os.cpu_count()} cores here")
    print(f"{'runtime':<28}{'ms per s of audio':>18}{'peak MB':>10}{'start-up s':>12}{'torch loaded':>14}")
    for kind, name in RUNS:
        if kind in results:
            r = results[kind]
            print(f"{name:<28}{1000 * r['compute_s'] / args.seconds:>18.2f}{r['peak_mb']:>10.0f}"
                  f"{r['startup_s']:>12.2f}{str(r['torch_loaded']):>14}")
    if "torch-stream" in results:
        e, t = results["edge-stream"], results["torch-stream"]
        print(f"PyTorch / edge (streaming): compute x{t['compute_s'] / e['compute_s']:.1f}, "
              f"peak memory x{t['peak_mb'] / e['peak_mb']:.1f}, start-up x{t['startup_s'] / e['startup_s']:.1f}")
    e = results["edge-stream"]
    print(f"edge streaming real-time factor: {e['compute_s'] / args.seconds:.4f} "
          f"({e['detections']} detections)")
    if listen:
        print(listen)


# Runs edge.listen and reports its own usage: RUSAGE_CHILDREN of a fresh parent is that one child's alone,
# peak memory included.
_MEASURE = """
import json, resource, subprocess, sys
out = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024,
                  "events": len(out.stdout.splitlines())}))
"""


def _listen_cost(model: Path, path: Path, env: dict, extra: list[str]) -> dict:
    """The whole edge.listen process on a file: CPU seconds (user + system), peak memory, events."""
    command = [sys.executable, "-m", "edge.listen", "--model", str(model), "--wav", str(path), "--json", *extra]
    out = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout)


def _listen_costs(model: Path, seconds: float, env: dict) -> str:
    """edge.listen at the stored settings and at one speed, on the same audio, one after the other."""
    import tempfile

    import soundfile as sf

    from edge.runtime import read_model_info

    speeds = read_model_info(model).speeds
    runs = [(f"stored settings ({len(speeds)} speed{'s' * (len(speeds) > 1)})", [])]
    if len(speeds) > 1:
        runs.append(("--speeds 1", ["--speeds", "1"]))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "replay.wav"
        sf.write(path, _audio(seconds), 16000, subtype="PCM_16")
        results = [(name, _listen_cost(model, path, env, extra)) for name, extra in runs]
    lines = [f"edge.listen --wav, whole process, {seconds:g} s of audio, one thread:",
             f"  {'settings':<28}{'CPU s':>8}{'ms per s':>10}{'% of a core':>13}{'peak MB':>9}{'events':>8}"]
    for name, r in results:
        lines.append(f"  {name:<28}{r['cpu_s']:>8.2f}{1000 * r['cpu_s'] / seconds:>10.2f}{100 * r['cpu_s'] / seconds:>13.2f}"
                     f"{r['peak_mb']:>9.0f}{r['events']:>8}")
    return "\n".join(lines)


if __name__ == "__main__":
    from edge.cli import run_tool
    from kws.errors import KwsError

    raise SystemExit(run_tool("benchmark", main, KwsError))
