"""KeywordLSTM: MFCC -> per-coefficient normalisation -> (causal convolutions) -> LSTM -> linear head,
logits for every step;
and KeywordEnsemble: several of them on one MFCC front end, their logits averaged at every step."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from kws.config import FeatureConfig, ModelConfig
from kws.errors import KwsError
from kws.features import MfccFrontEnd


class _FrameModel(nn.Module):
    """What every keyword model reads off its per-frame logits (`forward`): a clip's logits, its size."""

    config: ModelConfig

    def clip_logits(self, audio: torch.Tensor) -> torch.Tensor:
        """[batch, samples] -> [batch, n_labels]: the last frame's logits (whole-clip mean if bidirectional)."""
        return clip_logits_from_frames(self(audio), self.config)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class ConvFrontEnd(nn.Module):
    """Two causal convolutions over time and frequency: [batch, frames, bands] -> [batch, frames // stack,
    out_size]. Run on log-mel bands, the kernels read a sound's shape across neighbouring bands wherever it
    lies, where a voice's formants sit a few bands higher or lower than another's.

    Causal: step s reads frames up to the last of its own `stack`, and CONTEXT_FRAMES before its first
    frame reach back (the first layer reads 3 frames, the second 1 + stack of those, `stack` apart).
    """

    CONTEXT_FRAMES = 3

    def __init__(self, bands: int, channels: int, stack: int):
        super().__init__()
        convs = (nn.Conv2d(1, channels, kernel_size=(3, 5), stride=(1, 2)),
                 nn.Conv2d(channels, channels, kernel_size=(stack + 1, 3), stride=(stack, 2)))
        self.layers = nn.Sequential(convs[0], nn.ReLU(), convs[1], nn.ReLU())
        bands_out = bands
        for conv in convs:
            bands_out = (bands_out - conv.kernel_size[1]) // conv.stride[1] + 1
        if bands_out < 1:
            raise KwsError(f"the convolutions need at least 9 values per frame, not {bands}")
        self.out_size = channels * bands_out

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames that already hold CONTEXT_FRAMES before the first step's: none are padded here."""
        out = self.layers(frames.unsqueeze(1))  # [batch, channels, steps, bands_out]
        return out.permute(0, 2, 1, 3).flatten(2)


class KeywordLSTM(_FrameModel):
    """Raw audio [batch, samples] -> per-frame logits [batch, frames, n_labels].

    The unidirectional model's logits at frame t depend only on audio up to t, so the same weights can
    stream one hop at a time with the LSTM state carried over. A clip's label is read at its last frame.
    """

    def __init__(self, n_labels: int, features: FeatureConfig, config: ModelConfig):
        super().__init__()
        self.config = config
        self.front_end = MfccFrontEnd(features)
        # Fixed statistics from the training set (set by `set_normalisation`), not per-clip ones,
        # so a frame is normalised the same way in a clip and in a stream.
        self.register_buffer("feature_mean", torch.zeros(features.feature_size))
        self.register_buffer("feature_std", torch.ones(features.feature_size))
        self.conv = ConvFrontEnd(features.feature_size, config.conv_channels, config.frame_stack) \
            if config.conv_channels else None
        self.lookback_samples = lookback_samples(features, config)
        self.lstm = nn.LSTM(
            input_size=self.conv.out_size if self.conv else features.feature_size * config.frame_stack,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(config.hidden_size * directions, n_labels)

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-3))

    def normalise(self, mfcc: torch.Tensor) -> torch.Tensor:
        return (mfcc - self.feature_mean) / self.feature_std

    def features(self, audio: torch.Tensor, mel_mask: torch.Tensor | None = None,
                 warp: torch.Tensor | None = None) -> torch.Tensor:
        """[batch, samples] -> normalised MFCC [batch, frames, n_mfcc]; with convolutions, after as much
        silence as they reach back, as a stream begins (the runtime starts from zeros). `mel_mask` and
        `warp`: see MfccFrontEnd."""
        if self.lookback_samples:
            audio = nn.functional.pad(audio, (self.lookback_samples, 0))
        return self.normalise(self.front_end(audio, mel_mask, warp))

    def _steps(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised frames -> the LSTM's input, one row per step."""
        return self.conv(features) if self.conv else stack_frames(features, self.config.frame_stack)

    def classify_frames(self, features: torch.Tensor) -> torch.Tensor:
        """[batch, frames, n_mfcc] -> logits [batch, frames // frame_stack, n_labels]."""
        hidden, _ = self.lstm(self._steps(features))
        return self.head(self.dropout(hidden))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.classify_frames(self.features(audio))

    def step(self, features: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """Streaming: normalised MFCC of new audio [1, frames, n_mfcc] (with convolutions, after the
        frames they reach back to) and the LSTM state (h, c) -> logits [1, frames // frame_stack, n_labels]
        and the new state."""
        hidden, (h, c) = self.lstm(self._steps(features), (h, c))
        return self.head(hidden), h, c

    def stream(self, audio: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """The chunk carries its context (kws.export.StreamLayout), so nothing is padded."""
        return self.step(self.normalise(self.front_end(audio)), h, c)



class KeywordEnsemble(_FrameModel):
    """`config.members` KeywordLSTMs of one shape, trained apart (other seeds), on one MFCC front end; their
    logits are averaged at every step (a geometric mean of their probabilities). Each member's false
    alarms on speech it never heard are largely its own, so the average fires far less often than either
    member; the words they all hear they still agree on.

    Same interface as KeywordLSTM, so it exports, streams and reads a clip as one model does. The
    streaming state is the members' states side by side: h, c [layers, 1, members * hidden_size]."""

    def __init__(self, n_labels: int, features: FeatureConfig, config: ModelConfig):
        super().__init__()
        self.config = config
        member = dataclasses.replace(config, members=1)
        self.members = nn.ModuleList(KeywordLSTM(n_labels, features, member) for _ in range(config.members))

    @staticmethod
    def _average(logits: list[torch.Tensor]) -> torch.Tensor:
        # Logits, not probabilities: a clip is read as the max of its step logits, and log-probabilities
        # (all at most 0) would let whichever class is certain anywhere in the clip, silence, win it.
        return torch.stack(logits).mean(dim=0)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        first = self.members[0]
        audio = nn.functional.pad(audio, (first.lookback_samples, 0))
        mfcc = first.front_end(audio)  # the same settings in every member: computed once
        return self._average([m.classify_frames(m.normalise(mfcc)) for m in self.members])

    def stream(self, audio: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        mfcc = self.members[0].front_end(audio)
        outputs = [m.step(m.normalise(mfcc), member_h, member_c) for m, member_h, member_c in
                   zip(self.members, h.chunk(len(self.members), dim=2), c.chunk(len(self.members), dim=2))]
        logits, hs, cs = zip(*outputs)
        return self._average(list(logits)), torch.cat(hs, dim=2), torch.cat(cs, dim=2)


KeywordModel = KeywordLSTM | KeywordEnsemble


def build_model(n_labels: int, features: FeatureConfig, config: ModelConfig) -> KeywordModel:
    return KeywordEnsemble(n_labels, features, config) if config.members > 1 else KeywordLSTM(n_labels, features, config)


def clip_logits_from_frames(frame_logits: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """[batch, steps, n_labels] -> [batch, n_labels]."""
    if config.bidirectional:  # its last step has seen only one step of the backward pass
        return frame_logits.mean(dim=1)
    if config.readout == "max":
        return frame_logits.amax(dim=1)
    return frame_logits[:, -1]


def lookback_samples(features: FeatureConfig, config: ModelConfig) -> int:
    """Audio before a step's own frames that the model reads (its convolutions' reach): what a streaming
    chunk carries besides the FFT's overlap, and the silence the window model hears before a clip."""
    return (ConvFrontEnd.CONTEXT_FRAMES if config.conv_channels else 0) * features.hop_samples


def clip_steps(features: FeatureConfig, config: ModelConfig) -> int:
    """LSTM steps in one clip: the span a "max" readout reads in a stream."""
    return features.frames(features.clip_samples) // config.frame_stack


def stack_frames(features: torch.Tensor, stack: int) -> torch.Tensor:
    """[batch, frames, n] -> [batch, frames // stack, stack * n]; a trailing partial group is dropped."""
    if stack == 1:
        return features
    batch, frames, n = features.shape
    steps = frames // stack
    return features[:, : steps * stack].reshape(batch, steps, stack * n)
