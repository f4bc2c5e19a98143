"""The stream figure that can pick best.pt (kws train --select-by stream).

Clip accuracy and the share of other speech rejected are read one clip at a time; the product is judged
on a stream. This lays the validation commands out among the validation other words and stretches of
other speech (as `kws eval-open-set` does, in another order), runs the model under training over it at
every epoch, replays the detector with the shipped settings, and scores the events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edge.detect import DetectorSettings
from kws.config import Config, ExportDefaults
from kws.data import SplitAudio
from kws.eval_audio import Piece, build_mixed_stream
from kws.eval_scoring import StepScores, StreamScore, Word, detect, score_events
from kws.export import StreamLayout
from kws.model import KeywordModel, clip_steps, lookback_samples
from kws.train_sequences import window_max

# An epoch is judged by what the runtime would do with it, at the settings `kws export` stores by default.
_RECOMMENDED = ExportDefaults()
SELECTION_SETTINGS = DetectorSettings(threshold=_RECOMMENDED.threshold, average_ms=_RECOMMENDED.average_ms,
                                      suppression_ms=_RECOMMENDED.suppression_ms)
SELECTION_MINUTES = 20.0  # about 200 commands: one command is half a point of the figure


@dataclass(frozen=True)
class SelectionStream:
    audio: torch.Tensor  # [samples] float32
    words: list[Word]
    seconds: float


def build_selection_stream(commands: SplitAudio, labels: tuple[str, ...], config: Config,
                           other_clips: np.ndarray, other_speech: np.ndarray, seed: int,
                           minutes: float = SELECTION_MINUTES) -> SelectionStream:
    """Validation commands with the data set's own other words, `other_clips` [clips, samples] and
    stretches of `other_speech` [samples] between them. `seed` sets the order (a different one than the
    reported measurement's)."""
    others = [Piece("_unknown_", commands.waveforms[i].numpy()) for i in commands.unknown_indices.tolist()]
    others += [Piece("_unknown_", clip) for clip in other_clips]
    speech = [other_speech] if len(other_speech) > 2 * config.features.clip_samples else []
    audio, words = build_mixed_stream(commands, labels, config, 60 * minutes, others, speech, seed=seed)
    return SelectionStream(torch.from_numpy(audio), words, len(audio) / config.features.sample_rate)


def step_scores(step_logits: torch.Tensor, labels: tuple[str, ...], config: Config, seconds: float) -> StepScores:
    """Per-step logits of a whole recording [steps, labels] -> the probabilities the runtime reads (with the
    "max" readout, each label's highest logit over the last clip's worth of steps). Step i ends (i + 1)
    steps into the recording."""
    if config.model.readout == "max":
        step_logits = window_max(step_logits[None], clip_steps(config.features, config.model))[0]
    probabilities = torch.softmax(step_logits, dim=-1).numpy()
    step_s = StreamLayout.of(config, steps=1).step_samples / config.features.sample_rate
    times_s = (np.arange(len(probabilities)) + 1) * step_s
    return StepScores(labels, times_s, probabilities, seconds, SELECTION_SETTINGS, step_s)


def model_step_scores(model: KeywordModel, stream: SelectionStream, labels: tuple[str, ...],
                      config: Config) -> StepScores:
    """The model (in eval mode) over the whole stream in one pass, its LSTM state carried as in the runtime."""
    # As kws.eval_scoring.run_model hears it: the runtime starts as if after silence (a frame's worth of
    # zeros before the first sample puts every step on its grid), and half a second of silence lets a
    # word at the very end finish. The window model adds the zeros its convolutions reach back to itself.
    own_lead = lookback_samples(config.features, config.model)
    lead = torch.zeros(StreamLayout.of(config, steps=1).context_samples - own_lead)
    tail = torch.zeros(config.features.sample_rate // 2)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        logits = model(torch.cat([lead, stream.audio, tail])[None])[0]
    model.train(was_training)
    return step_scores(logits, labels, config, stream.seconds)


def score_stream(model: KeywordModel, stream: SelectionStream, labels: tuple[str, ...],
                 config: Config) -> StreamScore:
    """Matches, wrong labels and false alarms of the runtime with the shipped settings over the stream."""
    scores = model_step_scores(model, stream, labels, config)
    return score_events(detect(scores, SELECTION_SETTINGS), stream.words, stream.seconds)


def stream_figure(score: StreamScore) -> float:
    """Commands matched, less wrong labels and false alarms, per command spoken: a false alarm costs as
    much as a missed command."""
    return (score.matched - score.wrong - score.false_alarms) / max(1, score.keywords)


def stream_figures(model: KeywordModel, stream: SelectionStream, labels: tuple[str, ...], config: Config) -> dict:
    """What an epoch's metrics row records of the stream; `val_stream_figure` picks best.pt."""
    score = score_stream(model, stream, labels, config)
    return {"val_stream_matched": round(score.matched / max(1, score.keywords), 5),
            "val_stream_wrong": round(score.wrong / max(1, score.keywords), 5),
            "val_stream_false_alarms": score.false_alarms, "val_stream_figure": round(stream_figure(score), 5)}


def describe_figures(row: dict) -> str:
    return (f"  stream matched {100 * row['val_stream_matched']:4.1f}% wrong {100 * row['val_stream_wrong']:3.1f}% "
            f"false alarms {row['val_stream_false_alarms']}")
