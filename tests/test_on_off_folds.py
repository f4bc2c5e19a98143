"""On/off speaker folds and sources split by speaker: a fold's speakers are never trained on (commands
included) and are the only on/off speakers measured; sentences with ages are reported by age group."""

import csv
import re

import numpy as np
import soundfile as sf

from kws.checkpoint import load_checkpoint
from kws.config import Config, DataConfig, ModelConfig, TrainConfig
from kws.data import load_split, scan, speaker_id
from kws.eval_open_set import _recordings
from kws.other_speech import HELD_OUT, ON_OFF, ON_OFF_FOLDS, on_off_folds, scan_other_speech
from kws.train import train

from conftest import RATE, SPEAKERS, VALIDATION_SPEAKERS, make_dataset

# On/off speakers: six who also said commands in the tiny data set (training speakers), and six who did not.
ON_OFF_SPEAKERS = SPEAKERS[2:8] + [f"{i:08x}" for i in range(0x5000, 0x5006)]


def _write(path, seconds: float, rng):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, rng.normal(0, 0.05, int(seconds * RATE)).astype(np.float32), RATE, subtype="PCM_16")


def _other_speech(root):
    rng = np.random.default_rng(0)
    for speaker in ON_OFF_SPEAKERS:
        for word in ("on", "off", "dog"):
            _write(root / "speech_commands_words" / word / f"{speaker}_nohash_0.wav", 1.0, rng)
    for speaker in (f"{i:08x}" for i in range(0x6000, 0x6010)):  # other words only
        _write(root / "speech_commands_words" / "dog" / f"{speaker}_nohash_1.wav", 1.0, rng)
    # sentences with the speakers' ages, as speechocean762 gives them
    (root / "readers").mkdir()
    with open(root / "readers" / "TRANSCRIPTS.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["clip", "speaker", "age", "gender", "text"])
        for n, age in enumerate([7, 9, 11, 14, 16, 25, 31, 40, 8, 33] * 3):
            speaker = f"READER{n:02d}"
            _write(root / "readers" / speaker / "0.wav", 4.0, rng)
            writer.writerow([f"{speaker}/0.wav", speaker, age, "f", "A SENTENCE"])
    return root


def test_folds_deal_every_on_off_speaker_once_and_hold_one_fold_out_everywhere(tmp_path):
    other = _other_speech(tmp_path / "other")
    plain = scan_other_speech(other)
    folds = on_off_folds(plain)
    assert len(folds) == ON_OFF_FOLDS
    assert sorted(s for fold in folds for s in fold) == sorted(ON_OFF_SPEAKERS)
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    data = make_dataset(tmp_path / "data")
    index = scan(data)
    for k, held in enumerate(folds):
        config = DataConfig(on_off_fold=k, held_out_speakers=held)
        recordings = scan_other_speech(other, config)
        for r in recordings:
            if r.speaker in held:
                assert r.split == HELD_OUT  # every clip of theirs, the other word "dog" too
            elif r.speaker in ON_OFF_SPEAKERS:
                assert r.split == "training"  # the other folds train
        # no speaker in two splits
        splits = {}
        for r in recordings:
            splits.setdefault(r.speaker, set()).add(r.split)
        assert all(len(s) == 1 for s in splits.values())
        # their command clips in the data set are left out of training, and only theirs
        training = load_split(index, "training", ("yes", "no", "stop"), Config(data=config))
        everyone = load_split(index, "training", ("yes", "no", "stop"), Config())
        held_clips = sum(speaker_id(c.path) in held for c in index.clips_of("training"))
        assert held_clips > 0 or not set(held) & set(SPEAKERS)
        assert len(training.labels) == len(everyone.labels) - held_clips
        # what the measurement asks about "on" and "off": the held-out fold's clips, and no others
        model_config = Config(data=config)
        measured = [r for r in _recordings(other, "validation", model_config, ()) if r.word in ON_OFF]
        assert {r.speaker for r in measured} == set(held)
        assert len(measured) == 2 * len(held)


def test_sentences_with_ages_are_split_by_speaker_and_grouped_by_age(tmp_path):
    recordings = [r for r in scan_other_speech(_other_speech(tmp_path / "other")) if r.source == "readers"]
    assert {r.part for r in recordings} == {"readers/children", "readers/teenagers", "readers/adults"}
    ages = {f"READER{n:02d}": age for n, age in enumerate([7, 9, 11, 14, 16, 25, 31, 40, 8, 33] * 3)}
    for r in recordings:
        expected = "children" if ages[r.speaker] <= 12 else "teenagers" if ages[r.speaker] <= 17 else "adults"
        assert r.group == expected and r.continuous
    assert {r.split for r in recordings} == {"training", "validation", "testing"}


def test_training_with_a_fold_stores_its_speakers_and_never_loads_their_clips(tmp_path):
    other = _other_speech(tmp_path / "other")
    data = make_dataset(tmp_path / "data")
    lines = []
    config = Config(model=ModelConfig(hidden_size=8), train=TrainConfig(epochs=1, batch_size=16),
                    data=DataConfig(on_off_fold=2))
    train(data, tmp_path / "run", config, progress=False, echo=lines.append, negatives=(other,))
    stored = Config.from_dict(load_checkpoint(tmp_path / "run" / "last.pt")["config"])
    held = on_off_folds(scan_other_speech(other))[2]
    assert stored.data.held_out_speakers == held and stored.data.on_off_fold == 2
    assert any(line.startswith(f"on/off fold 2 of {ON_OFF_FOLDS}: {len(held)} speakers held out") for line in lines)
    # training clips: the data set's, less the held-out speakers' own; plus the other speech not held out
    index = scan(data)
    own = sum(speaker_id(c.path) not in held for c in index.clips_of("training"))
    assert not set(held) & set(VALIDATION_SPEAKERS)
    reported = next(int(re.match(r"data: (\d+) training", line).group(1)) for line in lines if line.startswith("data:"))
    other_training = next(int(re.search(r": (\d+) training clips", line).group(1)) for line in lines
                          if line.startswith("other speech from"))
    assert reported == own + other_training
