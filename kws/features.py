"""The front end: raw 16 kHz PCM in, MFCC (or log-mel) frames out. It is the model's first layer, so the
exported ONNX graph takes raw audio and the device runs exactly the features used in training."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from kws.config import FeatureConfig


class MfccFrontEnd(nn.Module):
    """[batch, samples] float32 PCM in [-1, 1] -> [batch, frames, feature_size]: n_mfcc coefficients, or
    with front_end "log-mel" the n_mels log-mel bands that the coefficients are computed from.

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
        if config.front_end == "mfcc":
            self.mfcc = torchaudio.transforms.MFCC(sample_rate=config.sample_rate, n_mfcc=config.n_mfcc, dct_type=2,
                                                   norm="ortho", log_mels=True, melkwargs=mel)
        else:
            self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=config.sample_rate, **mel)

    def forward(self, audio: torch.Tensor, mel_mask: torch.Tensor | None = None,
                warp: torch.Tensor | None = None) -> torch.Tensor:
        """Training only: `mel_mask` [batch, n_mels] bool, those log-mel bands become each frame's mean over
        the bands before the cepstrum is taken; `warp` [batch], each clip's spectrum stretched by its factor
        before the mel filters (see `_warped_filters`)."""
        if mel_mask is None and warp is None and self.config.front_end == "mfcc":
            return self.mfcc(audio).transpose(-1, -2)  # [batch, n, frames] -> [batch, frames, n]
        mel_module = self.mfcc.MelSpectrogram if self.config.front_end == "mfcc" else self.mel
        if warp is None:
            mel = mel_module(audio)
        else:
            spectrum = mel_module.spectrogram(audio)  # [batch, n_freqs, frames]
            mel = torch.einsum("bft,bfm->bmt", spectrum, self._warped_filters(mel_module.mel_scale.fb, warp))
        log_mel = torch.log(mel + 1e-6)  # the same log offset as MFCC's log_mels
        if mel_mask is not None:
            log_mel = torch.where(mel_mask[:, :, None], log_mel.mean(dim=-2, keepdim=True), log_mel)
        if self.config.front_end == "mfcc":
            return log_mel.transpose(-1, -2) @ self.mfcc.dct_mat
        return log_mel.transpose(-1, -2)

    def _warped_filters(self, filters: torch.Tensor, warp: torch.Tensor) -> torch.Tensor:
        """Vocal tract length perturbation (Jaitly and Hinton, 2013): the mel filters [n_freqs, n_mels] read
        each clip's energy at frequency f as if it lay at f * warp, up to a boundary frequency, and the band
        above is squeezed or stretched linearly so that the Nyquist frequency stays put. -> [batch, n_freqs,
        n_mels]. A factor of 1 gives the filters unchanged."""
        n_freqs = filters.shape[0]
        nyquist = self.config.sample_rate / 2
        freqs = torch.linspace(0, nyquist, n_freqs)
        knee = 0.6 * nyquist * torch.clamp(warp, max=1.0)[:, None]  # where the low band ends, after warping
        boundary = knee / warp[:, None]  # ... and before
        above = nyquist - (nyquist - knee) / (nyquist - boundary) * (nyquist - freqs)
        warped = torch.where(freqs <= boundary, freqs * warp[:, None], above)  # [batch, n_freqs]
        position = warped / nyquist * (n_freqs - 1)
        left = position.floor().long().clamp(0, n_freqs - 2)
        frac = (position - left)[:, :, None]
        return filters[left] * (1 - frac) + filters[left + 1] * frac
