"""How the device runtime reports trouble: one exception type for what stops it, and throttled warnings
for what it survives (lost audio, bad chunks, failing hooks) so a service's log says so as it happens
without being flooded."""

from __future__ import annotations

import logging
import time


class EdgeError(Exception):
    """A problem the user can fix (missing model, unreadable file, no microphone). `edge.listen`,
    `edge.serve`, `kws` and the tools print the message on one line and exit with code 2."""


class Throttled:
    """A warning logged at most once per `every_s` seconds of wall time; the line counts what happened
    since the previous one: "... (4 times in the last 10 s)"."""

    def __init__(self, log: logging.Logger, every_s: float = 10.0, clock=time.monotonic):
        self._log, self._every_s, self._clock = log, every_s, clock
        self._last_s = -float("inf")
        self._since = 0

    def warn(self, message: str) -> None:
        self._since += 1
        now = self._clock()
        if now - self._last_s < self._every_s:
            return
        times = f" ({self._since} times in the last {self._every_s:g} s)" if self._since > 1 else ""
        self._log.warning("%s%s", message, times)
        self._last_s, self._since = now, 0
