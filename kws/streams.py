"""Long test recordings with known words at known times, and how a detector's events score against them.

A clip-level accuracy says little about a live stream; this builds the stream: validation clips of the
keywords and of other words, placed with random gaps over held-out background noise, plus the truth list.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kws.config import Config
from kws.data import SplitAudio
from kws.errors import KwsError


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


def _loud_part(clip: np.ndarray, hop: int) -> tuple[int, float]:
    """(end sample, RMS) of a clip's loud part: its 10 ms frames at >= 10% of the loudest frame's RMS."""
    frames = np.sqrt((clip[: len(clip) // hop * hop].reshape(-1, hop) ** 2).mean(axis=1))
    loud = np.nonzero(frames >= 0.1 * frames.max())[0]
    return (int(loud[-1]) + 1) * hop, float(np.sqrt((frames[loud] ** 2).mean()))


def build_stream(audio: SplitAudio, labels: tuple[str, ...], config: Config, seconds: float, seed: int = 0,
                 unknown_share: float = 0.3, noise_gain: tuple[float, float] = (0.0, 0.1),
                 gap_s: tuple[float, float] = (1.0, 3.0), snr_db: tuple[float, float] | None = None,
                 keywords: bool = True) -> tuple[np.ndarray, list[Word]]:
    """[samples] float32 and the words in it.

    Clips are drawn without replacement while they last (then again, at other gains and places). Without
    `snr_db` the noise level drifts within `noise_gain` every 5 s and each word keeps its recorded level
    times 0.5-1; with it the noise stays at the top of `noise_gain` and each word is scaled to a
    signal-to-noise ratio drawn from `snr_db` (loud part against the noise, in dB). `keywords=False`
    gives negative audio: other words and noise only.
    """
    rng = np.random.default_rng(seed)
    rate, hop = config.features.sample_rate, config.features.hop_samples
    total = int(seconds * rate)
    keyword_pool = audio.keyword_indices.numpy() if keywords else np.zeros(0, np.int64)
    unknown_pool = audio.unknown_indices.numpy()
    if not len(keyword_pool) and not len(unknown_pool):
        raise KwsError("no clips to build a stream from")
    keyword_ids, unknown_ids = list(rng.permutation(keyword_pool)), list(rng.permutation(unknown_pool))
    noise = audio.noise.numpy()
    looped = np.resize(noise, total) if len(noise) > rate else np.zeros(total, np.float32)
    noise_rms = float(np.sqrt(np.mean(noise ** 2))) * noise_gain[1] if len(noise) > rate else 0.0
    stream = np.zeros(total, np.float32)
    words, position = [], int(rng.uniform(*gap_s) * rate)
    while position + config.features.clip_samples < total:
        use_unknown = len(unknown_pool) and (not len(keyword_pool) or rng.random() < unknown_share)
        pool, remaining = (unknown_pool, unknown_ids) if use_unknown else (keyword_pool, keyword_ids)
        if not remaining:  # every clip used once: draw again
            remaining.extend(rng.permutation(pool))
        index = remaining.pop()
        clip = audio.waveforms[index].numpy()
        loud_end, loud_rms = _loud_part(clip, hop)  # a gain moves neither the end nor the SNR arithmetic
        if snr_db is not None and noise_rms > 0 and loud_rms > 0:
            gain = noise_rms * 10 ** (rng.uniform(*snr_db) / 20) / loud_rms
            clip = clip * min(gain, 0.99 / max(1e-6, float(np.abs(clip).max())))
        else:
            clip = clip * rng.uniform(0.5, 1.0)
        stream[position:position + len(clip)] += clip
        label = labels[int(audio.labels[index])]
        words.append(Word(label, position / rate, (position + loud_end) / rate))
        position += len(clip) + int(rng.uniform(*gap_s) * rate)
    if snr_db is not None:
        stream += looped * np.float32(noise_gain[1])
    else:  # held-out noise, looped, its level drifting every few seconds
        level = np.repeat(rng.uniform(*noise_gain, size=total // (5 * rate) + 1), 5 * rate)[:total]
        stream += looped * level.astype(np.float32)
    return np.clip(stream, -1.0, 1.0), words


def write_truth(path: str | Path, words: list[Word]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "start_s", "end_s"])
        writer.writerows((w.label, f"{w.start_s:.3f}", f"{w.end_s:.3f}") for w in words)


def read_truth(path: str | Path) -> list[Word]:
    """A CSV with columns label,start_s,end_s (a header line; other words may be labelled _unknown_)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        words = [Word(row["label"].strip(), float(row["start_s"]), float(row["end_s"])) for row in rows]
    except FileNotFoundError:
        raise KwsError(f"truth file {path} not found") from None
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as error:
        raise KwsError(f"truth file {path} must be a CSV with columns label,start_s,end_s ({error})") from None
    if any(w.end_s < w.start_s for w in words):
        raise KwsError(f"truth file {path} has a word that ends before it starts")
    return sorted(words, key=lambda w: w.start_s)


def score_events(events: list[tuple[str, float]], words: list[Word], seconds: float,
                 late_s: float = 1.0) -> StreamScore:
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
                       sum(false_alarms.values()), seconds / 3600, scores)
