"""Attacks on edge.serve over loopback, each bounded in count and time, while a well-behaved client streams
real speech at real time beside them. Prints one row per attack: what the server answered, the worst
latency of the well-behaved client's detections during it, and the server's peak RSS.

    python tools/serve_attack.py [--model models/kws.onnx] [--json OUT.json]

The server runs with its default limits, except --idle-timeout 3 so that the idle attacks end in seconds.
Latency is counted from sending the 100 ms chunk that holds a detection's stream time to reading the
detection. Last come the rows that need a server of their own: SIGTERM and SIGHUP while clients send,
and a unix:// path that is a file or another server's live socket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
CHUNK = RATE // 10  # 100 ms, what a satellite sends at a time
WORDS = ["yes", "no", "up", "down", "left", "right", "stop", "go"]  # each alone is heard by the shipped model
IDLE_TIMEOUT_S = 3.0
MIN_WINDOW_S = 3.0  # each attack lasts at least this long, so the steady client says a word during it
START_S = 60.0  # the longest edge.serve may take to say it listens
SETTLE_S = 1.0  # after an attack, before its RSS "after" is read
RSS_BOUND_MB = 150.0


def _clip(word: str) -> np.ndarray:
    (path,) = (ROOT / "tests" / "data" / "clips").glob(f"{word}_*.flac")
    return sf.read(path, dtype="float32")[0]


def _pcm16(audio: np.ndarray) -> bytes:
    return np.round(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _header(event_type: str, data: dict | None = None, **lengths) -> bytes:
    """A raw Wyoming header line, lengths as given (true or not)."""
    return json.dumps({"type": event_type, "data": data or {}, **lengths}).encode() + b"\n"


def _chunk_event(pcm: bytes, rate: int = RATE, width: int = 2) -> bytes:
    return _header("audio-chunk", {"rate": rate, "width": width, "channels": 1}, payload_length=len(pcm)) + pcm


AUDIO_START = _header("audio-start", {"rate": RATE, "width": 2, "channels": 1})


class Rss:
    """The server's resident memory, sampled every 20 ms on a thread: `now_mb`, and `peak_mb` since `mark()`."""

    def __init__(self, pid: int):
        self._path = Path(f"/proc/{pid}/status")
        self.now_mb = self.peak_mb = self._read()
        self._running = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _read(self) -> float:
        try:
            for line in self._path.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _sample(self) -> None:
        while self._running:
            self.now_mb = self._read()
            self.peak_mb = max(self.peak_mb, self.now_mb)
            time.sleep(0.02)

    def mark(self) -> None:
        self.peak_mb = self.now_mb

    def close(self) -> None:
        self._running = False


class Server:
    """`python -m edge.serve` as a child; its stderr is collected line by line."""

    def __init__(self, model: Path, uri: str, *flags: str):
        self.uri = uri
        self.process = subprocess.Popen([sys.executable, "-m", "edge.serve", "--model", str(model), "--uri", uri,
                                         *flags], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "OMP_NUM_THREADS": "1"})
        self.log: list[str] = []
        self._listening, self._settled = False, threading.Event()  # settled: said it listens, or ended
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        if not self._settled.wait(START_S) or not self._listening:  # a hung server must not hang the caller
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"edge.serve did not start within {START_S:g} s: " + "\n".join(self.log))
        self.rss = Rss(self.process.pid)

    def _collect(self) -> None:
        for line in self.process.stderr:  # warnings (MQTT, say) may come before it says it listens
            if not self._listening and "Wyoming service on" in line:
                self._listening = True
                self._settled.set()
                continue
            self.log.append(line.rstrip("\n"))
        self._settled.set()

    def stop(self, number: int = signal.SIGTERM, timeout_s: float = 30.0) -> tuple[int, float]:
        """(exit code, seconds from the signal to the exit)."""
        started = time.monotonic()
        self.process.send_signal(number)
        code = self.process.wait(timeout=timeout_s)
        took = time.monotonic() - started
        self._reader.join(timeout=5)
        self.rss.close()
        return code, took


class SteadyClient:
    """The well-behaved client: the eight commands, each followed by a second of silence, over and over in
    100 ms chunks at real time over one connection, on a thread of its own with its own event loop (so the
    attacks' work in this process does not delay it). Notes when each chunk went and each detection came."""

    def __init__(self, port: int):
        parts, self.words = [], []
        at = 0
        for word in WORDS:
            clip = _clip(word)
            self.words.append((word, at / RATE, (at + len(clip)) / RATE))
            parts += [clip, np.zeros(RATE, np.float32)]
            at += len(clip) + RATE
        self._cycle = _pcm16(np.concatenate(parts))
        self._cycle_s = at / RATE
        self.sent: list[float] = []  # wall time each chunk was written
        self.detections: list[tuple[float, int, str]] = []  # (wall time read, timestamp ms, name)
        self.other: list[str] = []  # anything else it was answered with (an error would be a failure)
        self._port, self._running = port, True
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        from wyoming.event import async_read_event

        reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
        reading = asyncio.create_task(self._read(reader, async_read_event))
        writer.write(AUDIO_START)
        start, k, step = time.monotonic(), 0, 2 * CHUNK
        while self._running and not reading.done():
            await asyncio.sleep(max(0.0, start + (k + 1) * CHUNK / RATE - time.monotonic()))  # recorded, then sent
            at = k * step % len(self._cycle)
            self.sent.append(time.monotonic())
            writer.write(_chunk_event(self._cycle[at:at + step]))
            await writer.drain()
            k += 1
        writer.close()

    async def _read(self, reader, read_event) -> None:
        while (event := await read_event(reader)) is not None:
            if event.type == "detection":
                self.detections.append((time.monotonic(), int(event.data["timestamp"]), event.data["name"]))
            else:
                self.other.append(event.type)

    def latencies(self, since: float, until: float) -> list[float]:
        """Seconds from sending the chunk that holds each detection's stream time to reading it."""
        out = []
        for read_at, timestamp_ms, _ in self.detections:
            if since <= read_at <= until:
                k = min(max(int(np.ceil(timestamp_ms / 100)) - 1, 0), len(self.sent) - 1)
                out.append(read_at - self.sent[k])
        return out

    def missed(self, until: float) -> list[str]:
        """Words whose audio was sent 2.5 s before `until` and that drew no detection of their own name."""
        if not self.sent:
            return []
        heard_s = (len([t for t in self.sent if t <= until - 2.5])) * CHUNK / RATE
        missing = []
        for cycle in range(int(heard_s // self._cycle_s) + 1):
            for word, begin, end in self.words:
                begin, end = begin + cycle * self._cycle_s, end + cycle * self._cycle_s
                if end > heard_s:
                    continue
                if not any(name == word and begin * 1000 <= ts <= (end + 1.0) * 1000
                           for _, ts, name in self.detections):
                    missing.append(f"{word}@{begin:.0f}s")
        return missing

    def stop(self) -> None:
        self._running = False
        self._thread.join(timeout=5)


# ---- one connection's worth of attack -------------------------------------------------------------------


async def _exchange(address, send, timeout_s: float = 15.0, eof: bool = True) -> list:
    """Connect, run `send(writer)` while reading what the server answers until it closes; its events.
    `eof`: half-close once sent, as a client that has said all it will; else stay, saying nothing more."""
    from wyoming.event import async_read_event

    if isinstance(address, int):
        reader, writer = await asyncio.open_connection("127.0.0.1", address)
    else:
        reader, writer = await asyncio.open_unix_connection(address)
    events = []

    async def read():
        while (event := await async_read_event(reader)) is not None:
            events.append(event)

    reading = asyncio.create_task(read())
    try:
        await asyncio.wait_for(send(writer), timeout_s)
        if eof:
            writer.write_eof()
    except (OSError, TimeoutError):  # the server stopped listening to us, or has hung up already
        pass
    try:
        await asyncio.wait_for(reading, timeout_s)
    except (ConnectionError, TimeoutError):
        reading.cancel()
    writer.transport.abort()
    return events


async def _exchange_once_free(address, send, timeout_s: float = 15.0, tries: int = 100) -> tuple[list, int]:
    """`_exchange`, again after a moment while the server answers busy, as a patient client would: on a loaded
    machine the server counts a connection until it has seen it close, which may be after its client has
    moved on. Its events, and how many tries were answered busy."""
    for busy in range(tries):
        events = await _exchange(address, send, timeout_s)
        if _answer(events) != "error busy":
            return events, busy
        await asyncio.sleep(0.05)
    return events, tries


def _sending(*parts: bytes, piece: int = 64 * 1024):
    """A `send` that writes these bytes in pieces, as fast as the server takes them."""
    async def send(writer):
        for part in parts:
            for start in range(0, len(part), piece):
                writer.write(part[start:start + piece])
                await writer.drain()
    return send


def _answer(events) -> str:
    """What the server said, briefly: 'error CODE', or the event types, or 'closed'."""
    if not events:
        return "closed"
    first = events[0]
    if first.type == "error":
        return f"error {first.data.get('code')}"
    return ",".join(sorted({e.type for e in events}))


def _counted(answers: list[str]) -> str:
    counts = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    return ", ".join(f"{n} x {a}" for a, n in sorted(counts.items(), key=lambda item: -item[1]))


# ---- the attacks: each returns (answer, details) ----------------------------------------------------------


async def big_chunk_1mb(port):
    """The issue's first: 1 MB of audio-chunk at rate 1000, width 1 (17 s of a stalled loop before)."""
    pcm = bytes(1_000_000)
    events = await _exchange(port, _sending(AUDIO_START, _chunk_event(pcm, rate=1000, width=1)))
    return _answer(events), {}


async def chunk_10_minutes(port):
    """10 minutes of 16 kHz audio in one chunk (18 MB)."""
    events = await _exchange(port, _sending(AUDIO_START, _chunk_event(bytes(600 * RATE * 2))))
    return _answer(events), {}


async def chunk_1_5_s(port):
    """A chunk of 1.5 s: small in bytes, but more than a second of work for the model in one piece."""
    events = await _exchange(port, _sending(AUDIO_START, _chunk_event(bytes(3 * RATE))))
    return _answer(events), {}


async def fast_sender(port):
    """100 ms chunks as fast as the server takes them, until it says stop (or 20 s)."""
    started = time.monotonic()
    chunk = _chunk_event(bytes(2 * CHUNK))

    async def send(writer):
        writer.write(AUDIO_START)
        for _ in range(10_000):
            writer.write(chunk)
            await writer.drain()

    events = await _exchange(port, send, timeout_s=20.0)
    return _answer(events), {"refused_after_s": round(time.monotonic() - started, 2)}


async def payload_2gb(port):
    """A header claiming 2 GB of payload, then 16 MB of it streamed."""
    events = await _exchange(port, _sending(AUDIO_START, _header("audio-chunk", {"rate": RATE, "width": 2,
                                                                                  "channels": 1},
                                                                 payload_length=2 ** 31), bytes(16 * 2 ** 20)))
    return _answer(events), {}


async def names_24mb(port):
    """24 MB of names in a detect event's data, and 1 MB of them in a header line."""
    names = json.dumps({"names": ["x" * 100] * 240_000}).encode()
    in_data = await _exchange(port, _sending(_header("detect", data_length=len(names)), names))
    in_line = await _exchange(port, _sending(_header("detect", {"names": ["x" * 100] * 10_000})))
    return f"{_answer(in_data)}; header line: {_answer(in_line)}", {}


MALFORMED = {
    "a JSON list": b'["audio-chunk", 1]\n',
    "lengths as strings": b'{"type": "audio-chunk", "data": {}, "payload_length": "100"}\n',
    "a negative length": b'{"type": "audio-chunk", "payload_length": -5}\n',
    "a length true": b'{"type": "detect", "data_length": true}\n',
    "deep nesting": b'{"type": "detect", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}\n",
    "rate Infinity": b'{"type": "audio-start", "data": {"rate": Infinity, "width": 2, "channels": 1}}\n',
    "rate 1e999": b'{"type": "audio-start", "data": {"rate": 1e999, "width": 2, "channels": 1}}\n',
    "rate NaN": b'{"type": "audio-start", "data": {"rate": NaN, "width": 2, "channels": 1}}\n',
    "rate as text": b'{"type": "audio-start", "data": {"rate": "16000", "width": 2, "channels": 1}}\n',
    "a 5000-digit rate": b'{"type": "audio-start", "data": {"rate": ' + b"9" * 5000 + b', "width": 2, "channels": 1}}\n',
    "width 3": b'{"type": "audio-start", "data": {"rate": 16000, "width": 3, "channels": 1}}\n',
    "channels 0": b'{"type": "audio-start", "data": {"rate": 16000, "width": 2, "channels": 0}}\n',
    "no type": b'{"data": {}}\n',
    "a type that is a list": b'{"type": ["describe"]}\n',
    "data a string": b'{"type": "detect", "data": "names"}\n',
    "data bytes not JSON": b'{"type": "detect", "data_length": 4}\n{{{{',
    "data bytes a list": b'{"type": "detect", "data_length": 2}\n[]',
    "not UTF-8": b'{"type": "\xff\xfe"}\n',
    "names not strings": b'{"type": "detect", "data": {"names": [1, 2]}}\n',
    "half a frame": AUDIO_START + b'{"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1}, '
                                  b'"payload_length": 3}\n\x00\x00\x00',
}


async def malformed_flood(port, connections: int = 1000, at_once: int = 10):
    """Every malformed header in MALFORMED, over and over on fresh connections."""
    kinds = list(MALFORMED.items())
    answers: list[str] = []
    busy_answers: list[int] = []
    wrong: dict[str, str] = {}
    gate = asyncio.Semaphore(at_once)

    async def one(i):
        name, raw = kinds[i % len(kinds)]
        async with gate:
            events, busy = await _exchange_once_free(port, _sending(raw), timeout_s=10)
        answer = _answer(events)
        answers.append(answer)
        busy_answers.append(busy)
        if answer != "error bad-event":
            wrong[name] = answer

    await asyncio.gather(*(one(i) for i in range(connections)))
    return _counted(answers), {"kinds": len(kinds), "not_bad_event": wrong, "busy_first": sum(busy_answers)}


async def idle_flood(port, connections: int = 1000):
    """Connections that send nothing: beyond --max-clients refused at once, the rest closed at the idle timeout."""
    started = time.monotonic()
    times: list[float] = []

    async def idle(_):
        events = await _exchange(port, lambda writer: asyncio.sleep(0), timeout_s=IDLE_TIMEOUT_S + 10, eof=False)
        times.append(time.monotonic() - started)
        return _answer(events)

    answers = await asyncio.gather(*(idle(i) for i in range(connections)))
    served_again = _answer(await _exchange(port, _sending(_header("describe")), timeout_s=2))  # a slot is free again
    return _counted(answers), {"last_closed_after_s": round(max(times), 2), "afterwards_describe": served_again}


async def slow_header(port):
    """A header sent one byte every 0.2 s: it never completes before the idle timeout."""
    async def send(writer):
        for byte in _header("describe"):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)

    started = time.monotonic()
    events = await _exchange(port, send, timeout_s=IDLE_TIMEOUT_S + 10)
    return _answer(events), {"closed_after_s": round(time.monotonic() - started, 2)}


async def never_reads(port):
    """describe sent 5,000 times by a client that never reads the answers (15 MB of them)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    reader_socket = writer.get_extra_info("socket")
    reader_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    started = time.monotonic()
    try:
        for _ in range(5_000):
            writer.write(_header("describe"))
            await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT_S + 10)
    except (ConnectionError, TimeoutError):
        pass
    # the server should give up on us after the idle timeout: wait for the end of what it sent
    closed = False
    try:
        async with asyncio.timeout(IDLE_TIMEOUT_S + 10):
            while await reader.read(1 << 20):
                pass
            closed = True
    except (ConnectionError, TimeoutError):
        closed = True
    writer.transport.abort()
    return ("closed" if closed else "still open"), {"closed_after_s": round(time.monotonic() - started, 2)}


async def reset_burst(port, connections: int = 1000, at_once: int = 10):
    """Connections that start an utterance, send 100 ms of audio and hang up with a reset (no goodbye)."""
    gate = asyncio.Semaphore(at_once)
    linger = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset

    async def one(_):
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            try:
                writer.write(AUDIO_START + _chunk_event(bytes(2 * CHUNK)))
                await writer.drain()
                await asyncio.sleep(0.005)
            except ConnectionError:  # refused as busy: the server hung up first
                pass
            writer.transport.abort()

    await asyncio.gather(*(one(i) for i in range(connections)))
    return f"{connections} reset", {}


async def busy_clients(port, clients: int = 12, seconds: float = 6.0):
    """Twelve clients, each sending 6 s of speech as fast as the server takes it, then audio-stop: the
    model's CPU is shared among thirteen."""
    pcm = _pcm16(np.concatenate([_clip(word) for word in WORDS])[: int(seconds * RATE)])
    chunks = b"".join(_chunk_event(pcm[i:i + 2 * CHUNK]) for i in range(0, len(pcm), 2 * CHUNK))
    started = time.monotonic()

    async def one(_):
        events, _ = await _exchange_once_free(port, _sending(AUDIO_START, chunks, _header("audio-stop"),
                                                             _header("describe")), timeout_s=60)
        return "served" if events and events[-1].type == "info" else _answer(events)

    answers = await asyncio.gather(*(one(i) for i in range(clients)))
    return _counted(answers), {"all_served_after_s": round(time.monotonic() - started, 2)}


ATTACKS = [big_chunk_1mb, chunk_10_minutes, chunk_1_5_s, fast_sender, payload_2gb, names_24mb, malformed_flood,
           idle_flood, slow_header, never_reads, reset_burst, busy_clients]


@dataclass
class Row:
    attack: str
    answer: str
    worst_latency_s: float | None = None  # of the steady client's detections during the attack
    peak_rss_mb: float | None = None
    rss_after_mb: float | None = None
    log_lines: int | None = None  # lines the server logged during the attack
    seconds: float | None = None  # the attack's own length, without the window around it
    details: dict = field(default_factory=dict)


@dataclass
class Report:
    rows: list[Row]
    idle_rss_mb: float
    final_rss_mb: float
    steady_detections: int
    steady_missed: list[str]
    steady_other: list[str]
    exit_code: int
    log: list[str]


async def _attack(attack, port: int, server: Server, steady: SteadyClient) -> Row:
    server.rss.mark()
    lines = len(server.log)
    started = time.monotonic()
    answer, details = await attack(port)
    seconds = time.monotonic() - started
    await asyncio.sleep(max(0.0, started + MIN_WINDOW_S - time.monotonic()))
    latencies = steady.latencies(started, time.monotonic() + 0.5)
    await asyncio.sleep(SETTLE_S)
    return Row(attack.__name__, answer, round(max(latencies), 3) if latencies else None,
               round(server.rss.peak_mb, 1), round(server.rss.now_mb, 1), len(server.log) - lines, round(seconds, 2), details)


async def _attack_all(port: int, server: Server, steady: SteadyClient, attacks) -> list[Row]:
    return [await _attack(attack, port, server, steady) for attack in attacks]


def run_attacks(model: Path, attacks=ATTACKS, echo=lambda row: None) -> Report:
    """The attacks one after another against one server, the steady client streaming throughout."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))  # 1,000 connections at once
    port = _free_port()
    server = Server(model, f"tcp://127.0.0.1:{port}", "--idle-timeout", str(IDLE_TIMEOUT_S))
    steady = SteadyClient(port)
    try:
        time.sleep(MIN_WINDOW_S)  # the steady client's first words, and onnxruntime's first runs
        idle_rss = server.rss.now_mb
        rows = []
        for attack in attacks:
            rows += asyncio.run(_attack_all(port, server, steady, [attack]))
            echo(rows[-1])
        final_rss = server.rss.now_mb
        missed = steady.missed(time.monotonic())
    finally:
        steady.stop()
        code, _ = server.stop()
    return Report(rows, round(idle_rss, 1), round(final_rss, 1), len(steady.detections), missed, steady.other,
                  code, server.log)


# ---- rows that need a server of their own ---------------------------------------------------------------


async def _load(path: str, seconds: float) -> None:
    """What the server is busy with when the signal comes: fast senders and 1 s chunks."""
    chunk, second = _chunk_event(bytes(2 * CHUNK)), _chunk_event(bytes(2 * RATE))

    async def send(writer, piece):
        writer.write(AUDIO_START)
        for _ in range(100_000):
            writer.write(piece)
            await writer.drain()

    await asyncio.wait([asyncio.create_task(_exchange(path, lambda w, p=p: send(w, p), timeout_s=seconds))
                        for p in [chunk] * 6 + [second] * 6], timeout=seconds)


def stop_under_load(model: Path, folder: Path, number: int) -> Row:
    """SIGTERM or SIGHUP while twelve clients send: how long until it exits, its code, its socket left?"""
    path = folder / f"kws-{number}.sock"
    server = Server(model, f"unix://{path}")
    loading = threading.Thread(target=lambda: asyncio.run(_load(str(path), 8.0)), daemon=True)
    loading.start()
    time.sleep(2.0)
    server.rss.mark()
    code, took = server.stop(number, timeout_s=30)
    loading.join(timeout=15)
    name = signal.Signals(number).name
    return Row(f"{name} while 12 clients send", f"exit {code} after {took:.2f} s, socket "
               f"{'left behind' if path.exists() else 'removed'}", None, round(server.rss.peak_mb, 1),
               details={"exit_code": code, "seconds": round(took, 3), "socket_left": path.exists(),
                        "tracebacks": sum("Traceback" in line for line in server.log)})


def _refused_start(model: Path, uri: str) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "edge.serve", "--model", str(model), "--uri", uri], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stderr.strip()


def socket_rows(model: Path, folder: Path) -> list[Row]:
    """unix:// at a file that is not a socket, and at another server's live socket."""
    precious = folder / "precious.txt"
    precious.write_text("precious\n")
    code, said = _refused_start(model, f"unix://{precious}")
    intact = precious.read_text() == "precious\n"
    rows = [Row("unix:// at a regular file", f"exit {code}; file {'intact' if intact else 'LOST'}",
                details={"exit_code": code, "stderr": said, "intact": intact})]
    path = folder / "live.sock"
    first = Server(model, f"unix://{path}")
    try:
        code, said = _refused_start(model, f"unix://{path}")
        still = _answer(asyncio.run(_exchange(str(path), _sending(_header("describe")), timeout_s=10)))
    finally:
        first_code, _ = first.stop()
    rows.append(Row("unix:// at a live server's socket", f"exit {code}; first server answers {still}",
                    details={"exit_code": code, "stderr": said, "first_answers": still, "first_exit": first_code,
                             "socket_left": path.exists()}))
    return rows


# ---- the table ----------------------------------------------------------------------------------------


def _cell(value, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def print_row(row: Row) -> None:
    print(f"{row.attack:<34} {row.answer[:58]:<58} {_cell(row.worst_latency_s, ' s'):>9} "
          f"{_cell(row.peak_rss_mb, ' MB'):>10} {_cell(row.rss_after_mb, ' MB'):>10}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "kws.onnx",
                   help="the model edge.serve loads (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT.json",
                   help="also write every row and figure as JSON (default: none)")
    args = p.parse_args(argv)
    print(f"{'attack':<34} {'server answer':<58} {'latency':>9} {'peak RSS':>10} {'RSS after':>10}")
    report = run_attacks(args.model, echo=print_row)
    with tempfile.TemporaryDirectory() as folder:
        extra = [stop_under_load(args.model, Path(folder), number) for number in (signal.SIGTERM, signal.SIGHUP)]
        extra += socket_rows(args.model, Path(folder))
    for row in extra:
        print_row(row)
    print(f"idle RSS {report.idle_rss_mb:g} MB, at the end {report.final_rss_mb:g} MB; steady client: "
          f"{report.steady_detections} detections, missed {report.steady_missed or 'none'}, "
          f"other answers {report.steady_other or 'none'}; server exit {report.exit_code}, "
          f"{len(report.log)} log lines, {sum('Traceback' in line for line in report.log)} tracebacks")
    if args.json is not None:
        args.json.write_text(json.dumps({**asdict(report), "rows": [asdict(r) for r in report.rows + extra]}, indent=1))
    return 0


if __name__ == "__main__":
    from edge.cli import run_tool

    raise SystemExit(run_tool("serve_attack", main))
