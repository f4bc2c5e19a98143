"""From per-step class scores to events: smoothing, thresholds, suppression.

Pure and fed explicit timestamps, so it behaves the same on a live microphone, a file replayed faster than
real time, or a test's made-up scores.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Mapping

import numpy as np

NON_KEYWORDS = ("_silence_", "_unknown_")


@dataclass(frozen=True)
class Detection:
    label: str
    score: float  # smoothed probability of the label when the event fired, 0..1
    time_s: float  # seconds from the start of the stream to the moment the event fired


@dataclass(frozen=True)
class DetectorSettings:
    # Fallbacks for a model that stores none; an exported model carries its own in its metadata
    # (the shipped one: 0.9, 300 ms, 1500 ms, chosen on long validation audio).
    threshold: float = 0.8
    average_ms: float = 200.0  # scores are averaged over this much of the recent past
    suppression_ms: float = 1500.0  # no second event this soon after one
    thresholds: Mapping[str, float] | None = None  # per-label overrides of `threshold`

    def threshold_of(self, label: str) -> float:
        return (self.thresholds or {}).get(label, self.threshold)


class Detector:
    """Feed it `update(scores, time_s)` once per model step; it returns a Detection or None."""

    def __init__(self, labels: tuple[str, ...], settings: DetectorSettings = DetectorSettings()):
        self._labels = tuple(labels)
        self._keyword_ids = [i for i, label in enumerate(labels) if label not in NON_KEYWORDS]
        if not self._keyword_ids:
            raise ValueError("the model has no keyword labels")
        self._settings = settings
        self._recent: deque[tuple[float, np.ndarray]] = deque()
        self._last_event_s = -np.inf
        self._holding: set[int] = set()  # labels that fired and have not dropped below threshold since

    @property
    def settings(self) -> DetectorSettings:
        return self._settings

    def reset(self) -> None:
        self._recent.clear()
        self._last_event_s = -np.inf
        self._holding.clear()

    def update(self, scores: np.ndarray, time_s: float) -> Detection | None:
        self._recent.append((time_s, scores))
        while self._recent[0][0] <= time_s - self._settings.average_ms / 1000:
            self._recent.popleft()
        average = np.mean([s for _, s in self._recent], axis=0)
        # A label re-arms once its score falls below its threshold: one long, loud word is one event.
        self._holding = {i for i in self._holding if average[i] >= self._settings.threshold_of(self._labels[i])}
        best = max(self._keyword_ids, key=lambda i: average[i])
        label, score = self._labels[best], float(average[best])
        if score < self._settings.threshold_of(label) or best in self._holding:
            return None
        if time_s - self._last_event_s < self._settings.suppression_ms / 1000:
            return None
        self._last_event_s = time_s
        self._holding.add(best)
        return Detection(label, score, time_s)
