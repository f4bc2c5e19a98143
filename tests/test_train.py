import dataclasses
import json

import pytest
import torch

import kws.train
from kws.augment import mix_clips
from kws.checkpoint import load_checkpoint
from kws.errors import KwsError
from kws.evaluate import evaluate_checkpoint
from kws.train import train


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


@pytest.mark.parametrize("setting", [{"mel_masks": 2}, {"vocal_tract_warp": 0.1}])
def test_spectral_augmentation_trains_both_steps(tiny_data, tiny_config, tmp_path, setting):
    config = dataclasses.replace(tiny_config, augment=dataclasses.replace(tiny_config.augment, **setting),
                                 train=dataclasses.replace(tiny_config.train, epochs=1))
    train(tiny_data, tmp_path / "clips", config, progress=False, echo=_quiet)
    sequences = dataclasses.replace(config, train=dataclasses.replace(config.train, sequence_ms=2000))
    train(tiny_data, tmp_path / "tuned", sequences, progress=False, echo=_quiet)
    stored = load_checkpoint(tmp_path / "tuned" / "best.pt")["config"]["augment"]
    assert {name: stored[name] for name in setting} == setting


def test_mixup_mixes_clips_and_labels_alike_and_trains(tiny_data, tiny_config, tmp_path):
    # clip i is the constant i and has label i, so each mix can be checked against its partner's label
    waveforms, labels = torch.arange(6.0)[:, None].expand(6, 100), torch.arange(6)
    mixed, partner_labels, lam = mix_clips(waveforms, labels, 0.3, torch.Generator().manual_seed(0))
    assert sorted(partner_labels.tolist()) == labels.tolist() and ((lam >= 0) & (lam <= 1)).all()
    expected = lam[:, None] * waveforms + (1 - lam[:, None]) * partner_labels[:, None].float()
    assert torch.allclose(mixed, expected, atol=1e-5)
    config = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, mixup_alpha=0.3))
    train(tiny_data, tmp_path / "mixed", config, progress=False, echo=_quiet)
    assert load_checkpoint(tmp_path / "mixed" / "best.pt")["config"]["train"]["mixup_alpha"] == 0.3
    with pytest.raises(KwsError, match="mixup_alpha"):
        dataclasses.replace(config.train, sequence_ms=2000)


def test_resume_matches_an_uninterrupted_run(tiny_data, tiny_config, tmp_path, monkeypatch):
    train(tiny_data, tmp_path / "whole", tiny_config, progress=False, echo=_quiet)

    real_epoch = kws.train._train_epoch

    def dies_in_third_epoch(*args):
        if args[5] == 2:  # the epoch index
            raise KeyboardInterrupt
        return real_epoch(*args)

    monkeypatch.setattr(kws.train, "_train_epoch", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, tmp_path / "split", tiny_config, progress=False, echo=_quiet)
    interrupted = load_checkpoint(tmp_path / "split" / "last.pt")
    assert interrupted["epoch"] == 2
    assert interrupted["arithmetic"] == kws.train.arithmetic()
    monkeypatch.setattr(kws.train, "_train_epoch", real_epoch)
    # resumed on another CPU: the same numbers here, but the log must say the weights will not be
    real_arithmetic = kws.train.arithmetic
    monkeypatch.setattr(kws.train, "arithmetic", lambda: {**real_arithmetic(), "cpu_kernels": "OTHER"})
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
    drop_time = [{k: v for k, v in row.items() if k != "seconds"} for row in whole["history"]]
    assert drop_time == [{k: v for k, v in row.items() if k != "seconds"} for row in split["history"]]


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

    def spy(model, *args, **kwargs):
        same = model.state_dict().keys() == start.keys() and all(
            torch.equal(value, start[name]) for name, value in model.state_dict().items())
        seen.append((model.dropout.p, same))
        return train_epoch(model, *args, **kwargs)

    monkeypatch.setattr(kws.train, "_train_epoch", spy)
    more_dropout = dataclasses.replace(tiny_config, model=dataclasses.replace(tiny_config.model, dropout=0.3))
    train(tiny_data, tmp_path / "regularised", more_dropout, progress=False, echo=_quiet,
          init_from=scratch.run_dir / "best.pt")
    assert seen == [(0.3, True)] + [(0.3, False)] * (tiny_config.train.epochs - 1)
    monkeypatch.undo()
    wider = dataclasses.replace(tiny_config, model=dataclasses.replace(tiny_config.model, hidden_size=32))
    with pytest.raises(KwsError, match="model.hidden_size"):
        train(tiny_data, tmp_path / "wider", wider, progress=False, echo=_quiet, init_from=scratch.run_dir / "best.pt")
    fewer = dataclasses.replace(tiny_config, data=dataclasses.replace(tiny_config.data, keywords=("yes", "no")))
    with pytest.raises(KwsError, match="same words"):
        train(tiny_data, tmp_path / "fewer", fewer, progress=False, echo=_quiet, init_from=scratch.run_dir / "best.pt")
