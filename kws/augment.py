"""Batch-wise augmentation for training, and the noise crops that make `_silence_` examples.

Every function takes an explicit torch.Generator so an epoch is reproducible from (seed, epoch) alone:
that is what lets `kws train --resume` give exactly the result of an uninterrupted run.
"""

from __future__ import annotations

import math

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
              generator: torch.Generator, vary: bool = True, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Add background noise at a random level to a random share of the clips (of those `allowed`, [batch] bool)."""
    batch, n = audio.shape
    gains = _uniform(batch, gain_max, generator) * (torch.rand(batch, generator=generator) < probability)
    if allowed is not None:
        gains = gains * allowed
    return (audio + gains[:, None] * noise_crops(noise, batch, n, generator, vary=vary)).clamp(-1.0, 1.0)


def _band_masks(batch: int, size: int, count: int, max_width: int, generator: torch.Generator) -> torch.Tensor:
    """[batch, size] bool, True inside `count` random bands of width 0..max_width per row."""
    keep = torch.zeros(batch, size, dtype=torch.bool)
    positions = torch.arange(size)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (batch, 1), generator=generator)
        start = (torch.rand(batch, 1, generator=generator) * (size - width + 1)).long()
        keep |= (positions >= start) & (positions < start + width)
    return keep


def mel_band_mask(batch: int, config: AugmentConfig, feature_config: FeatureConfig,
                  generator: torch.Generator) -> torch.Tensor | None:
    """[batch, n_mels] bool for the front end's `mel_mask`, or None when no mel masks are asked for."""
    if config.mel_masks == 0:
        return None
    bands = feature_config.n_mels
    return _band_masks(batch, bands, config.mel_masks, min(config.mel_mask_bands, bands), generator)


def vocal_tract_factors(batch: int, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor | None:
    """[batch] warp factors in 1 ± vocal_tract_warp for the front end's `warp`, or None when it is off."""
    if config.vocal_tract_warp == 0:
        return None
    return 1 + (2 * torch.rand(batch, generator=generator) - 1) * config.vocal_tract_warp


def spec_mask(features: torch.Tensor, config: AugmentConfig, feature_config: FeatureConfig,
              generator: torch.Generator) -> torch.Tensor:
    """SpecAugment-style masks on normalised features [batch, frames, n_mfcc]: masked values become 0,
    the training mean."""
    batch, frames, coefficients = features.shape
    time_width = max(0, round(config.time_mask_ms / feature_config.hop_ms))
    time = _band_masks(batch, frames, config.time_masks, min(time_width, frames), generator)
    freq = _band_masks(batch, coefficients, config.freq_masks, min(config.freq_mask_bins, coefficients), generator)
    return features.masked_fill(time[:, :, None] | freq[:, None, :], 0.0)


def spectral_features(model: torch.nn.Module, audio: torch.Tensor, config: AugmentConfig,
                      feature_config: FeatureConfig, generator: torch.Generator) -> torch.Tensor:
    """The model's normalised features of training audio with the spectral augmentations: mel-band masks and
    the vocal tract warp inside the front end, SpecAugment masks on its output."""
    mel_mask = mel_band_mask(len(audio), config, feature_config, generator)
    warp = vocal_tract_factors(len(audio), config, generator)
    return spec_mask(model.features(audio, mel_mask, warp), config, feature_config, generator)


def place_in_context(audio: torch.Tensor, context: int, generator: torch.Generator) -> torch.Tensor:
    """[batch, samples] -> [batch, samples + context]: each clip at a random offset in silence (the
    noise mixed in next fills it)."""
    if context <= 0:
        return audio
    batch, n = audio.shape
    offsets = torch.randint(0, context + 1, (batch,), generator=generator)
    positions = torch.arange(n + context) - offsets[:, None]  # source index of every output sample
    inside = (positions >= 0) & (positions < n)
    return torch.where(inside, audio.gather(1, positions.clamp(0, n - 1)), 0.0)


def change_level(audio: torch.Tensor, max_db: float, generator: torch.Generator) -> torch.Tensor:
    """Turn each clip down by a random 0..max_db decibels. [batch, samples] -> same."""
    if max_db <= 0:
        return audio
    return audio * 10 ** (-_uniform(len(audio), max_db, generator) / 20)[:, None]


def _rms(audio: torch.Tensor) -> torch.Tensor:
    return audio.pow(2).mean(dim=1, keepdim=True).sqrt().clamp(min=1e-8)


def _fft_size(samples: int) -> int:
    """A power of two with room for a filter's response after the clip (no circular wrap): the FFT's
    fastest sizes."""
    return 1 << (samples - 1).bit_length()


def _filtered(clips: torch.Tensor, response_spectrum: torch.Tensor, size: int) -> torch.Tensor:
    """Each clip filtered by its own frequency response ([clips, size // 2 + 1]), same length and RMS."""
    out = torch.fft.irfft(torch.fft.rfft(clips, n=size) * response_spectrum, n=size)[:, : clips.shape[1]]
    return (out * _rms(clips) / _rms(out)).clamp(-1.0, 1.0)


def reverberate(audio: torch.Tensor, probability: float, sample_rate: int,
                generator: torch.Generator) -> torch.Tensor:
    """A random share of the clips as heard in a room: convolved with a synthetic impulse response, the
    direct sound at lag 0 (timing kept) then exponentially decaying noise (RT60 0.2-0.8 s) from 15 dB under
    the direct sound to 5 dB over it (near and far talkers). Each clip keeps its length and RMS level."""
    if probability <= 0:
        return audio
    chosen = torch.rand(len(audio), generator=generator) < probability
    count = int(chosen.sum())
    if count == 0:
        return audio
    clips = audio[chosen]
    lags = torch.arange(1, sample_rate // 2) / sample_rate  # half a second of tail
    rt60 = 0.2 + 0.6 * torch.rand(count, 1, generator=generator)
    tail = torch.randn(count, len(lags), generator=generator) * torch.exp(-3 * math.log(10) * lags / rt60)
    tail_db = -15 + 20 * torch.rand(count, 1, generator=generator)
    tail = tail / tail.norm(dim=1, keepdim=True) * 10 ** (tail_db / 20)
    response = torch.cat([torch.ones(count, 1), tail], dim=1)
    size = _fft_size(clips.shape[1] + response.shape[1])
    out = audio.clone()
    out[chosen] = _filtered(clips, torch.fft.rfft(response, n=size), size)
    return out


def equalise(audio: torch.Tensor, probability: float, sample_rate: int, generator: torch.Generator,
             bands: int = 8, spread_db: float = 6.0) -> torch.Tensor:
    """A random share of the clips as heard through another microphone: gains drawn around 0 dB (standard
    deviation `spread_db`) at `bands` log-spaced frequencies from 100 Hz to Nyquist, linear in
    log-frequency between them. Each clip keeps its length and RMS level."""
    if probability <= 0:
        return audio
    chosen = torch.rand(len(audio), generator=generator) < probability
    count = int(chosen.sum())
    if count == 0:
        return audio
    clips = audio[chosen]
    size = _fft_size(clips.shape[1] + 4096)  # a smooth curve's response is much shorter than 4096 samples
    anchors = torch.linspace(math.log(100.0), math.log(sample_rate / 2), bands)
    log_freqs = torch.fft.rfftfreq(size, 1 / sample_rate).clamp(min=100.0).log().clamp(max=float(anchors[-1]))
    upper = torch.searchsorted(anchors, log_freqs).clamp(1, bands - 1)
    weight = (log_freqs - anchors[upper - 1]) / (anchors[upper] - anchors[upper - 1])
    gains_db = torch.randn(count, bands, generator=generator) * spread_db
    curve_db = gains_db[:, upper - 1] * (1 - weight) + gains_db[:, upper] * weight
    out = audio.clone()
    out[chosen] = _filtered(clips, 10 ** (curve_db / 20), size)
    return out


def room_and_microphone(audio: torch.Tensor, config: AugmentConfig, feature_config: FeatureConfig,
                        generator: torch.Generator) -> torch.Tensor:
    """Everything that reaches the microphone (word and noise) through a room, then the microphone."""
    audio = reverberate(audio, config.reverb_probability, feature_config.sample_rate, generator)
    return equalise(audio, config.eq_probability, feature_config.sample_rate, generator)


def perturb(audio: torch.Tensor, config: AugmentConfig, feature_config: FeatureConfig,
            generator: torch.Generator) -> torch.Tensor:
    """Everything but the noise: level, context, speaking rate, shift. [batch, samples] -> [batch, samples']."""
    audio = change_level(audio, config.level_db, generator)
    audio = place_in_context(audio, feature_config.ms_to_samples(config.context_ms), generator)
    audio = change_speed(audio, config.speed_change, generator)
    return time_shift(audio, feature_config.ms_to_samples(config.shift_ms), generator)


def add_noise(audio: torch.Tensor, noise: torch.Tensor, config: AugmentConfig, generator: torch.Generator,
              speech: torch.Tensor | None = None, negative: torch.Tensor | None = None) -> torch.Tensor:
    """Background noise, then (with `speech_noise_probability`) other speech, never a keyword, quieter
    underneath: commands are spoken while a television or other people talk. `negative` ([batch] bool,
    the clips that hold no command) is where `speech_noise_on="negatives"` allows it."""
    audio = mix_noise(audio, noise, config.noise_probability, config.noise_gain_max, generator)
    if speech is None or config.speech_noise_probability <= 0:
        return audio  # draws nothing, so runs without it repeat exactly
    allowed = negative if config.speech_noise_on == "negatives" else None
    return mix_noise(audio, speech, config.speech_noise_probability, config.speech_noise_gain_max, generator,
                     vary=False, allowed=allowed)


def augment_audio(audio: torch.Tensor, noise: torch.Tensor, config: AugmentConfig,
                  feature_config: FeatureConfig, generator: torch.Generator,
                  speech: torch.Tensor | None = None, negative: torch.Tensor | None = None) -> torch.Tensor:
    mixed = add_noise(perturb(audio, config, feature_config, generator), noise, config, generator, speech, negative)
    return room_and_microphone(mixed, config, feature_config, generator)


def mix_clips(audio: torch.Tensor, labels: torch.Tensor, alpha: float, generator: torch.Generator):
    """Mixup: each clip plus another clip of the batch. Returns the mixed audio, the partner's labels and each
    clip's weight lam of its own label, lam ~ Beta(alpha, alpha). Beta draws take no generator: they use the
    global one, which kws.train seeds from (seed, epoch) as well."""
    partner = torch.randperm(len(labels), generator=generator)
    lam = torch.distributions.Beta(alpha, alpha).sample((len(labels),))
    mixed = lam[:, None] * audio + (1 - lam[:, None]) * audio[partner]
    return mixed, labels[partner], lam
