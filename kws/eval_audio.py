"""Long evaluation recordings with known words at known times: built from validation clips, or a user's own.

A clip-level accuracy says little about a live stream; this builds the stream: validation clips of the
keywords and of other words, placed with random gaps over held-out background noise, plus the truth list.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.config import Config
from kws.data import SplitAudio
from kws.errors import KwsError
from kws.eval_scoring import Word


def _loud_part(clip: np.ndarray, hop: int) -> tuple[int, float]:
    """(end sample, RMS) of a clip's loud part: its 10 ms frames at >= 10% of the loudest frame's RMS."""
    frames = np.sqrt((clip[: len(clip) // hop * hop].reshape(-1, hop) ** 2).mean(axis=1))
    loud = np.nonzero(frames >= 0.1 * frames.max())[0]
    return (int(loud[-1]) + 1) * hop, float(np.sqrt((frames[loud] ** 2).mean()))


@dataclass(frozen=True)
class Piece:
    """One thing said in a built stream: a clip of a word, or a stretch of speech."""

    label: str  # a keyword, or "_unknown_"
    audio: np.ndarray  # [samples] float32, any length


class _Pool:
    """Pieces drawn without replacement while they last, then again in a new order."""

    def __init__(self, pieces, rng: np.random.Generator):
        self._pieces = pieces  # anything indexable by int that gives a Piece
        self._left = list(rng.permutation(len(pieces)))

    def __len__(self) -> int:
        return len(self._pieces)

    def draw(self, rng: np.random.Generator) -> Piece:
        if not self._left:  # every piece used once: draw again
            self._left.extend(rng.permutation(len(self._pieces)))
        return self._pieces[int(self._left.pop())]


class _SplitPieces:
    """The clips of a SplitAudio at the given indices, as Pieces."""

    def __init__(self, audio: SplitAudio, indices: np.ndarray, labels: tuple[str, ...]):
        self._audio, self._indices, self._labels = audio, indices, labels

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int) -> Piece:
        index = self._indices[i]
        return Piece(self._labels[int(self._audio.labels[index])], self._audio.waveforms[index].numpy())


class _Stretches:
    """Random stretches of `seconds` (a range) out of long recordings of speech, labelled "_unknown_"."""

    def __init__(self, recordings: list[np.ndarray], seconds: tuple[float, float], rate: int,
                 rng: np.random.Generator):
        self._recordings, self._seconds, self._rate, self._rng = recordings, seconds, rate, rng

    def __len__(self) -> int:
        return len(self._recordings)

    def __getitem__(self, i: int) -> Piece:
        audio = self._recordings[i]
        length = min(len(audio), int(self._rng.uniform(*self._seconds) * self._rate))
        start = int(self._rng.integers(0, len(audio) - length + 1))
        return Piece("_unknown_", audio[start:start + length])


def _lay_out(pools: list[tuple[float, _Pool]], noise: np.ndarray, config: Config, seconds: float,
             rng: np.random.Generator, noise_gain: tuple[float, float], gap_s: tuple[float, float],
             snr_db: tuple[float, float] | None) -> tuple[np.ndarray, list[Word]]:
    """Pieces drawn from the pools (each with its share of the draws) placed one after another at random
    gaps over looped noise: [samples] float32 and the words in it."""
    pools = [(share, pool) for share, pool in pools if len(pool)]
    if not pools:
        raise KwsError("no clips to build a stream from")
    rate, hop = config.features.sample_rate, config.features.hop_samples
    total = int(seconds * rate)
    looped = np.resize(noise, total) if len(noise) > rate else np.zeros(total, np.float32)
    noise_rms = float(np.sqrt(np.mean(noise ** 2))) * noise_gain[1] if len(noise) > rate else 0.0
    stream = np.zeros(total, np.float32)
    words, position = [], int(rng.uniform(*gap_s) * rate)
    while position + config.features.clip_samples < total:
        pool = pools[0][1]
        if len(pools) > 1:
            pick, edge = rng.random(), 0.0
            for share, candidate in pools:
                edge += share
                if pick < edge or candidate is pools[-1][1]:
                    pool = candidate
                    break
        piece = pool.draw(rng)
        clip = piece.audio[: total - position]
        loud_end, loud_rms = _loud_part(clip, hop)  # a gain moves neither the end nor the SNR arithmetic
        if snr_db is not None and noise_rms > 0 and loud_rms > 0:
            gain = noise_rms * 10 ** (rng.uniform(*snr_db) / 20) / loud_rms
            clip = clip * min(gain, 0.99 / max(1e-6, float(np.abs(clip).max())))
        else:
            clip = clip * rng.uniform(0.5, 1.0)
        stream[position:position + len(clip)] += clip
        words.append(Word(piece.label, position / rate, (position + loud_end) / rate))
        position += len(clip) + int(rng.uniform(*gap_s) * rate)
    if snr_db is not None:
        stream += looped * np.float32(noise_gain[1])
    else:  # held-out noise, looped, its level drifting every few seconds
        level = np.repeat(rng.uniform(*noise_gain, size=total // (5 * rate) + 1), 5 * rate)[:total]
        stream += looped * level.astype(np.float32)
    return np.clip(stream, -1.0, 1.0), words


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
    keyword_pool = _Pool(_SplitPieces(audio, audio.keyword_indices.numpy() if keywords else np.zeros(0, np.int64),
                                      labels), rng)
    unknown_pool = _Pool(_SplitPieces(audio, audio.unknown_indices.numpy(), labels), rng)
    return _lay_out([(unknown_share, unknown_pool), (1 - unknown_share, keyword_pool)], audio.noise.numpy(),
                    config, seconds, rng, noise_gain, gap_s, snr_db)


def build_mixed_stream(commands: SplitAudio, labels: tuple[str, ...], config: Config, seconds: float,
                       other_words: list[Piece], speech: list[np.ndarray], seed: int = 0,
                       shares: tuple[float, float, float] = (0.5, 0.25, 0.25),
                       speech_s: tuple[float, float] = (2.0, 6.0), gap_s: tuple[float, float] = (0.2, 1.5),
                       noise_gain: tuple[float, float] = (0.0, 0.1)) -> tuple[np.ndarray, list[Word]]:
    """Commands with other words and stretches of real speech between them, at gaps as short as people
    leave in speech: [samples] float32 and the words in it (other words and speech as "_unknown_").
    `shares`: of commands, other words and speech stretches among the pieces."""
    rng = np.random.default_rng(seed)
    rate = config.features.sample_rate
    pools = [(shares[0], _Pool(_SplitPieces(commands, commands.keyword_indices.numpy(), labels), rng)),
             (shares[1], _Pool(other_words, rng)),
             (shares[2], _Pool(_Stretches(speech, speech_s, rate, rng), rng))]
    return _lay_out(pools, commands.noise.numpy(), config, seconds, rng, noise_gain, gap_s, None)


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


def validation_stream(model: str | Path, data_dir: str | Path, minutes: float, seed: int,
                      snr_db: tuple[float, float] | None = None, keywords: bool = True):
    """A seeded stream of the data's validation clips for this model's labels: (audio, words)."""
    from kws.data import load_split, scan
    from kws.evaluate import load_predictor

    _, config, labels = load_predictor(Path(model))
    audio = load_split(scan(data_dir, config.data), "validation", labels[2:], config)
    return build_stream(audio, labels, config, 60 * minutes, seed=seed, snr_db=snr_db, keywords=keywords)


def recording(path: str | Path, model: str | Path) -> np.ndarray:
    """A user's own long recording, at the model's rate."""
    from kws.data import load_audio
    from kws.evaluate import load_predictor

    _, config, _ = load_predictor(Path(model))
    return load_audio(path, config.features.sample_rate)
