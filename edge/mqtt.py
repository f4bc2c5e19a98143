"""Detections to an MQTT broker (paho-mqtt), for home automation that speaks MQTT.

Topics, under a prefix (default "kws") and this listener's name (default: the host name):

    kws/NAME/detection     one JSON message per event: label, score, time (stream seconds), wall_time, device
    kws/NAME/availability  "online" / "offline", retained; "offline" is also the broker's last will, so it
                           is published when the process dies without saying goodbye

Publishing never blocks listening: paho's own thread talks to the broker and reconnects with growing
pauses (1 s to 60 s) after the broker goes away; events from while it was away are sent once it is back.
Credentials come from KWS_MQTT_USERNAME / KWS_MQTT_PASSWORD or a file, never from the command line (where
every user on the machine could read them in the process list).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from edge.detect import Detection
from edge.errors import EdgeError

log = logging.getLogger(__name__)

RECONNECT_S = (1, 60)
KEEPALIVE_S = 30


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
    return lines[0], lines[1] if len(lines) > 1 else None


class MqttPublisher:
    """Connects in the background and publishes events; `close()` says goodbye ("offline")."""

    def __init__(self, url: str, prefix: str = "kws", device: str | None = None,
                 credentials: Path | None = None):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise EdgeError("MQTT output needs paho-mqtt: pip install paho-mqtt (it comes with the edge extra)") from None
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
            raise EdgeError(f"--mqtt-url must look like mqtt://HOST:1883 or mqtts://HOST:8883, not {url!r}")
        if parsed.username or parsed.password:
            raise EdgeError("put MQTT credentials in KWS_MQTT_USERNAME / KWS_MQTT_PASSWORD or --mqtt-credentials "
                            "FILE, not in the URL (the command line is visible to every user)")
        self.device = device or socket.gethostname()
        base = f"{prefix.strip('/')}/{self.device}"
        self.detection_topic, self.availability_topic = f"{base}/detection", f"{base}/availability"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"kws-edge-{self.device}-{os.getpid()}")
        username, password = _credentials(credentials)
        if username:
            self._client.username_pw_set(username, password)
        if parsed.scheme == "mqtts":
            self._client.tls_set()
        self._client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        self._client.reconnect_delay_set(*RECONNECT_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.connect_async(parsed.hostname, parsed.port or (8883 if parsed.scheme == "mqtts" else 1883),
                                   keepalive=KEEPALIVE_S)
        self._client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker refused the connection: %s", reason_code)
            return
        log.info("MQTT connected; publishing to %s", self.detection_topic)
        client.publish(self.availability_topic, "online", qos=1, retain=True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.value != 0:
            log.warning("MQTT broker connection lost (%s); reconnecting in the background", reason_code)

    def publish(self, detection: Detection, **extra) -> None:
        self._client.publish(self.detection_topic, json.dumps(detection.to_dict(device=self.device, **extra)), qos=1)

    def close(self, timeout_s: float = 2.0) -> None:
        info = self._client.publish(self.availability_topic, "offline", qos=1, retain=True)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):  # not connected: the last will says it instead
            pass
        self._client.disconnect()
        self._client.loop_stop()
