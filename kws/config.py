"""All settings, as frozen dataclasses. They are saved in every checkpoint and in the ONNX metadata.

Times are given in milliseconds; sample and frame counts are derived from them, never written inline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from kws.errors import KwsError

# The ten commands of the Speech Commands 12-class task, in the data set's usual order.
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE = "_silence_"
UNKNOWN = "_unknown_"


@dataclass(frozen=True)
class FeatureConfig:
    """Audio format and the front end (the model's first layer): MFCC."""

    sample_rate: int = 16000
    clip_ms: int = 1000
    window_ms: int = 30
    hop_ms: int = 10
    n_mels: int = 40
    n_mfcc: int = 20
    f_min_hz: float = 20.0
    f_max_hz: float = 7600.0
    @property
    def feature_size(self) -> int:
        """Values per frame out of the front end."""
        return self.n_mfcc

    @property
    def clip_samples(self) -> int:
        return self.ms_to_samples(self.clip_ms)

    @property
    def window_samples(self) -> int:
        return self.ms_to_samples(self.window_ms)

    @property
    def fft_samples(self) -> int:
        """The window zero-padded to a power of two (as TF's speech_commands does): ONNX Runtime's
        power-of-two FFT matches PyTorch's to ~1e-4, its 480-point DFT only to ~1e-2."""
        return 1 << (self.window_samples - 1).bit_length()

    @property
    def hop_samples(self) -> int:
        return self.ms_to_samples(self.hop_ms)

    def ms_to_samples(self, ms: float) -> int:
        return int(round(ms * self.sample_rate / 1000))

    def frames(self, n_samples: int) -> int:
        """MFCC frames for n_samples of audio (no centring, so no padding at either end). Each frame reads
        fft_samples of input; the window's zero-padding covers the samples beyond window_samples."""
        if n_samples < self.fft_samples:
            return 0
        return 1 + (n_samples - self.fft_samples) // self.hop_samples


@dataclass(frozen=True)
class DataConfig:
    """Which words are classes and how the extra classes are drawn."""

    # None: the ten commands that have a folder in the data. ("all",): every word folder.
    keywords: tuple[str, ...] | None = None
    # _unknown_ and _silence_ clips per epoch, in percent of the number of keyword clips.
    unknown_percent: float = 40.0
    silence_percent: float = 10.0
    # At least this many keyword examples per epoch: a few recordings of one's own words are drawn again
    # (augmented anew each time) so that an epoch holds enough steps and other words to learn from.
    keyword_examples: int = 0
    # Hash split for files named in no official list, as the data set's authors define it.
    validation_percent: float = 10.0
    testing_percent: float = 10.0
    # The tail of each background-noise file is kept out of training, for validation silence.
    noise_holdout_fraction: float = 0.2
    # Other speech (`kws train --negatives`): the speaker split, and whole words chosen by hash that no
    # training run hears, so the open-set measurement can ask about words never trained on.
    other_validation_percent: float = 20.0
    other_testing_percent: float = 20.0
    held_out_words_percent: float = 5.0
    # How `_unknown_` examples are drawn: "clip" (every clip alike) or "source" (each source of other
    # speech, and the data set's own other words, an equal share).
    unknown_weighting: str = "source"
    # "on" and "off" are the closest other words to the commands, from few speakers: with a fold k >= 0,
    # the speakers who said them (in the other speech) are dealt into kws.other_speech.ON_OFF_FOLDS folds
    # and fold k is held out, so that a run measures on/off on voices it never heard; -1: no folds (those
    # speakers are split by the hash, as everyone else).
    on_off_fold: int = -1
    # Speakers no training clip comes from, commands included (kws train fills it from on_off_fold).
    held_out_speakers: tuple[str, ...] = ()

    def __post_init__(self):
        if self.unknown_weighting not in ("clip", "source"):
            raise KwsError(f"unknown_weighting must be 'clip' or 'source', not {self.unknown_weighting!r}")
        if self.keyword_examples < 0:
            raise KwsError(f"keyword_examples must be 0 or more, not {self.keyword_examples}")
        if self.on_off_fold < -1:
            raise KwsError(f"on_off_fold must be -1 (no folds) or a fold number, not {self.on_off_fold}")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation. Evaluation never augments."""

    shift_ms: int = 100
    speed_change: float = 0.1  # ±10% speaking rate
    level_db: float = 0.0  # each clip up to this much quieter: speakers near and far from the microphone
    noise_probability: float = 0.8
    noise_gain_max: float = 0.1
    silence_gain_max: float = 1.0
    time_masks: int = 2
    time_mask_ms: int = 100
    freq_masks: int = 2
    freq_mask_bins: int = 5


@dataclass(frozen=True)
class ModelConfig:
    hidden_size: int = 128
    num_layers: int = 2
    # The LSTM reads this many MFCC frames per step: a shorter sequence to remember across, less compute.
    frame_stack: int = 2
    # How a clip's logits come from its per-step logits: "max" over steps (each class fires where its
    # word ends, so a stream needs no long memory) or "last" step (models exported before 2026-12-02).
    readout: str = "max"
    dropout: float = 0.1  # a training setting only: the weights' shapes do not depend on it

    def __post_init__(self):
        if self.readout not in ("max", "last"):
            raise KwsError(f"readout must be 'max' or 'last', not {self.readout!r}")
        if self.frame_stack < 1 or self.hidden_size < 1 or self.num_layers < 1:
            raise KwsError("frame_stack, hidden_size and num_layers must be at least 1")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    grad_clip_norm: float = 5.0  # LSTMs occasionally take a huge step early on
    seed: int = 0
    # Train on stretches of this length holding several clips, with a target at every step (see
    # kws.train_sequences), instead of on single aligned clips (0).
    sequence_ms: int = 0
    # With sequences and other speech (kws train --negatives): the share of the gaps between clips that hold
    # a stretch of real speech, so that commands are also heard right after and before sentences.
    speech_gaps: float = 0.0
    # Which epoch becomes best.pt: "accuracy" on the validation clips, or "open-set": the mean of that and
    # the share of the validation other speech (kws train --negatives) called silence or unknown.
    select_by: str = "accuracy"

    def __post_init__(self):
        if self.select_by not in ("accuracy", "open-set"):
            raise KwsError(f"select_by must be 'accuracy' or 'open-set', not {self.select_by!r}")

    def clips_per_sequence(self, features: FeatureConfig) -> int:
        """Clips in one training sequence; the rest of it (one clip's length or more) is gaps."""
        return max(1, self.sequence_ms // features.clip_ms - 1)


@dataclass(frozen=True)
class Config:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if 0 < self.train.sequence_ms <= self.features.clip_ms:
            raise KwsError(f"sequence_ms must be 0 (train on single clips) or longer than a clip "
                           f"({self.features.clip_ms} ms), not {self.train.sequence_ms}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        kwargs = {}
        for section in dataclasses.fields(cls):
            section_cls = _SECTIONS[section.name]
            values = _without_retired(section.name, dict(d.get(section.name, {})))
            unknown = set(values) - {f.name for f in dataclasses.fields(section_cls)}
            if unknown:
                raise KwsError(f"unknown setting(s) {sorted(unknown)} in section {section.name!r}")
            # JSON and checkpoints store tuples as lists.
            kwargs[section.name] = section_cls(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
            )
        return cls(**kwargs)

    def differences(self, other: Config) -> list[str]:
        """Dotted names of the settings that differ, e.g. ['model.hidden_size']."""
        a, b = self.to_dict(), other.to_dict()
        return [
            f"{section}.{key}"
            for section in a
            for key in a[section]
            if a[section][key] != b[section].get(key)
        ]


# Settings of experiments that did not ship (docs/lab-notebook.md; their code is in the tree at commit
# 5bea36a), with the value that turned each off (None: any value, it only mattered with another one on).
# A checkpoint or model that stores them turned off loads as if they had never existed.
_RETIRED = {
    "features": {"front_end": "mfcc"},
    "data": {"hard_negative_boost": 0.0, "keyword_speakers_percent": 100.0},
    "augment": {"context_ms": 0, "reverb_probability": 0.0, "eq_probability": 0.0, "mel_masks": 0,
                "mel_mask_bands": None, "vocal_tract_warp": 0.0, "speech_noise_probability": 0.0,
                "speech_noise_gain_max": None, "speech_noise_on": None},
    "model": {"bidirectional": False, "members": 1, "conv_channels": 0},
    "train": {"distill_weight": 0.0, "distill_temperature": None, "mixup_alpha": 0.0},
}


def _without_retired(section: str, values: dict) -> dict:
    """`values` less the retired settings; one that was on means a model this version cannot rebuild."""
    for key, off in _RETIRED.get(section, {}).items():
        if key in values:
            value = values.pop(key)
            if off is not None and value != off:
                raise KwsError(f"{section}.{key} = {value!r}: an experiment this version no longer has "
                               "(docs/lab-notebook.md names the commit that does)")
    return values


_SECTIONS = {
    "features": FeatureConfig,
    "data": DataConfig,
    "augment": AugmentConfig,
    "model": ModelConfig,
    "train": TrainConfig,
}
