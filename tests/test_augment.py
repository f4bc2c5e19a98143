import torch

from kws.augment import change_level, mix_noise, spec_mask, time_shift
from kws.config import AugmentConfig, FeatureConfig


def _clicks(batch=8, n=16000):
    audio = torch.zeros(batch, n)
    audio[:, n // 2] = 1.0
    return audio


def test_time_shift_keeps_length_dtype_and_moves_content():
    audio = _clicks()
    shifted = time_shift(audio, 1600, torch.Generator().manual_seed(0))
    assert shifted.shape == audio.shape and shifted.dtype == torch.float32
    positions = shifted.argmax(dim=1)
    assert ((positions - 8000).abs() <= 1600).all()
    assert len(set(positions.tolist())) > 1
    assert torch.equal(shifted.sum(dim=1), torch.ones(8))  # shifted, not lost


def test_mix_noise_keeps_length_dtype_and_range():
    audio = _clicks()
    noise = torch.randn(48000, generator=torch.Generator().manual_seed(0))
    mixed = mix_noise(audio, noise, probability=0.5, gain_max=0.5, generator=torch.Generator().manual_seed(1))
    assert mixed.shape == audio.shape and mixed.dtype == torch.float32
    assert mixed.abs().max() <= 1.0
    noisy = (mixed - audio).abs().sum(dim=1) > 0
    assert 0 < int(noisy.sum()) < 8  # about half the clips get noise


def test_spec_mask_keeps_shape_and_zeroes_bands():
    features = torch.ones(16, 98, 40)
    masked = spec_mask(features, AugmentConfig(), FeatureConfig(), torch.Generator().manual_seed(0))
    assert masked.shape == features.shape and masked.dtype == features.dtype
    zero = masked == 0
    assert zero.any()
    fully_masked_frames = zero.all(dim=2).sum(dim=1)
    assert (fully_masked_frames <= 2 * 10).all()  # two masks of at most 100 ms each
    assert not torch.equal(zero[0], zero[1])  # every clip gets its own masks


def test_change_level_only_turns_clips_down_within_the_range():
    audio = torch.ones(200, 100)
    quieter = change_level(audio, 12.0, torch.Generator().manual_seed(0))
    gains = quieter[:, 0]
    assert torch.equal(quieter, gains[:, None].expand(-1, 100))  # one gain per clip
    assert gains.max() <= 1.0 and gains.min() >= 10 ** (-12 / 20)
    assert gains.max() > 0.9 and gains.min() < 0.3  # it spans the range
    assert torch.equal(change_level(audio, 0.0, torch.Generator()), audio)
