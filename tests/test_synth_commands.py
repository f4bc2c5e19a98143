"""Synthetic command clips join training only: validation and testing stay the real recordings."""

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import synth_commands  # noqa: E402
import synth_negatives  # noqa: E402
from kws.data import hash_split, scan  # noqa: E402


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(1600, np.float32), 16000)


def _data(root: Path) -> Path:
    for word in ("yes", "no", "bed"):
        for speaker in ("aaaa1111", "bbbb2222", "cccc3333"):
            _wav(root / word / f"{speaker}_nohash_0.wav")
    _wav(root / "_background_noise_" / "hum.wav")
    (root / "validation_list.txt").write_text("yes/bbbb2222_nohash_0.wav\nno/bbbb2222_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/cccc3333_nohash_0.wav\n")
    return root


def _fake_synthesize(engine, words, per_word, seed, out):
    """What an engine writes: per word, clips of many voices (`synth_negatives.synthesize`'s layout)."""
    for word in words:
        for voice in range(per_word):
            _wav(out / engine / word / f"{engine}v{voice}_nohash_0.wav")
    return {"ok": per_word * len(words), "silent": 0, "long": 0, "failed": 0}


def test_synthetic_voices_join_training_only_and_the_real_splits_stay(tmp_path, monkeypatch, capsys):
    data = _data(tmp_path / "data")
    monkeypatch.setattr(synth_negatives, "synthesize", _fake_synthesize)
    monkeypatch.setattr(synth_negatives, "_engine_available", lambda engine: None)
    out = tmp_path / "plus"
    code = synth_commands.main(["--data", str(data), "--out", str(out), "--per-word", "40",
                                "--engines", "espeak", "--keywords", "yes,no"])
    assert code == 0

    before, after = scan(data), scan(out)
    real = {(c.word, c.path.name, c.split) for c in before.clips}
    added = [c for c in after.clips if (c.word, c.path.name, c.split) not in real]
    assert {(c.word, c.path.name, c.split) for c in after.clips} >= real  # every real clip, in its split
    assert added and all(c.split == "training" and c.word in ("yes", "no") for c in added)
    assert all(c.path.exists() for c in after.clips)  # the links survived the rename into place
    # the voices that hash elsewhere are left out, not moved: 80 made, some of them left out
    synthetic = sorted((out / synth_commands.SYNTHETIC).glob("*/*/*.wav"))
    assert len(synthetic) == 80
    elsewhere = [p for p in synthetic if hash_split(p) != "training"]
    assert elsewhere and len(added) == 80 - len(elsewhere)
    assert f"{len(elsewhere)} more left out" in capsys.readouterr().out
    assert sorted(p.name for p in data.iterdir()) == ["_background_noise_", "bed", "no", "testing_list.txt",
                                                      "validation_list.txt", "yes"]  # --data untouched
    assert not any(p.name.startswith(".plus-") for p in tmp_path.iterdir())


def test_an_existing_out_or_a_missing_keyword_folder_is_refused(tmp_path, capsys):
    data = _data(tmp_path / "data")
    (tmp_path / "taken").mkdir()
    for argv, message in ([["--out", str(tmp_path / "taken"), "--keywords", "yes,no"], "exists"],
                          [["--out", str(tmp_path / "new"), "--keywords", "yes,stop"], "no folder for stop"]):
        with pytest.raises(SystemExit) as exit_:
            synth_commands.main(["--data", str(data), *argv])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
