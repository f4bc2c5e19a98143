"""Speech Commands-style data: find clips, split them, load them, and build each epoch's example set.

Layout: one folder per word, `_background_noise_/` with long noise recordings, and optionally the
official `validation_list.txt` / `testing_list.txt` (they name `.wav`; files are matched by stem so
FLAC copies work too). Files in neither list are split by a stable hash of the speaker id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from edge.sources import wav_truncation
from kws.augment import noise_crops
from kws.config import COMMANDS, SILENCE, UNKNOWN, Config, DataConfig, FeatureConfig
from kws.errors import KwsError

log = logging.getLogger(__name__)

BACKGROUND_NOISE = "_background_noise_"
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
SPLITS = ("training", "validation", "testing")
_MAX_CLIPS_PER_CLASS = 2**27 - 1  # the data set's constant; it fixes which speakers land where
# In a folder without split lists (a user's own recordings), a word recorded by fewer speakers than this has
# no speaker to spare for validation: its clips are split one by one instead, so some takes of those voices
# validate. (A folder with lists, as Speech Commands, keeps the speaker rule for every word.)
FEW_SPEAKERS = 5


def speaker_id(path: str | Path) -> str:
    """The part of the file name before `_nohash_`: all clips of one speaker share it."""
    return re.sub(r"_nohash_.*$", "", Path(path).name)


def _hash_percent(path: str | Path) -> float:
    digest = hashlib.sha1(speaker_id(path).encode("utf-8")).hexdigest()
    return (int(digest, 16) % (_MAX_CLIPS_PER_CLASS + 1)) * (100.0 / _MAX_CLIPS_PER_CLASS)


def hash_split(path: str | Path, validation_percent: float = 10.0, testing_percent: float = 10.0) -> str:
    """The Speech Commands rule: a stable hash of the speaker id picks the split, so a speaker
    never straddles splits and adding data never moves old clips."""
    percent = _hash_percent(path)
    if percent < validation_percent:
        return "validation"
    if percent < validation_percent + testing_percent:
        return "testing"
    return "training"


def held_out_word(word: str, percent: float) -> bool:
    """Whole other words that no training run hears (a stable hash of the word picks them), so that a
    measurement can ask about words the model has never met."""
    return hash_split(f"{word}_nohash_", 0.0, percent) == "testing"


@dataclass(frozen=True)
class Clip:
    path: Path
    word: str
    split: str


@dataclass(frozen=True)
class DatasetIndex:
    root: Path
    words: tuple[str, ...]  # every word folder, sorted
    clips: tuple[Clip, ...]
    noise_files: tuple[Path, ...]

    def clips_of(self, split: str) -> list[Clip]:
        return [c for c in self.clips if c.split == split]


def _split_by_clip(files: list[Path], validation_percent: float, testing_percent: float) -> dict[Path, str]:
    """A few speakers' clips of one word: ranked by a stable hash of each file name, the first share validates
    and the next tests (at least one validation clip from three clips on, however the hashes fall)."""
    ranked = sorted(files, key=lambda p: _hash_percent(f"{p.stem.replace('_nohash_', '-')}_nohash_"))
    n_validation = max(1 if len(files) >= 3 else 0, round(len(files) * validation_percent / 100))
    n_testing = round(len(files) * testing_percent / 100)
    return {path: "validation" if i < n_validation else "testing" if i < n_validation + n_testing else "training"
            for i, path in enumerate(ranked)}


def _read_list(root: Path, name: str) -> set[tuple[str, str]]:
    """(word, file stem) pairs named in an official split list; empty if there is no list."""
    path = root / name
    if not path.is_file():
        return set()
    entries = set()
    for line in path.read_text().splitlines():
        if line.strip():
            word, _, filename = line.strip().rpartition("/")
            entries.add((word, Path(filename).stem))
    return entries


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def scan(root: str | Path, config: DataConfig | None = None) -> DatasetIndex:
    """Index a data folder. Raises KwsError if it is missing or holds no word folder with audio."""
    config = config or DataConfig()
    root = Path(root)
    if not root.is_dir():
        raise KwsError(f"data folder {root} does not exist; pass --data with a Speech Commands-style folder")
    validation = _read_list(root, "validation_list.txt")
    testing = _read_list(root, "testing_list.txt")
    clips, words = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        files = _audio_files(folder)
        if not files:
            continue
        words.append(folder.name)
        by_clip = None
        if not (validation or testing) and len({speaker_id(p) for p in files}) < FEW_SPEAKERS:
            by_clip = _split_by_clip(files, config.validation_percent, config.testing_percent)
        for path in files:
            key = (folder.name, path.stem)
            # The official lists win; files in neither (clips added later, a user's own recordings)
            # follow the hash rule that made the lists, so no speaker straddles two splits (but see
            # FEW_SPEAKERS).
            if key in validation:
                split = "validation"
            elif key in testing:
                split = "testing"
            elif by_clip:
                split = by_clip[path]
            else:
                split = hash_split(path, config.validation_percent, config.testing_percent)
            clips.append(Clip(path, folder.name, split))
    if not words:
        raise KwsError(f"data folder {root} has no word folders with audio files (expected e.g. {root}/yes/*.wav)")
    noise_dir = root / BACKGROUND_NOISE
    noise = tuple(_audio_files(noise_dir)) if noise_dir.is_dir() else ()
    return DatasetIndex(root, tuple(words), tuple(clips), noise)


def resolve_keywords(spec: tuple[str, ...] | None, words: tuple[str, ...]) -> tuple[str, ...]:
    """None -> the ten commands present; ('all',) -> every word; else the given words, checked."""
    if spec is None:
        found = tuple(w for w in COMMANDS if w in words)
        if not found:
            raise KwsError(f"none of the default commands {', '.join(COMMANDS)} has a folder in the data; "
                           "name your words with --keywords")
        return found
    if tuple(spec) == ("all",):
        return words
    missing = [w for w in spec if w not in words]
    if missing:
        raise KwsError(f"unknown keyword(s) {', '.join(missing)}: no such word folder in the data "
                       f"(available: {', '.join(words)})")
    if len(set(spec)) != len(spec):
        raise KwsError("a keyword is listed twice in --keywords")
    return tuple(spec)


def labels_for(keywords: tuple[str, ...]) -> tuple[str, ...]:
    """Output order of the classifier: silence, unknown, then the keywords."""
    return (SILENCE, UNKNOWN, *keywords)


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read any file libsndfile knows as mono float32 at `sample_rate` ([samples], in [-1, 1])."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile raises several types for the same problem
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            raise KwsError(f"audio file {path} is empty (0 bytes); record or copy it again") from None
        raise KwsError(f"cannot read audio file {path}: {error}") from None
    if audio.shape[0] == 0:
        raise KwsError(f"audio file {path} is empty")
    truncated = wav_truncation(path)
    if truncated:
        raise KwsError(f"audio file {path} is truncated ({truncated}); copy or record it again")
    if audio.shape[1] > 1:
        log.info("%s has %d channels; mixing down to mono", path, audio.shape[1])
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        import librosa  # only needed for files a user drops in at another rate

        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    if not np.isfinite(audio).all():
        raise KwsError(f"audio file {path} holds NaN or infinite samples")
    return audio.astype(np.float32, copy=False)


def fit_length(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Zero-pad at the end or cut to exactly n_samples (some data set clips are short)."""
    if len(audio) >= n_samples:
        return audio[:n_samples]
    return np.pad(audio, (0, n_samples - len(audio)))


@dataclass
class SplitAudio:
    """One split held in memory: clips as a tensor plus the background noise it may use."""

    waveforms: torch.Tensor  # [clips, clip_samples] float32
    labels: torch.Tensor  # [clips] int64, index into labels_for(keywords)
    noise: torch.Tensor  # [samples] float32, this split's part of the background noise (may be empty)
    skipped: list[str]  # files that could not be read, with the reason
    # [clips] relative chance of each `_unknown_` clip to be drawn into an epoch; None: all alike
    unknown_weights: torch.Tensor | None = None
    speech: torch.Tensor | None = None  # [samples] real speech without keywords, for gaps in sequences

    @property
    def unknown_indices(self) -> torch.Tensor:
        return torch.nonzero(self.labels == 1).flatten()

    @property
    def keyword_indices(self) -> torch.Tensor:
        return torch.nonzero(self.labels >= 2).flatten()


def _load_fixed(path: Path, features: FeatureConfig) -> np.ndarray | str:
    try:
        return fit_length(load_audio(path, features.sample_rate), features.clip_samples)
    except KwsError as error:
        return str(error)


def _trained_on(clip: Clip, keywords: tuple[str, ...], config: DataConfig) -> bool:
    """Whether a training clip is used: not from a held-out speaker, and not a word kept for measuring what
    the model does with words it never heard."""
    if speaker_id(clip.path) in config.held_out_speakers:
        return False
    return clip.word in keywords or not held_out_word(clip.word, config.held_out_words_percent)


def load_split(index: DatasetIndex, split: str, keywords: tuple[str, ...], config: Config,
               workers: int = 4) -> SplitAudio:
    """Load every clip of a split. Unreadable files are skipped with a warning, never mid-epoch."""
    labels = labels_for(keywords)
    clips = [c for c in index.clips_of(split) if split != "training" or _trained_on(c, keywords, config.data)]
    with ThreadPoolExecutor(workers) as pool:  # libsndfile releases the GIL while decoding
        loaded = list(pool.map(lambda c: _load_fixed(c.path, config.features), clips))
    waveforms, label_ids, skipped = [], [], []
    for clip, audio in zip(clips, loaded):
        if isinstance(audio, str):
            log.warning("skipping %s", audio)
            skipped.append(audio)
            continue
        waveforms.append(audio)
        label_ids.append(labels.index(clip.word) if clip.word in keywords else labels.index(UNKNOWN))
    if not waveforms:
        raise KwsError(f"no readable clips in the {split} split of {index.root}")
    return SplitAudio(
        waveforms=torch.from_numpy(np.stack(waveforms)),
        labels=torch.tensor(label_ids, dtype=torch.int64),
        noise=_load_noise(index, split, config),
        skipped=skipped,
    )


def _load_noise(index: DatasetIndex, split: str, config: Config) -> torch.Tensor:
    """Training uses the head of each noise file; the held-out tail serves validation and testing."""
    parts = []
    for path in index.noise_files:
        try:
            audio = load_audio(path, config.features.sample_rate)
        except KwsError as error:
            log.warning("skipping background noise: %s", error)
            continue
        cut = int(len(audio) * (1.0 - config.data.noise_holdout_fraction))
        part = audio[:cut] if split == "training" else audio[cut:]
        if len(part) >= config.features.clip_samples:
            parts.append(part)
    if not parts:
        return torch.zeros(0)
    return torch.from_numpy(np.concatenate(parts))


def _keyword_repeats(split: SplitAudio, config: DataConfig) -> int:
    """How often each keyword clip is drawn per epoch: once, or as often as `keyword_examples` needs."""
    return max(1, math.ceil(config.keyword_examples / max(1, len(split.keyword_indices))))


def _extra_counts(split: SplitAudio, config: DataConfig) -> tuple[int, int]:
    """(_unknown_, _silence_) examples per epoch."""
    n_keyword = len(split.keyword_indices) * _keyword_repeats(split, config)
    n_unknown = min(len(split.unknown_indices), math.ceil(n_keyword * config.unknown_percent / 100))
    return n_unknown, math.ceil(n_keyword * config.silence_percent / 100)


def epoch_size(split: SplitAudio, config: DataConfig) -> int:
    """Examples in every epoch that draw_examples makes."""
    return len(split.keyword_indices) * _keyword_repeats(split, config) + sum(_extra_counts(split, config))


def draw_examples(split: SplitAudio, config: DataConfig, generator: torch.Generator) -> torch.Tensor:
    """One epoch's examples, shuffled: every keyword clip, a fresh random share of the unknown clips,
    and silence slots (-1). Shares are percentages of the keyword clip count, as in the data set's
    reference trainer, so `_unknown_` and `_silence_` weigh about as much as one keyword each."""
    keyword = split.keyword_indices.repeat(_keyword_repeats(split, config))
    unknown = split.unknown_indices
    n_unknown, n_silence = _extra_counts(split, config)
    if split.unknown_weights is None:
        chosen = unknown[torch.randperm(len(unknown), generator=generator)[:n_unknown]]
    else:
        chosen = unknown[torch.multinomial(split.unknown_weights[unknown], n_unknown, generator=generator)]
    examples = torch.cat([keyword, chosen, torch.full((n_silence,), -1, dtype=torch.int64)])
    return examples[torch.randperm(len(examples), generator=generator)]


def make_batch(split: SplitAudio, examples: torch.Tensor, config: Config, generator: torch.Generator,
               training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms [batch, clip_samples] and labels [batch]; silence slots are cut from noise at random
    gain (in training, from noise at a random speed and direction too)."""
    waveforms = split.waveforms[examples.clamp_min(0)].clone()
    labels = split.labels[examples.clamp_min(0)].clone()
    silent = examples < 0
    n_silent = int(silent.sum())
    if n_silent:
        gains = torch.rand(n_silent, 1, generator=generator) * config.augment.silence_gain_max
        crops = noise_crops(split.noise, n_silent, config.features.clip_samples, generator, vary=training)
        waveforms[silent] = gains * crops
        labels[silent] = labels_for(()).index(SILENCE)
    return waveforms, labels


def fixed_examples(split: SplitAudio, config: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation set of a split: the same clips, unknown share and silence cuts on every call. The
    shares are the data set's usual 10% each, whatever a model trained with, so that accuracies of models
    trained with other shares are figures on the same clips."""
    generator = torch.Generator().manual_seed(0)
    evaluation = DataConfig(keywords=config.data.keywords, unknown_percent=10.0, silence_percent=10.0,
                            validation_percent=config.data.validation_percent,
                            testing_percent=config.data.testing_percent)
    examples = draw_examples(dataclasses.replace(split, unknown_weights=None), evaluation, generator)
    return make_batch(split, examples, config, generator)
