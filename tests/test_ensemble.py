"""`kws combine`: models trained apart, averaged at every step, exported and streamed as one model."""

import dataclasses

import numpy as np
import pytest
import torch

from edge.runtime import Recognizer, read_model_info
from kws.checkpoint import combine_checkpoints, load_checkpoint, model_from_checkpoint
from kws.cli import main
from kws.errors import KwsError
from kws.export import export_checkpoint
from kws.model import KeywordEnsemble, clip_steps
from kws.train import train

from conftest import tone_stream


@pytest.fixture(scope="module")
def members(tmp_path_factory, tiny_data):
    """Two tiny models of one network, seeds 0 and 1, and one with another hidden size."""
    from kws.config import Config, ModelConfig, TrainConfig

    root = tmp_path_factory.mktemp("members")
    config = Config(model=ModelConfig(hidden_size=24, dropout=0.0),
                    train=TrainConfig(epochs=3, batch_size=16, learning_rate=1e-2, warmup_epochs=0.5))
    paths = []
    for name, seed, hidden in (("a", 0, 24), ("b", 1, 24), ("wide", 2, 32)):
        member = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed),
                                     model=dataclasses.replace(config.model, hidden_size=hidden))
        train(tiny_data, root / name, member, progress=False, echo=lambda line: None)
        paths.append(root / name / "best.pt")
    return paths


def test_the_ensemble_averages_its_members_logits_at_every_step(members, tmp_path):
    a, b, _ = members
    combine_checkpoints([a, b], tmp_path / "ensemble.pt")
    loaded, loaded_config, labels = model_from_checkpoint(load_checkpoint(tmp_path / "ensemble.pt"))
    assert isinstance(loaded, KeywordEnsemble) and loaded_config.model.members == 2
    models = [model_from_checkpoint(load_checkpoint(path))[0] for path in (a, b)]
    assert loaded.parameter_count == sum(m.parameter_count for m in models)
    audio = torch.from_numpy(tone_stream([("yes", 0.3), ("stop", 1.2)], 2.0)[0])[None]
    with torch.no_grad():
        expected = torch.stack([m(audio) for m in models]).mean(0)
        assert torch.allclose(loaded(audio), expected, atol=1e-5)
        # a step's average is not either member's: they disagree somewhere on this audio
        assert not torch.allclose(expected, models[0](audio), atol=1e-3)


def test_an_exported_ensemble_streams_in_the_runtime_as_pytorch_computes_it(members, tiny_data, tmp_path):
    a, b, _ = members
    combine_checkpoints([a, b], tmp_path / "ensemble.pt")
    report = export_checkpoint(tmp_path / "ensemble.pt", tmp_path / "model" / "kws.onnx", tiny_data)
    assert report.parity.ok  # window and streaming ONNX against PyTorch, on clips
    recognizer = Recognizer.from_onnx(report.window)
    assert recognizer.streaming
    # two layers; both members' 24 units side by side
    assert read_model_info(report.window).stream["state_shape"] == [2, 1, 48]
    audio, _ = tone_stream([("yes", 0.5), ("stop", 2.0)], 3.0)
    steps = [p for chunk in np.array_split(audio, 7) for _, p in recognizer.scores(chunk)]
    ensemble, config, _ = model_from_checkpoint(load_checkpoint(tmp_path / "ensemble.pt"))
    context = read_model_info(report.window).stream["context_samples"]  # the runtime starts after silence
    with torch.no_grad():
        frames = ensemble(torch.from_numpy(np.concatenate([np.zeros(context, np.float32), audio]))[None])[0]
    # the runtime reads a clip as the max of its step logits, over the last second, as the window model does
    window = clip_steps(config.features, config.model)
    for i in (window, len(steps) - 1):
        expected = frames[i - window + 1: i + 1].amax(0).softmax(-1).numpy()
        assert np.abs(steps[i] - expected).max() < 1e-3


def test_combine_refuses_what_is_not_one_network(members, tmp_path, capsys):
    a, b, wide = members
    with pytest.raises(KwsError, match="hidden_size differ"):
        combine_checkpoints([a, wide], tmp_path / "e.pt")
    with pytest.raises(KwsError, match="at least two"):
        combine_checkpoints([a], tmp_path / "e.pt")
    combine_checkpoints([a, b], tmp_path / "e.pt")
    with pytest.raises(KwsError, match="ensemble already"):
        combine_checkpoints([tmp_path / "e.pt", a], tmp_path / "e2.pt")
    assert not (tmp_path / "e2.pt").exists()
    assert main(["combine", str(a), str(tmp_path / "missing.pt"), "--out", str(tmp_path / "e3.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "e3.pt").exists()


def test_combine_on_the_command_line_and_no_fine_tuning_of_an_ensemble(members, tiny_data, tmp_path, capsys):
    a, b, _ = members
    assert main(["combine", str(a), str(b), "--out", str(tmp_path / "e.pt")]) == 0
    assert "2 members" in capsys.readouterr().out
    code = main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--hidden-size", "24",
                 "--epochs", "1", "--init-from", str(tmp_path / "e.pt"), "--no-progress"])
    assert code == 2 and "is an ensemble of 2 models" in capsys.readouterr().err
