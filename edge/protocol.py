"""The Wyoming protocol as edge.serve speaks it: events read from a network client with every length bounded
before a byte of it is read, their data checked, and the answers (info, error) it writes.

An event on the wire is a JSON header line, then `data_length` bytes of JSON merged into the header's
`data`, then `payload_length` bytes of payload (audio). The wyoming package's own reader trusts the
lengths it is given, so one header can make a server buffer gigabytes, and a header that is a list or
carries a length as a string escapes it as a traceback. This reader refuses lengths over its limits
before reading them and turns every malformed header into a `ProtocolError` with a one-line reason.

The header line's limit is enforced by the `asyncio.StreamReader` itself: create the stream with
`limit=FrameLimits.header_bytes` (as `asyncio.start_server(..., limit=...)` does), so a line without an end
cannot grow its buffer beyond it.
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass

import numpy as np

from edge.cli import printable
from edge.errors import EdgeError
from edge.multi import MultiRecognizer
from edge.runtime import Recognizer
from edge.sources import Resampler, pcm_to_float

SAMPLE_TYPES = {1: np.uint8, 2: np.int16, 4: np.int32}  # Wyoming audio is integer PCM, little-endian
RATES = (8000, 192000)  # Hz a client may send
MAX_CHANNELS = 8
MAX_TYPE_CHARS = 64  # Wyoming's event types are short words ("audio-chunk"); anything longer is not one


@dataclass(frozen=True)
class FrameLimits:
    """The most a client may send in one event, in bytes."""

    header_bytes: int = 16 * 1024  # a real header is ~150 bytes
    data_bytes: int = 16 * 1024  # `detect` names, audio format: a few hundred bytes
    payload_bytes: int = 384_000  # one second of 48 kHz, 32-bit stereo audio


class ProtocolError(EdgeError):
    """What a client sent cannot be served; `code` is the Wyoming error code it is answered with."""

    def __init__(self, message: str, code: str = "bad-event"):
        super().__init__(message)
        self.code = code


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _json_object(raw: bytes, what: str) -> dict:
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:  # json's parser recurses once per level of nesting
        raise ProtocolError(f"the {what} is nested too deeply") from None
    except ValueError as error:  # not JSON, not UTF-8, an integer with thousands of digits, NaN
        raise ProtocolError(f"the {what} is not JSON ({str(error)[:80]})") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"the {what} is a JSON {type(value).__name__}, not an object")
    return value


def _length(header: dict, key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if type(value) is not int:  # noqa: E721 (bool is an int subclass and no length)
        raise ProtocolError(f"{key} must be a whole number of bytes, not a JSON {type(value).__name__}")
    if value < 0:
        raise ProtocolError(f"{key} {value} is negative")
    if value > limit:
        raise ProtocolError(f"{key} {value} is over this server's limit of {limit} bytes", "too-large")
    return value


async def read_event(reader: asyncio.StreamReader, limits: FrameLimits = FrameLimits()):
    """The next wyoming `Event`, or None when the client has hung up (between events or inside one).
    Raises ProtocolError for anything malformed or over `limits`."""
    from wyoming.event import Event

    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"an event header longer than {limits.header_bytes} bytes", "too-large") from None
    header = _json_object(line, "event header")
    event_type = header.get("type")
    if not isinstance(event_type, str) or not 0 < len(event_type) <= MAX_TYPE_CHARS:
        raise ProtocolError(f"an event header needs a type: a string of 1 to {MAX_TYPE_CHARS} characters")
    data = header.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise ProtocolError(f"the data of a {event_type} event is a JSON {type(data).__name__}, not an object")
    data_length = _length(header, "data_length", limits.data_bytes)
    payload_length = _length(header, "payload_length", limits.payload_bytes)
    try:
        if data_length:
            data.update(_json_object(await reader.readexactly(data_length), f"data of a {event_type} event"))
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None
    return Event(type=event_type, data=data, payload=payload)


def encoded(event) -> bytes:
    """An event as the bytes wyoming writes, for writing without waiting (a client that is being refused)."""
    from wyoming.event import write_event

    buffer = io.BytesIO()
    write_event(event, buffer)
    return buffer.getvalue()


def error_event(error: ProtocolError):
    from wyoming.error import Error

    return Error(text=printable(str(error))[:300], code=error.code).event()


def _whole(data: dict, key: str, event_type: str, allowed) -> int:
    """A whole number from an event's data that must be in `allowed` (a range or a tuple)."""
    value = data.get(key)
    if value is None:
        raise ProtocolError(f"malformed {event_type} event: it has no {key}")
    if type(value) is not int:  # noqa: E721 (a bool is an int, and no rate)
        raise ProtocolError(f"malformed {event_type} event: its {key} must be a whole number, "
                            f"not a JSON {type(value).__name__}")
    if value not in allowed:
        accepted = (f"{allowed[0]} to {allowed[-1]}" if isinstance(allowed, range)
                    else ", ".join(map(str, allowed[:-1])) + f" or {allowed[-1]}")
        raise ProtocolError(f"malformed {event_type} event: {key} {value} is not one this server takes ({accepted})")
    return value


def audio_format(data: dict, event_type: str) -> tuple[int, int, int]:
    """(rate Hz, width bytes, channels) of an audio-start or audio-chunk event."""
    return (_whole(data, "rate", event_type, range(RATES[0], RATES[1] + 1)),
            _whole(data, "width", event_type, tuple(SAMPLE_TYPES)),
            _whole(data, "channels", event_type, range(1, MAX_CHANNELS + 1)))


def detect_names(data: dict) -> set[str] | None:
    names = data.get("names")
    if names is None or names == []:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ProtocolError("malformed detect event: names must be a list of strings")
    return set(names)


def commands(recognizer: Recognizer | MultiRecognizer) -> list[str]:
    return [label for label in recognizer.labels if not label.startswith("_")]


def to_model_audio(pcm: bytes, width: int, channels: int, resample: Resampler) -> np.ndarray:
    """A chunk's PCM as float32 mono at the model's rate. Runs on a worker thread."""
    return resample(pcm_to_float(pcm, SAMPLE_TYPES[width], channels))


def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kws-edge")
    except PackageNotFoundError:
        return None


def _heard_by(recognizers: list[Recognizer]) -> tuple[str, str | None]:
    """(which model files, with the ids of their weights; their version) for a command these models know."""
    weights = [r.weights_id and printable(r.weights_id) for r in recognizers]
    files = "; ".join(f"{r.path.name}, weights {w}" for r, w in zip(recognizers, weights))
    versions = [w or r.model_version for r, w in zip(recognizers, weights)]
    return files, "+".join(v for v in versions if v) or None


def wyoming_info(recognizer: MultiRecognizer):
    """What `describe` is answered with: one wake program (this server, with its package version) whose
    models are the models' commands, each once, each with the version of the models that know it: the id of
    their weights, which changes with every training, so that a retrained model does not look like the old
    one."""
    from wyoming.info import Attribution, Info, WakeModel, WakeProgram

    # the shipped model learnt its commands from Google's Speech Commands (CC BY 4.0)
    attribution = Attribution(name="kws-edge, trained on Speech Commands (Warden, 2018)",
                              url="https://arxiv.org/abs/1804.03209")
    models = []
    for label in commands(recognizer):
        files, version = _heard_by([r for r in recognizer.models.values() if label in r.labels])
        models.append(WakeModel(name=printable(label), attribution=attribution, installed=True, languages=["en"],
                                phrase=printable(label), description=f"the command \"{printable(label)}\" ({files})",
                                version=version))
    return Info(wake=[WakeProgram(name="kws-edge", attribution=attribution, installed=True,
                                  description="offline speech commands", version=_package_version(),
                                  models=models)])
