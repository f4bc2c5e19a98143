"""A real virtual microphone for tests: a private PulseAudio server whose null sink's monitor is the default
input, so whatever is played into the sink is what sounddevice's default input device hears.

    with virtual_microphone(Path("/tmp/vmic")) as mic:
        subprocess.Popen([... "python", "-m", "edge.listen"], env=mic.env)
        mic.play("yes.wav")

As a script: `python tools/virtual_mic.py play FILE.wav` starts one, plays the file, and stops it.
Needs Debian's pulseaudio, pulseaudio-utils and libasound2-plugins (ALSA's default device -> PulseAudio).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SINK = "kws_virtual_mic"


@dataclass(frozen=True)
class VirtualMic:
    env: dict  # environment that points PulseAudio clients (and so sounddevice) at this server
    sink: str

    def play(self, wav: str | Path) -> None:
        subprocess.run(["paplay", f"--device={self.sink}", str(wav)], env=self.env, check=True, timeout=60)


def available() -> bool:
    return all(shutil.which(tool) for tool in ("pulseaudio", "pactl", "paplay"))


def _pactl(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pactl", *args], env=env, capture_output=True, text=True, timeout=10)


@contextmanager
def virtual_microphone(runtime_dir: Path) -> Iterator[VirtualMic]:
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir), "PULSE_RUNTIME_PATH": str(runtime_dir / "pulse")}
    # -n: no default script (it would probe real hardware); as root PulseAudio also needs an exit-idle-time.
    server = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "-n", "--exit-idle-time=-1", "--disable-shm=yes",
         "--load=module-native-protocol-unix", f"--load=module-null-sink sink_name={SINK}", "--log-target=stderr"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while _pactl(env, "info").returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PulseAudio did not start: {server.stderr.read() if server.poll() is not None else 'timeout'}")
            time.sleep(0.2)
        _pactl(env, "set-default-source", f"{SINK}.monitor")
        yield VirtualMic(env, SINK)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "play":
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    with virtual_microphone(Path(f"/tmp/kws-vmic-{os.getpid()}")) as mic:
        mic.play(sys.argv[2])
