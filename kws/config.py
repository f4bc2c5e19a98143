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
    """Audio format and the front end (the model's first layer): MFCC, or the log-mel bands under them."""

    sample_rate: int = 16000
    clip_ms: int = 1000
    window_ms: int = 30
    hop_ms: int = 10
    n_mels: int = 40
    n_mfcc: int = 20
    f_min_hz: float = 20.0
    f_max_hz: float = 7600.0
    # "mfcc": n_mfcc coefficients per frame; "log-mel": the n_mels log-mel bands themselves, whose
    # neighbouring bands a convolution can read (kws train --conv-channels).
    front_end: str = "mfcc"

    def __post_init__(self):
        if self.front_end not in ("mfcc", "log-mel"):
            raise KwsError(f"front_end must be 'mfcc' or 'log-mel', not {self.front_end!r}")

    @property
    def feature_size(self) -> int:
        """Values per frame out of the front end."""
        return self.n_mfcc if self.front_end == "mfcc" else self.n_mels

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
    unknown_percent: float = 10.0
    silence_percent: float = 10.0
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
    unknown_weighting: str = "clip"
    # Fine-tuning only: an `_unknown_` clip that the starting model (--init-from) takes for a keyword with
    # probability p is drawn (1 + hard_negative_boost * p) times as often: train again on what fires.
    hard_negative_boost: float = 0.0
    # Train on the commands of this share of the training speakers only (a stable hash of the speaker
    # picks them, so a smaller share is a subset of a larger one): a learning curve shows what more
    # command speakers would be worth. Other words, noise and the validation split are never thinned.
    keyword_speakers_percent: float = 100.0
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
        if not 0 < self.keyword_speakers_percent <= 100:
            raise KwsError(f"keyword_speakers_percent must lie in (0, 100], not {self.keyword_speakers_percent}")
        if self.on_off_fold < -1:
            raise KwsError(f"on_off_fold must be -1 (no folds) or a fold number, not {self.on_off_fold}")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation. Evaluation never augments."""

    shift_ms: int = 100
    # Training windows are this much longer than a clip, the clip at a random place inside: a stream
    # shows the model every offset of a word and whatever came before it, not one aligned second.
    context_ms: int = 0
    speed_change: float = 0.1  # ±10% speaking rate
    level_db: float = 0.0  # each clip up to this much quieter: speakers near and far from the microphone
    noise_probability: float = 0.8
    noise_gain_max: float = 0.1
    silence_gain_max: float = 1.0
    time_masks: int = 2
    time_mask_ms: int = 100
    freq_masks: int = 2
    freq_mask_bins: int = 5
    # SpecAugment's frequency masks where it puts them, on the log-mel bands before the cepstrum: a masked
    # band becomes the frame's mean level, not silence. (A cepstral mask above smooths the whole spectrum.)
    mel_masks: int = 0
    mel_mask_bands: int = 6
    # Each clip's spectrum stretched by a random factor in 1 ± this before the mel filters (VTLP): formants
    # of longer and shorter vocal tracts than the data set's speakers have, at the same speaking rate.
    vocal_tract_warp: float = 0.0
    # Share of training audio heard through a simulated room (reverberation) and through a random
    # microphone response (equalisation): users' rooms and microphones are not the data set's.
    reverb_probability: float = 0.0
    eq_probability: float = 0.0
    # Share of training audio with other speech (the negatives' training part) underneath, at an amplitude
    # gain of up to speech_noise_gain_max: a talker in the room is not a command, and does not hide one.
    speech_noise_probability: float = 0.0
    speech_noise_gain_max: float = 0.2
    # "all" clips, or only "negatives" (those labelled _silence_ or _unknown_; clip training only): then it
    # teaches that talk is not a command without teaching that a command may come wrapped in talk.
    speech_noise_on: str = "all"

    def __post_init__(self):
        if self.mel_masks < 0 or self.mel_mask_bands < 0:
            raise KwsError(f"mel_masks and mel_mask_bands must be 0 or more, not {self.mel_masks} and "
                           f"{self.mel_mask_bands}")
        if not 0 <= self.vocal_tract_warp < 0.5:
            raise KwsError(f"vocal_tract_warp must lie in [0, 0.5), not {self.vocal_tract_warp}")
        if not 0 <= self.speech_noise_probability <= 1 or self.speech_noise_gain_max < 0:
            raise KwsError(f"speech_noise_probability must lie in [0, 1] and speech_noise_gain_max be 0 or more, "
                           f"not {self.speech_noise_probability} and {self.speech_noise_gain_max}")
        if self.speech_noise_on not in ("all", "negatives"):
            raise KwsError(f"speech_noise_on must be 'all' or 'negatives', not {self.speech_noise_on!r}")


@dataclass(frozen=True)
class ModelConfig:
    hidden_size: int = 128
    num_layers: int = 2
    # The LSTM reads this many MFCC frames per step: a shorter sequence to remember across, less compute.
    frame_stack: int = 3
    bidirectional: bool = False  # only the unidirectional model can stream
    # How a clip's logits come from its per-step logits: "max" over steps (each class fires where its
    # word ends, so a stream needs no long memory) or "last" step (bidirectional models use the mean).
    readout: str = "max"
    dropout: float = 0.1  # a training setting only: the weights' shapes do not depend on it
    # More than 1: an ensemble of this many such LSTMs, each trained on its own, combined by `kws combine`.
    members: int = 1
    # More than 0: two causal convolutions over time and frequency before the LSTM, this many channels each
    # (kws.model.ConvFrontEnd); the second one's time stride takes the place of stacking frames.
    conv_channels: int = 0

    def __post_init__(self):
        if self.members < 1:
            raise KwsError(f"members must be at least 1, not {self.members}")
        if self.readout not in ("max", "last"):
            raise KwsError(f"readout must be 'max' or 'last', not {self.readout!r}")
        if self.frame_stack < 1 or self.hidden_size < 1 or self.num_layers < 1:
            raise KwsError("frame_stack, hidden_size and num_layers must be at least 1")
        if self.conv_channels < 0:
            raise KwsError(f"conv_channels must be at least 0, not {self.conv_channels}")
        if self.conv_channels and self.bidirectional:
            raise KwsError("the convolutions are causal, for streaming: not with a bidirectional model")


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
    # the share of the validation other speech (kws train --negatives) called silence or unknown; or
    # "stream": commands matched less wrong labels and false alarms, per command, on a 20-minute validation
    # stream of commands among that other speech, at the shipped detection settings (kws.train_selection).
    select_by: str = "accuracy"
    # With a teacher (kws train --teacher, e.g. an ensemble from kws combine): add this weight times the
    # KL divergence from the teacher's per-step label distribution to the model's, at this temperature.
    # Measured (docs/lab-notebook.md, 2026-12-02): taught by three combined seeds, clip accuracy rose on every seed,
    # false alarms on held-out speech did not fall.
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    # Clip training only (mixup): more than 0 mixes each training clip with another of its batch, weights
    # lam and 1 - lam with lam ~ Beta(mixup_alpha, mixup_alpha), and the target the same mix of their labels.
    mixup_alpha: float = 0.0

    def __post_init__(self):
        if self.select_by not in ("accuracy", "open-set", "stream"):
            raise KwsError(f"select_by must be 'accuracy', 'open-set' or 'stream', not {self.select_by!r}")
        if self.distill_weight < 0 or self.distill_temperature <= 0:
            raise KwsError("distill_weight must be at least 0 and distill_temperature more than 0")
        if self.mixup_alpha < 0 or (self.mixup_alpha and self.sequence_ms):
            raise KwsError(f"mixup_alpha must be at least 0, and 0 with sequence_ms, not {self.mixup_alpha}")

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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        kwargs = {}
        for section in dataclasses.fields(cls):
            section_cls = _SECTIONS[section.name]
            values = dict(d.get(section.name, {}))
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


_SECTIONS = {
    "features": FeatureConfig,
    "data": DataConfig,
    "augment": AugmentConfig,
    "model": ModelConfig,
    "train": TrainConfig,
}


@dataclass(frozen=True)
class ExportDefaults:
    """What `kws export` stores in a model for each detection setting not given as a flag: the settings
    recommended for the shipped recipe, chosen on long validation audio (models/MODEL_CARD.md). This is the
    one place to change them; `kws export` prints what it stored and where each value came from."""

    threshold: float = 0.65
    average_ms: float = 700.0
    suppression_ms: float = 1000.0
    sustained_ms: float = 0.0  # the slower rule: off
    sustained_threshold: float = 0.65
    peak_ms: float = 300.0
    speeds: tuple[float, ...] = (1.0, 0.9, 1.1)
    stream_steps: int = 5
