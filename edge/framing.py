"""Wyoming events read from a network client with every length bounded before a byte of it is read.

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
import json
from dataclasses import dataclass

from edge.errors import EdgeError

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
