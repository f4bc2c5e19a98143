import dataclasses

import pytest
import torch

from kws.augment import (add_noise, change_level, equalise, mel_band_mask, mix_noise, reverberate, spec_mask,
                         time_shift, vocal_tract_factors)
from kws.config import AugmentConfig, FeatureConfig
from kws.errors import KwsError
from kws.features import MfccFrontEnd


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


def test_mel_masks_flatten_bands_before_the_cepstrum_and_nothing_else():
    audio = torch.randn(4, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    front_end = MfccFrontEnd(FeatureConfig())
    assert mel_band_mask(4, AugmentConfig(), FeatureConfig(), torch.Generator()) is None  # off by default
    nothing = torch.zeros(4, FeatureConfig().n_mels, dtype=torch.bool)
    assert torch.allclose(front_end(audio, nothing), front_end(audio), atol=1e-4)  # the same cepstrum

    mask = mel_band_mask(4, AugmentConfig(mel_masks=2, mel_mask_bands=6), FeatureConfig(),
                         torch.Generator().manual_seed(1))
    assert mask.shape == (4, 40) and (mask.sum(dim=1) <= 12).all() and not torch.equal(mask[0], mask[1])
    assert not torch.allclose(front_end(audio, mask), front_end(audio), atol=1e-3)

    log_mel = MfccFrontEnd(dataclasses.replace(FeatureConfig(), front_end="log-mel"))
    plain, masked = log_mel(audio), log_mel(audio, mask)  # [batch, frames, bands]
    assert torch.equal(masked[~mask[:, None, :].expand_as(masked)], plain[~mask[:, None, :].expand_as(plain)])
    row = int(mask.sum(dim=1).argmax())
    band = int(mask[row].nonzero()[0])
    assert torch.allclose(masked[row, :, band], plain[row].mean(dim=1))  # a masked band is the frame's mean


def test_vocal_tract_warp_moves_formants_and_keeps_the_plain_front_end_at_one():
    assert vocal_tract_factors(4, AugmentConfig(), torch.Generator()) is None  # off by default
    factors = vocal_tract_factors(1000, AugmentConfig(vocal_tract_warp=0.1), torch.Generator().manual_seed(0))
    assert 0.9 <= float(factors.min()) < 0.92 and 1.08 < float(factors.max()) <= 1.1

    time = torch.arange(16000) / 16000
    tone = (0.1 * torch.sin(2 * torch.pi * 1000 * time)).expand(3, -1)  # 1 kHz, far under the knee
    log_mel = MfccFrontEnd(dataclasses.replace(FeatureConfig(), front_end="log-mel"))
    plain = log_mel(tone)
    warped = log_mel(tone, warp=torch.tensor([1.0, 0.85, 1.15]))
    assert torch.allclose(warped[0], plain[0], atol=1e-4)  # a factor of 1 changes nothing
    peak = warped.mean(dim=1).argmax(dim=1)  # the loudest band of each clip
    assert int(peak[1]) < int(peak[0]) < int(peak[2])  # a longer vocal tract lowers it, a shorter one raises it

    mfcc = MfccFrontEnd(FeatureConfig())
    assert torch.allclose(mfcc(tone, warp=torch.ones(3)), mfcc(tone), atol=1e-3)


def test_mel_mask_settings_are_checked():
    with pytest.raises(KwsError, match="mel_masks"):
        AugmentConfig(mel_masks=-1)
    with pytest.raises(KwsError, match="vocal_tract_warp"):
        AugmentConfig(vocal_tract_warp=0.5)


def test_speech_underneath_is_off_by_default_and_quieter_than_its_gain_when_on():
    audio = torch.zeros(64, 16000)
    noise = torch.randn(5 * 16000, generator=torch.Generator().manual_seed(1)) * 0.1
    speech = 0.1 * torch.sin(2 * torch.pi * 440 * torch.arange(5 * 16000) / 16000)  # a talker, at 440 Hz
    plain = torch.Generator().manual_seed(3)
    without = add_noise(audio, noise, AugmentConfig(), plain)
    default = torch.Generator().manual_seed(3)
    assert torch.equal(add_noise(audio, noise, AugmentConfig(), default, speech), without)
    assert torch.equal(default.get_state(), plain.get_state())  # nothing drawn: earlier runs repeat

    config = AugmentConfig(noise_probability=0.0, speech_noise_probability=0.5, speech_noise_gain_max=0.2)
    mixed = add_noise(audio, noise, config, torch.Generator().manual_seed(3), speech)
    heard = mixed.abs().amax(dim=1) > 0
    assert 16 < int(heard.sum()) < 48  # about half the clips
    assert (mixed.abs() <= 0.2 * 0.1 + 1e-6).all()
    spectra = torch.fft.rfft(mixed[heard]).abs()  # 1-s clips: 1-Hz bins
    assert (spectra.argmax(dim=1) == 440).all()  # played as it is: not sped up or slowed down like noise

    negative = torch.arange(64) % 2 == 0  # the clips that hold no command
    only = dataclasses.replace(config, speech_noise_probability=1.0, speech_noise_on="negatives")
    mixed = add_noise(audio, noise, only, torch.Generator().manual_seed(3), speech, negative)
    assert (mixed[negative].abs().amax(dim=1) > 0).all() and (mixed[~negative] == 0).all()


def test_speech_underneath_settings_are_checked():
    with pytest.raises(KwsError, match="speech_noise_probability"):
        AugmentConfig(speech_noise_probability=1.5)
    with pytest.raises(KwsError, match="speech_noise_gain_max"):
        AugmentConfig(speech_noise_gain_max=-0.1)
    with pytest.raises(KwsError, match="speech_noise_on"):
        AugmentConfig(speech_noise_on="commands")


def test_place_in_context_keeps_the_clip_whole_at_random_offsets():
    from kws.augment import place_in_context

    audio = torch.rand(16, 1000) + 0.5  # no zeros inside a clip
    placed = place_in_context(audio, 300, torch.Generator().manual_seed(0))
    assert placed.shape == (16, 1300) and placed.dtype == torch.float32
    starts = (placed != 0).float().argmax(dim=1)
    assert len(set(starts.tolist())) > 1 and int(starts.max()) <= 300
    for row, start in zip(range(16), starts.tolist()):
        assert torch.equal(placed[row, start:start + 1000], audio[row])
    assert torch.equal(place_in_context(audio, 0, torch.Generator()), audio)


def test_change_level_only_turns_clips_down_within_the_range():
    audio = torch.ones(200, 100)
    quieter = change_level(audio, 12.0, torch.Generator().manual_seed(0))
    gains = quieter[:, 0]
    assert torch.equal(quieter, gains[:, None].expand(-1, 100))  # one gain per clip
    assert gains.max() <= 1.0 and gains.min() >= 10 ** (-12 / 20)
    assert gains.max() > 0.9 and gains.min() < 0.3  # it spans the range
    assert torch.equal(change_level(audio, 0.0, torch.Generator()), audio)


def test_reverberate_keeps_timing_and_level_and_adds_a_decaying_tail():
    audio = _clicks(batch=64)
    heard = reverberate(audio, 0.5, 16000, torch.Generator().manual_seed(0))
    assert heard.shape == audio.shape and heard.dtype == torch.float32
    changed = (heard != audio).any(dim=1)
    assert 10 < int(changed.sum()) < 54  # about half the clips
    rooms = heard[changed]
    assert (rooms.abs().argmax(dim=1) == 8000).all()  # the direct sound stays the loudest, where it was
    assert torch.allclose(rooms.pow(2).mean(dim=1), audio[changed].pow(2).mean(dim=1), rtol=1e-3)
    assert rooms[:, :8000].abs().max() < 1e-6  # nothing before the sound
    early = rooms[:, 8001:9601].pow(2).sum(dim=1)
    late = rooms[:, 14400:16000].pow(2).sum(dim=1)
    assert (early > 0).all() and (late < early).all()


def test_equalise_changes_the_balance_of_frequencies_and_keeps_the_level():
    t = torch.arange(16000) / 16000
    tones = torch.sin(2 * torch.pi * 200 * t) + torch.sin(2 * torch.pi * 4000 * t)
    audio = (0.3 * tones).repeat(32, 1)
    heard = equalise(audio, 1.0, 16000, torch.Generator().manual_seed(0))
    assert heard.shape == audio.shape and heard.dtype == torch.float32
    assert torch.allclose(heard.pow(2).mean(dim=1), audio.pow(2).mean(dim=1), rtol=1e-3)
    spectrum = torch.fft.rfft(heard).abs()
    low_over_high = spectrum[:, 200] / spectrum[:, 4000]  # 1 Hz bins
    assert low_over_high.min() < 0.7 and low_over_high.max() > 1.4  # microphones differ, both ways


def test_room_and_microphone_at_zero_probability_change_nothing_and_draw_nothing():
    audio = _clicks()
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert reverberate(audio, 0.0, 16000, generator) is audio
    assert equalise(audio, 0.0, 16000, generator) is audio
    assert torch.equal(generator.get_state(), state)  # runs without them reproduce the runs before them
