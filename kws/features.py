"""The front end: raw 16 kHz PCM in, MFCC frames out. It is the model's first layer, so the
exported ONNX graph takes raw audio and the device runs exactly the features used in training."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from kws.config import FeatureConfig


class MfccFrontEnd(nn.Module):
    """[batch, samples] float32 PCM in [-1, 1] -> [batch, frames, n_mfcc].

    Every setting is explicit. In particular `log_mels=True` takes log(mel + 1e-6) per frame: the
    default dB scaling (top_db relative to the clip's maximum) depends on the whole clip and would make
    a streamed frame differ from the same frame inside a clip. `center=False` means no padding, so a
    frame only ever sees its own window of samples.
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        mel = {
            "n_fft": config.fft_samples,
            "win_length": config.window_samples,
            "hop_length": config.hop_samples,
            "n_mels": config.n_mels,
            "f_min": config.f_min_hz,
            "f_max": config.f_max_hz,
            "center": False,
            "power": 2.0,
            "window_fn": torch.hann_window,
        }
        self.mfcc = torchaudio.transforms.MFCC(sample_rate=config.sample_rate, n_mfcc=config.n_mfcc, dct_type=2,
                                               norm="ortho", log_mels=True, melkwargs=mel)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.mfcc(audio).transpose(-1, -2)  # [batch, n, frames] -> [batch, frames, n]
