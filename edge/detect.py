"""From per-step class scores to events: smoothing, thresholds, suppression.

Pure and fed one model step at a time, so it behaves the same on a live microphone, a file replayed faster
than real time, or a test's made-up scores. Every span is counted in model steps, so a 300 ms window is
the same number of steps wherever the stream starts.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import deque
from dataclasses import dataclass
from typing import Mapping

import numpy as np

NON_KEYWORDS = ("_silence_", "_unknown_")


@dataclass(frozen=True)
class Detection:
    label: str
    # how sure the model was of the word: the highest its smoothed score reached, from the step that crossed
    # the threshold until the event was reported (see DetectorSettings.peak_ms), 0..1
    score: float
    time_s: float  # seconds from the start of the stream to the end of the model step that reported it
    # which model heard it, where several listen together (MultiRecognizer: the name it knows the model by);
    # None from one model alone
    model: str | None = None

    def to_dict(self, **extra) -> dict:
        """JSON-ready fields, as every way out of the runtime reports an event; `wall_time` is the local
        time, with its offset, at which it is reported; `model` only where several models listen."""
        wall = datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")
        heard_by = {} if self.model is None else {"model": self.model}
        return {"label": self.label, "score": round(self.score, 4), "time": round(self.time_s, 3),
                "wall_time": wall, **heard_by, **extra}


@dataclass(frozen=True)
class Step:
    """One model step as the detector saw it: for a live meter of the scores, or for logging them."""

    time_s: float  # seconds from the start of the stream to the end of this step
    scores: Mapping[str, float]  # each keyword's smoothed score (its threshold is compared with this), 0..1
    detections: tuple[Detection, ...] = ()  # events reported at this step

    def to_dict(self) -> dict:
        """JSON-ready: {"time": 1.24, "scores": {"yes": 0.031, ...}}."""
        return {"time": round(self.time_s, 3),
                "scores": {label: round(score, 4) for label, score in self.scores.items()}}


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
    # A keyword that fired is the same word until its score falls below this share of its threshold:
    # a score that dips a little inside one word does not fire it twice. Lower values also merge the same
    # command said twice in a row (0.5 lost 3% of the validation stream's commands; 0.9 lost 0.3%).
    release: float = 0.9
    # An event waits for its word's score to peak: it is reported at the first step where its smoothed score
    # stops rising, or this long after it crossed the threshold at the latest (never after the suppression
    # time), and carries that peak as its score. 0: reported at the crossing, its score the threshold's
    # neighbour. On 10 min of validation speech 300 ms came within 0.002 of the whole word's peak on average,
    # for 0.28 s more latency (median).
    peak_ms: float = 300.0

    def __post_init__(self):
        for name, value in [("threshold", self.threshold), ("sustained_threshold", self.sustained_threshold),
                            *(self.thresholds or {}).items()]:
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], not {value}")
        if not self.average_ms > 0:
            raise ValueError(f"average_ms must be more than 0, not {self.average_ms}")
        for name in ("suppression_ms", "sustained_ms", "peak_ms"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be at least 0, not {getattr(self, name)}")
        if not 0.0 <= self.release <= 1.0:
            raise ValueError(f"release must be in [0, 1], not {self.release}")

    def threshold_of(self, label: str) -> float:
        return (self.thresholds or {}).get(label, self.threshold)

    def with_threshold(self, threshold: float) -> DetectorSettings:
        """The same smoothing, sustained rule and suppression, with one threshold for every keyword."""
        return dataclasses.replace(self, threshold=threshold, thresholds=None)

    def check(self, labels: tuple[str, ...], step_s: float) -> None:
        """Refuse settings that cannot work with a model of these labels and this step length."""
        if not step_s > 0:
            raise ValueError(f"the model step must be longer than 0 s, not {step_s}")
        keywords = [label for label in labels if label not in NON_KEYWORDS]
        if not keywords:
            raise ValueError("the model has no keyword labels")
        unknown = sorted(set(self.thresholds or {}) - set(keywords))
        if unknown:
            raise ValueError(f"thresholds name {', '.join(unknown)}, which are not keywords of the model "
                             f"({', '.join(keywords)})")


def _steps(ms: float, step_s: float) -> int:
    """A span in whole model steps; one step at least (a span shorter than a step is that step)."""
    return max(1, int(round(ms / 1000 / step_s)))


class _RecentMean:
    """Mean of the last `steps` scores, kept as a running sum: O(1) per step."""

    def __init__(self, steps: int):
        self._recent: deque[np.ndarray] = deque()
        self._steps = steps
        self._sum = 0.0

    @property
    def full(self) -> bool:
        return len(self._recent) == self._steps

    def clear(self) -> None:
        self._recent.clear()
        self._sum = 0.0

    def push(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, np.float64)
        self._recent.append(scores)
        self._sum = self._sum + scores
        if len(self._recent) > self._steps:
            self._sum = self._sum - self._recent.popleft()
        return self._sum / len(self._recent)


class Detector:
    """Feed it `update(scores, time_s)` once per model step of `step_s` seconds; it returns a Detection or
    None.

    Rules, each counted in steps: no event before the averaging window is full (no guess from the first
    few steps after a start or a reset); an event fires at the step where its label's average crosses the
    threshold; a label that crosses while a previous event still suppresses is taken as part of that word,
    so nothing fires late when suppression ends; a label fires again only after falling below `release` of
    its threshold. An event that fired is reported once its average stops rising, `peak_ms` after the
    crossing at the latest, with that peak as its score and the time of the step that reports it; which
    events fire does not depend on `peak_ms`, only when they are reported and with what score."""

    def __init__(self, labels: tuple[str, ...], settings: DetectorSettings = DetectorSettings(),
                 step_s: float = 0.02):
        self._labels = tuple(labels)
        self._keyword_ids = [i for i, label in enumerate(labels) if label not in NON_KEYWORDS]
        settings.check(self._labels, step_s)
        self._settings = settings
        self._thresholds = np.array([settings.threshold_of(label) for label in self._labels])
        self._quick = _RecentMean(_steps(settings.average_ms, step_s))
        self._sustained = _RecentMean(_steps(settings.sustained_ms, step_s)) if settings.sustained_ms > 0 else None
        self._suppression_steps = int(round(settings.suppression_ms / 1000 / step_s))
        # reported before the suppression ends, so that at most one event waits and one step reports one event
        self._peak_steps = max(0, min(int(round(settings.peak_ms / 1000 / step_s)), self._suppression_steps - 1))
        self.reset()

    @property
    def settings(self) -> DetectorSettings:
        return self._settings

    @property
    def smoothed(self) -> np.ndarray:
        """Each label's score averaged over the last `average_ms` (fewer steps just after a start), as of the
        latest step: what the threshold is compared with. [n_labels], zeros before the first step."""
        return self._smoothed

    @property
    def smoothed_full(self) -> bool:
        """Whether `smoothed` covers all of `average_ms`: until it does, no threshold is compared with it."""
        return self._quick.full

    def reset(self) -> None:
        self._quick.clear()
        if self._sustained is not None:
            self._sustained.clear()
        self._steps_since_event = None  # None: no event since the start
        self._holding = np.zeros(len(self._labels), bool)  # labels inside a word that already fired
        self._waiting: tuple[int, float] | None = None  # (label, peak so far) of an event not yet reported
        self._smoothed = np.zeros(len(self._labels))

    def flush(self, time_s: float) -> Detection | None:
        """The event still waiting for its score's peak, reported now at `time_s` (the stream ended)."""
        if self._waiting is None:
            return None
        label, peak = self._waiting
        self._waiting = None
        return Detection(self._labels[label], peak, time_s)

    def _report(self, average: np.ndarray, time_s: float) -> Detection | None:
        """The waiting event, once its average stopped rising or its time is up."""
        if self._waiting is None:
            return None
        label, peak = self._waiting
        if average[label] < peak:
            return self.flush(time_s)
        self._waiting = (label, float(average[label]))
        return self.flush(time_s) if self._steps_since_event >= self._peak_steps else None

    def update(self, scores: np.ndarray, time_s: float) -> Detection | None:
        average = self._quick.push(scores)
        self._smoothed = average
        above = average >= self._thresholds if self._quick.full else np.zeros(len(self._labels), bool)
        released = average < self._thresholds * self._settings.release
        if self._sustained is not None:
            sustained = self._sustained.push(scores)
            limit = self._settings.sustained_threshold
            above_sustained = sustained >= limit if self._sustained.full else np.zeros(len(self._labels), bool)
            # Where only the slow rule holds, its average is the score that decides and is reported.
            average = np.where(above | ~above_sustained, average, sustained)
            above |= above_sustained
            released &= sustained < limit * self._settings.release
        self._holding &= ~released
        if self._steps_since_event is not None:
            self._steps_since_event += 1
        reported = self._report(average, time_s)
        candidates = [i for i in self._keyword_ids if above[i] and not self._holding[i]]
        if not candidates:
            return reported
        if self._steps_since_event is not None and self._steps_since_event < self._suppression_steps:
            self._holding[candidates] = True  # the tail of the word that fired, or too close to it
            return reported
        best = max(candidates, key=lambda i: average[i])
        self._steps_since_event = 0
        self._holding[candidates] = True
        self._waiting = (best, float(average[best]))
        return self.flush(time_s) if self._peak_steps == 0 else reported
