"""From per-step class scores to events: smoothing, thresholds, suppression.

Pure and fed explicit timestamps, so it behaves the same on a live microphone, a file replayed faster than
real time, or a test's made-up scores.
"""

from __future__ import annotations

import dataclasses
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
    # (the shipped model's, chosen on long validation audio, are in models/MODEL_CARD.md).
    threshold: float = 0.8
    average_ms: float = 200.0  # scores are averaged over this much of the recent past
    suppression_ms: float = 1500.0  # no second event this soon after one
    thresholds: Mapping[str, float] | None = None  # per-label overrides of `threshold`
    # A second, slower rule: a keyword whose score averages at least `sustained_threshold` over the last
    # `sustained_ms` fires too. A word the model is sure of fires at once on the first rule; one it is
    # less sure of, but keeps hearing for most of a second, fires on this one a little later. 0: off.
    sustained_ms: float = 0.0
    sustained_threshold: float = 0.65

    def __post_init__(self):
        for name, value in [("threshold", self.threshold), ("sustained_threshold", self.sustained_threshold),
                            *(self.thresholds or {}).items()]:
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], not {value}")
        for name in ("average_ms", "suppression_ms", "sustained_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, not {getattr(self, name)}")

    def threshold_of(self, label: str) -> float:
        return (self.thresholds or {}).get(label, self.threshold)

    def with_threshold(self, threshold: float) -> DetectorSettings:
        """The same smoothing, sustained rule and suppression, with one threshold for every keyword."""
        return dataclasses.replace(self, threshold=threshold, thresholds=None)


class _RecentMean:
    """Mean of the scores of the last `span_s` seconds, kept as a running sum: O(1) per step."""

    def __init__(self, span_s: float):
        self._span_s = span_s
        self._recent: deque[tuple[float, np.ndarray]] = deque()
        self._sum = 0.0

    def clear(self) -> None:
        self._recent.clear()
        self._sum = 0.0

    def push(self, scores: np.ndarray, time_s: float) -> np.ndarray:
        scores = np.asarray(scores, np.float64)
        self._recent.append((time_s, scores))
        self._sum = self._sum + scores
        while self._recent[0][0] <= time_s - self._span_s:
            self._sum = self._sum - self._recent.popleft()[1]
        return self._sum / len(self._recent)


class Detector:
    """Feed it `update(scores, time_s)` once per model step; it returns a Detection or None."""

    def __init__(self, labels: tuple[str, ...], settings: DetectorSettings = DetectorSettings()):
        self._labels = tuple(labels)
        self._keyword_ids = [i for i, label in enumerate(labels) if label not in NON_KEYWORDS]
        if not self._keyword_ids:
            raise ValueError("the model has no keyword labels")
        self._settings = settings
        self._thresholds = np.array([settings.threshold_of(label) for label in self._labels])
        self._quick = _RecentMean(settings.average_ms / 1000)
        self._sustained = _RecentMean(settings.sustained_ms / 1000) if settings.sustained_ms > 0 else None
        self._last_event_s = -np.inf
        self._holding: set[int] = set()  # labels that fired and have not dropped below threshold since

    @property
    def settings(self) -> DetectorSettings:
        return self._settings

    def reset(self) -> None:
        self._quick.clear()
        if self._sustained is not None:
            self._sustained.clear()
        self._last_event_s = -np.inf
        self._holding.clear()

    def update(self, scores: np.ndarray, time_s: float) -> Detection | None:
        average = self._quick.push(scores, time_s)
        above = average >= self._thresholds
        if self._sustained is not None:
            sustained = self._sustained.push(scores, time_s)
            above_sustained = sustained >= self._settings.sustained_threshold
            # Where only the slow rule holds, its average is the score that decides and is reported.
            average = np.where(above | ~above_sustained, average, sustained)
            above |= above_sustained
        # A label re-arms once it is below threshold again: one long, loud word is one event.
        self._holding = {i for i in self._holding if above[i]}
        candidates = [i for i in self._keyword_ids if above[i] and i not in self._holding]
        if not candidates or time_s - self._last_event_s < self._settings.suppression_ms / 1000:
            return None
        best = max(candidates, key=lambda i: average[i])
        self._last_event_s = time_s
        self._holding.add(best)
        return Detection(self._labels[best], float(average[best]), time_s)
