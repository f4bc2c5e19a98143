"""CPU of edge.serve with one Wyoming client against edge.listen --wav on the same audio.

    python tools/serve_benchmark.py [--model models/kws.onnx] [--seconds 300]

Both run as child processes with one thread for onnxruntime. For edge.listen, the CPU time of the whole
run; for edge.serve, the server's CPU time (from /proc) while one client streams the same audio in 100 ms
16-bit chunks, minus its CPU time when idle before. Start-up (loading Python and the model) is left out of
both: edge.listen's is measured on a 0.1 s file and subtracted. Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import _audio  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
CHUNK = 1600


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _listen_cpu_s(model: Path, wav: Path, env: dict) -> float:
    before = _children_cpu_s()
    subprocess.run([sys.executable, "-m", "edge.listen", "--model", str(model), "--wav", str(wav), "--json"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    return _children_cpu_s() - before


def _process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def _stream(port: int, pcm: bytes) -> int:
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info

    detections = 0
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        for start in range(0, len(pcm), 2 * CHUNK):
            await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=pcm[start:start + 2 * CHUNK]).event())
        await client.write_event(AudioStop().event())
        await client.write_event(Describe().event())
        while not Info.is_type((event := await client.read_event()).type):
            detections += event.type == "detection"
    return detections


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "kws.onnx")
    p.add_argument("--seconds", type=float, default=300.0)
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    audio = _audio(args.seconds)
    with tempfile.TemporaryDirectory() as work:
        wav, short = Path(work) / "audio.wav", Path(work) / "short.wav"
        sf.write(wav, audio, RATE, subtype="PCM_16")
        sf.write(short, audio[:CHUNK], RATE, subtype="PCM_16")
        startup = min(_listen_cpu_s(args.model, short, env) for _ in range(3))
        listen = min(_listen_cpu_s(args.model, wav, env) for _ in range(3)) - startup

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # --max-speed 0: this client streams as fast as it can, which the server's pace limit would refuse
        server = subprocess.Popen([sys.executable, "-m", "edge.serve", "--model", str(args.model), "--uri",
                                   f"tcp://127.0.0.1:{port}", "--max-speed", "0"], cwd=ROOT, env=env,
                                  stderr=subprocess.PIPE, text=True)
        try:
            server.stderr.readline()  # listening
            pcm = np.round(sf.read(wav, dtype="float32")[0] * 32767).astype("<i2").tobytes()
            asyncio.run(_stream(port, pcm[: 2 * CHUNK]))  # the first client pays onnxruntime's lazy start
            runs = []
            for _ in range(3):
                before = _process_cpu_s(server.pid)
                detections = asyncio.run(_stream(port, pcm))
                runs.append(_process_cpu_s(server.pid) - before)
            serve = min(runs)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{args.seconds:g} s of audio ({detections} detections), one onnxruntime thread, best of 3")
    print(f"edge.listen --wav : {listen:6.2f} s CPU ({1000 * listen / args.seconds:.1f} ms per s of audio; "
          f"start-up {startup:.2f} s left out)")
    print(f"edge.serve, 1 client: {serve:6.2f} s CPU ({1000 * serve / args.seconds:.1f} ms per s of audio)")
    print(f"ratio serve / listen: {serve / listen:.2f}")
    return 0


if __name__ == "__main__":
    from edge.cli import run_tool

    raise SystemExit(run_tool("serve_benchmark", main))
