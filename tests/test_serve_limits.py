"""edge.serve as a network service: bounded memory and time per client, no stall, no lost file.

Here the framing reader (every malformed header is a one-line ProtocolError, and lengths over the limits
are refused before their bytes are read), the pace, the log budget and the checks of event fields.
"""

import asyncio
import io
import logging

import pytest

pytest.importorskip("wyoming")
from wyoming.audio import AudioChunk  # noqa: E402
from wyoming.event import write_event  # noqa: E402

from edge.framing import FrameLimits, ProtocolError, read_event  # noqa: E402
from edge.serve import LogBudget, Pace, audio_format, detect_names  # noqa: E402


# ---- the framing reader -------------------------------------------------------------------------------


def _read(raw: bytes, limits: FrameLimits = FrameLimits(), eof: bool = True):
    """read_event on these bytes; without `eof` the stream stays open, as a client that sends no more."""
    async def go():
        reader = asyncio.StreamReader(limit=limits.header_bytes)
        reader.feed_data(raw)
        if eof:
            reader.feed_eof()
        return await asyncio.wait_for(read_event(reader, limits), 5)
    return asyncio.run(go())


def _wire(event) -> bytes:
    buffer = io.BytesIO()
    write_event(event, buffer)
    return buffer.getvalue()


def test_what_wyoming_writes_is_read_back():
    chunk = AudioChunk(rate=16000, width=2, channels=1, audio=b"\x01\x02" * 800).event()
    event = _read(_wire(chunk))
    assert event.type == "audio-chunk" and event.payload == chunk.payload
    assert event.data["rate"] == 16000 and event.data["width"] == 2 and event.data["channels"] == 1


def test_a_client_that_hangs_up_is_no_event_and_no_error():
    assert _read(b"") is None
    assert _read(b'{"type": "audio-chunk", "payload_length": 100}\n' + bytes(10)) is None  # inside the payload


@pytest.mark.parametrize("raw", [
    b'["audio-chunk", 1]\n',
    b'{"type": "audio-chunk", "payload_length": "100"}\n',
    b'{"type": "audio-chunk", "payload_length": -5}\n',
    b'{"type": "detect", "data_length": true}\n',
    b'{"type": "detect", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}\n",
    b'{"type": "audio-start", "data": {"rate": Infinity}}\n',
    b'{"type": "audio-start", "data": {"rate": NaN}}\n',
    b'{"type": "audio-start", "data": {"rate": ' + b"9" * 5000 + b"}}\n",
    b'{"data": {}}\n',
    b'{"type": ["describe"]}\n',
    b'{"type": "' + b"x" * 100 + b'"}\n',
    b'{"type": "detect", "data": "names"}\n',
    b'{"type": "detect", "data_length": 4}\n{{{{',
    b'{"type": "detect", "data_length": 2}\n[]',
    b'{"type": "\xff\xfe"}\n',
    b"this is not json\n",
], ids=["list", "length-string", "length-negative", "length-bool", "nesting", "infinity", "nan", "huge-int",
        "no-type", "type-list", "type-long", "data-string", "data-bytes-not-json", "data-bytes-list", "not-utf8",
        "text"])
def test_every_malformed_header_is_a_one_line_protocol_error(raw):
    with pytest.raises(ProtocolError) as caught:
        _read(raw)
    assert caught.value.code == "bad-event"
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


@pytest.mark.parametrize("raw, says", [
    (b'{"type": "audio-chunk", "payload_length": 2147483648}\n', "payload_length 2147483648"),
    (b'{"type": "detect", "data_length": 24000000}\n', "data_length 24000000"),
    (b'{"type": "detect", "data": {"names": ["' + b"x" * 20000, "header longer than 16384"),
], ids=["payload-2gb", "data-24mb", "endless-header"])
def test_lengths_over_the_limits_are_refused_before_their_bytes_come(raw, says):
    # the stream stays open: were the reader waiting for the bytes it was promised, this would time out
    with pytest.raises(ProtocolError, match=says) as caught:
        _read(raw, eof=False)
    assert caught.value.code == "too-large"


# ---- pace, log budget, event fields -------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_pace_allows_a_burst_then_a_few_times_real_time():
    clock = Clock()
    pace = Pace(speed=4, burst_s=10, clock=clock)
    assert pace.take(10.0)  # a buffer of 10 s sent at once
    assert not pace.take(0.1)  # and nothing more right away
    clock.now = 1.0
    assert pace.take(3.9)  # 4 s of audio a second after that
    clock.now = 1000.0  # long quiet: the credit fills up to the burst, no further
    assert pace.take(10.0) and not pace.take(0.1)
    unlimited = Pace(speed=0, burst_s=10, clock=clock)
    assert all(unlimited.take(10.0) for _ in range(100))


def test_log_budget_keeps_the_first_lines_and_counts_the_rest(caplog):
    clock = Clock()
    budget = LogBudget(logging.getLogger("test_budget"), lines=5, every_s=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test_budget"):
        for i in range(1000):
            budget.warn(f"client {i} was bad")
        clock.now = 10.0
        budget.warn("client late was bad")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:5] == [f"client {i} was bad" for i in range(5)]
    assert lines[5:] == ["client late was bad (995 more since the last line, not logged)"]


def test_audio_format_and_names_are_checked_not_trusted():
    assert audio_format({"rate": 48000, "width": 4, "channels": 2}, "audio-start") == (48000, 4, 2)
    for data, says in [({"width": 2, "channels": 1}, "has no rate"),
                       ({"rate": True, "width": 2, "channels": 1}, "whole number, not a JSON bool"),
                       ({"rate": 16000.5, "width": 2, "channels": 1}, "whole number, not a JSON float"),
                       ({"rate": 1000, "width": 1, "channels": 1}, "8000 to 192000"),
                       ({"rate": 16000, "width": 3, "channels": 1}, "1, 2 or 4"),
                       ({"rate": 16000, "width": 2, "channels": 9}, "1 to 8")]:
        with pytest.raises(ProtocolError, match=says):
            audio_format(data, "audio-start")
    assert detect_names({"names": ["stop"]}) == {"stop"} and detect_names({}) is None
    with pytest.raises(ProtocolError, match="list of strings"):
        detect_names({"names": "stop"})
