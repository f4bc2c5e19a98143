"""MQTT output through a real Mosquitto broker on loopback, started and stopped by the tests."""

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

paho = pytest.importorskip("paho.mqtt.client")

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "tests" / "data" / "clips"
RATE = 16000
MOSQUITTO = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.service(MOSQUITTO is not None,
                                 "needs Debian's mosquitto (the README's test command installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _private_ca(folder: Path) -> dict[str, Path]:
    """A CA of our own and a certificate it signed for 127.0.0.1: what a home broker with TLS often has."""
    files = {name: folder / f"{name}.pem" for name in ("ca", "ca_key", "cert", "key")}
    quiet = {"check": True, "capture_output": True}
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kws test CA",
                    "-keyout", str(files["ca_key"]), "-out", str(files["ca"])], **quiet)
    request = folder / "cert.csr"
    subprocess.run([OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(files["key"]), "-out", str(request)], **quiet)
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run([OPENSSL, "x509", "-req", "-in", str(request), "-CA", str(files["ca"]), "-CAkey",
                    str(files["ca_key"]), "-CAcreateserial", "-days", "2", "-extfile", str(folder / "san.cnf"),
                    "-out", str(files["cert"])], **quiet)
    return files


class Broker:
    """mosquitto on 127.0.0.1 only, with a config of our own; `restart()` stops and starts it on the same port.
    With `tls` (from _private_ca), a second listener on `tls_port` speaks TLS with that certificate."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None, tls: dict[str, Path] | None = None,
                 persistent: bool = False):
        """`persistent`: sessions (subscriptions, messages queued for them) survive a restart."""
        self.port = _free_port()
        # as root, mosquitto would switch to the user "mosquitto", who cannot read our temporary folder
        config = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}"]
        config += ["persistence true", f"persistence_location {folder}/"] if persistent else ["persistence false"]
        if tls:
            self.tls_port = _free_port()
            config += [f"listener {self.tls_port} 127.0.0.1", f"cafile {tls['ca']}", f"certfile {tls['cert']}",
                       f"keyfile {tls['key']}"]
        if users:
            passwords = folder / "passwords"
            passwords.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
            config += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            config += ["allow_anonymous true"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(config) + "\n")
        self.process = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


class Subscriber:
    """Collects every message under kws/ (retained ones too), re-subscribing after a broker restart."""

    def __init__(self, broker: Broker, username: str | None = None, password: str | None = None,
                 session: str | None = None):
        """`session`: a client id whose session the broker keeps, so that messages published while this
        subscriber is away (a broker restart) wait for it."""
        self.messages: list[tuple[str, str, bool]] = []
        self._lock = threading.RLock()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=session or "",
                                   clean_session=session is None)
        if username:
            self._client.username_pw_set(username, password)
        self._client.on_connect = lambda client, *args: client.subscribe("kws/#", qos=1)
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.2, 1)
        self._client.connect("127.0.0.1", broker.port)
        self._client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))

    def wait_for(self, predicate, timeout_s: float = 20.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                found = [m for m in self.messages if predicate(m)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no such message in {self.messages}")

    def detections(self) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/detection")]

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path)
    yield broker
    broker.stop()


def _clip(word: str) -> np.ndarray:
    (path,) = CLIPS.glob(f"{word}_*.flac")
    return sf.read(path, dtype="float32")[0]


def _pcm(words: list[str]) -> bytes:
    silence = np.zeros(RATE, np.float32)
    audio = np.concatenate([silence] + [part for w in words for part in (_clip(w), silence)])
    return np.round(audio * 32767).astype("<i2").tobytes()


def _listen(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge.listen", "--json", "--name", "testbox", *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_events_arrive_as_json_with_availability(broker, tmp_path):
    subscriber = Subscriber(broker)
    wav = tmp_path / "words.wav"
    sf.write(wav, np.frombuffer(_pcm(["yes", "stop"]), "<i2"), RATE, subtype="PCM_16")
    listener = _listen("--wav", str(wav), "--mqtt-url", broker.url)
    out, err = listener.communicate(timeout=120)
    assert listener.returncode == 0, err
    subscriber.wait_for(lambda m: m[0] == "kws/testbox/availability" and m[1] == "offline")
    events = subscriber.detections()
    assert [e["label"] for e in events] == ["yes", "stop"]
    assert [e["label"] for e in map(json.loads, out.decode().splitlines())] == ["yes", "stop"]  # stdout still
    for event in events:
        assert set(event) == {"label", "score", "time", "wall_time", "device"} and event["device"] == "testbox"
    availability = [p for t, p, _ in subscriber.messages if t == "kws/testbox/availability"]
    assert availability[0] == "online" and availability[-1] == "offline"
    subscriber.close()
    late = Subscriber(broker)  # a subscriber that comes later sees the retained state
    assert late.wait_for(lambda m: m[0] == "kws/testbox/availability")[0][1:] == ("offline", True)
    late.close()


@contextlib.contextmanager
def _stdin_listener(broker: Broker):
    """(subscriber, edge.listen --stdin publishing to the broker), once it has said it is online."""
    subscriber = Subscriber(broker)
    listener = _listen("--stdin", "--mqtt-url", broker.url, stdin=subprocess.PIPE)
    try:
        subscriber.wait_for(lambda m: m[0] == "kws/testbox/availability" and m[1] == "online")
        yield subscriber, listener
    finally:
        listener.kill()
        subscriber.close()


def test_last_will_fires_when_the_process_is_killed(broker):
    with _stdin_listener(broker) as (subscriber, listener):
        listener.send_signal(signal.SIGKILL)
        listener.wait(timeout=10)
        offline = subscriber.wait_for(lambda m: m[0] == "kws/testbox/availability" and m[1] == "offline")
        assert offline


def test_a_broker_restart_is_survived(broker):
    with _stdin_listener(broker) as (subscriber, listener):
        listener.stdin.write(_pcm(["yes"]))
        listener.stdin.flush()
        subscriber.wait_for(lambda m: m[0].endswith("/detection"))
        broker.restart()  # the listener keeps listening and reconnects with backoff
        listener.stdin.write(_pcm(["no"]))
        listener.stdin.flush()
        subscriber.wait_for(lambda m: m[0].endswith("/detection") and json.loads(m[1])["label"] == "no", 30)
        out, err = listener.communicate(input=_pcm(["go"]), timeout=60)
        assert listener.returncode == 0, err
        assert [e["label"] for e in map(json.loads, out.decode().splitlines())] == ["yes", "no", "go"]
        subscriber.wait_for(lambda m: m[0].endswith("/detection") and json.loads(m[1])["label"] == "go")


def test_credentials_from_a_file_or_the_environment_never_the_command_line(tmp_path):
    broker = Broker(tmp_path, users={"kws": "s3cret words"})
    try:
        subscriber = Subscriber(broker, "kws", "s3cret words")
        wav = tmp_path / "words.wav"
        sf.write(wav, np.frombuffer(_pcm(["left"]), "<i2"), RATE, subtype="PCM_16")
        credentials = tmp_path / "mqtt-credentials"
        credentials.write_text("kws\ns3cret words\n")
        for extra, env in ((["--mqtt-credentials", str(credentials)], None),
                           ([], {"KWS_MQTT_USERNAME": "kws", "KWS_MQTT_PASSWORD": "s3cret words"})):
            listener = _listen("--wav", str(wav), "--mqtt-url", broker.url, *extra, env=env)
            assert listener.wait(timeout=120) == 0
        subscriber.wait_for(lambda m: len([x for x in subscriber.detections() if x["label"] == "left"]) == 2)
        # no credentials: the broker refuses, the listener says so and still prints its events
        refused = _listen("--wav", str(wav), "--mqtt-url", broker.url)
        out, err = refused.communicate(timeout=120)
        assert refused.returncode == 0 and b'"left"' in out
        (said,) = [line for line in err.splitlines() if b"cannot connect" in line]  # once, with the reason
        assert b"the broker refused the connection" in said and b"check the credentials" in said, err
        assert b"1 of 1 event(s) never reached the broker" in err  # and the event it could not deliver
        bad = _listen("--wav", str(wav), "--mqtt-url", "mqtt://kws:s3cret@127.0.0.1:1883")
        _, err = bad.communicate(timeout=60)
        assert bad.returncode == 2 and b"not in the URL" in err
        subscriber.close()
    finally:
        broker.stop()


def test_edge_serve_publishes_what_it_detects(broker):
    import asyncio

    pytest.importorskip("wyoming")
    from test_serve import _free_port, _names, _recording, _start_server, _stop_server, _stream
    from test_serve import _pcm as _wyoming_pcm

    subscriber = Subscriber(broker)
    uri = f"tcp://127.0.0.1:{_free_port()}"
    server = _start_server(uri, "--mqtt-url", broker.url, "--name", "testbox")
    try:
        subscriber.wait_for(lambda m: m[0] == "kws/testbox/availability" and m[1] == "online")
        answers = asyncio.run(_stream(uri, _wyoming_pcm(_recording(["right"]), RATE, 1), RATE, 1))
        assert _names(answers) == ["right"]
        (message,) = subscriber.wait_for(lambda m: m[0] == "kws/testbox/detection")
        event = json.loads(message[1])
        assert event["label"] == "right" and event["device"] == "testbox" and event["client"].startswith("127.0.0.1:")
    finally:
        _stop_server(server)
    subscriber.wait_for(lambda m: m[0] == "kws/testbox/availability" and m[1] == "offline")
    subscriber.close()


def _words_wav(folder: Path) -> Path:
    wav = folder / "words.wav"
    sf.write(wav, np.frombuffer(_pcm(["left"]), "<i2"), RATE, subtype="PCM_16")
    return wav


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command to make a private CA")
def test_a_broker_with_a_private_ca_is_trusted_with_mqtt_ca_and_said_to_need_it_without(tmp_path):
    tls = _private_ca(tmp_path)
    broker = Broker(tmp_path, tls=tls)
    try:
        subscriber = Subscriber(broker)  # on the plain listener of the same broker
        wav, url = _words_wav(tmp_path), f"mqtts://127.0.0.1:{broker.tls_port}"
        untrusted = _listen("--wav", str(wav), "--realtime", "--mqtt-url", url)
        out, err = untrusted.communicate(timeout=120)
        assert untrusted.returncode == 0 and b'"left"' in out  # listening goes on without the broker
        assert b"not trusted" in err and b"--mqtt-ca" in err
        trusted = _listen("--wav", str(wav), "--mqtt-url", url, "--mqtt-ca", str(tls["ca"]))
        out, err = trusted.communicate(timeout=120)
        assert trusted.returncode == 0, err
        assert b"cannot connect" not in err
        subscriber.wait_for(lambda m: m[0] == "kws/testbox/detection" and json.loads(m[1])["label"] == "left")
        subscriber.close()
        not_tls = _listen("--wav", str(wav), "--mqtt-url", broker.url, "--mqtt-ca", str(tls["ca"]))
        _, err = not_tls.communicate(timeout=120)  # reads both pipes: a chatty child cannot block on a full one
        assert not_tls.returncode == 2 and b"mqtts://" in err
    finally:
        broker.stop()


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command to make a private CA")
def test_a_wrong_port_or_a_broker_that_is_down_is_logged_with_its_reason(tmp_path):
    broker = Broker(tmp_path, tls=_private_ca(tmp_path))
    wav = _words_wav(tmp_path)
    cases = {f"mqtts://127.0.0.1:{broker.port}": b"TLS handshake failed",  # TLS to the plain port
             f"mqtt://127.0.0.1:{broker.tls_port}": b"before accepting it",  # plain to the TLS port
             f"mqtt://127.0.0.1:{_free_port()}": b"refused: nothing listens there"}  # no broker there
    try:
        for url, reason in cases.items():
            listener = _listen("--wav", str(wav), "--realtime", "--mqtt-url", url)
            out, err = listener.communicate(timeout=120)
            assert listener.returncode == 0 and b'"left"' in out
            (line,) = [line for line in err.splitlines() if b"cannot connect" in line]  # one line, not one a try
            assert reason in line and url.split("//")[1].encode() in line
    finally:
        broker.stop()


@pytest.mark.parametrize("program", ["edge.listen", "edge.serve"])
@pytest.mark.parametrize("flags, says", [
    (["--name", "a+b"], b"--name 'a+b' cannot hold +"),
    (["--mqtt-topic", "home/#"], b"--mqtt-topic 'home/#' cannot hold #"),
], ids=["plus-in-name", "hash-in-topic"])
def test_wildcards_in_a_topic_or_name_are_refused_at_start(program, flags, says):
    extra = ["--wav", str(next(CLIPS.glob("yes_*.flac")))] if program == "edge.listen" else \
        ["--uri", f"tcp://127.0.0.1:{_free_port()}"]
    result = subprocess.run([sys.executable, "-m", program, *extra, "--mqtt-url", "mqtt://127.0.0.1:1", *flags],
                            cwd=ROOT, capture_output=True, timeout=120)
    assert result.returncode == 2 and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_message_shows_a_password(broker, tmp_path):
    for url in ("http://kws:s3cret@127.0.0.1:1883", "mqtt://kws:s3cret@[::1", "mqtts://kws:s3cret@host:port"):
        result = _listen("--wav", str(tmp_path / "none.wav"), "--mqtt-url", url)
        _, err = result.communicate(timeout=60)
        assert result.returncode == 2 and b"URL" in err.upper()  # refused for its URL, before the missing file
        assert b"s3cret" not in err
    users = Broker(tmp_path, users={"kws": "right one"})  # a password the broker refuses
    try:
        listener = _listen("--wav", str(_words_wav(tmp_path)), "--realtime", "--mqtt-url", users.url,
                           env={"KWS_MQTT_USERNAME": "kws", "KWS_MQTT_PASSWORD": "wr0ng s3cret"})
        _, err = listener.communicate(timeout=120)
        assert listener.returncode == 0 and b"refused the connection" in err and b"s3cret" not in err
    finally:
        users.stop()


def test_a_credentials_file_others_can_read_is_warned_about(broker, tmp_path):
    credentials = tmp_path / "mqtt-credentials"
    credentials.write_text("kws\ns3cret\n")
    for mode, warned in ((0o644, True), (0o600, False)):
        credentials.chmod(mode)
        listener = _listen("--wav", str(tmp_path / "none.wav"), "--mqtt-url", broker.url,
                           "--mqtt-credentials", str(credentials))
        _, err = listener.communicate(timeout=60)
        assert (b"every user on this machine can read it" in err) == warned, err
        assert b"s3cret" not in err


def test_edge_serve_stops_at_once_when_its_broker_is_away(tmp_path):
    pytest.importorskip("wyoming")
    sys.path.insert(0, str(ROOT / "tools"))
    from serve_attack import Server

    server = Server(ROOT / "models" / "kws.onnx", f"unix://{tmp_path / 'kws.sock'}",
                    "--mqtt-url", f"mqtt://127.0.0.1:{_free_port()}")  # nothing listens there
    time.sleep(1.5)  # a failed connection, and paho waiting to try again
    code, seconds = server.stop(signal.SIGTERM)
    assert code == 0 and seconds < 1.0
    assert any("cannot connect" in line and "refused" in line for line in server.log), server.log
    assert not (tmp_path / "kws.sock").exists()


def _lines(text: bytes, says: bytes) -> list[bytes]:
    return [line for line in text.splitlines() if says in line]


def test_events_that_never_reach_a_broker_are_counted(tmp_path):
    """A typo in the port: said before the first event, and at the end how many events were lost."""
    port = _free_port()  # nothing listens there
    listener = _listen("--wav", str(_words_wav(tmp_path)), "--mqtt-url", f"mqtt://127.0.0.1:{port}")
    out, err = listener.communicate(timeout=120)
    assert listener.returncode == 0 and b'"left"' in out  # the events are on stdout all the same
    lines = err.splitlines()
    (warning,) = [i for i, line in enumerate(lines) if b"cannot connect" in line]
    (summary,) = [i for i, line in enumerate(lines) if b"s of audio processed" in line]
    (lost,) = _lines(err, b"never reached the broker")
    assert warning < summary and f"1 of 1 event(s) never reached the broker at 127.0.0.1:{port}".encode() in lost
    assert b"refused" in lost


def _persistent_broker_and_subscriber(tmp_path) -> tuple[Broker, Subscriber]:
    """A broker that keeps a subscriber's session across restarts: what it misses while away waits for it."""
    broker = Broker(tmp_path, persistent=True)
    subscriber = Subscriber(broker, session="kws-test-subscriber")
    from paho.mqtt import publish

    for _ in range(50):  # subscribed once a message of its own comes back
        publish.single("kws/probe", "here", qos=1, hostname="127.0.0.1", port=broker.port)
        try:
            subscriber.wait_for(lambda m: m[0] == "kws/probe", 0.2)
            return broker, subscriber
        except AssertionError:
            continue
    raise AssertionError("the subscriber never subscribed")


def test_a_broker_that_starts_late_gets_the_events_that_waited_for_it(tmp_path):
    broker, subscriber = _persistent_broker_and_subscriber(tmp_path)
    broker.stop()
    listener = _listen("--stdin", "--mqtt-url", broker.url, stdin=subprocess.PIPE)
    try:
        listener.stdin.write(_pcm(["yes"]))
        listener.stdin.flush()
        time.sleep(2)  # heard and published while no broker listens
        broker.start()
        subscriber.wait_for(lambda m: m[0].endswith("/detection") and json.loads(m[1])["label"] == "yes", 90)
        out, err = listener.communicate(input=_pcm(["no"]), timeout=120)
        assert listener.returncode == 0, err
        subscriber.wait_for(lambda m: m[0].endswith("/detection") and json.loads(m[1])["label"] == "no", 30)
        assert [e["label"] for e in subscriber.detections()] == ["yes", "no"]
        assert _lines(err, b"cannot connect") and _lines(err, b"sending the 1 event(s) that waited")
        assert not _lines(err, b"never reached")
    finally:
        listener.kill()
        subscriber.close()
        broker.stop()


def test_events_published_while_the_broker_is_away_are_sent_when_it_is_back(tmp_path):
    broker, subscriber = _persistent_broker_and_subscriber(tmp_path)
    listener = _listen("--stdin", "--mqtt-url", broker.url, stdin=subprocess.PIPE)
    try:
        subscriber.wait_for(lambda m: m[0] == "kws/testbox/availability" and m[1] == "online")
        listener.stdin.write(_pcm(["yes"]))
        listener.stdin.flush()
        subscriber.wait_for(lambda m: m[0].endswith("/detection"))
        broker.stop()
        listener.stdin.write(_pcm(["no", "up"]))  # heard while the broker is away
        listener.stdin.flush()
        time.sleep(3)
        broker.start()
        subscriber.wait_for(lambda m: m[0].endswith("/detection") and json.loads(m[1])["label"] == "up", 90)
        out, err = listener.communicate(timeout=120)
        assert listener.returncode == 0, err
        assert [e["label"] for e in map(json.loads, out.decode().splitlines())] == ["yes", "no", "up"]
        assert [e["label"] for e in subscriber.detections()] == ["yes", "no", "up"]
        assert _lines(err, b"connection lost") and _lines(err, b"sending the 2 event(s) that waited")
        assert not _lines(err, b"never reached")
    finally:
        listener.kill()
        subscriber.close()
        broker.stop()
