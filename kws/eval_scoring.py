"""The edge runtime over long audio, its events, and how they score against the words spoken.

One pass of `edge.runtime.Recognizer` keeps every step's scores (`StepScores`), so the detector can be
replayed with other settings for the price of one pass of the model (`detect`, `sweep`); `score_events`
counts each event as a match, a wrong label or a false alarm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.detect import NON_KEYWORDS, Detector, DetectorSettings
from edge.runtime import Recognizer


LATE_S = 1.0  # an event up to this long after a keyword's end still answers it


@dataclass(frozen=True)
class Word:
    label: str  # a keyword, or "_unknown_" for other words
    start_s: float
    end_s: float  # end of the clip's loud part

    @property
    def is_keyword(self) -> bool:
        return not self.label.startswith("_")


@dataclass(frozen=True)
class LabelScore:
    """One keyword's share of a StreamScore."""

    spoken: int = 0
    matched: int = 0
    wrong: int = 0  # spoken, answered with another keyword
    false_alarms: int = 0  # fired with this label where no keyword was spoken
    latencies_s: tuple[float, ...] = ()  # event time minus word end, of each match

    @property
    def missed(self) -> int:
        return self.spoken - self.matched - self.wrong


@dataclass(frozen=True)
class StreamScore:
    keywords: int
    matched: int
    wrong: int  # fired on a keyword with another keyword's label
    missed: int
    false_alarms: int  # events where no keyword was spoken (silence, noise, other words), or a second event
    hours: float
    per_label: dict[str, LabelScore] = field(default_factory=dict)
    missed_words: tuple[Word, ...] = ()  # the keywords no event answered

    @property
    def false_alarms_per_hour(self) -> float:
        return self.false_alarms / self.hours

    @property
    def latencies_s(self) -> list[float]:
        return [t for score in self.per_label.values() for t in score.latencies_s]

    def summary(self) -> str:
        return (f"matched {100 * self.matched / max(1, self.keywords):.1f}% of {self.keywords} keywords, "
                f"wrong label {100 * self.wrong / max(1, self.keywords):.1f}%, missed {self.missed}, "
                f"{self.false_alarms} false alarms ({self.false_alarms_per_hour:.1f} per hour)")


def score_events(events: list[tuple[str, float]], words: list[Word], seconds: float,
                 late_s: float = LATE_S) -> StreamScore:
    """Each keyword may be answered by one event between its start and `late_s` after its end. An event
    goes to the earliest unanswered keyword in reach that has its label, else to the earliest one in
    reach (a wrong label); an event with no keyword in reach is a false alarm."""
    keywords = [w for w in words if w.is_keyword]
    answer: dict[int, tuple[str, float]] = {}
    false_alarms: dict[str, int] = {}
    for label, time_s in sorted(events, key=lambda e: e[1]):
        reach = [i for i, w in enumerate(keywords)
                 if i not in answer and w.start_s <= time_s <= w.end_s + late_s]
        if not reach:
            false_alarms[label] = false_alarms.get(label, 0) + 1
            continue
        same = [i for i in reach if keywords[i].label == label]
        answer[(same or reach)[0]] = (label, time_s)
    per_label: dict[str, dict] = {}
    for i, word in enumerate(keywords):
        entry = per_label.setdefault(word.label, {"spoken": 0, "matched": 0, "wrong": 0, "latencies_s": []})
        entry["spoken"] += 1
        if i in answer:
            label, time_s = answer[i]
            if label == word.label:
                entry["matched"] += 1
                entry["latencies_s"].append(time_s - word.end_s)
            else:
                entry["wrong"] += 1
    for label in false_alarms:
        per_label.setdefault(label, {"spoken": 0, "matched": 0, "wrong": 0, "latencies_s": []})
    scores = {label: LabelScore(e["spoken"], e["matched"], e["wrong"], false_alarms.get(label, 0),
                                tuple(e["latencies_s"])) for label, e in sorted(per_label.items())}
    matched = sum(s.matched for s in scores.values())
    wrong = sum(s.wrong for s in scores.values())
    return StreamScore(len(keywords), matched, wrong, len(keywords) - matched - wrong,
                       sum(false_alarms.values()), seconds / 3600, scores,
                       tuple(word for i, word in enumerate(keywords) if i not in answer))


@dataclass(frozen=True)
class StepScores:
    """What the runtime said about a recording, before detection."""

    labels: tuple[str, ...]
    times_s: np.ndarray  # [steps], the end of each model step
    probabilities: np.ndarray  # [steps, n_labels]
    seconds: float  # length of the recording
    settings: DetectorSettings  # the model's own detection settings
    step_s: float  # seconds per model step
    speeds: tuple[float, ...] = (1.0,)  # the speeds the runtime heard it at, their scores averaged

    @property
    def keywords(self) -> list[str]:
        return [label for label in self.labels if label not in NON_KEYWORDS]


def run_model(model: str | Path | Recognizer, audio: np.ndarray, progress: bool = True,
              streaming: bool = True) -> StepScores:
    """One pass of the edge runtime over `audio` (float32 at the model's rate), in 0.1 s chunks as a
    microphone would deliver them, plus half a second of silence so a word at the very end can finish.
    `model`: an exported model's path, or a Recognizer to reuse (it is reset first)."""
    if isinstance(model, Recognizer):
        recognizer = model
        recognizer.reset()
    else:
        recognizer = Recognizer.from_onnx(model, streaming=streaming)
    chunk = recognizer.sample_rate // 10
    padded = np.concatenate([audio, np.zeros(recognizer.sample_rate // 2, np.float32)])
    times, probabilities = [], []
    for start in tqdm(range(0, len(padded), chunk), desc="scoring", unit="chunk", disable=not progress,
                      leave=False):
        for time_s, p in recognizer.scores(padded[start:start + chunk]):
            times.append(time_s)
            probabilities.append(p)
    return StepScores(recognizer.labels, np.array(times), np.array(probabilities),
                      len(audio) / recognizer.sample_rate, recognizer.settings, recognizer.step_s, recognizer.speeds)


def detect(scores: StepScores, settings: DetectorSettings) -> list[tuple[str, float]]:
    """(label, time_s) of every event the detector gives on these scores, as `Recognizer.finish` ends a
    stream: an event still waiting for its score's peak is reported at the end, and none is timed after the
    end of the recording (the silence added by run_model is not part of it)."""
    detector = Detector(scores.labels, settings, scores.step_s)
    found = [detector.update(p, float(time_s)) for time_s, p in zip(scores.times_s, scores.probabilities)]
    found.append(detector.flush(float(scores.times_s[-1])) if len(scores.times_s) else None)
    return [(d.label, min(d.time_s, scores.seconds)) for d in found if d is not None]


MISS_CAUSES = ("never_scored", "not_held", "suppressed")


def miss_causes(scores: StepScores, missed: tuple[Word, ...], settings: DetectorSettings,
                late_s: float = LATE_S) -> dict[str, dict[str, int]]:
    """Why each missed keyword was missed, per keyword label, from the steps between its start and `late_s`
    after its end:
    - "never_scored": its label's step score never reached its threshold: the model did not hear it, and
      no smoothing or detector rule can recover it;
    - "not_held": a step score reached it, the detector's average over `average_ms` did not (at a step
      where the detector compares it: none before its window is full): the smoothing lost it (short
      words, whose high scores last only a few steps);
    - "suppressed": the average reached it too, but too soon after another event (suppression, or the
      label had not re-armed): the detector's rules lost it.
    The slower sustained rule, where set, is not replayed: a word it would have caught counts by the
    quick rule."""
    # The detector's own average, replayed: NaN where its window is not yet full and nothing is compared.
    detector = Detector(scores.labels, settings, scores.step_s)
    average = np.full(scores.probabilities.shape, np.nan)  # [steps, n_labels]
    for step, (time_s, p) in enumerate(zip(scores.times_s, scores.probabilities)):
        detector.update(p, float(time_s))
        if detector.smoothed_full:
            average[step] = detector.smoothed
    causes = {label: dict.fromkeys(MISS_CAUSES, 0) for label in scores.keywords}
    for word in missed:
        label = scores.labels.index(word.label)
        threshold = settings.threshold_of(word.label)
        reach = (scores.times_s >= word.start_s) & (scores.times_s <= word.end_s + late_s)
        if not (scores.probabilities[reach, label] >= threshold).any():
            cause = "never_scored"
        elif not (average[reach, label] >= threshold).any():
            cause = "not_held"
        else:
            cause = "suppressed"
        causes[word.label][cause] += 1
    return causes


def sweep(scores: StepScores, words: list[Word], thresholds) -> list[StreamScore]:
    """The detector replayed once per threshold, the same one for every keyword."""
    return [score_events(detect(scores, scores.settings.with_threshold(t)), words, scores.seconds) for t in thresholds]
