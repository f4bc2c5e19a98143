"""`python -m edge.serve`: the keyword spotter as a Wyoming service, the protocol Home Assistant uses for
its voice services (wake word, speech to text...).

    python -m edge.serve --uri tcp://0.0.0.0:10400           # then add the Wyoming integration in Home Assistant
    python -m edge.serve --uri unix:///run/kws.sock --zeroconf --mqtt-url mqtt://localhost:1883
    python -m edge.serve --model models/kws.onnx --model lights.onnx    # the shipped commands and your own words

A client may send `describe` (answered with `info`: the model's commands as wake models), `detect` (names
to listen for; default all), then `audio-start`, `audio-chunk`s at its own rate, width and channels, and
`audio-stop`. Each command heard is answered with `detection` (`name` is the label, e.g. "stop";
`timestamp` the stream time in ms); `audio-stop` after an utterance in which nothing fired is answered with
`not-detected`. Every connection has its own recognizer (made at `audio-start`, dropped at `audio-stop`
and at disconnect), resampler and detector state; the ONNX sessions are shared read-only. With several
`--model`s, `info` announces every command of every model once, and each connection hears all the models
(edge.multi.MultiRecognizer: one event per spoken word, held back the models' longest suppression time).

It is a service on a home network, so one client must not be able to hold up the others:
- events are read by `edge.protocol`, which refuses lengths over its limits before reading them;
- audio is heard on a few worker threads in slices of at most SLICE_MS, one slice per client at a time,
  so the event loop never waits for the model and a long chunk never holds up another client for long;
- a chunk longer than MAX_CHUNK_MS or a client sending faster than `--max-speed` times real time,
  a client silent for `--idle-timeout`, and clients beyond `--max-clients` get an `error` event and are
  disconnected; each such refusal is logged as one throttled line, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import resource
import signal
import socket
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from edge.errors import EdgeError, Throttled
from edge.protocol import (FrameLimits, ProtocolError, audio_format, commands, detect_names, encoded, error_event,
                           read_event, to_model_audio, wyoming_info)
from edge.cli import (
    Parser,
    add_model_arguments,
    add_mqtt_arguments,
    check_mqtt_arguments,
    model_paths,
    mqtt_publisher,
    printable,
)
from edge.multi import MultiRecognizer
from edge.sources import Resampler

log = logging.getLogger(__name__)

SLICE_MS = 100  # audio heard in one job on a worker thread (~7 ms of CPU for the shipped model)
MAX_CHUNK_MS = 1000  # Home Assistant and its satellites send 10 to 100 ms per chunk
WORKERS = 2  # threads that run the model; each runs one slice of one client at a time
FAREWELL_S = 1.0  # how long a refused client's error event may take to leave, and its last bytes to drain
STOP_S = 0.5  # at SIGTERM, how long connections get to finish what they are doing
FILES_PER_CLIENT, FILES_SPARE = 1, 64  # open files: one socket per client, and the model, logs, MQTT...
# Connections the kernel holds until the loop accepts them (asyncio's default is 100; the kernel caps it at
# net.core.somaxconn). Past it, a burst of connections is dropped unheard instead of answered "busy".
BACKLOG = 1024


@dataclass(frozen=True)
class Limits:
    """What one client may ask of the server; see build_parser for each one's meaning."""

    max_clients: int = 16
    idle_timeout_s: float = 30.0
    max_speed: float = 4.0
    burst_s: float = 10.0  # seconds of audio a client may send ahead of real time (a buffer it had to catch up on)
    frames: FrameLimits = field(default_factory=FrameLimits)


class Pace:
    """How far ahead of real time a client's audio is: a bucket of `burst_s` seconds of audio, refilled at
    `speed` seconds per second of wall time; a chunk that finds it empty is too fast."""

    def __init__(self, speed: float, burst_s: float, clock=time.monotonic):
        self._speed, self._burst_s, self._clock = speed, burst_s, clock
        self._credit_s, self._at = burst_s, clock()

    def take(self, seconds: float) -> bool:
        """Spend `seconds` of audio; False when the client is over its pace (0 speed: never)."""
        if self._speed <= 0:
            return True
        now = self._clock()
        self._credit_s = min(self._burst_s, self._credit_s + self._speed * (now - self._at)) - seconds
        self._at = now
        return self._credit_s >= 0


class LogBudget:
    """Warnings about clients, at most `lines` per `every_s` seconds of wall time: a flood of bad clients
    cannot fill the log, yet two different clients failing at once are both seen. The first line after a
    silenced stretch says how many were left out."""

    def __init__(self, log: logging.Logger, lines: int = 5, every_s: float = 10.0, clock=time.monotonic):
        self._log, self._lines, self._every_s, self._clock = log, lines, every_s, clock
        self._window_at, self._used, self._left_out = -float("inf"), 0, 0

    def warn(self, message: str) -> None:
        now = self._clock()
        if now - self._window_at >= self._every_s:
            self._window_at, self._used = now, 0
        if self._used >= self._lines:
            self._left_out += 1
            return
        self._used += 1
        left_out = f" ({self._left_out} more since the last line, not logged)" if self._left_out else ""
        self._log.warning("%s%s", message, left_out)
        self._left_out = 0


class Service:
    """What all connections share: the model, the worker threads, the limits, the logs; and which
    connections are open."""

    def __init__(self, recognizer: MultiRecognizer, info, limits: Limits, mqtt=None):
        self.recognizer, self.limits, self.mqtt = recognizer, limits, mqtt
        self.info = encoded(info)  # the answer to every describe, encoded once
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="kws-model")
        self._tasks: set[asyncio.Task] = set()
        self.refused, self.gone_quiet, self._busy = LogBudget(log), LogBudget(log), LogBudget(log)
        self.unknown_names = LogBudget(log)
        self.commands = commands(recognizer)

    async def work(self, function, *args):
        """`function(*args)` on a worker thread; the event loop serves other clients meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A new client: served, or refused at once when `max_clients` are connected already."""
        if len(self._tasks) >= self.limits.max_clients:
            self._busy.warn(f"refused a client: {self.limits.max_clients} clients are connected already "
                            "(--max-clients)")
            writer.write(encoded(error_event(ProtocolError(
                f"the server is busy: {self.limits.max_clients} clients are connected already", "busy"))))
            writer.close()
            return
        task = asyncio.create_task(Connection(self, reader, writer).run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Ends every connection at once; work already on a worker thread finishes by itself (one slice)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=STOP_S)
        self._pool.shutdown(wait=False, cancel_futures=True)


class Connection:
    """One client: its audio format, pace, recognizer and the names it listens for."""

    def __init__(self, service: Service, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._service, self._reader, self._writer = service, reader, writer
        limits = service.limits
        self._pace = Pace(limits.max_speed, limits.burst_s)  # per connection: a new audio-start does not refill it
        self._names: set[str] | None = None
        self._format: tuple[int, int, int] | None = None
        self._recognizer: MultiRecognizer | None = None  # only while an utterance is open
        self._resample: Resampler | None = None
        self._heard = False
        peer = writer.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "local"
        self._heard_s, self._events = 0.0, 0  # of the open utterance, for --debug

    async def run(self) -> None:
        log.debug("client %s connected", self._peer)
        try:
            while (event := await self._next_event()) is not None:
                await self._handle(event)
                # Reading buffered bytes and writing to a roomy socket never suspend, so a client that sends
                # thousands of small events would otherwise keep the loop from every other client
                await asyncio.sleep(0)
            self._writer.close()  # the client is done: its last answers still go out, then the close
            async with asyncio.timeout(FAREWELL_S):
                await self._writer.wait_closed()
        except ProtocolError as error:
            self._service.refused.warn(f"client {self._peer}: {printable(str(error))[:300]}; "
                                       "answered with an error and disconnected")
            await self._farewell(error)
        except TimeoutError:  # answers it did not read for --idle-timeout
            self._service.gone_quiet.warn(f"client {self._peer} read no answers for "
                                          f"{self._service.limits.idle_timeout_s:g} s; disconnected")
        except OSError:  # it hung up while we wrote to it: its own affair
            pass
        except Exception as error:  # noqa: BLE001 (a bug must not end the service, nor flood its log)
            self._service.refused.warn(f"client {self._peer}: internal error {type(error).__name__}: "
                                       f"{str(error)[:200]}; disconnected")
        finally:
            log.debug("client %s disconnected", self._peer)
            self._recognizer = self._resample = None  # the largest state goes with the client
            transport = self._writer.transport
            if transport.get_write_buffer_size():  # it reads nothing: there is no gentle way left
                transport.abort()
            else:  # a reset would make the client's kernel drop the error event it has not read yet
                transport.close()

    async def _next_event(self):
        try:
            async with asyncio.timeout(self._service.limits.idle_timeout_s):
                return await read_event(self._reader, self._service.limits.frames)
        except TimeoutError:
            raise ProtocolError(f"no complete event for {self._service.limits.idle_timeout_s:g} s "
                                "(--idle-timeout)", "timeout") from None
        except ConnectionError:
            return None

    async def _write(self, event) -> None:
        from wyoming.event import async_write_event

        async with asyncio.timeout(self._service.limits.idle_timeout_s):
            await async_write_event(event, self._writer)

    async def _write_bytes(self, encoded: bytes) -> None:
        async with asyncio.timeout(self._service.limits.idle_timeout_s):
            self._writer.write(encoded)
            await self._writer.drain()

    async def _farewell(self, error: ProtocolError) -> None:
        """The error event, then the client's remaining bytes read and dropped for up to FAREWELL_S: closing
        with unread bytes would reset the connection, and the client might never read why."""
        try:
            self._writer.write(encoded(error_event(error)))
            if self._writer.can_write_eof():
                self._writer.write_eof()
            async with asyncio.timeout(FAREWELL_S):
                await self._writer.drain()
                while await self._reader.read(64 * 1024):
                    pass
        except (TimeoutError, OSError):  # it will not read, or has gone: nothing more to do for it
            pass

    async def _handle(self, event) -> None:
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.info import Describe
        from wyoming.wake import Detect

        if Describe.is_type(event.type):
            await self._write_bytes(self._service.info)
        elif Detect.is_type(event.type):
            await self._detect(detect_names(event.data))
        elif AudioStart.is_type(event.type):
            self._start(audio_format(event.data, event.type))
        elif AudioChunk.is_type(event.type):
            await self._chunk(audio_format(event.data, event.type), event.payload or b"")
        elif AudioStop.is_type(event.type):
            await self._stop()
        else:
            log.debug("ignoring a %s event", printable(event.type))

    async def _detect(self, names: set[str] | None) -> None:
        """A client's choice of commands. Names the model lacks could never be answered: they are logged, and
        a choice of none it knows is answered with an error event (the connection stays open)."""
        from wyoming.error import Error

        self._names = names
        log.debug("client %s listens for %s", self._peer, ", ".join(sorted(map(printable, names or ["every command"]))))
        unknown = sorted((names or set()) - set(self._service.commands))
        if not unknown:
            return
        known = ", ".join(map(printable, self._service.commands))
        self._service.unknown_names.warn(f"client {self._peer} asked to detect {', '.join(map(printable, unknown))}, "
                                         f"which this model does not know (it knows {known})")
        if not names & set(self._service.commands):
            await self._write(Error(text=printable(f"this model detects none of {', '.join(sorted(names))}; it "
                                                   f"knows {known}")[:300], code="unknown-name").event())

    def _start(self, audio: tuple[int, int, int]) -> None:
        self._format = audio
        self._recognizer = self._service.recognizer.fresh()
        self._resample = Resampler(audio[0], self._recognizer.sample_rate)
        self._heard = False
        self._heard_s, self._events = 0.0, 0
        log.debug("client %s: audio at %d Hz, %d byte(s) per sample, %d channel(s)", self._peer, *audio)

    async def _chunk(self, audio: tuple[int, int, int], pcm: bytes) -> None:
        rate, width, channels = audio
        frames, odd = divmod(len(pcm), width * channels)
        if odd:
            raise ProtocolError(f"malformed audio-chunk event: {len(pcm)} bytes is not a whole number of "
                                f"{channels}-channel {width}-byte frames")
        seconds = frames / rate
        if seconds > MAX_CHUNK_MS / 1000:
            raise ProtocolError(f"an audio-chunk of {seconds:.3g} s; this server takes at most "
                                f"{MAX_CHUNK_MS / 1000:g} s per chunk", "chunk-too-long")
        if not self._pace.take(seconds):
            limits = self._service.limits
            raise ProtocolError(f"audio arrives faster than {limits.max_speed:g} times real time (more than "
                                f"{limits.burst_s:g} s ahead; --max-speed)", "too-fast")
        if audio != self._format:  # a chunk without audio-start, or the format changed: a new stream
            self._start(audio)
        self._heard_s += seconds
        await self._hear(await self._service.work(to_model_audio, pcm, width, channels, self._resample))

    async def _hear(self, audio: np.ndarray) -> None:
        """Model-rate audio through this client's recognizer, one slice per job, reporting what it hears."""
        step = self._recognizer.sample_rate * SLICE_MS // 1000
        for start in range(0, len(audio), step):
            for detection in await self._service.work(self._recognizer.process, audio[start:start + step]):
                await self._report(detection)

    async def _report(self, detection) -> None:
        from wyoming.wake import Detection

        if self._names is not None and detection.label not in self._names:
            log.debug("client %s: heard %s (score %.2f) at %.2f s, not among the names it asked for", self._peer,
                      printable(detection.label), detection.score, detection.time_s)
            return
        log.debug("client %s: detection %s (score %.2f) at %.2f s", self._peer, printable(detection.label),
                  detection.score, detection.time_s)
        self._heard = True
        self._events += 1
        await self._write(Detection(name=detection.label, timestamp=int(1000 * detection.time_s)).event())
        if self._service.mqtt is not None:
            self._service.mqtt.publish(detection, client=self._peer)

    async def _stop(self) -> None:
        from wyoming.wake import NotDetected

        if self._recognizer is not None:
            tail = await self._service.work(self._resample, np.zeros(0, np.float32), True)
            await self._hear(tail)
            for detection in await self._service.work(self._recognizer.finish):
                await self._report(detection)
        log.debug("client %s: audio-stop after %.2f s of audio, %d event(s)", self._peer, self._heard_s, self._events)
        if not self._heard:
            await self._write(NotDetected().event())
        self._recognizer = self._resample = self._format = None
        self._heard = False


def parse_uri(uri: str) -> tuple[str, str, int | None]:
    """("tcp", host, port) or ("unix", path, None)."""
    try:
        parsed = urlparse(uri)
        port = parsed.port
    except ValueError as error:
        raise EdgeError(f"--uri {uri}: {error}") from None
    if parsed.scheme == "tcp" and parsed.hostname and port is not None:
        return "tcp", parsed.hostname, port
    if parsed.scheme == "unix" and parsed.path:
        return "unix", parsed.path, None
    raise EdgeError(f"--uri {uri}: give tcp://HOST:PORT or unix:///PATH")


def _claim_socket_path(path: Path) -> None:
    """Make way for a new socket at `path`: nothing there, or a socket that nobody answers on any more
    (left by a server that was killed). Refuses a file that is not a socket, and a live server's socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise EdgeError(f"{path} exists and is not a socket; not replacing it (remove it or choose another path)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):  # a stale socket: no process listens
            path.unlink(missing_ok=True)
            return
        except OSError as error:
            raise EdgeError(f"cannot tell whether a server is listening on {path} ({error.strerror or error}); "
                            "not replacing it") from None
    raise EdgeError(f"another server is listening on {path}; stop it first or choose another path")


class UnixSocket:
    """A listening unix socket at a path, created with `mode`, and removed at close only if the path still
    holds the very socket this process made (a later server may have replaced it)."""

    def __init__(self, path: Path, mode: int | None):
        _claim_socket_path(path)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o177)  # born private; chmod widens it to what was asked, so it is never wider
        try:
            self.sock.bind(str(path))
        except OSError as error:
            self.sock.close()
            raise EdgeError(f"cannot make a socket at {path}: {error.strerror or error}") from None
        finally:
            os.umask(umask)
        os.chmod(path, 0o777 & ~umask if mode is None else mode)
        made = path.lstat()
        self._identity = (made.st_dev, made.st_ino)

    def remove(self) -> None:
        try:
            now = self.path.lstat()
        except FileNotFoundError:
            return
        if (now.st_dev, now.st_ino) == self._identity:
            self.path.unlink(missing_ok=True)


def socket_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal file mode such as 660")
    return mode


def _positive(kind, zero: bool = False):
    """An argparse type: a number above 0 (or 0 too, with `zero`)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if not (value > 0 or (zero and value == 0)) or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number {'of 0 or more' if zero else 'above 0'}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    limits = Limits()
    p = Parser(prog="python -m edge.serve", description="Keyword spotting as a Wyoming service, the protocol "
               "Home Assistant uses for voice services: each client streams audio and is told each command heard.",
               fromfile_prefix_chars="@", epilog="@FILE reads arguments from FILE, one per line. Exit codes: 0 "
               "stopped (SIGTERM, SIGHUP, Ctrl+C), 2 a mistake in the input or a port it cannot listen on.")
    p.add_argument("--uri", default="tcp://0.0.0.0:10400",
                   help="where to listen: tcp://HOST:PORT or unix:///PATH (default: %(default)s)")
    p.add_argument("--socket-mode", type=socket_mode, default=None, metavar="OCTAL",
                   help="with unix://: the socket's permissions, e.g. 660 for its owner and group "
                        "(default: as the umask leaves them)")
    add_model_arguments(p)
    p.add_argument("--zeroconf", action="store_true",
                   help="with tcp://: announce the service on the local network (mDNS), so Home Assistant "
                        "discovers it (default: not announced)")
    p.add_argument("--debug", action="store_true",
                   help="log a line per client connecting and leaving, per utterance, per event and per error "
                        "(default: warnings only)")
    p.add_argument("--max-clients", type=_positive(int), default=limits.max_clients, metavar="N",
                   help="clients served at once; more are refused with an error (default: %(default)s)")
    p.add_argument("--idle-timeout", type=_positive(float), default=limits.idle_timeout_s, metavar="SECONDS",
                   help="disconnect a client that sends no complete event, or reads none of its answers, for "
                        "this long (default: %(default)s)")
    p.add_argument("--max-speed", type=_positive(float, zero=True), default=limits.max_speed, metavar="X",
                   help=f"refuse a client whose audio comes faster than X times real time, once it is "
                        f"{limits.burst_s:g} s ahead; 0: no limit, e.g. to replay files (default: %(default)s)")
    add_mqtt_arguments(p)
    return p


async def _announce(args, port: int) -> None:
    try:
        from wyoming.zeroconf import HomeAssistantZeroconf
    except ImportError:
        raise EdgeError("--zeroconf needs the zeroconf package: pip install zeroconf") from None
    try:
        await HomeAssistantZeroconf(port=port, name=args.name).register_server()
    except OSError as error:
        raise EdgeError(f"--zeroconf: cannot announce the service on the local network ({error})") from None


def _check_open_files(max_clients: int) -> None:
    """Enough open files for every client, so a flood of connections cannot make accept() fail (and
    asyncio log a traceback for each) before --max-clients refuses them."""
    need = max_clients * FILES_PER_CLIENT + FILES_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise EdgeError(f"--max-clients {max_clients} needs {need} open files; this process may open {hard} "
                        "(raise LimitNOFILE, or lower --max-clients)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _quiet_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Errors asyncio meets outside our handlers (say, accept() failing) as one throttled line, not a
    traceback each."""
    throttled = Throttled(log)

    def handle(loop, context):
        error = context.get("exception")
        throttled.warn(f"{context.get('message', 'error')}" + (f": {type(error).__name__}: {error}" if error else ""))

    loop.set_exception_handler(handle)


async def serve(args) -> None:
    kind, where, port = parse_uri(args.uri)
    if args.socket_mode is not None and kind != "unix":
        raise EdgeError("--socket-mode sets a unix:// socket's permissions; --uri is not one")
    if args.zeroconf and kind != "tcp":
        raise EdgeError("--zeroconf announces a tcp:// service; it cannot announce a unix socket")
    check_mqtt_arguments(args, name_used=args.zeroconf)  # --zeroconf announces the service by --name
    limits = Limits(max_clients=args.max_clients, idle_timeout_s=args.idle_timeout, max_speed=args.max_speed)
    _check_open_files(limits.max_clients)
    if kind == "unix":
        _claim_socket_path(Path(where))  # before the model loads: a wrong path is said at once
    recognizer = MultiRecognizer.from_onnx(model_paths(args), threshold=args.threshold, speeds=args.speeds)
    loop = asyncio.get_running_loop()
    _quiet_loop_errors(loop)
    stop = asyncio.Event()
    # SIGTERM (systemd stopping the service), SIGHUP (its terminal gone) and Ctrl+C all end it cleanly
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    if args.zeroconf:
        await _announce(args, port)
    service = Service(recognizer, wyoming_info(recognizer).event(), limits, mqtt_publisher(args))
    unix = None
    try:
        if kind == "unix":
            unix = UnixSocket(Path(where), args.socket_mode)
            server = await asyncio.start_unix_server(service.accept, sock=unix.sock, limit=limits.frames.header_bytes,
                                                       backlog=BACKLOG)
        else:
            server = await asyncio.start_server(service.accept, where, port, limit=limits.frames.header_bytes,
                                                backlog=BACKLOG)
        for model in recognizer.models.values():
            log.debug("model %s (weights %s), heard at speeds %s; %s", model.path, model.weights_id,
                      ",".join(f"{v:g}" for v in model.speeds), model.settings)
        print(f"edge.serve: Wyoming service on {args.uri} for {printable(', '.join(service.commands))}",
              file=sys.stderr, flush=True)
        await stop.wait()
        server.close()
    finally:
        await service.close()
        if unix is not None:
            unix.remove()
        if service.mqtt is not None:
            service.mqtt.close(timeout_s=STOP_S)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a mistake argparse found (said in one line)
        return stop.code
    logging.basicConfig(level=logging.WARNING, format="edge.serve: %(levelname)s: %(message)s")
    if args.debug:  # the runtime's loggers and this module's ("__main__" under python -m), not other libraries'
        for name in ("edge", __name__):
            logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        import wyoming  # noqa: F401
    except ImportError:
        print("edge.serve: error: the Wyoming service needs the wyoming package: pip install wyoming "
              "(it comes with the edge extra)", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args))
    except EdgeError as error:
        print(f"edge.serve: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. the port is taken
        print(f"edge.serve: error: cannot listen on {args.uri}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl+C before the signal handlers were in place
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
