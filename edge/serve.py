"""`python -m edge.serve`: the keyword spotter as a Wyoming service, the protocol Home Assistant uses for
its voice services (wake word, speech to text...).

    python -m edge.serve --uri tcp://0.0.0.0:10400           # then add the Wyoming integration in Home Assistant
    python -m edge.serve --uri unix:///run/kws.sock --zeroconf --mqtt-url mqtt://localhost:1883

A client may send `describe` (answered with `info`: the model's commands as wake models), `detect` (names
to listen for; default all), then `audio-start`, `audio-chunk`s at its own rate, width and channels, and
`audio-stop`. Each command heard is answered with `detection` (`name` is the label, e.g. "stop";
`timestamp` the stream time in ms); `audio-stop` after an utterance in which nothing fired is answered with
`not-detected`. Every connection has its own recognizer, resampler and detector state; the ONNX sessions
are shared read-only. A client that sends something malformed gets an `error` event and is disconnected;
the others never notice.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from functools import partial
from pathlib import Path

import numpy as np

from edge.errors import EdgeError
from edge.listen import add_mqtt_arguments, default_model, mqtt_publisher, printable
from edge.runtime import Recognizer
from edge.sources import Resampler, pcm_to_float

log = logging.getLogger(__name__)

FLUSH_MS = 500  # silence fed at audio-stop, so a command at the very end of the audio still completes
SAMPLE_TYPES = {1: np.uint8, 2: np.int16, 4: np.int32}  # Wyoming audio is integer PCM, little-endian


def _pcm_to_float(audio: bytes, width: int, channels: int) -> np.ndarray:
    if width not in SAMPLE_TYPES:
        raise ValueError(f"sample width {width} bytes is not supported (1, 2 or 4)")
    return pcm_to_float(audio, SAMPLE_TYPES[width], channels)


def wyoming_info(recognizer: Recognizer, model: Path):
    """What `describe` is answered with: one wake program whose models are the model's commands."""
    from wyoming.info import Attribution, Info, WakeModel, WakeProgram

    # the shipped model learnt its commands from Google's Speech Commands (CC BY 4.0)
    attribution = Attribution(name="kws-edge, trained on Speech Commands (Warden, 2018)",
                              url="https://arxiv.org/abs/1804.03209")
    version = recognizer.model_version
    models = [WakeModel(name=printable(label), attribution=attribution, installed=True, languages=["en"],
                        phrase=printable(label), description=f"the command \"{printable(label)}\" ({model.name})",
                        version=version)
              for label in recognizer.labels if not label.startswith("_")]
    return Info(wake=[WakeProgram(name="kws-edge", attribution=attribution, installed=True,
                                  description="offline speech commands", version=version, models=models)])


def handler_class():
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.error import Error
    from wyoming.event import Event
    from wyoming.info import Describe
    from wyoming.server import AsyncEventHandler
    from wyoming.wake import Detect, Detection, NotDetected

    class Connection(AsyncEventHandler):
        """One client: its own recognizer state and audio format."""

        def __init__(self, reader, writer, recognizer: Recognizer, info: Event, mqtt=None):
            super().__init__(reader, writer)
            self._recognizer = recognizer.fresh()
            self._info, self._mqtt = info, mqtt
            self._names: set[str] | None = None
            self._format: tuple[int, int, int] | None = None
            self._resample: Resampler | None = None
            self._heard = False

        def _start(self, rate: int, width: int, channels: int) -> None:
            if not 1000 <= rate <= 384000:
                raise ValueError(f"sample rate {rate} Hz is not a sample rate")
            self._format = (rate, width, channels)
            self._resample = Resampler(rate, self._recognizer.sample_rate)

        async def _deliver(self, audio: np.ndarray) -> None:
            for detection in self._recognizer.process(audio):
                if self._names is not None and detection.label not in self._names:
                    continue
                self._heard = True
                await self.write_event(Detection(name=detection.label, timestamp=int(1000 * detection.time_s)).event())
                if self._mqtt is not None:
                    self._mqtt.publish(detection, client=self._peer)

        @property
        def _peer(self) -> str:
            peer = self.writer.get_extra_info("peername")
            return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "local"

        async def run(self) -> None:
            # wyoming itself ends a connection whose next line is not an event; a client that vanishes
            # while we write to it ends only its own connection, quietly
            try:
                await super().run()
            except ConnectionError:
                pass

        async def handle_event(self, event: Event) -> bool:
            try:
                return await self._handle(event)
            except (KeyError, TypeError, ValueError) as error:
                log.warning("client %s sent a malformed %s event (%s); disconnecting it", self._peer, event.type, error)
                await self.write_event(Error(text=f"malformed {event.type} event: {error}", code="bad-event").event())
                return False

        async def _handle(self, event: Event) -> bool:
            if Describe.is_type(event.type):
                await self.write_event(self._info)
            elif Detect.is_type(event.type):
                names = Detect.from_event(event).names
                self._names = set(names) if names else None
            elif AudioStart.is_type(event.type):
                start = AudioStart.from_event(event)
                self._recognizer.reset()
                self._heard = False
                self._start(int(start.rate), int(start.width), int(start.channels))
            elif AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                chunk_format = (int(chunk.rate), int(chunk.width), int(chunk.channels))
                if chunk_format != self._format:  # a chunk without audio-start, or the format changed
                    self._start(*chunk_format)
                await self._deliver(self._resample(_pcm_to_float(chunk.audio, chunk.width, chunk.channels)))
            elif AudioStop.is_type(event.type):
                if self._resample is not None:
                    await self._deliver(self._resample(np.zeros(0, np.float32), last=True))
                await self._deliver(np.zeros(self._recognizer.sample_rate * FLUSH_MS // 1000, np.float32))
                if not self._heard:
                    await self.write_event(NotDetected().event())
                self._recognizer.reset()
                self._format = self._resample = None
                self._heard = False
            else:
                log.debug("ignoring a %s event", event.type)
            return True

    return Connection


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edge.serve", description="Keyword spotting as a Wyoming service.",
                                fromfile_prefix_chars="@")
    p.add_argument("--uri", default="tcp://0.0.0.0:10400",
                   help="where to listen: tcp://HOST:PORT or unix:///PATH (default: %(default)s)")
    p.add_argument("--model", type=Path, default=None,
                   help="exported kws window model (default: the shipped models/kws.onnx)")
    p.add_argument("--threshold", type=float, default=None, help="as for edge.listen (default: the model's own)")
    p.add_argument("--zeroconf", action="store_true",
                   help="announce the service on the local network (mDNS), so Home Assistant discovers it")
    add_mqtt_arguments(p)
    return p


async def serve(args) -> None:
    from wyoming.server import AsyncServer, AsyncTcpServer

    model = args.model or default_model()
    recognizer = Recognizer.from_onnx(model, threshold=args.threshold)
    info = wyoming_info(recognizer, Path(model)).event()
    try:
        server = AsyncServer.from_uri(args.uri)
    except ValueError as error:
        raise EdgeError(f"--uri {args.uri}: {error}") from None
    if args.zeroconf:
        if not isinstance(server, AsyncTcpServer):
            raise EdgeError("--zeroconf announces a tcp:// service; it cannot announce a unix socket")
        try:
            from wyoming.zeroconf import HomeAssistantZeroconf
        except ImportError:
            raise EdgeError("--zeroconf needs the zeroconf package: pip install zeroconf") from None
        try:
            await HomeAssistantZeroconf(port=server.port, name=args.name).register_server()
        except OSError as error:
            raise EdgeError(f"--zeroconf: cannot announce the service on the local network ({error})") from None
    # SIGTERM (systemd stopping the service) ends serving cleanly, whatever the kind of server
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    mqtt = mqtt_publisher(args)
    commands = ", ".join(l for l in recognizer.labels if not l.startswith("_"))
    try:
        await server.start(partial(handler_class(), recognizer=recognizer, info=info, mqtt=mqtt))
        print(f"edge.serve: Wyoming service on {args.uri} for {printable(commands)}", file=sys.stderr, flush=True)
        await asyncio.Event().wait()  # until SIGTERM or Ctrl+C cancels it
    finally:
        await server.stop()
        if mqtt is not None:
            mqtt.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="edge.serve: %(levelname)s: %(message)s")
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
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
