"""Faults a device meets unattended: a microphone that vanishes and returns, a training run killed hard,
hours of audio through one runtime, and no network use."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

import edge.sources
from edge.errors import EdgeError
from edge.sources import Microphone

from conftest import read_line

ROOT = Path(__file__).resolve().parent.parent


class _FakeStream:
    def __init__(self, device: "_FakeDevice", callback, blocksize: int):
        self._device, self._callback, self._blocksize = device, callback, blocksize
        self.active = False

    def start(self):
        # deliver this life's blocks at once, then fall silent as a pulled-out device does
        self.active = True
        for _ in range(self._device.lives.pop(0)):
            self._device.sent += 1
            block = np.full((self._blocksize, 1), self._device.sent, np.float32)
            self._callback(block, self._blocksize, None, SimpleNamespace(input_overflow=self._device.sent == 2))
        self.active = self._device.stays_active

    def stop(self):
        self.active = False

    def close(self):
        self._device.closed += 1


class _FakeDevice:
    """A stand-in for the sounddevice module: `lives` is how many blocks each opening delivers; opens in
    `missing_opens` find no device."""

    class PortAudioError(Exception):
        pass

    def __init__(self, lives, missing_opens=(), stays_active=False):
        self.lives, self.missing_opens, self.stays_active = list(lives), set(missing_opens), stays_active
        self.opens = self.sent = self.closed = 0

    def query_devices(self, device, kind):
        self.opens += 1
        if self.opens in self.missing_opens:
            raise self.PortAudioError("Device unavailable")
        return {"name": "fake mic", "default_samplerate": 16000}

    def check_input_settings(self, *args, **kwargs):
        pass

    def InputStream(self, callback, blocksize, **kwargs):
        return _FakeStream(self, callback, blocksize)


def _take(microphone: Microphone, count: int, timeout_s: float = 10.0, on_reopen=None) -> list[np.ndarray]:
    out, started = [], time.monotonic()
    for chunk in microphone.chunks(on_reopen):
        out.append(chunk)
        if len(out) == count or time.monotonic() - started > timeout_s:
            return out
    return out


@pytest.mark.parametrize("stays_active", [False, True], ids=["stream-stops", "stream-goes-quiet"])
def test_a_lost_microphone_is_reopened_with_backoff_and_audio_resumes(monkeypatch, caplog, stays_active):
    device = _FakeDevice(lives=[3, 4], missing_opens={2, 3}, stays_active=stays_active)
    monkeypatch.setattr(edge.sources, "_sounddevice", lambda: device)
    caplog.set_level(logging.WARNING, logger="edge.sources")
    gaps = []
    with Microphone(16000, stall_s=0.3, retry_s=(0.01, 0.02)) as microphone:
        chunks = _take(microphone, 7, on_reopen=gaps.append)
    assert [int(c[0]) for c in chunks] == [1, 2, 3, 4, 5, 6, 7]  # every block, in order, across the gap
    assert microphone.interruptions == 1 and microphone.overflows == 1
    assert len(gaps) == 1 and 0.02 < gaps[0] < 5  # the time away, for Recognizer.skip
    assert device.opens == 4 and device.closed == 2  # two failed tries, then back; closed on exit
    messages = [r.getMessage() for r in caplog.records]
    assert any("reopening" in m for m in messages)
    assert sum("still no microphone" in m for m in messages) == 2
    assert any("microphone back" in m for m in messages)


def test_without_a_reopen_handler_the_time_away_comes_out_as_silence(monkeypatch):
    device = _FakeDevice(lives=[2, 2], missing_opens={2})
    monkeypatch.setattr(edge.sources, "_sounddevice", lambda: device)
    started = time.monotonic()
    with Microphone(16000, stall_s=0.3, retry_s=(0.05, 0.05)) as microphone:
        chunks = _take(microphone, 4)
        while int(chunks[-1][0]) != 3:  # silence for the gap, then the blocks of the second life
            chunks += _take(microphone, 1)
    silence = sum(len(c) for c in chunks if not c.any()) / 16000
    assert [int(c[0]) for c in chunks if c.any()] == [1, 2, 3]
    assert 0.05 < silence <= time.monotonic() - started


class _ThreadedStream(_FakeStream):
    """Delivers its blocks from a thread of its own, as PortAudio's audio thread does, as fast as it can."""

    def start(self):
        import threading

        self.active = True

        def run():
            for _ in range(self._device.lives.pop(0)):
                self._device.sent += 1
                block = np.full((self._blocksize, 1), self._device.sent, np.float32)
                self._callback(block, self._blocksize, SimpleNamespace(inputBufferAdcTime=0.0),
                               SimpleNamespace(input_overflow=False))
            self._device.done.set()

        threading.Thread(target=run, daemon=True).start()


def test_a_reader_that_falls_behind_loses_the_oldest_audio_and_time_stays_true(monkeypatch, caplog):
    import threading

    device = _FakeDevice(lives=[100], stays_active=True)
    device.done = threading.Event()
    device.InputStream = lambda callback, blocksize, **kwargs: _ThreadedStream(device, callback, blocksize)
    monkeypatch.setattr(edge.sources, "_sounddevice", lambda: device)
    caplog.set_level(logging.WARNING, logger="edge.sources")
    with Microphone(16000, block_ms=50, max_latency_s=0.5) as microphone:  # room for 10 blocks of 800
        assert device.done.wait(10)  # the reader was busy while 100 blocks came
        chunks = _take(microphone, 11)
    assert sum(len(c) for c in chunks) == 100 * 800  # every sample is accounted for
    assert not chunks[0].any() and len(chunks[0]) == 90 * 800  # the 90 oldest blocks, as silence
    assert [int(c[0]) for c in chunks[1:]] == list(range(91, 101))  # the newest 10, in order
    assert microphone.overflows == 90 and microphone.lost_s == pytest.approx(4.5)
    assert sum("audio lost" in r.getMessage() for r in caplog.records) == 1


def test_an_overflow_measured_on_the_device_clock_becomes_silence(monkeypatch):
    device = _FakeDevice(lives=[1], stays_active=True)
    monkeypatch.setattr(edge.sources, "_sounddevice", lambda: device)
    with Microphone(16000) as microphone:
        block = np.ones((800, 1), np.float32)
        ok, overflow = SimpleNamespace(input_overflow=False), SimpleNamespace(input_overflow=True)
        microphone._callback(block, 800, SimpleNamespace(inputBufferAdcTime=10.0), ok)
        microphone._callback(block, 800, SimpleNamespace(inputBufferAdcTime=10.3), overflow)  # 0.25 s missing
        chunks = _take(microphone, 4)
    assert [len(c) for c in chunks] == [800, 800, 4000, 800]  # the fake's own block, ours, the loss, ours
    assert not chunks[2].any() and microphone.lost_s == pytest.approx(0.25)


def test_no_microphone_at_start_is_still_an_error(monkeypatch):
    device = _FakeDevice(lives=[1], missing_opens={1})
    monkeypatch.setattr(edge.sources, "_sounddevice", lambda: device)
    with pytest.raises(EdgeError, match="no microphone found"):
        with Microphone(16000):
            pass


def _epochs_done(output: str) -> list[int]:
    """The epoch numbers of the "epoch  3/30  loss ..." lines kws train prints once an epoch is saved."""
    return [int(line.split()[1].split("/")[0]) for line in output.splitlines() if line.lstrip().startswith("epoch ")]


def test_train_killed_mid_epoch_resumes_losing_at_most_one_epoch(tiny_data, tmp_path):
    """Killed at any moment, the run keeps every epoch it reported and resumes after the last one saved:
    at most the epoch in progress is lost. Killed after an odd number (3), so that saving every other
    epoch would be caught."""
    pytest.importorskip("torch")  # kws train: a training-side test in an edge-only install
    run = tmp_path / "run"
    command = [sys.executable, "-m", "kws", "train", "--data", str(tiny_data), "--out", str(run), "--epochs", "30",
               "--hidden-size", "16", "--batch-size", "8", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = ""
    try:
        while len(_epochs_done(output)) < 3:  # kill it as soon as three epochs are done, in the fourth
            line = read_line(process.stdout, timeout_s=300)
            assert line, output  # it ended before three epochs
            output += line
    finally:
        process.send_signal(signal.SIGKILL)
    output += process.communicate(timeout=60)[0]  # what it printed before it died
    assert process.returncode == -signal.SIGKILL
    from kws.checkpoint import load_checkpoint

    reported, saved = _epochs_done(output), load_checkpoint(run / "last.pt")["epoch"]
    assert reported == list(range(1, len(reported) + 1)) and 3 <= len(reported) < 30, output
    assert saved in (reported[-1], reported[-1] + 1)  # every reported epoch is on disk; one more if saved unsaid
    result = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"resuming after epoch {saved}" in result.stdout
    assert _epochs_done(result.stdout) == list(range(saved + 1, 31))  # no saved epoch trained again
    assert load_checkpoint(run / "last.pt")["epoch"] == 30
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_edge_opens_no_network_connection(model, tmp_path):
    """Run edge.listen with every socket call made to fail loudly."""
    audio = np.random.default_rng(0).normal(0, 0.05, 3 * 16000).astype(np.float32)
    sf.write(tmp_path / "clip.wav", audio, 16000)
    guard = (
        "import socket, sys\n"
        "def refuse(*a, **k):\n"
        "    raise SystemExit('network use: ' + repr(a))\n"
        "socket.socket.connect = socket.socket.connect_ex = socket.socket.bind = refuse\n"
        "socket.create_connection = socket.getaddrinfo = refuse\n"
        "from edge.listen import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", guard, "--model", str(model), "--wav", str(tmp_path / "clip.wav"),
                             "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "network use" not in result.stderr


def test_minutes_of_audio_keep_memory_flat_and_lose_no_chunk():
    """The short version of `tools/soak.py --minutes 60`."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "soak.py"), "--minutes", "4"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "growth +" in result.stdout and result.stdout.strip().endswith("OK")
    assert "replaced by silence" in result.stderr  # the broken chunks were reported, and the run went on
