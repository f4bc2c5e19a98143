"""Other speech as negatives: the speaker split, held-out words, and how it joins the training data."""

import csv
import dataclasses
from collections import defaultdict

import numpy as np
import soundfile as sf
import torch

from kws.config import Config, DataConfig
from kws.data import draw_examples, hash_split, held_out_word, load_split, scan
from kws.other_speech import load_clips, loudest_window, scan_other_speech, speech_windows, with_other_speech

from conftest import RATE, make_dataset

WIKI_ARTISTS = [f"Volunteer {i}" for i in range(40)]
WORDS = [f"word{i}" for i in range(60)]
SPEAKERS = [f"{i:08x}" for i in range(0x2000, 0x2000 + 30)]


def _write(path, seconds: float, rng):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, rng.normal(0, 0.1, int(seconds * RATE)).astype(np.float32), RATE, subtype="PCM_16")


def make_other_speech(root, rng=None):
    """A small folder in the layout of ../shared/data/other_speech: every rule of the split is exercised."""
    rng = rng or np.random.default_rng(0)
    for split, speakers in (("training", SPEAKERS[:6]), ("validation", SPEAKERS[6:16])):
        for speaker in speakers:
            _write(root / "librispeech" / split / speaker / f"{speaker}-0.flac", 4.0, rng)
    (root / "wikimedia").mkdir()
    with open(root / "wikimedia" / "CREDITS.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["clip", "word", "commons file", "artist", "licence"])
        for i, word in enumerate(WORDS):
            for artist in (WIKI_ARTISTS[i % 40], WIKI_ARTISTS[(3 * i + 1) % 40]):
                name = f"words/{word}-{artist[-2:].strip()}.flac"
                _write(root / "wikimedia" / name, 1.2, rng)
                writer.writerow([name, word, "File:x.ogg", artist, "CC0"])
    for word in ("on", "off", "dog", *WORDS[:10]):
        for speaker in SPEAKERS[:20]:
            _write(root / "speech_commands_words" / word / f"{speaker}_nohash_0.flac", 1.0, rng)
    for digit in ("zero", "one"):
        for speaker in ("theo", "george", "lucas"):
            _write(root / "fsdd" / digit / f"0_{speaker}_0.flac", 0.6, rng)
    return root


def test_split_keeps_every_held_out_speaker_and_word_out_of_training(tmp_path):
    config = DataConfig()
    recordings = scan_other_speech(make_other_speech(tmp_path / "other"), config)
    assert {r.source for r in recordings} == {"librispeech", "wikimedia", "speech_commands_words", "fsdd"}
    splits_of = defaultdict(set)
    for r in recordings:
        splits_of[(r.source, r.speaker)].add(r.split)
    training_words = {r.word for r in recordings if r.split == "training"}
    # a speaker is held out or trained on, never both (a held-out word moves a training speaker's clip to
    # validation, never the other way)
    for (source, speaker), splits in splits_of.items():
        assert not ({"validation", "testing"} <= splits), (source, speaker)
        if "testing" in splits:
            assert splits == {"testing"}, (source, speaker)
    held_out_speakers = {key for key, splits in splits_of.items() if splits == {"validation"} or splits == {"testing"}}
    assert any(source == "wikimedia" for source, _ in held_out_speakers)
    assert any(source == "speech_commands_words" for source, _ in held_out_speakers)
    for r in recordings:
        if r.split == "training":
            assert (r.source, r.speaker) not in held_out_speakers
            assert not held_out_word(r.word or "", config.held_out_words_percent)
    never_trained = {w for w in WORDS + ["zero", "one", "on", "off", "dog"] if held_out_word(w, 5.0)}
    assert never_trained and not never_trained & training_words
    # sentences: the folder decides; the validation folder's speakers are halved into validation and testing
    libri = {r.speaker: r.split for r in recordings if r.source == "librispeech"}
    assert {libri[s] for s in SPEAKERS[:6]} == {"training"}
    assert {libri[s] for s in SPEAKERS[6:16]} == {"validation", "testing"}
    assert all(r.continuous for r in recordings if r.source == "librispeech")
    assert all(r.word is not None for r in recordings if r.source != "librispeech")
    # the collection's README names FSDD's validation speaker
    fsdd = {(r.speaker, r.word): r.split for r in recordings if r.source == "fsdd"}
    assert fsdd[("theo", "one")] == "validation" and fsdd[("george", "one")] == "training"
    # other words: the same hash of the speaker as the data set's own rule
    for r in recordings:
        if r.source == "speech_commands_words" and not held_out_word(r.word, 5.0):
            assert r.split == hash_split(f"{r.speaker}_nohash_", 20.0, 20.0)


def test_training_clips_are_one_second_each(tmp_path):
    config = Config()
    recordings = scan_other_speech(make_other_speech(tmp_path / "other"), config.data)
    clips = load_clips(recordings, "training", config.features)
    assert clips.waveforms.shape[1] == config.features.clip_samples
    assert len(clips.sources) == len(clips.waveforms)
    # six 4 s training sentences in windows every 0.5 s: 7 each
    assert clips.sources.count("librispeech") == 6 * 7
    assert clips.sources.count("wikimedia") == sum(r.split == "training" and r.source == "wikimedia"
                                                   for r in recordings)


def test_loudest_window_and_speech_windows():
    audio = np.zeros(3 * RATE, np.float32)
    audio[int(1.6 * RATE):int(2.0 * RATE)] = 0.5
    window = loudest_window(audio, RATE, 160)
    assert len(window) == RATE and np.abs(window).sum() == np.abs(audio).sum()
    assert loudest_window(audio[:RATE // 2], RATE, 160).shape == (RATE,)
    windows = speech_windows(audio, RATE, RATE // 2)
    assert len(windows) >= 2 and all(np.abs(w).max() == 0.5 for w in windows)  # silent windows left out
    assert speech_windows(audio[:100], RATE, RATE // 2).shape == (1, RATE)


def test_other_speech_joins_the_unknown_examples(tmp_path, tiny_data):
    config = Config(data=DataConfig(unknown_percent=200))
    audio = load_split(scan(tiny_data), "training", ("yes", "no", "stop"), config)
    recordings = scan_other_speech(make_other_speech(tmp_path / "other"), config.data)
    other = load_clips(recordings, "training", config.features)
    joined = with_other_speech(audio, other, "clip")
    assert len(joined.unknown_indices) == len(audio.unknown_indices) + len(other.sources)
    assert joined.unknown_weights is None
    weighted = with_other_speech(audio, other, "source")
    weights = weighted.unknown_weights[weighted.unknown_indices]
    # every source, the data set's own other words among them, weighs the same in all
    own = len(audio.unknown_indices)
    totals = [float(weights[:own].sum())] + [
        float(weights[own:][torch.tensor([s == source for s in other.sources])].sum())
        for source in sorted(set(other.sources))]
    assert np.allclose(totals, 1.0)
    drawn = draw_examples(weighted, config.data, torch.Generator().manual_seed(0))
    unknown_drawn = drawn[drawn >= 0][weighted.labels[drawn[drawn >= 0]] == 1]
    assert len(set(unknown_drawn.tolist())) == len(unknown_drawn)  # without replacement
    from_fsdd = sum(other.sources[i - len(audio.labels)] == "fsdd" for i in unknown_drawn.tolist()
                    if i >= len(audio.labels))
    assert from_fsdd == sum(s == "fsdd" for s in other.sources)  # the smallest source is drawn whole


def test_held_out_words_of_the_data_set_are_not_trained_on(tmp_path):
    root = make_dataset(tmp_path / "d", clips_per_speaker=1)
    word = next(w for w in (f"w{i}" for i in range(200)) if held_out_word(w, 5.0))
    (root / "happy").rename(root / word)
    listed = (root / "validation_list.txt").read_text().replace("happy/", f"{word}/")
    (root / "validation_list.txt").write_text(listed)
    config = Config()
    training = load_split(scan(root), "training", ("yes", "no", "stop"), config)
    assert len(training.unknown_indices) == 0
    validation = load_split(scan(root), "validation", ("yes", "no", "stop"), config)
    assert len(validation.unknown_indices) > 0


def test_training_with_other_speech_from_the_command_line(tmp_path, tiny_data):
    from kws.checkpoint import load_checkpoint
    from kws.cli import main

    other = make_other_speech(tmp_path / "other")
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--negatives", str(other),
                 "--epochs", "1", "--hidden-size", "8", "--unknown-percent", "50", "--unknown-weighting", "source",
                 "--no-progress"]) == 0
    state = load_checkpoint(tmp_path / "run" / "best.pt")
    assert state["config"]["data"]["unknown_weighting"] == "source"
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "bad"), "--negatives",
                 str(tmp_path / "missing"), "--epochs", "1"]) == 2


def test_best_epoch_chosen_by_open_set_figure(tmp_path, tiny_data, tiny_config):
    import dataclasses
    import json

    import pytest

    from kws.checkpoint import load_checkpoint
    from kws.errors import KwsError
    from kws.train import train

    other = make_other_speech(tmp_path / "other")
    config = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, select_by="open-set"))
    result = train(tiny_data, tmp_path / "run", config, progress=False, echo=lambda line: None, negatives=(other,))
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    scores = [(row["val_accuracy"] + row["val_other_rejected"]) / 2 for row in history]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == 1 + int(np.argmax(scores))
    assert best["best_score"] == pytest.approx(max(scores), abs=1e-4)
    assert result.best_accuracy == pytest.approx(history[best["epoch"] - 1]["val_accuracy"], abs=1e-4)
    with pytest.raises(KwsError, match="needs --negatives"):
        train(tiny_data, tmp_path / "run2", config, progress=False, echo=lambda line: None)
