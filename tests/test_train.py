import dataclasses
import json
import shutil

import pytest
import torch

import kws.train
from kws.checkpoint import load_checkpoint
from kws.errors import KwsError
from kws.evaluate import evaluate_checkpoint
from kws.train import train

from conftest import interrupted_in_epoch


def _quiet(line):
    pass


def test_short_run_lowers_the_loss_and_writes_its_files(tiny_data, tiny_config, tmp_path):
    result = train(tiny_data, tmp_path / "run", tiny_config, progress=False, echo=_quiet)
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert result.best_accuracy == max(row["val_accuracy"] for row in history)
    assert (tmp_path / "run" / "metrics.csv").read_text().startswith("epoch,train_loss")
    state = load_checkpoint(tmp_path / "run" / "best.pt")
    # the default keywords are stored as the words they resolved to
    assert tuple(state["config"]["data"]["keywords"]) == ("yes", "no", "stop")
    assert {**state["config"], "data": {**state["config"]["data"], "keywords": None}} == tiny_config.to_dict()
    assert state["labels"] == ["_silence_", "_unknown_", "yes", "no", "stop"]
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_resume_matches_an_uninterrupted_run(tiny_data, tiny_config, tmp_path, monkeypatch):
    train(tiny_data, tmp_path / "whole", tiny_config, progress=False, echo=_quiet)

    with interrupted_in_epoch(2):
        train(tiny_data, tmp_path / "split", tiny_config, progress=False, echo=_quiet)
    interrupted = load_checkpoint(tmp_path / "split" / "last.pt")
    assert interrupted["epoch"] == 2
    assert interrupted["arithmetic"] == kws.train.arithmetic()
    # resumed on another CPU: the same numbers here, but the log must say the weights will not be
    real_arithmetic = kws.train.arithmetic
    monkeypatch.setattr(kws.train, "arithmetic", lambda *a: {**real_arithmetic(*a), "cpu_kernels": "OTHER"})
    # what a SIGKILL in the middle of saving leaves beside the whole last.pt
    stale = tmp_path / "split" / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    lines = []
    train(tiny_data, tmp_path / "split", tiny_config, resume=True, progress=False, echo=lines.append)
    assert any("resuming after epoch 2" in line for line in lines)
    assert any(line.startswith("warning: epochs 1-2 ran on other arithmetic") for line in lines)
    assert not stale.exists()

    whole, split = (load_checkpoint(tmp_path / name / "last.pt") for name in ("whole", "split"))
    assert split["epoch"] == 3
    for key, value in whole["model"].items():
        assert torch.allclose(value, split["model"][key], atol=1e-6), key
    timed = ("seconds", "examples_per_second")
    drop_time = [{k: v for k, v in row.items() if k not in timed} for row in whole["history"]]
    assert drop_time == [{k: v for k, v in row.items() if k not in timed} for row in split["history"]]


def test_eval_writes_report_and_confusion_matrix(tiny_data, tiny_config, tmp_path):
    train(tiny_data, tmp_path / "run", tiny_config, progress=False, echo=_quiet)
    report, picture = evaluate_checkpoint(tmp_path / "run" / "best.pt", tiny_data, "validation", tmp_path / "out")
    assert picture == tmp_path / "out" / "confusion_validation.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "out" / "eval_validation.json").read_text())
    assert saved["accuracy"] == report.accuracy
    assert sum(map(sum, saved["confusion"])) == report.total == saved["clips"]
    assert set(saved["per_class"]) == {"_silence_", "_unknown_", "yes", "no", "stop"}


def test_fine_tuning_starts_from_the_given_weights(tiny_data, tiny_config, tmp_path, monkeypatch):
    import dataclasses

    from kws.errors import KwsError

    scratch = train(tiny_data, tmp_path / "scratch", tiny_config, progress=False, echo=_quiet)
    lines = []
    train(tiny_data, tmp_path / "tuned", tiny_config, progress=False, echo=lines.append,
          init_from=scratch.run_dir / "best.pt")
    assert any("starting from the weights" in line for line in lines)
    first = [json.loads((tmp_path / name / "metrics.json").read_text())[0] for name in ("scratch", "tuned")]
    assert first[1]["train_loss"] < first[0]["train_loss"]

    # Another dropout is not another network: the weights carry over and the run's own dropout applies.
    start = load_checkpoint(scratch.run_dir / "best.pt")["model"]
    seen = []  # per epoch: (the dropout the model trains with, whether it holds exactly the starting weights)
    train_epoch = kws.train._train_epoch

    def spy(step, *args, **kwargs):  # step: kws.train._Step, the loss of the model it holds
        model = step.model
        same = model.state_dict().keys() == start.keys() and all(
            torch.equal(value, start[name]) for name, value in model.state_dict().items())
        seen.append((model.dropout.p, same))
        return train_epoch(step, *args, **kwargs)

    monkeypatch.setattr(kws.train, "_train_epoch", spy)
    more_dropout = dataclasses.replace(tiny_config, model=dataclasses.replace(tiny_config.model, dropout=0.3))
    train(tiny_data, tmp_path / "regularised", more_dropout, progress=False, echo=_quiet,
          init_from=scratch.run_dir / "best.pt")
    assert seen == [(0.3, True)] + [(0.3, False)] * (tiny_config.train.epochs - 1)
    monkeypatch.undo()
    wider = dataclasses.replace(tiny_config, model=dataclasses.replace(tiny_config.model, hidden_size=32))
    with pytest.raises(KwsError, match="model.hidden_size"):
        train(tiny_data, tmp_path / "wider", wider, progress=False, echo=_quiet, init_from=scratch.run_dir / "best.pt")


def test_other_words_start_from_everything_but_the_heads_new_rows(tiny_data, tiny_config, tmp_path, monkeypatch):
    """A user's own words started from a trained model: front end, normalisation and LSTM carry over, and
    so do the head's rows of the labels both know; the new words' rows start fresh."""
    scratch = train(tiny_data, tmp_path / "scratch", tiny_config, progress=False, echo=_quiet)
    start = load_checkpoint(scratch.run_dir / "best.pt")["model"]
    seen = []
    train_epoch = kws.train._train_epoch
    monkeypatch.setattr(kws.train, "_train_epoch", lambda step, *a: (seen.append(
        {name: value.clone() for name, value in step.model.state_dict().items()}), train_epoch(step, *a))[1])
    other = dataclasses.replace(tiny_config, data=dataclasses.replace(tiny_config.data, keywords=("stop", "yes")),
                                train=dataclasses.replace(tiny_config.train, epochs=1))
    lines = []
    train(tiny_data, tmp_path / "other", other, progress=False, echo=lines.append,
          init_from=scratch.run_dir / "best.pt")
    first = seen[0]  # ["_silence_", "_unknown_", "stop", "yes"] from ["_silence_", "_unknown_", "yes", "no", "stop"]
    assert all(torch.equal(first[name], start[name]) for name in start if not name.startswith("head."))
    for row, old_row in ((0, 0), (1, 1), (2, 4), (3, 2)):
        assert torch.equal(first["head.weight"][row], start["head.weight"][old_row])
    assert any("the head's rows in this run's order" in line for line in lines)  # every label was known
    new = dataclasses.replace(other, data=dataclasses.replace(other.data, keywords=("no", "lights")))
    tiny_data_copy = tmp_path / "data"
    shutil.copytree(tiny_data, tiny_data_copy)
    shutil.copytree(tiny_data_copy / "stop", tiny_data_copy / "lights")  # a word the start model never heard
    seen.clear()
    lines.clear()
    train(tiny_data_copy, tmp_path / "new", new, progress=False, echo=lines.append,
          init_from=scratch.run_dir / "best.pt")
    assert torch.equal(seen[0]["head.weight"][2], start["head.weight"][3])  # "no" kept its row
    assert not torch.equal(seen[0]["head.weight"][3], start["head.weight"][4])  # "lights" starts fresh
    assert any("all but the head's rows for lights" in line for line in lines)
