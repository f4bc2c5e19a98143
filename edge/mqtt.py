"""Detections to an MQTT broker (paho-mqtt), for home automation that speaks MQTT.

Topics, under a prefix (default "kws") and this listener's name (default: the host name):

    kws/NAME/detection     one JSON message per event: label, score, time (stream seconds), wall_time, device
    kws/NAME/availability  "online" / "offline", retained; "offline" is also the broker's last will, so it
                           is published when the process dies without saying goodbye

Publishing never blocks listening: paho's own thread talks to the broker and reconnects with growing pauses
(1 s to 60 s) after the broker goes away; events from while it was away (up to QUEUE of them) are sent once it is
back. No event is lost without a word: the start waits up to START_S for the first connection, so a wrong
address or a broker that is down is a warning before the first event; the first failed connection is logged
with its reason (TLS, refused, unreachable), later ones every ten minutes at most; a reconnection says how
many events waited for it; and at the end, events that never reached the broker (it was away, or the queue was
full) are counted in one warning. The program's exit code stays 0: listening itself went well, and the events
are on stdout too. Credentials come from KWS_MQTT_USERNAME / KWS_MQTT_PASSWORD or a file, never from the
command line (where every user on the machine could read them in the process list), and no message ever shows
the password.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import stat
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from edge.detect import Detection
from edge.errors import EdgeError, Throttled

log = logging.getLogger(__name__)

RECONNECT_S = (1, 60)
KEEPALIVE_S = 30
QUEUE = 1000  # events kept while the broker is away; beyond, new ones are dropped (and that is logged)
RETRY_LOG_S = 600  # after the first failed connection is logged, how often the next failures are
START_S = 3.0  # how long the start waits for the first connection attempt to succeed or fail
TOPIC_PREFIX = "kws"  # topic prefix when none is given
NOT_IN_TOPICS = {"+": "+", "#": "#", "\0": "NUL"}  # MQTT's wildcards, and the end of a string in C brokers


def _credentials(path: Path | None) -> tuple[str | None, str | None]:
    """(username, password): from a file of two lines if given, else from the environment."""
    if path is None:
        return os.environ.get("KWS_MQTT_USERNAME"), os.environ.get("KWS_MQTT_PASSWORD")
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise EdgeError(f"cannot read MQTT credentials from {path}: {error.strerror}") from None
    if not lines or not lines[0]:
        raise EdgeError(f"{path} must hold the MQTT user name on its first line and the password on its second")
    if path.stat().st_mode & stat.S_IROTH:
        log.warning("%s holds the MQTT password and every user on this machine can read it: chmod o-r %s",
                    path, path)
    return lines[0], lines[1] if len(lines) > 1 else None


def check_topic_part(value: str, what: str) -> None:
    """Refuse what would make every publish fail (or subscribe to more than meant): + # NUL."""
    found = [name for char, name in NOT_IN_TOPICS.items() if char in value]
    if found:
        raise EdgeError(f"{what} {value!r} cannot hold {' or '.join(found)}: in MQTT topics + and # are "
                        "wildcards and NUL is not allowed")


def _broker(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of --mqtt-url; errors never repeat a URL that holds a password."""
    try:
        parsed = urlparse(url)
        has_credentials = bool(parsed.username or parsed.password)
    except ValueError:
        raise EdgeError("--mqtt-url must look like mqtt://HOST:1883 or mqtts://HOST:8883") from None
    if has_credentials:
        raise EdgeError("put MQTT credentials in KWS_MQTT_USERNAME / KWS_MQTT_PASSWORD or --mqtt-credentials "
                        "FILE, not in the URL (the command line is visible to every user)")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname or port == -1:
        raise EdgeError(f"--mqtt-url must look like mqtt://HOST:1883 or mqtts://HOST:8883, not {url!r}")
    return parsed.scheme, parsed.hostname, port or (8883 if parsed.scheme == "mqtts" else 1883)


def _why(error: BaseException | None, port: int, tls: bool) -> str:
    """Why a connection attempt failed, in words a user can act on."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"TLS: the broker's certificate is not trusted ({error.verify_message}); "
                "for a broker with a private CA give --mqtt-ca FILE")
    if isinstance(error, ssl.SSLError) or (tls and isinstance(error, (ConnectionResetError, EOFError))):
        detail = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
        return (f"TLS handshake failed ({detail}); is {port} the broker's TLS port? "
                "(mqtts:// is usually 8883, mqtt:// 1883)")
    if isinstance(error, ConnectionRefusedError):
        return "refused: nothing listens there (is the broker running, and is this its port?)"
    if isinstance(error, socket.gaierror):
        return f"no such host ({error.strerror})"
    if isinstance(error, TimeoutError):
        return "no answer: the broker is unreachable, or a firewall drops the connection"
    if isinstance(error, OSError):
        return f"unreachable ({error.strerror or error})"
    return f"{type(error).__name__}: {error}" if error else "unknown reason"


def _sent(info) -> bool:
    """Whether the broker acknowledged this message; True where it was never queued (nothing to wait for)."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):  # published while the connection was away: the last will speaks instead
        return True


class MqttPublisher:
    """Connects in the background and publishes events; `close()` says goodbye ("offline")."""

    def __init__(self, url: str, prefix: str = TOPIC_PREFIX, device: str | None = None,
                 credentials: Path | None = None, ca: Path | None = None):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise EdgeError("MQTT output needs paho-mqtt: pip install paho-mqtt (it comes with the edge extra)") from None
        scheme, host, port = _broker(url)
        self.device = device or socket.gethostname()
        check_topic_part(prefix, "--mqtt-topic")
        check_topic_part(self.device, "--name")
        base = f"{prefix.strip('/')}/{self.device}"
        self.detection_topic, self.availability_topic = f"{base}/detection", f"{base}/availability"
        self._where, self._port, self._tls_on = f"{host}:{port}", port, scheme == "mqtts"
        self._connected, self._failures, self._why = False, 0, "no connection was made"
        self._first_attempt = threading.Event()  # set once the first connection succeeded or failed
        # Events handed to paho and not yet acknowledged by the broker (mids), and acknowledgements that came
        # before their publish() returned: paho calls on_publish under its own lock, so ours is never held
        # around client.publish()
        self._lock = threading.Lock()
        self._unacknowledged: set[int] = set()
        self._acknowledged_early: set[int] = set()
        self._events, self._lost = 0, 0  # events published; dropped at once (queue full, errors)
        self._retries, self._dropped = Throttled(log, RETRY_LOG_S), Throttled(log)
        self._queue_full = mqtt.MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"kws-edge-{self.device}-{os.getpid()}")
        username, password = _credentials(credentials)
        if username:
            self._client.username_pw_set(username, password)
        self._tls(scheme, ca)
        self._client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        self._client.reconnect_delay_set(*RECONNECT_S)
        self._client.max_queued_messages_set(QUEUE)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.connect_async(host, port, keepalive=KEEPALIVE_S)
        self._client.loop_start()

    def _tls(self, scheme: str, ca: Path | None) -> None:
        if scheme != "mqtts":
            if ca is not None:
                raise EdgeError("--mqtt-ca is for a TLS broker: give an mqtts:// URL")
            return
        try:
            self._client.tls_set(ca_certs=None if ca is None else str(ca))
        except FileNotFoundError:
            raise EdgeError(f"--mqtt-ca {ca}: no such file") from None
        except (OSError, ssl.SSLError) as error:
            raise EdgeError(f"--mqtt-ca {ca}: not a readable PEM CA certificate "
                            f"({getattr(error, 'reason', None) or error.strerror or error})") from None

    def _failed(self, reason: str) -> None:
        """A connection attempt failed: the first is logged at once, later ones every RETRY_LOG_S at most."""
        self._failures, self._why = self._failures + 1, reason
        self._retries.warn(f"MQTT: cannot connect to {self._where}: {reason}; retrying in the background, "
                           f"events wait for it (up to {QUEUE})")
        self._first_attempt.set()

    def wait_for_broker(self, timeout_s: float = START_S) -> None:
        """Wait (at most `timeout_s`) until the first connection attempt has succeeded or failed, so that a
        broker that is away is said before listening starts."""
        if not self._first_attempt.wait(timeout_s):
            log.warning("MQTT: no answer from %s after %g s; still trying in the background, events wait for it "
                        "(up to %d)", self._where, timeout_s, QUEUE)

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError:`, so the error is still at hand
        self._failed(_why(sys.exc_info()[1], self._port, self._tls_on))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._failed(f"the broker refused the connection ({reason_code}); check the credentials")
            return
        if self._failures:
            with self._lock:
                waiting = len(self._unacknowledged)
            log.warning("MQTT: connected to %s after %d failed attempt(s); sending the %d event(s) that waited",
                        self._where, self._failures, waiting)
        self._connected, self._failures = True, 0
        self._first_attempt.set()
        log.info("MQTT connected; publishing to %s", self.detection_topic)
        client.publish(self.availability_topic, "online", qos=1, retain=True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._connected:  # closed before it accepted us: e.g. mqtt:// to a TLS port
            self._failed(f"the broker closed the connection before accepting it ({reason_code}); "
                         "if it is a TLS port, use mqtts://")
        elif reason_code.value != 0:
            self._why = f"the connection was lost ({reason_code})"
            log.warning("MQTT broker connection lost (%s); reconnecting in the background, events wait for it "
                        "(up to %d)", reason_code, QUEUE)
        self._connected = False

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid in self._unacknowledged:
                self._unacknowledged.discard(mid)
            else:  # an availability message, or an event whose publish() has not returned yet
                self._acknowledged_early.add(mid)

    def publish(self, detection: Detection, **extra) -> None:
        """Queue the event for the broker; never raises (a broker problem is not the caller's)."""
        self._events += 1
        try:
            info = self._client.publish(self.detection_topic,
                                        json.dumps(detection.to_dict(device=self.device, **extra)), qos=1)
        except (ValueError, RuntimeError, OSError) as error:
            self._lost += 1
            self._dropped.warn(f"MQTT: an event was not published ({error})")
            return
        if info.rc == self._queue_full:
            self._lost += 1
            self._dropped.warn(f"MQTT: {QUEUE} events are waiting for the broker already; this one was dropped")
            return
        with self._lock:  # queued by paho (sent now, or once the broker is back)
            if info.mid in self._acknowledged_early:
                self._acknowledged_early.discard(info.mid)
            else:
                self._unacknowledged.add(info.mid)

    def close(self, timeout_s: float = 2.0) -> int:
        """Says "offline" and disconnects. Waits at most `timeout_s` for the first connection attempt (a
        short run may end before it), and while connected at most `timeout_s` more for the events and the
        goodbye to be acknowledged; not at all when the broker is away (it fired our last will when the
        connection dropped). Returns how many events never reached the broker, and says so."""
        self._first_attempt.wait(timeout_s)
        info = self._client.publish(self.availability_topic, "offline", qos=1, retain=True)
        deadline = time.monotonic() + timeout_s
        while self._connected and time.monotonic() < deadline and (self._unacknowledged or not _sent(info)):
            time.sleep(0.01)
        connected = self._connected
        with self._lock:
            lost = self._lost + len(self._unacknowledged)
        if lost:
            log.warning("MQTT: %d of %d event(s) never reached the broker at %s (%s)", lost, self._events,
                        self._where, self._why if not connected else "it did not acknowledge them in time")
        self._client.disconnect()
        # paho's thread notices the stop only between sleeps of up to 1 s while it waits to reconnect; it is a
        # daemon thread and ends by itself soon after
        stopping = threading.Thread(target=self._client.loop_stop, daemon=True)
        stopping.start()
        stopping.join(timeout_s if connected else 0)
        return lost
