"""Real speech without the commands: index a folder of it, split it by speaker, cut it for training.

A keyword model that has only heard its commands and three other words fires on most speech. This module
turns a folder of other speech (sentences, isolated words, digits) into `_unknown_` training examples and
into held-out audio for `kws.eval_open_set`. The layout of `../shared/data/other_speech` (see its README), one
source per top folder:

- `<source>/training|validation/<speaker>/*`: split by the folder (LibriSpeech); the validation
  speakers are halved by hash into validation (for choosing a model) and testing (reported once);
- `wikimedia/words/*` with `wikimedia/CREDITS.tsv` (columns clip, word, artist): the artist is the speaker;
- `fsdd/<word>/<digit>_<speaker>_<n>.*`: spoken digits; speaker `theo` is the collection's validation speaker;
- any other folder (`speech_commands_words/<word>/<speaker>_nohash_<n>.*`, or a user's own): the speaker
  is the part of the file name before `_nohash_`, the word is the folder's name.

Files named as one word (by the layouts above) are isolated words, unless longer than `WORD_MAX_S`; all
other files are continuous speech. A source with a `TRANSCRIPTS.tsv` that gives each clip's speaker `age`
(speechocean762) is reported by age group too. Every speaker is in one split only
(`kws.data.hash_split`), and whole words chosen by hash (`held_out_word`) are never trained on, whichever
speaker said them. With `DataConfig.on_off_fold`, the speakers of "on" and "off" are dealt into folds
instead (`on_off_folds`): one fold is held out, the others are trained on.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch

from kws.config import UNKNOWN, Config, DataConfig, FeatureConfig
from kws.data import AUDIO_SUFFIXES, SplitAudio, hash_split, held_out_word, labels_for, load_audio, speaker_id
from kws.errors import KwsError

log = logging.getLogger(__name__)

WORD_MAX_S = 3.5  # longer files are continuous speech, cut into windows
SPLIT_FOLDERS = ("training", "validation", "testing")
# Sources whose README names a validation speaker instead of leaving the split to the hash.
_NAMED_VALIDATION_SPEAKERS = {"fsdd": "theo"}
OPUS_SUFFIXES = {".opus", ".ogg"}
ON_OFF = ("on", "off")  # the closest other words to the commands
ON_OFF_FOLDS = 3
HELD_OUT = "held_out"  # the split of a held-out speaker's recordings: never trained on, measured on their own
AGE_GROUPS = ((12, "children"), (17, "teenagers"), (200, "adults"))  # (oldest age, group)


@dataclass(frozen=True)
class Recording:
    path: Path
    source: str  # the top folder: librispeech, wikimedia, ...
    speaker: str
    word: str | None  # the word of an isolated-word file; None for continuous speech
    split: str  # training, validation (choosing a model), testing (reported once) or held_out
    group: str | None = None  # the speaker's age group, where the source gives ages

    @property
    def part(self) -> str:
        """The source, and its age group where it has one: how measurements report it."""
        return self.source if self.group is None else f"{self.source}/{self.group}"

    @property
    def continuous(self) -> bool:
        return self.word is None


def _credits(source_dir: Path) -> dict[str, tuple[str, str]]:
    """clip path (relative to the source) -> (word, speaker) from a CREDITS.tsv, if there is one."""
    path = source_dir / "CREDITS.tsv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["clip"]: (row["word"], row["artist"]) for row in csv.DictReader(f, delimiter="\t")}


def _age_groups(source_dir: Path) -> dict[str, str]:
    """clip path (relative to the source) -> age group, from a TRANSCRIPTS.tsv with an `age` column."""
    path = source_dir / "TRANSCRIPTS.tsv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = [row for row in csv.DictReader(f, delimiter="\t") if row.get("age", "").isdigit()]
    return {row["clip"]: next(group for oldest, group in AGE_GROUPS if int(row["age"]) <= oldest) for row in rows}


def _duration_s(path: Path) -> float:
    try:
        info = sf.info(str(path))
    except Exception as error:  # libsndfile raises several types for the same problem
        raise KwsError(f"cannot read audio file {path}: {error}") from None
    return info.frames / info.samplerate


def _speaker_and_word(path: Path, source: str, rel: Path, credits: dict) -> tuple[str, str | None]:
    """(speaker, word); word None where the file is not named as one word (continuous speech)."""
    if str(rel.relative_to(source)) in credits:
        return credits[str(rel.relative_to(source))][::-1]
    if source == "fsdd":  # <digit>_<speaker>_<n>
        return path.stem.split("_")[1], path.parent.name
    if "_nohash_" in path.name:
        return speaker_id(path), path.parent.name
    return path.parent.name, None


def _split(source: str, speaker: str, word: str | None, folders: tuple[str, ...], config: DataConfig) -> str:
    folder_split = next((part for part in folders if part in SPLIT_FOLDERS), None)
    if folder_split == "validation":  # one half chooses the model, the other half is reported once
        split = "validation" if hash_split(f"{speaker}_nohash_", 50.0, 50.0) == "validation" else "testing"
    elif folder_split is not None:
        split = folder_split
    elif source in _NAMED_VALIDATION_SPEAKERS:
        split = "validation" if speaker == _NAMED_VALIDATION_SPEAKERS[source] else "training"
    else:
        split = hash_split(f"{speaker}_nohash_", config.other_validation_percent, config.other_testing_percent)
    if split == "training" and word is not None and held_out_word(word, config.held_out_words_percent):
        return "validation"
    return split


def scan_other_speech(root: str | Path, config: DataConfig | None = None) -> tuple[Recording, ...]:
    """Index a folder of other speech (layout above). Raises KwsError if it holds no audio."""
    config = config or DataConfig()
    root = Path(root)
    if not root.is_dir():
        raise KwsError(f"other-speech folder {root} does not exist; pass --negatives with a folder of speech "
                       "that holds none of the keywords")
    recordings = []
    for source_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        credits, groups = _credits(source_dir), _age_groups(source_dir)
        for path in sorted(p for p in source_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES | OPUS_SUFFIXES):
            rel = path.relative_to(root)
            speaker, word = _speaker_and_word(path, source_dir.name, rel, credits)
            if word is not None and _duration_s(path) > WORD_MAX_S:
                word = None
            split = _split(source_dir.name, speaker, word, rel.parts[:-1], config)
            group = groups.get(str(rel.relative_to(source_dir.name)))
            recordings.append(Recording(path, source_dir.name, speaker, word, split, group))
    if not recordings:
        raise KwsError(f"other-speech folder {root} has no audio files in sub-folders (expected e.g. "
                       f"{root}/sentences/*.flac)")
    return on_off_split(tuple(recordings), config)


def on_off_folds(recordings: tuple[Recording, ...]) -> tuple[tuple[str, ...], ...]:
    """The speakers who said "on" or "off", dealt in the order of a stable hash into ON_OFF_FOLDS folds
    whose sizes differ by one at most."""
    speakers = sorted({r.speaker for r in recordings if r.word in ON_OFF},
                      key=lambda s: hashlib.sha1(f"on-off-fold-{s}".encode()).hexdigest())
    return tuple(tuple(sorted(speakers[k::ON_OFF_FOLDS])) for k in range(ON_OFF_FOLDS))


def on_off_split(recordings: tuple[Recording, ...], config: DataConfig) -> tuple[Recording, ...]:
    """With folds (config.on_off_fold >= 0), every recording of a speaker who said "on" or "off" is held out
    if the speaker is in config.held_out_speakers and trained on otherwise; without folds, as they are."""
    if config.on_off_fold < 0:
        return recordings
    said = {r.speaker for r in recordings if r.word in ON_OFF}
    return tuple(dataclasses.replace(r, split=HELD_OUT if r.speaker in config.held_out_speakers else "training")
                 if r.speaker in said else r for r in recordings)


def loudest_window(audio: np.ndarray, n_samples: int, hop: int) -> np.ndarray:
    """The n_samples-long part of `audio` with the most energy, [n_samples]; a shorter one is zero-padded to
    sit in the middle, as a word does in a Speech Commands clip."""
    if len(audio) <= n_samples:
        before = (n_samples - len(audio)) // 2
        return np.pad(audio, (before, n_samples - len(audio) - before))
    energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    starts = np.arange(0, len(audio) - n_samples + 1, hop)
    best = int(starts[np.argmax(energy[starts + n_samples] - energy[starts])])
    return audio[best:best + n_samples]


def speech_windows(audio: np.ndarray, n_samples: int, hop: int) -> np.ndarray:
    """Windows of n_samples every `hop` samples, [windows, n_samples]; quiet ones (pauses) are left out."""
    if len(audio) < n_samples:
        return np.pad(audio, (0, n_samples - len(audio)))[None]
    starts = np.arange(0, len(audio) - n_samples + 1, hop)
    windows = np.stack([audio[s:s + n_samples] for s in starts])
    rms = np.sqrt((windows ** 2).mean(axis=1))
    return windows[rms >= 0.1 * np.sqrt((audio ** 2).mean())]


@dataclass(frozen=True)
class OtherSpeechClips:
    """One split of other speech as one-second training examples."""

    waveforms: np.ndarray  # [clips, clip_samples] float32
    sources: tuple[str, ...]  # [clips], each clip's source folder
    skipped: list[str]
    speech: np.ndarray  # [samples] float32, the continuous speech joined end to end


def load_clips(recordings: tuple[Recording, ...], split: str, features: FeatureConfig,
               window_hop_ms: float = 500.0, workers: int = 4) -> OtherSpeechClips:
    """Isolated words as their loudest clip-length part; continuous speech as overlapping windows."""
    chosen = [r for r in recordings if r.split == split]

    def load(recording: Recording) -> np.ndarray | str:
        try:
            return load_audio(recording.path, features.sample_rate)
        except KwsError as error:
            return str(error)

    with ThreadPoolExecutor(workers) as pool:  # libsndfile releases the GIL while decoding
        loaded = list(pool.map(load, chosen))
    clips, sources, skipped, speech = [], [], [], []
    for recording, audio in zip(chosen, loaded):
        if isinstance(audio, str):
            log.warning("skipping %s", audio)
            skipped.append(audio)
            continue
        if recording.continuous:
            speech.append(audio)
            cut = speech_windows(audio, features.clip_samples, features.ms_to_samples(window_hop_ms))
        else:
            cut = loudest_window(audio, features.clip_samples, features.hop_samples)[None]
        clips.append(cut)
        sources.extend([recording.source] * len(cut))
    waveforms = np.concatenate(clips) if clips else np.zeros((0, features.clip_samples), np.float32)
    return OtherSpeechClips(waveforms.astype(np.float32, copy=False), tuple(sources), skipped,
                            np.concatenate(speech).astype(np.float32, copy=False) if speech else np.zeros(0, np.float32))


def with_other_speech(audio: SplitAudio, other: OtherSpeechClips, weighting: str) -> SplitAudio:
    """`audio` with the other speech added as `_unknown_` clips. weighting "source": each source (the data
    set's own other words count as one) gets an equal share of the unknown examples drawn per epoch."""
    unknown_id = labels_for(()).index(UNKNOWN)
    labels = torch.cat([audio.labels, torch.full((len(other.sources),), unknown_id, dtype=torch.int64)])
    weights = None
    if weighting == "source":
        own = np.where(audio.labels.numpy() == unknown_id, "(data set)", "(keyword)")
        sources = np.concatenate([own, np.array(other.sources, dtype=str)])
        _, index, counts = np.unique(sources, return_inverse=True, return_counts=True)
        weights = torch.from_numpy(1.0 / counts[index]).float()
    return SplitAudio(torch.cat([audio.waveforms, torch.from_numpy(other.waveforms)]), labels, audio.noise,
                      audio.skipped + other.skipped, weights, torch.from_numpy(other.speech))


def add_other_speech(audio: SplitAudio, folders: tuple[Path, ...], config: Config,
                     echo: Callable[[str], None]) -> tuple[SplitAudio, OtherSpeechClips]:
    """The training clips with the other speech's training part as unknown, and its validation part,
    for measuring how much of it the model rejects."""
    recordings = tuple(r for folder in folders for r in scan_other_speech(folder, config.data))
    keywords = set(config.data.keywords or ())
    said = sorted({r.word for r in recordings if r.word in keywords})
    if said:  # a folder of other speech that holds this model's own words: they are not "other"
        echo(f"other speech: leaving out the recordings of {', '.join(said)}, a keyword of this model")
    recordings = tuple(r for r in recordings if r.word not in keywords)
    other = load_clips(recordings, "training", config.features)
    counts = {source: other.sources.count(source) for source in sorted(set(other.sources))}
    echo(f"other speech from {', '.join(map(str, folders))}: {len(other.sources)} training clips as {UNKNOWN} "
         f"({', '.join(f'{source} {n}' for source, n in counts.items())})")
    validation = load_clips(recordings, "validation", config.features)
    return with_other_speech(audio, other, config.data.unknown_weighting), validation
