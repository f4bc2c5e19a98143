"""edge.serve driven by the wyoming package's own client over loopback TCP (and a unix socket), with the
shipped model and committed Speech Commands clips."""

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

pytest.importorskip("wyoming")
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncClient  # noqa: E402
from wyoming.event import Event  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402
from wyoming.wake import Detect, Detection  # noqa: E402

from conftest import read_line  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "tests" / "data" / "clips"
RATE = 16000
COMMANDS = ["yes", "no", "up", "down", "left", "right", "stop", "go"]


def _clip(word: str) -> np.ndarray:
    (path,) = CLIPS.glob(f"{word}_*.flac")
    audio, rate = sf.read(path, dtype="float32")
    assert rate == RATE
    return audio


def _recording(words: list[str]) -> np.ndarray:
    """The committed clips one after another with a second of silence between: float32 at 16 kHz."""
    silence = np.zeros(RATE, np.float32)
    return np.concatenate([silence] + [part for word in words for part in (_clip(word), silence)])


def _pcm(audio: np.ndarray, rate: int, channels: int) -> bytes:
    if rate != RATE:
        audio = soxr.resample(audio, RATE, rate)
    samples = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2")
    return np.repeat(samples[:, None], channels, axis=1).tobytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(uri: str, *extra: str) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "edge.serve", "--uri", uri, *extra], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True)
    _wait_until_ready(server)
    return server


def _wait_until_ready(server: subprocess.Popen, timeout_s: float = 60.0) -> list[str]:
    """The lines edge.serve writes before "edge.serve: Wyoming service on ..." (its ready line, maybe after
    warnings); a server that exits or stays silent for `timeout_s` is killed and fails the test."""
    before = []
    try:
        while "Wyoming service on" not in (line := read_line(server.stderr, timeout_s)):
            if not line:
                raise AssertionError("edge.serve did not start: " + "".join(before))
            before.append(line)
    except AssertionError:
        server.kill()
        server.wait(timeout=30)
        raise
    return before


def _stop_server(server: subprocess.Popen) -> str:
    server.terminate()
    _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    return err


@pytest.fixture(scope="module")
def tcp_uri():
    uri = f"tcp://127.0.0.1:{_free_port()}"
    server = _start_server(uri)
    yield uri
    err = _stop_server(server)
    assert "Traceback" not in err, err


async def _stream(uri: str, pcm: bytes, rate: int, channels: int, chunk_ms: int = 100,
                  names: list[str] | None = None) -> list[Event]:
    """One utterance: audio-start, chunks, audio-stop; returns the events the server answered with."""
    bytes_per_chunk = rate * chunk_ms // 1000 * 2 * channels
    async with AsyncClient.from_uri(uri) as client:
        if names is not None:
            await client.write_event(Detect(names=names).event())
        await client.write_event(AudioStart(rate=rate, width=2, channels=channels).event())
        for start in range(0, len(pcm), bytes_per_chunk):
            await client.write_event(AudioChunk(rate=rate, width=2, channels=channels,
                                                audio=pcm[start:start + bytes_per_chunk]).event())
        await client.write_event(AudioStop().event())
        # events are handled in order: the answer to a describe sent last marks the end of the answers
        await client.write_event(Describe().event())
        answers = []
        while not Info.is_type((event := await asyncio.wait_for(client.read_event(), timeout=30)).type):
            answers.append(event)
        return answers


def _names(events: list[Event]) -> list[str]:
    return [Detection.from_event(e).name for e in events if Detection.is_type(e.type)]


def test_describe_announces_the_commands(tcp_uri):
    async def describe():
        async with AsyncClient.from_uri(tcp_uri) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await asyncio.wait_for(client.read_event(), timeout=30))

    info = asyncio.run(describe())
    (program,) = info.wake
    assert [model.name for model in program.models] == COMMANDS
    assert all(model.installed and model.languages == ["en"] for model in program.models)


@pytest.mark.parametrize("rate, channels", [(16000, 1), (48000, 2)], ids=["16k-mono", "48k-stereo"])
def test_a_recording_in_chunks_gives_its_commands(tcp_uri, rate, channels):
    words = ["yes", "happy", "stop", "left"]
    answers = asyncio.run(_stream(tcp_uri, _pcm(_recording(words), rate, channels), rate, channels))
    assert _names(answers) == ["yes", "stop", "left"]
    times = [Detection.from_event(e).timestamp for e in answers if Detection.is_type(e.type)]
    assert times == sorted(times) and 1000 < times[0] < 2600  # "yes" is spoken from 1.0 to 2.0 s


def test_silence_is_answered_with_not_detected(tcp_uri):
    answers = asyncio.run(_stream(tcp_uri, _pcm(np.zeros(2 * RATE, np.float32), RATE, 1), RATE, 1))
    assert [e.type for e in answers] == ["not-detected"]


def test_detect_names_limit_what_is_reported(tcp_uri):
    pcm = _pcm(_recording(["yes", "stop"]), RATE, 1)
    assert _names(asyncio.run(_stream(tcp_uri, pcm, RATE, 1, names=["stop"]))) == ["stop"]


def test_ten_clients_at_once_each_get_their_own(tcp_uri):
    words = [COMMANDS[i % len(COMMANDS)] for i in range(10)]

    async def all_at_once():
        return await asyncio.gather(*(_stream(tcp_uri, _pcm(_recording([w]), RATE, 1), RATE, 1, chunk_ms=20)
                                      for w in words))

    assert [_names(answers) for answers in asyncio.run(all_at_once())] == [[w] for w in words]


def test_a_broken_client_leaves_the_others_untouched():
    """While one client streams, another sends a malformed chunk, a third hangs up mid-word and a fourth
    sends a line that is not an event at all."""
    tcp_uri = f"tcp://127.0.0.1:{_free_port()}"
    server = _start_server(tcp_uri)
    host, port = tcp_uri.removeprefix("tcp://").split(":")

    async def malformed():
        async with AsyncClient.from_uri(tcp_uri) as client:
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            await client.write_event(Event(type="audio-chunk", data={"width": 2}, payload=b"\x00\x01"))
            return await asyncio.wait_for(client.read_event(), timeout=30)

    async def hang_up():
        client = AsyncClient.from_uri(tcp_uri)
        await client.connect()
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=_pcm(_clip("go")[:8000], RATE, 1)).event())
        await client.disconnect()

    async def garbage():
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"this is not json\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=30)  # an error event, then the server closes it
        writer.close()
        return data

    async def together():
        good = _stream(tcp_uri, _pcm(_recording(["no", "right"]), RATE, 1), RATE, 1, chunk_ms=20)
        return await asyncio.gather(good, malformed(), hang_up(), garbage())

    try:
        good, error, _, closed = asyncio.run(together())
        assert _names(good) == ["no", "right"]
        assert error.type == "error" and "malformed audio-chunk" in error.data["text"]
        header, data = closed.split(b"\n", 1)  # one error event and nothing after it
        assert json.loads(header)["type"] == "error" and json.loads(data)["code"] == "bad-event"
        assert "not JSON" in json.loads(data)["text"]
        # and the server still serves
        assert _names(asyncio.run(_stream(tcp_uri, _pcm(_recording(["up"]), RATE, 1), RATE, 1))) == ["up"]
    finally:
        err = _stop_server(server)
    assert "Traceback" not in err, err
    assert "malformed audio-chunk" in err  # the broken client was logged


def test_unix_socket(tmp_path):
    uri = f"unix://{tmp_path / 'kws.sock'}"
    server = _start_server(uri)
    try:
        assert _names(asyncio.run(_stream(uri, _pcm(_recording(["down"]), RATE, 1), RATE, 1))) == ["down"]
    finally:
        _stop_server(server)


def test_bad_uri_taken_port_and_impossible_announcement_are_one_line_errors(tcp_uri, tmp_path):
    for args in (["--uri", "http://localhost:1"], ["--uri", tcp_uri],
                 ["--uri", f"unix://{tmp_path / 's.sock'}", "--zeroconf"]):
        result = subprocess.run([sys.executable, "-m", "edge.serve", *args], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and "edge.serve: error:" in result.stderr


def test_describe_gives_each_command_the_models_own_version(tcp_uri):
    """A retrained model must not look like the old one in Home Assistant: each wake model carries the id
    of the weights (which every training changes), the program the package's version."""
    from importlib.metadata import version

    from edge.runtime import read_model_info

    async def describe():
        async with AsyncClient.from_uri(tcp_uri) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await asyncio.wait_for(client.read_event(), timeout=30))

    (program,) = asyncio.run(describe()).wake
    weights = read_model_info(ROOT / "models" / "kws.onnx").weights_id
    assert weights and {model.version for model in program.models} == {weights}
    assert program.version == version("kws-edge")


def test_detect_with_names_the_model_lacks(tmp_path):
    """Names the model does not know are logged; a detect naming none it knows is answered with an error
    (the client would otherwise wait for words that can never come), and the connection stays usable."""
    uri = f"unix://{tmp_path / 'kws.sock'}"
    server = _start_server(uri)
    pcm = _pcm(_recording(["yes"]), RATE, 1)
    try:
        answers = asyncio.run(_stream(uri, pcm, RATE, 1, names=["hey_jarvis"]))
        errors = [e for e in answers if e.type == "error"]
        assert len(errors) == 1 and errors[0].data["code"] == "unknown-name"
        assert "hey_jarvis" in errors[0].data["text"] and "yes" in errors[0].data["text"]
        assert _names(answers) == [] and answers[-1].type == "not-detected"
        mixed = asyncio.run(_stream(uri, pcm, RATE, 1, names=["yes", "hey_jarvis"]))
        assert _names(mixed) == ["yes"] and not [e for e in mixed if e.type == "error"]
    finally:
        err = _stop_server(server)
    assert err.count("asked to detect hey_jarvis, which this model does not know") == 2, err


def test_speeds_and_debug(tmp_path):
    """--speeds 1 hears the stream once (the cheapest, for a Pi 3); --debug logs a line per client, per
    utterance and per event."""
    uri = f"unix://{tmp_path / 'kws.sock'}"
    server = subprocess.Popen([sys.executable, "-m", "edge.serve", "--uri", uri, "--speeds", "1", "--debug"],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    start = _wait_until_ready(server)  # the model's settings, then ready
    try:
        assert _names(asyncio.run(_stream(uri, _pcm(_recording(["go"]), RATE, 1), RATE, 1))) == ["go"]
    finally:
        err = _stop_server(server)
    assert any("heard at speeds 1;" in line for line in start), start
    for says in ("client local connected", "client local: audio at 16000 Hz", "client local: detection go (score 0.",
                 "s of audio, 1 event(s)", "client local disconnected"):
        assert says in err, (says, err)
    assert "Traceback" not in err


@pytest.mark.parametrize("flags, says", [(["--threshold", "1.5"], "--threshold: '1.5' is not a score in (0, 1]"),
                                         (["--speeds", "0.5,1"], "from 0.8 to 1.25"),
                                         (["--speeds", "fast"], "not 'fast'"),
                                         (["--mqtt-topic", "home"], "--mqtt-topic is for publishing to MQTT; add "
                                                                    "--mqtt-url"),
                                         (["--name", "box"], "--name is for publishing to MQTT; add --mqtt-url")])
def test_bad_detection_and_mqtt_flags_are_one_line_errors(tmp_path, flags, says):
    result = subprocess.run([sys.executable, "-m", "edge.serve", "--uri", f"unix://{tmp_path / 's.sock'}", *flags],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("edge.serve: error:") and says in result.stderr
