"""kws train --select-by stream: the stream figure is the runtime's, and it picks best.pt."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from kws.checkpoint import load_checkpoint, model_from_checkpoint
from kws.data import load_split, scan
from kws.eval_scoring import Word, detect, run_model, score_events
from kws.train_selection import (SELECTION_SETTINGS, SelectionStream, build_selection_stream, model_step_scores,
                                 score_stream, step_scores, stream_figure)

from test_other_speech import make_other_speech


class _PlantedLogits(torch.nn.Module):
    """A stand-in model: `_silence_` everywhere, except "yes" (label 2) over the given times."""

    def __init__(self, config, n_labels, yes_s):
        super().__init__()
        self.config, self.n_labels, self.yes_s = config, n_labels, yes_s

    def forward(self, audio):
        f = self.config.features
        step_s = self.config.model.frame_stack * f.hop_samples / f.sample_rate
        steps = f.frames(audio.shape[1]) // self.config.model.frame_stack
        logits = torch.zeros(1, steps, self.n_labels)
        logits[0, :, 0] = 5.0
        times = (torch.arange(steps) + 1) * step_s  # each step's end in the stream (after the silent lead)
        for start, end in self.yes_s:
            logits[0, (times >= start) & (times <= end), 2] = 10.0
        return logits


def test_planted_command_is_a_match_and_planted_detection_in_other_speech_a_false_alarm(tiny_config):
    labels = ("_silence_", "_unknown_", "yes", "no")
    rate = tiny_config.features.sample_rate
    words = [Word("yes", 1.5, 2.0), Word("_unknown_", 5.0, 6.0), Word("no", 8.0, 8.5)]
    stream = SelectionStream(torch.zeros(12 * rate), words, 12.0)
    model = _PlantedLogits(tiny_config, len(labels), [(1.6, 2.6), (5.2, 6.2)])
    score = score_stream(model, stream, labels, tiny_config)
    assert (score.keywords, score.matched, score.wrong, score.false_alarms) == (2, 1, 0, 1)
    assert stream_figure(score) == pytest.approx((1 - 0 - 1) / 2)


def test_max_readout_holds_each_label_s_highest_logit_for_a_clip_s_worth_of_steps(tiny_config):
    from kws.model import clip_steps

    span = clip_steps(tiny_config.features, tiny_config.model)
    logits = torch.zeros(3 * span, 3)
    logits[span, 2] = 8.0  # one step sure of the keyword
    scores = step_scores(logits, ("_silence_", "_unknown_", "yes"), tiny_config, 10.0)
    held = scores.probabilities[:, 2] > 0.9
    assert held.sum() == span and held[span] and held[2 * span - 1] and not held[2 * span]
    step_s = tiny_config.model.frame_stack * tiny_config.features.hop_samples / tiny_config.features.sample_rate
    assert scores.times_s[0] == pytest.approx(step_s)
    last = dataclasses.replace(tiny_config, model=dataclasses.replace(tiny_config.model, readout="last"))
    assert (step_scores(logits, ("_silence_", "_unknown_", "yes"), last, 10.0).probabilities[:, 2] > 0.9).sum() == 1


def test_stream_figure_scores_as_the_exported_runtime_does(tmp_path, tiny_export, tiny_data):
    """The PyTorch model over the selection stream gives the streaming ONNX model's step scores, and the
    same matches and false alarms."""
    checkpoint = tiny_export[1]
    onnx = checkpoint.parent.parent / "models" / "kws.onnx"
    model, config, labels = model_from_checkpoint(load_checkpoint(checkpoint), checkpoint)
    commands = load_split(scan(tiny_data, config.data), "validation", labels[2:], config)
    other = np.random.default_rng(1).normal(0, 0.05, (6, config.features.clip_samples)).astype(np.float32)
    speech = np.random.default_rng(2).normal(0, 0.05, 10 * config.features.sample_rate).astype(np.float32)
    stream = build_selection_stream(commands, labels, config, other, speech, seed=3, minutes=1.0)
    assert sum(w.is_keyword for w in stream.words) > 5 and any(not w.is_keyword for w in stream.words)

    runtime = run_model(onnx, stream.audio.numpy(), progress=False)
    expected = score_events(detect(runtime, SELECTION_SETTINGS), stream.words, stream.seconds)
    score = score_stream(model, stream, labels, config)
    assert (score.matched, score.wrong, score.false_alarms) == (expected.matched, expected.wrong,
                                                                  expected.false_alarms)
    assert score.matched > 0
    ours = model_step_scores(model, stream, labels, config)
    assert len(ours.times_s) == len(runtime.times_s)
    assert np.allclose(ours.times_s, runtime.times_s)
    assert np.abs(ours.probabilities - runtime.probabilities).max() < 1e-4


def test_best_epoch_chosen_by_stream_figure(tmp_path, tiny_data, tiny_config):
    from kws.errors import KwsError
    from kws.train import train

    other = make_other_speech(tmp_path / "other")
    config = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, select_by="stream"))
    lines = []
    train(tiny_data, tmp_path / "run", config, progress=False, echo=lines.append, negatives=(other,))
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    figures = [row["val_stream_figure"] for row in history]
    assert all({"val_stream_matched", "val_stream_wrong", "val_stream_false_alarms"} <= set(row) for row in history)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == 1 + int(np.argmax(figures))
    assert best["best_score"] == pytest.approx(max(figures))
    assert any(line.startswith("selection stream: 20 min") for line in lines)
    assert "stream matched" in lines[-2]
    with pytest.raises(KwsError, match="needs --negatives"):
        train(tiny_data, tmp_path / "run2", config, progress=False, echo=lambda line: None)
