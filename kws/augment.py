"""Batch-wise augmentation for training, and the noise crops that make `_silence_` examples.

Every function takes an explicit torch.Generator so an epoch is reproducible from (seed, epoch) alone:
that is what lets `kws train --resume` give exactly the result of an uninterrupted run.
"""

from __future__ import annotations

import torch

from kws.config import AugmentConfig, FeatureConfig


def _uniform(count: int, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator) * high


def noise_crops(noise: torch.Tensor, count: int, n_samples: int, generator: torch.Generator,
                vary: bool = False) -> torch.Tensor:
    """`count` random windows of the noise track, [count, n_samples]; zeros when there is no noise.

    With `vary`, each window is also played at a random speed (0.7x-1.4x, which shifts its pitch) and
    maybe backwards: a few minutes of noise recordings then stand for many more kinds of noise.
    """
    if len(noise) < 2 * n_samples:
        return torch.zeros(count, n_samples)
    rates = torch.exp(torch.empty(count).uniform_(-0.36, 0.34, generator=generator)) if vary else torch.ones(count)
    spans = rates * (n_samples - 1)
    starts = torch.rand(count, generator=generator) * (len(noise) - 1 - spans)
    positions = starts[:, None] + rates[:, None] * torch.arange(n_samples)  # [count, n_samples]
    left = positions.floor().long().clamp(max=len(noise) - 2)
    frac = positions - left
    crops = noise[left] * (1 - frac) + noise[left + 1] * frac  # linear interpolation
    if vary:
        backwards = torch.rand(count, generator=generator) < 0.5
        crops[backwards] = crops[backwards].flip(1)
    return crops


def time_shift(audio: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each clip by up to ±max_shift samples, filling with zeros. [batch, samples] -> same."""
    if max_shift <= 0:
        return audio
    batch, n = audio.shape
    padded = torch.nn.functional.pad(audio, (max_shift, max_shift))
    offsets = torch.randint(0, 2 * max_shift + 1, (batch,), generator=generator)
    return padded.gather(1, offsets[:, None] + torch.arange(n))


def change_speed(audio: torch.Tensor, max_change: float, generator: torch.Generator) -> torch.Tensor:
    """Play each clip at a random speed in [1 - max_change, 1 + max_change] around its centre (tempo and
    pitch change together, as with a faster or slower speaker), keeping its length. [batch, samples]."""
    if max_change <= 0:
        return audio
    batch, n = audio.shape
    rates = 1 + (2 * torch.rand(batch, generator=generator) - 1) * max_change
    centre = (n - 1) / 2
    positions = centre + rates[:, None] * (torch.arange(n) - centre)  # [batch, samples], source positions
    left = positions.floor().long()
    frac = positions - left
    inside = (left >= 0) & (left < n - 1)
    left = left.clamp(0, n - 2)
    rows = torch.arange(batch)[:, None]
    return torch.where(inside, audio[rows, left] * (1 - frac) + audio[rows, left + 1] * frac, 0.0)


def mix_noise(audio: torch.Tensor, noise: torch.Tensor, probability: float, gain_max: float,
              generator: torch.Generator) -> torch.Tensor:
    """Add background noise at a random level to a random share of the clips."""
    batch, n = audio.shape
    gains = _uniform(batch, gain_max, generator) * (torch.rand(batch, generator=generator) < probability)
    return (audio + gains[:, None] * noise_crops(noise, batch, n, generator, vary=True)).clamp(-1.0, 1.0)


def _band_masks(batch: int, size: int, count: int, max_width: int, generator: torch.Generator) -> torch.Tensor:
    """[batch, size] bool, True inside `count` random bands of width 0..max_width per row."""
    keep = torch.zeros(batch, size, dtype=torch.bool)
    positions = torch.arange(size)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (batch, 1), generator=generator)
        start = (torch.rand(batch, 1, generator=generator) * (size - width + 1)).long()
        keep |= (positions >= start) & (positions < start + width)
    return keep


def spec_mask(features: torch.Tensor, config: AugmentConfig, feature_config: FeatureConfig,
              generator: torch.Generator) -> torch.Tensor:
    """SpecAugment-style masks on normalised features [batch, frames, n_mfcc]: masked values become 0,
    the training mean."""
    batch, frames, coefficients = features.shape
    time_width = max(0, round(config.time_mask_ms / feature_config.hop_ms))
    time = _band_masks(batch, frames, config.time_masks, min(time_width, frames), generator)
    freq = _band_masks(batch, coefficients, config.freq_masks, min(config.freq_mask_bins, coefficients), generator)
    return features.masked_fill((time[:, :, None] | freq[:, None, :]).to(features.device), 0.0)  # drawn on the CPU


def spectral_features(model: torch.nn.Module, audio: torch.Tensor, config: AugmentConfig,
                      feature_config: FeatureConfig, generator: torch.Generator) -> torch.Tensor:
    """The model's normalised features of training audio with SpecAugment masks."""
    return spec_mask(model.features(audio), config, feature_config, generator)


def change_level(audio: torch.Tensor, max_db: float, generator: torch.Generator) -> torch.Tensor:
    """Turn each clip down by a random 0..max_db decibels. [batch, samples] -> same."""
    if max_db <= 0:
        return audio
    return audio * 10 ** (-_uniform(len(audio), max_db, generator) / 20)[:, None]


def perturb(audio: torch.Tensor, config: AugmentConfig, feature_config: FeatureConfig,
            generator: torch.Generator) -> torch.Tensor:
    """Everything but the noise: level, speaking rate, shift. [batch, samples] -> same."""
    audio = change_level(audio, config.level_db, generator)
    audio = change_speed(audio, config.speed_change, generator)
    return time_shift(audio, feature_config.ms_to_samples(config.shift_ms), generator)


def augment_audio(audio: torch.Tensor, noise: torch.Tensor, config: AugmentConfig, feature_config: FeatureConfig,
                  generator: torch.Generator) -> torch.Tensor:
    audio = perturb(audio, config, feature_config, generator)
    return mix_noise(audio, noise, config.noise_probability, config.noise_gain_max, generator)
