"""edge.serve as a network service: bounded memory and time per client, no stall, no lost file.

The attacks are those of tools/serve_attack.py (one implementation for the table and for these tests),
run on loopback against one server with the shipped model while a well-behaved client streams real
speech at real time beside them. The event reader (edge.protocol), the pace, the log budget, signals and unix sockets
are also tested on their own.

Timing: the issue asks that the well-behaved client get each detection within 1 s. The tool measures
well under that (see the README); here each attack's worst latency is allowed 1.5 s, half again, because
this machine may be busy with other work while the tests run.
"""

import asyncio
import io
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("wyoming")
from wyoming.audio import AudioChunk  # noqa: E402
from wyoming.event import write_event  # noqa: E402

from edge.protocol import FrameLimits, ProtocolError, audio_format, detect_names, read_event  # noqa: E402
from edge.serve import LogBudget, Pace  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "kws.onnx"
sys.path.insert(0, str(ROOT / "tools"))
import serve_attack  # noqa: E402

LATENCY_BOUND_S = 1.5  # the 1 s, with half again for a loaded test machine
RSS_BOUND_MB = serve_attack.RSS_BOUND_MB  # 150 MB
SETTLED_MB = 15.0  # after the bursts, RSS within this of the idle server's


# ---- the event reader ---------------------------------------------------------------------------------


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


# ---- the attacks against one server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def attacked():
    """The report of every attack in tools/serve_attack.py, and one more burst of resets (to see that a
    second burst leaves no more memory than the first)."""
    report = serve_attack.run_attacks(MODEL, attacks=serve_attack.ATTACKS + [serve_attack.reset_burst])
    return report, {row.attack: row for row in report.rows[:-1]}


def _counts(answer: str) -> dict[str, int]:
    """'985 x error busy, 15 x error timeout' -> {'error busy': 985, 'error timeout': 15}"""
    return {what: int(n) for n, what in (part.split(" x ", 1) for part in answer.split(", "))}


def test_each_attack_gets_its_answer(attacked):
    _, rows = attacked
    assert rows["big_chunk_1mb"].answer == "error too-large"
    assert rows["chunk_10_minutes"].answer == "error too-large"
    assert rows["chunk_1_5_s"].answer == "error chunk-too-long"
    assert rows["fast_sender"].answer == "error too-fast" and rows["fast_sender"].details["refused_after_s"] < 15
    assert rows["payload_2gb"].answer == "error too-large"
    assert rows["names_24mb"].answer == "error too-large; header line: error too-large"
    assert rows["malformed_flood"].answer == "1000 x error bad-event"
    # 16 connections at most: the steady client's and 15 idle ones, until the idle timeout frees them (on a
    # busy machine, opening 1,000 connections may outlast it, so a few more than 15 may time out)
    idle = _counts(rows["idle_flood"].answer)
    assert set(idle) == {"error busy", "error timeout"} and sum(idle.values()) == 1000, rows["idle_flood"]
    assert idle["error busy"] >= 900 and idle["error timeout"] >= 15
    assert rows["idle_flood"].details["afterwards_describe"] == "info"  # their places are free again
    assert serve_attack.IDLE_TIMEOUT_S <= rows["idle_flood"].details["last_closed_after_s"] < 10
    assert rows["slow_header"].answer == "error timeout"
    assert serve_attack.IDLE_TIMEOUT_S <= rows["slow_header"].details["closed_after_s"] < 10
    assert rows["never_reads"].answer == "closed" and rows["never_reads"].details["closed_after_s"] < 20
    assert rows["busy_clients"].answer == "12 x served"


def test_the_well_behaved_client_is_served_throughout(attacked):
    report, rows = attacked
    assert report.steady_missed == [] and report.steady_other == []
    for row in report.rows:
        assert row.worst_latency_s is not None, f"{row.attack}: no detection during it"
        assert row.worst_latency_s < LATENCY_BOUND_S, f"{row.attack}: {row.worst_latency_s} s"


def test_memory_stays_bounded_and_settles(attacked):
    report, rows = attacked
    for row in report.rows:
        assert row.peak_rss_mb < RSS_BOUND_MB, f"{row.attack}: {row.peak_rss_mb} MB"
    assert report.final_rss_mb < report.idle_rss_mb + SETTLED_MB
    first_burst, second_burst = rows["reset_burst"], report.rows[-1]
    # nothing kept per connection: a recognizer is about 300 KB, so keeping even a twentieth of one per
    # connection would add 15 MB over 1,000; allocator noise on a busy machine is a few MB
    assert second_burst.rss_after_mb < first_burst.rss_after_mb + 15


def test_refusals_are_logged_in_few_lines_never_a_traceback(attacked):
    report, rows = attacked
    assert report.exit_code == 0
    assert not any("Traceback" in line for line in report.log)
    assert all(line.startswith("edge.serve: WARNING: ") for line in report.log), report.log
    # a few lines per LogBudget window (10 s) however many clients misbehave: a loaded machine takes longer
    for attack, lines in [("malformed_flood", 6), ("idle_flood", 12)]:  # 1,000 bad; 1,000 refused or timed out
        row = rows[attack]
        assert row.log_lines <= lines * (1 + int(row.seconds // 10)), row


# ---- signals and unix sockets -------------------------------------------------------------------------


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_ends_it_within_a_second_whatever_clients_send(tmp_path, number):
    row = serve_attack.stop_under_load(MODEL, tmp_path, number)
    assert row.details["exit_code"] == 0 and row.details["tracebacks"] == 0
    assert row.details["seconds"] < 1.0
    assert not row.details["socket_left"]


def test_a_file_or_a_live_socket_at_the_path_is_left_alone(tmp_path):
    file_row, live_row = serve_attack.socket_rows(MODEL, tmp_path)
    assert file_row.details["exit_code"] == 2 and file_row.details["intact"]
    assert file_row.details["stderr"].count("\n") == 0 and "is not a socket" in file_row.details["stderr"]
    assert live_row.details["exit_code"] == 2 and "another server is listening" in live_row.details["stderr"]
    assert live_row.details["first_answers"] == "info"  # the first server kept its socket and serves on
    assert live_row.details["first_exit"] == 0 and not live_row.details["socket_left"]


def test_a_stale_socket_is_replaced_and_only_our_own_is_removed(tmp_path):
    path = tmp_path / "kws.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # what a killed server leaves: a socket nobody listens on
        stale.bind(str(path))
    server = serve_attack.Server(MODEL, f"unix://{path}", "--socket-mode", "660")
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    # someone else's socket now lies where ours was; stopping must not remove it
    path.unlink()
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(path))
        code, _ = server.stop()
        assert code == 0 and path.exists() and stat.S_ISSOCK(path.lstat().st_mode)


@pytest.mark.parametrize("args, says", [
    (["--uri", "tcp://127.0.0.1:1", "--socket-mode", "660"], "--socket-mode sets a unix:// socket"),
    (["--uri", "unix:///tmp/x.sock", "--socket-mode", "rw"], "not an octal file mode"),
    (["--max-clients", "0"], "not a number above 0"),
    (["--max-speed", "-1"], "not a number of 0 or more"),
    (["--idle-timeout", "nan"], "not a number above 0"),
    (["--max-speed", "inf"], "not a number of 0 or more"),
])
def test_impossible_settings_are_refused_with_a_clear_error(args, says):
    result = subprocess.run([sys.executable, "-m", "edge.serve", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2 and says in result.stderr
    assert "Traceback" not in result.stderr
