"""Long test recordings with known words at known times, and how a detector's events score against them.

A clip-level accuracy says little about a live stream; this builds the stream: validation clips of the
keywords and of other words, placed with random gaps over held-out background noise, plus the truth list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kws.config import Config
from kws.data import SplitAudio


@dataclass(frozen=True)
class Word:
    label: str  # a keyword, or "_unknown_" for other words
    start_s: float
    end_s: float  # end of the clip's loud part


@dataclass(frozen=True)
class StreamScore:
    keywords: int
    matched: int
    wrong: int  # fired on a keyword with another keyword's label
    missed: int
    false_alarms: int  # events where no keyword was spoken (silence, noise, other words)
    hours: float

    @property
    def false_alarms_per_hour(self) -> float:
        return self.false_alarms / self.hours

    def summary(self) -> str:
        return (f"matched {100 * self.matched / self.keywords:.1f}% of {self.keywords} keywords, "
                f"wrong label {100 * self.wrong / self.keywords:.1f}%, missed {self.missed}, "
                f"{self.false_alarms} false alarms ({self.false_alarms_per_hour:.1f} per hour)")


def _loud_end(clip: np.ndarray, hop: int) -> int:
    frames = np.sqrt((clip[: len(clip) // hop * hop].reshape(-1, hop) ** 2).mean(axis=1))
    return (int(np.nonzero(frames >= 0.1 * frames.max())[0][-1]) + 1) * hop


def build_stream(audio: SplitAudio, labels: tuple[str, ...], config: Config, seconds: float, seed: int = 0,
                 unknown_share: float = 0.3, noise_gain: tuple[float, float] = (0.0, 0.1),
                 gap_s: tuple[float, float] = (1.0, 3.0)) -> tuple[np.ndarray, list[Word]]:
    """[samples] float32 and the words in it. Clips are drawn without replacement while they last."""
    rng = np.random.default_rng(seed)
    rate = config.features.sample_rate
    total = int(seconds * rate)
    keyword_ids = list(rng.permutation(audio.keyword_indices.numpy()))
    unknown_ids = list(rng.permutation(audio.unknown_indices.numpy()))
    stream = np.zeros(total, np.float32)
    words, position = [], int(rng.uniform(*gap_s) * rate)
    while position + config.features.clip_samples < total and (keyword_ids or unknown_ids):
        use_unknown = unknown_ids and (not keyword_ids or rng.random() < unknown_share)
        index = (unknown_ids if use_unknown else keyword_ids).pop()
        clip = audio.waveforms[index].numpy() * rng.uniform(0.5, 1.0)
        stream[position:position + len(clip)] += clip
        label = labels[int(audio.labels[index])]
        words.append(Word(label, position / rate, (position + _loud_end(clip, config.features.hop_samples)) / rate))
        position += len(clip) + int(rng.uniform(*gap_s) * rate)
    noise = audio.noise.numpy()
    if len(noise) > rate:  # held-out noise, looped, its level drifting every few seconds
        looped = np.resize(noise, total)
        level = np.repeat(rng.uniform(*noise_gain, size=total // (5 * rate) + 1), 5 * rate)[:total]
        stream += looped * level.astype(np.float32)
    return np.clip(stream, -1.0, 1.0), words


def score_events(events: list[tuple[str, float]], words: list[Word], seconds: float,
                 late_s: float = 1.0) -> StreamScore:
    """Each keyword may be answered by one event between its start and `late_s` after its end."""
    keywords = [w for w in words if not w.label.startswith("_")]
    answered: set[int] = set()
    matched = wrong = false_alarms = 0
    for label, time_s in events:
        hit = next((i for i, w in enumerate(keywords)
                    if i not in answered and w.start_s <= time_s <= w.end_s + late_s), None)
        if hit is None:
            false_alarms += 1
            continue
        answered.add(hit)
        if keywords[hit].label == label:
            matched += 1
        else:
            wrong += 1
    return StreamScore(len(keywords), matched, wrong, len(keywords) - len(answered), false_alarms, seconds / 3600)
