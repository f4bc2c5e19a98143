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


def _options(parser):
    """(command, action) for every option and argument of the parser and its subcommands, recursively."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from ((f"{name} {command}".strip(), a) for command, a in _options(subparser))
        elif action.dest != "help":
            yield "", action


def test_every_option_of_every_command_says_what_it_does_and_its_allowed_values():
    """A line that says what the option does (not "(default: X)" alone), the allowed values of an option
    with choices in words, and the default of every optional value."""
    import re

    from kws.cli import build_parser

    parser = build_parser()
    options = list(_options(parser))
    assert len(options) > 60  # every command, so that a new one is checked too
    for command, action in options:
        where = (command, action.option_strings or action.dest)
        text = re.sub(r"\(default: [^)]*\)", "", action.help or "")
        assert len(re.findall(r"[a-zA-Z]{2,}", text)) >= 3, (where, action.help)
        if action.choices:
            assert all(str(choice) in action.help for choice in action.choices), (where, action.help)
        if action.option_strings and action.nargs != 0 and not action.required:
            assert "default" in action.help, (where, action.help)
    for name, subparser in next(a for a in parser._actions if a.dest == "command").choices.items():
        assert subparser.description, name


@pytest.mark.parametrize("flag, allowed", [("--select-by", ["accuracy", "open-set"]),
                                           ("--unknown-weighting", ["clip", "source"])])
def test_the_allowed_values_are_in_help_not_only_in_errors(flag, allowed, tmp_path, capsys):
    from kws.cli import build_parser

    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    (action,) = [a for a in train._actions if flag in a.option_strings]
    assert all(f"'{value}'" in action.help or f" {value} " in f" {action.help} " or f"{value}:" in action.help
               for value in allowed), action.help
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), flag, "nonsense"]) == 2
    refusal = _error(capsys)
    assert all(value in refusal for value in allowed)  # and the one-line refusal names them too
