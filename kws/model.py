"""KeywordLSTM: MFCC -> per-coefficient normalisation -> frames stacked into steps -> LSTM -> linear head,
logits for every step."""

from __future__ import annotations

import torch
from torch import nn

from kws.config import FeatureConfig, ModelConfig
from kws.features import MfccFrontEnd


class KeywordLSTM(nn.Module):
    """Raw audio [batch, samples] -> per-frame logits [batch, frames, n_labels].

    The unidirectional model's logits at frame t depend only on audio up to t, so the same weights can
    stream one step at a time with the LSTM state carried over. A clip's logits are read off its steps'
    logits as `config.readout` says (the maximum over the clip's steps).
    """

    def __init__(self, n_labels: int, features: FeatureConfig, config: ModelConfig):
        super().__init__()
        self.config = config
        self.front_end = MfccFrontEnd(features)
        # Fixed statistics from the training set (set by `set_normalisation`), not per-clip ones,
        # so a frame is normalised the same way in a clip and in a stream.
        self.register_buffer("feature_mean", torch.zeros(features.feature_size))
        self.register_buffer("feature_std", torch.ones(features.feature_size))
        self.lstm = nn.LSTM(
            input_size=features.feature_size * config.frame_stack,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, n_labels)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def clip_logits(self, audio: torch.Tensor) -> torch.Tensor:
        """[batch, samples] -> [batch, n_labels], read off the per-step logits as the config says."""
        return clip_logits_from_frames(self(audio), self.config)

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-3))

    def normalise(self, mfcc: torch.Tensor) -> torch.Tensor:
        return (mfcc - self.feature_mean) / self.feature_std

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """[batch, samples] -> normalised MFCC [batch, frames, n_mfcc]."""
        return self.normalise(self.front_end(audio))

    def classify_frames(self, features: torch.Tensor) -> torch.Tensor:
        """[batch, frames, n_mfcc] -> logits [batch, frames // frame_stack, n_labels]."""
        hidden, _ = self.lstm(stack_frames(features, self.config.frame_stack))
        return self.head(self.dropout(hidden))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.classify_frames(self.features(audio))

    def step(self, features: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """Streaming: normalised MFCC of new audio [1, frames, n_mfcc] and the LSTM state (h, c) -> logits
        [1, frames // frame_stack, n_labels] and the new state."""
        hidden, (h, c) = self.lstm(stack_frames(features, self.config.frame_stack), (h, c))
        return self.head(hidden), h, c

    def stream(self, audio: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """The chunk carries its context (kws.export.StreamLayout), so nothing is padded."""
        return self.step(self.normalise(self.front_end(audio)), h, c)



def clip_logits_from_frames(frame_logits: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """[batch, steps, n_labels] -> [batch, n_labels]."""
    if config.readout == "max":
        return frame_logits.amax(dim=1)
    return frame_logits[:, -1]


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
