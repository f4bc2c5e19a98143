"""Every bad input to `kws` ends in a one-line error and exit code 2, without a traceback."""

import pickle

import numpy as np
import pytest
import soundfile as sf

from kws.cli import main

from conftest import make_dataset

FAST = ["--epochs", "1", "--hidden-size", "8", "--batch-size", "32", "--no-progress"]


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("kws: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_data_folder(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")]) == 2
    assert "does not exist" in _error(capsys)


def test_data_folder_without_word_folders(tmp_path, capsys):
    (tmp_path / "data" / "_background_noise_").mkdir(parents=True)
    (tmp_path / "data" / "empty_word").mkdir()
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]) == 2
    assert "no word folders" in _error(capsys)
    assert not (tmp_path / "run").exists()


def test_data_without_any_default_command(tmp_path, capsys):
    (tmp_path / "data" / "marvin").mkdir(parents=True)
    sf.write(tmp_path / "data" / "marvin" / "0000abcd_nohash_0.wav", np.zeros(16000, np.float32), 16000)
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]) == 2
    assert "--keywords" in _error(capsys)


def test_unknown_keyword(tiny_data, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--keywords", "yes,sheila"]) == 2
    assert "sheila" in _error(capsys)


def test_unreadable_files_are_skipped_and_counted(tmp_path, capsys, caplog):
    data = make_dataset(tmp_path / "data", clips_per_speaker=1)
    (data / "yes" / "00001000_nohash_7.wav").write_bytes(b"")
    (data / "no" / "00001001_nohash_7.wav").write_text("not audio")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *FAST]) == 0
    out = capsys.readouterr()
    assert "2 unreadable file(s) skipped" in out.out
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("00001000_nohash_7.wav" in w for w in warnings)
    assert any("00001001_nohash_7.wav" in w for w in warnings)


def test_run_folder_in_use_and_resume_with_another_config(tiny_data, tmp_path, capsys):
    run = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run")]
    assert main([*run, *FAST]) == 0
    capsys.readouterr()
    assert main([*run, *FAST]) == 2
    assert "--resume" in _error(capsys)
    assert main([*run, *FAST, "--resume", "--hidden-size", "16"]) == 2
    assert "model.hidden_size" in _error(capsys)
    # The same settings, or none at all, resume (here: nothing left to do).
    assert main([*run, "--resume", "--no-progress"]) == 0


def test_eval_refuses_files_that_are_not_checkpoints(tiny_data, tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    assert main(["eval", "--checkpoint", str(text), "--data", str(tiny_data)]) == 2
    assert "notes.pt" in _error(capsys)
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.pt"), "--data", str(tiny_data)]) == 2
    assert "does not exist" in _error(capsys)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_crafted_pickle_checkpoint_is_refused(tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "kws-checkpoint-1", "model": _Exploit()}, protocol=2))
    assert main(["eval", "--checkpoint", str(evil), "--data", str(tiny_data)]) == 2
    assert "evil.pt" in _error(capsys)
    assert not (tmp_path / "pwned").exists()


def test_eval_checkpoint_for_other_words(tiny_data, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *FAST]) == 0
    other = tmp_path / "other"
    (other / "yes").mkdir(parents=True)
    sf.write(other / "yes" / "0000abcd_nohash_0.wav", np.zeros(16000, np.float32), 16000)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(other)]) == 2
    assert "no folder" in _error(capsys)


def test_weights_that_do_not_match_their_config(tiny_data, tmp_path, capsys):
    import torch

    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *FAST]) == 0
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    state["config"]["model"]["hidden_size"] = 12
    torch.save(state, tmp_path / "bent.pt")
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "bent.pt"), "--data", str(tiny_data)]) == 2
    assert "do not match" in _error(capsys)


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "(default: 60)" in capsys.readouterr().out
