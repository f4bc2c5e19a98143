import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from kws.config import Config, DataConfig
from kws.data import (draw_examples, epoch_size, fixed_examples, hash_split, labels_for, load_audio, load_split,
                      make_batch, resolve_keywords, scan, speaker_id)
from kws.errors import KwsError

from conftest import SPEAKERS, VALIDATION_SPEAKERS, make_dataset

EXAMPLES = Path(__file__).parent / "data" / "split_examples.txt"


def test_hash_rule_reproduces_official_lists():
    rows = [line.split() for line in EXAMPLES.read_text().splitlines() if line.strip()]
    assert Counter(split for split, _ in rows) == {"validation": 12, "testing": 12, "training": 6}
    for split, name in rows:
        assert hash_split(name) == split, name


def test_speaker_id_is_the_part_before_nohash():
    assert speaker_id("yes/439c84f4_nohash_4.wav") == "439c84f4"


def test_scan_uses_lists_first_and_hash_for_the_rest(tmp_path):
    root = make_dataset(tmp_path / "d", clips_per_speaker=1)
    # A recording that no list names follows the hash rule, like a user's own file would.
    sf.write(root / "yes" / "bfbd0e6b_nohash_9.wav", np.zeros(8000, np.float32), 16000)
    index = scan(root)
    splits = {(c.word, c.path.name): c.split for c in index.clips}
    assert splits[("yes", f"{VALIDATION_SPEAKERS[0]}_nohash_0.wav")] == "validation"
    assert splits[("yes", f"{SPEAKERS[-1]}_nohash_0.wav")] == "training"
    assert splits[("yes", "bfbd0e6b_nohash_9.wav")] == hash_split("bfbd0e6b_nohash_9.wav") == "validation"
    assert index.words == ("happy", "no", "stop", "yes")
    assert len(index.noise_files) == 1


def test_keywords_default_all_and_unknown():
    words = ("bed", "happy", "no", "stop", "yes")
    assert resolve_keywords(None, words) == ("yes", "no", "stop")  # the commands present, in command order
    assert resolve_keywords(("all",), words) == words
    assert resolve_keywords(("happy", "yes"), words) == ("happy", "yes")
    with pytest.raises(KwsError, match="unknown keyword.*sheila"):
        resolve_keywords(("yes", "sheila"), words)
    assert labels_for(("yes",)) == ("_silence_", "_unknown_", "yes")


def test_silence_and_unknown_construction(tiny_data):
    config = Config(data=DataConfig(unknown_percent=25, silence_percent=50))
    index = scan(tiny_data)
    audio = load_split(index, "training", ("yes", "no", "stop"), config)
    assert int((audio.labels == 1).sum()) == 16  # every "happy" clip is _unknown_
    examples = draw_examples(audio, config.data, torch.Generator().manual_seed(1))
    n_keyword = 48
    assert len(examples) == n_keyword + 12 + 24
    assert int((examples < 0).sum()) == 24
    waveforms, labels = make_batch(audio, examples, config, torch.Generator().manual_seed(2))
    assert Counter(labels.tolist()) == {0: 24, 1: 12, 2: 16, 3: 16, 4: 16}
    silence = waveforms[labels == 0]
    assert silence.shape == (24, 16000) and silence.dtype == torch.float32
    # cut from the noise track (std 0.1) at random gain: not digital zeros, never louder than the noise
    assert (silence.std(dim=1) > 0).all()
    assert float(silence.abs().max()) <= float(audio.noise.abs().max()) + 1e-6
    assert len(set(silence.std(dim=1).tolist())) == 24  # random gain per clip


def test_unknown_share_is_redrawn_each_epoch(tiny_data):
    config = Config(data=DataConfig(unknown_percent=10))
    audio = load_split(scan(tiny_data), "training", ("yes", "no", "stop"), config)
    draws = [set(draw_examples(audio, config.data, torch.Generator().manual_seed(s)).tolist()) for s in (1, 2)]
    unknown = set(audio.unknown_indices.tolist())
    assert draws[0] & unknown != draws[1] & unknown


def test_fixed_examples_are_fixed(tiny_data):
    config = Config()
    audio = load_split(scan(tiny_data), "validation", ("yes", "no"), config)
    a, b = fixed_examples(audio, config), fixed_examples(audio, config)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # a model trained with another unknown share is evaluated on the same clips
    other = fixed_examples(audio, Config(data=DataConfig(unknown_percent=60, silence_percent=30)))
    assert torch.equal(a[0], other[0]) and torch.equal(a[1], other[1])


def test_load_audio_resamples_and_mixes_down(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32) * 0.5
    sf.write(tmp_path / "a.wav", stereo, 44100, subtype="PCM_24")
    audio = load_audio(tmp_path / "a.wav", 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) <= 1
    assert 0.2 < float(np.abs(audio).max()) < 0.3  # the two channels are averaged


@pytest.mark.parametrize("subtype, rate", [("PCM_U8", 16000), ("PCM_24", 16000), ("PCM_16", 48000)])
def test_load_audio_reads_8_and_24_bit_and_48khz(tmp_path, subtype, rate):
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / "a.wav", tone, rate, subtype=subtype)
    audio = load_audio(tmp_path / "a.wav", 16000)
    expected = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    assert abs(len(audio) - 16000) <= 1
    assert np.abs(audio[100:15900] - expected[100:15900]).max() < 0.02  # 8 bits: about 1/128 of full scale


def test_a_wav_cut_short_is_refused(tmp_path):
    sf.write(tmp_path / "whole.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    data = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(KwsError, match="cut.wav is truncated"):
        load_audio(tmp_path / "cut.wav", 16000)
    assert load_audio(tmp_path / "whole.wav", 16000).shape == (16000,)


@pytest.mark.parametrize("content", [b"", b"this is not audio\n", b"RIFF\x24\x00\x00\x00WAVEfmt "])
def test_unreadable_audio_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(KwsError, match="bad.wav"):
        load_audio(path, 16000)




def test_a_few_keyword_clips_are_drawn_again_up_to_keyword_examples(tiny_data):
    index, keywords = scan(tiny_data), ("yes", "no", "stop")
    split = load_split(index, "training", keywords, Config())
    n_keyword = len(split.keyword_indices)
    config = DataConfig(keywords=keywords, keyword_examples=5 * n_keyword - 1, unknown_percent=5)
    examples = draw_examples(split, config, torch.Generator().manual_seed(0))
    counts = torch.bincount(examples[examples >= 0], minlength=len(split.labels))
    assert (counts[split.keyword_indices] == 5).all()  # every clip five times: at least the examples asked
    # the other words are a share of the keyword examples, repeats counted (fewer than the clips there are)
    assert int((split.labels[examples[examples >= 0]] == 1).sum()) == math.ceil(0.05 * 5 * n_keyword)
    assert math.ceil(0.05 * 5 * n_keyword) < len(split.unknown_indices)
    assert len(examples) == epoch_size(split, config)
    plain = draw_examples(split, DataConfig(keywords=keywords), torch.Generator().manual_seed(0))
    assert (torch.bincount(plain[plain >= 0], minlength=len(split.labels))[split.keyword_indices] == 1).all()
    with pytest.raises(KwsError, match="keyword_examples"):
        DataConfig(keyword_examples=-1)


def test_a_word_of_few_speakers_in_a_folder_without_lists_is_split_by_clip(tmp_path):
    """`kws record` gives one speaker's takes: by the speaker rule, all of them would land in one split."""
    (tmp_path / "my" / "lights").mkdir(parents=True)
    for n in range(40):
        sf.write(tmp_path / "my" / "lights" / f"alice_nohash_{n}.wav", np.zeros(1600, np.float32), 16000)
    splits = Counter(c.split for c in scan(tmp_path / "my").clips)
    assert splits == {"training": 32, "validation": 4, "testing": 4}
    for n in range(40, 44):  # more takes later: still a tenth validates
        sf.write(tmp_path / "my" / "lights" / f"alice_nohash_{n}.wav", np.zeros(1600, np.float32), 16000)
    more = {c.path.name: c.split for c in scan(tmp_path / "my").clips}
    assert sum(split == "validation" for split in more.values()) == 4
    (tmp_path / "my" / "validation_list.txt").write_text("lights/alice_nohash_0.wav\n")
    listed = [c for c in scan(tmp_path / "my").clips if c.path.stem != "alice_nohash_0"]
    assert len({c.split for c in listed}) == 1  # a folder with lists keeps the speaker rule
