"""`kws explain`: why a keyword fired on a recording, or did not.

The scores and events are the edge runtime's own (`edge.runtime.Recognizer` at the model's stored settings
and speeds, fed the audio in chunks as a microphone delivers it); the LSTM's gates are stepped by hand from
the same weights in PyTorch, on the audio as the runtime hears it at speed 1, so step i of both ends at
(i + 1) model steps into the recording. `explain` computes an `Explanation`; `summary` and `draw` show it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge.detect import NON_KEYWORDS, Detection, Detector, DetectorSettings
from edge.runtime import Recognizer, check_speeds, read_model_info
from kws.errors import KwsError

CHUNK_S = 0.1  # audio per call of the runtime, as kws.eval_scoring.run_model feeds it
SHOWN_ABOVE = 0.1  # a keyword gets a panel of its own when its step score reaches this anywhere
GATE_NAMES = ("input", "forget", "output")


@dataclass(frozen=True)
class Gates:
    """An LSTM's gates at every step of one stream from a zero state, each averaged over the layer's units."""

    input: np.ndarray  # [steps, layers], in (0, 1)
    forget: np.ndarray  # [steps, layers], in (0, 1)
    output: np.ndarray  # [steps, layers], in (0, 1)
    hidden: np.ndarray  # [steps, hidden_size]: the last layer's output h, as nn.LSTM returns it

    def of(self, name: str) -> np.ndarray:
        """One gate by its name in GATE_NAMES: [steps, layers]."""
        return getattr(self, name)

    def head(self, steps: int) -> Gates:
        """The first `steps` steps."""
        return Gates(*(getattr(self, f.name)[:steps] for f in dataclasses.fields(self)))


def lstm_gates(lstm: nn.LSTM, inputs: torch.Tensor) -> Gates:
    """Step a unidirectional nn.LSTM (no projection) over inputs [steps, input_size], layer by layer, from
    h = c = 0, with its own weights. PyTorch stacks each layer's gate rows as input, forget, cell, output."""
    if lstm.bidirectional or lstm.proj_size:
        raise KwsError("kws explain reads the gates of a one-way LSTM without projection; this model has another")
    means = []  # per layer: [steps, 3] mean of input, forget, output gates
    x = inputs.float()
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
            bias = (getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")) if lstm.bias else 0.0
            projected = x @ w_ih.T + bias  # [steps, 4 * hidden]: the input's share of every step, at once
            h = c = torch.zeros(lstm.hidden_size)
            outputs, gates = [], []
            for t in range(len(x)):
                i, f, g, o = (projected[t] + w_hh @ h).chunk(4)
                i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
                c = f * c + i * g
                h = o * torch.tanh(c)
                outputs.append(h)
                gates.append(torch.stack([i.mean(), f.mean(), o.mean()]))
            x = torch.stack(outputs) if outputs else torch.zeros(0, lstm.hidden_size)  # the next layer's input
            means.append(torch.stack(gates) if gates else torch.zeros(0, 3))
    stacked = torch.stack(means, dim=1).numpy()  # [steps, layers, 3]
    return Gates(stacked[..., 0], stacked[..., 1], stacked[..., 2], x.numpy())


def model_steps(model, heard: np.ndarray) -> tuple[Gates, np.ndarray]:
    """The PyTorch model (kws.model.KeywordLSTM) over `heard` [samples], the audio as the streaming runtime
    hears it at speed 1 (its context of zeros first): (gates, logits [steps, n_labels])."""
    from kws.model import stack_frames

    with torch.no_grad():
        audio = torch.from_numpy(np.ascontiguousarray(heard, np.float32))[None]  # [1, samples]
        features = model.features(audio)  # [1, frames, n_mfcc]
        stacked = stack_frames(features, model.config.frame_stack)[0]  # [steps, frame_stack * n_mfcc]
        gates = lstm_gates(model.lstm, stacked)
        logits = model.head(torch.from_numpy(gates.hidden)).numpy()  # [steps, n_labels]
    return gates, logits


@dataclass(frozen=True)
class Explanation:
    """What the runtime made of one recording, step by step."""

    recording: Path
    model: Path  # the --model: an exported ONNX model or a checkpoint
    audio: np.ndarray  # [samples] the recording at sample_rate, mono float32
    sample_rate: int
    labels: tuple[str, ...]
    settings: DetectorSettings  # the model's stored detection settings
    speeds: tuple[float, ...]  # the speeds the runtime heard it at, their scores averaged
    times_s: np.ndarray  # [steps] end of each model step, seconds from the start; past the end: silence
    step_scores: np.ndarray  # [steps, n_labels] the runtime's class probabilities (Recognizer.scores)
    smoothed: np.ndarray  # [steps, n_labels] each keyword's smoothed score (Step.scores); NaN for non-keywords
    compared_from_s: float  # the detector's average is full, and compared with thresholds, from this step on
    events: tuple[Detection, ...]  # as Recognizer.process and finish report them
    gates: Gates | None  # at speed 1, one row per step of times_s; None without the weights
    note: str = ""  # where the gates come from, or why there are none

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def keywords(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if label not in NON_KEYWORDS)

    def step_score(self, label: str) -> np.ndarray:
        return self.step_scores[:, self.labels.index(label)]

    def smoothed_score(self, label: str) -> np.ndarray:
        return self.smoothed[:, self.labels.index(label)]

    def shown(self, word: str | None = None) -> tuple[str, ...]:
        """The keywords worth a panel: `word`, or each whose step score reaches SHOWN_ABOVE (at least the
        highest one)."""
        if word is not None:
            return (word,)
        peaks = {label: float(self.step_score(label).max(initial=0.0)) for label in self.keywords}
        return tuple(label for label in self.keywords if peaks[label] >= SHOWN_ABOVE) or (max(peaks, key=peaks.get),)


def _sibling_weights(onnx_path: Path) -> tuple[Path | None, str]:
    """The slim checkpoint `kws export` writes beside NAME.onnx (NAME.pt; for NAME.int8.onnx the float one)."""
    name = onnx_path.name.removesuffix(".onnx")
    for stem, note in ((name, ""), (name.removesuffix(".int8"), "gates of the float weights beside the int8 model")):
        path = onnx_path.with_name(stem + ".pt")
        if path.is_file():
            return path, note
    return None, ""


@dataclass(frozen=True)
class LoadedModel:
    """The runtime for a --model, and the PyTorch network for the gates where its weights are at hand."""

    recognizer: Recognizer
    path: Path  # what the user named: an ONNX model or a checkpoint
    network: nn.Module | None  # kws.model.KeywordLSTM with the runtime's weights, or None
    context_samples: int  # zeros the streaming runtime hears before the stream
    note: str = ""  # where the gates come from, or why there are none


def _checkpoint_model(path: Path):
    from kws.checkpoint import load_checkpoint, model_from_checkpoint

    return model_from_checkpoint(load_checkpoint(path), path)  # (model, config, labels)


def _weights_match(model, onnx_path: Path) -> bool:
    from kws.export import weights_id

    return weights_id(model) == read_model_info(onnx_path).weights_id


def _load_checkpoint(path: Path) -> LoadedModel:
    """A .pt checkpoint, run by the model exported beside it if that holds these weights, else by a temporary
    export with the shipped recipe's detection settings (what `kws export` stores by default)."""
    from kws.export import StreamLayout, export_models
    from kws.recipe import default_export_settings

    model, config, labels = _checkpoint_model(path)
    context = StreamLayout.of(config, steps=1).context_samples
    beside = path.with_suffix(".onnx")
    if beside.is_file() and _weights_match(model, beside):
        return LoadedModel(Recognizer.from_onnx(beside), path, model, context, f"scored by {beside}")
    shipped = default_export_settings()
    fields = {f.name for f in dataclasses.fields(DetectorSettings)}
    detection = {key: value for key, value in shipped.items() if key in fields}
    with tempfile.TemporaryDirectory(prefix="kws-explain.") as folder:
        window, _ = export_models(model, config, labels, Path(folder) / "kws.onnx", int(shipped["stream_steps"]),
                                  detection, check_speeds(shipped["speeds"]))
        recognizer = Recognizer.from_onnx(window)  # its sessions are in memory now; the files may go
    return LoadedModel(recognizer, path, model, context, f"no exported model of these weights beside {path.name}: "
                       "scored by a temporary export with the shipped recipe's detection settings")


def load(model_path: str | Path) -> LoadedModel:
    """An exported .onnx model (with NAME.pt beside it for the gates) or a .pt checkpoint."""
    path = Path(model_path)
    if path.suffix not in (".onnx", ".pt"):
        raise KwsError(f"--model {path} is not a model: pass an exported .onnx file (e.g. models/kws.onnx) "
                       "or a .pt checkpoint")
    if not path.is_file():
        raise KwsError(f"model {path} not found; pass --model PATH to an exported .onnx file or a .pt checkpoint")
    if path.suffix == ".pt":
        return _load_checkpoint(path)
    recognizer = Recognizer.from_onnx(path)
    context = int(read_model_info(path).stream.get("context_samples", 0))
    weights, note = _sibling_weights(path)
    if weights is None:
        return LoadedModel(recognizer, path, None, context, f"no gates: {path.with_suffix('.pt').name} (the "
                           f"weights `kws export` writes beside {path.name}) is not there")
    model, _, _ = _checkpoint_model(weights)
    if not _weights_match(model, path):
        return LoadedModel(recognizer, path, None, context,
                           f"no gates: {weights.name} holds other weights than {path.name}")
    return LoadedModel(recognizer, path, model, context, note)


def _tail_s(settings: DetectorSettings) -> float:
    """The silence Recognizer.finish hears after a stream: drawn, so a word at the very end can be seen
    to complete."""
    return (max(settings.average_ms, settings.sustained_ms) + settings.peak_ms) / 1000


def _first_compared_step(recognizer: Recognizer) -> int:
    """Steps after a start before the runtime's detector compares its average with the thresholds."""
    detector = Detector(recognizer.labels, recognizer.settings, recognizer.step_s)
    steps = 0
    while not detector.smoothed_full:
        detector.update(np.zeros(len(recognizer.labels)), 0.0)
        steps += 1
    return steps - 1


def _chunks(audio: np.ndarray, size: int):
    return (audio[start:start + size] for start in range(0, len(audio), size))


def run_runtime(recognizer: Recognizer, audio: np.ndarray, tail_s: float):
    """Two passes of the runtime over `audio` plus `tail_s` of silence, in CHUNK_S chunks: Recognizer.scores
    for the step scores, then Recognizer.steps (and finish) for the smoothed scores and the events.
    -> (times_s [steps], step scores [steps, n_labels], smoothed [steps, n_labels], events)."""
    heard = np.concatenate([audio, np.zeros(round(tail_s * recognizer.sample_rate), np.float32)])
    size = max(1, round(CHUNK_S * recognizer.sample_rate))
    recognizer.reset()
    scored = [step for chunk in _chunks(heard, size) for step in recognizer.scores(chunk)]
    recognizer.reset()
    steps = [step for chunk in _chunks(heard, size) for step in recognizer.steps(chunk)]
    end_s = len(audio) / recognizer.sample_rate
    # As finish() reports a stream that ended with the recording: no event timed after its end.
    events = [d if d.time_s <= end_s else dataclasses.replace(d, time_s=end_s)
              for d in [d for step in steps for d in step.detections] + recognizer.finish()]
    times = np.array([time_s for time_s, _ in scored], np.float64)
    if len(steps) != len(scored) or not np.allclose(times, [step.time_s for step in steps]):
        raise AssertionError("the runtime's two passes over the same audio disagree")  # a runtime bug, not the user's
    smoothed = np.full((len(steps), len(recognizer.labels)), np.nan)
    for row, step in zip(smoothed, steps):
        for label, score in step.scores.items():
            row[recognizer.labels.index(label)] = score
    probabilities = np.array([p for _, p in scored]).reshape(len(scored), len(recognizer.labels))
    return times, probabilities, smoothed, tuple(events)


def explain(recording: str | Path, model_path: str | Path = "models/kws.onnx", word: str | None = None) -> Explanation:
    """Run the model over one recording as the runtime does and, where its weights are at hand, step its
    LSTM to read the gates."""
    from kws.data import load_audio

    recording = Path(recording)
    if not recording.is_file():
        raise KwsError(f"recording {recording} not found; pass a clip or recording (wav, flac, ...)")
    loaded = load(model_path)
    recognizer, note = loaded.recognizer, loaded.note
    if word is not None and (word not in recognizer.labels or word in NON_KEYWORDS):
        keywords = [label for label in recognizer.labels if label not in NON_KEYWORDS]
        raise KwsError(f"--word {word} is not a keyword of {loaded.path}; choose one of {', '.join(keywords)}")
    audio = load_audio(recording, recognizer.sample_rate)
    tail_s = _tail_s(recognizer.settings)
    times, probabilities, smoothed, events = run_runtime(recognizer, audio, tail_s)
    gates = None
    if loaded.network is not None:
        # the runtime's view at speed 1: its lead of silence, the recording, the silence after it
        heard = np.concatenate([np.zeros(loaded.context_samples, np.float32), audio,
                                np.zeros(round(tail_s * recognizer.sample_rate), np.float32)])
        gates, _ = model_steps(loaded.network, heard)
        if len(gates.input) < len(times):
            raise AssertionError(f"{len(gates.input)} LSTM steps for the runtime's {len(times)}")
        gates = gates.head(len(times))
        if not recognizer.streaming:
            note = (note + "; " if note else "") + "no streaming model: the runtime read 1 s windows, the gates " \
                                                   "are those of one continuous stream"
    compared_from = _first_compared_step(recognizer)
    return Explanation(recording, loaded.path, audio, recognizer.sample_rate, recognizer.labels, recognizer.settings,
                       recognizer.speeds, times, probabilities, smoothed,
                       float((compared_from + 1) * recognizer.step_s), events, gates, note)


@dataclass(frozen=True)
class KeywordVerdict:
    """One keyword's highest scores against its threshold, and what that says."""

    label: str
    step_max: float  # highest step score (the runtime's, before smoothing)
    smoothed_max: float  # highest smoothed score where the detector compares it (its average full)
    threshold: float
    fired: bool

    @property
    def reason(self) -> str:
        if self.fired:
            return "fired"
        if self.step_max < self.threshold:
            return "the model never scored it up to the threshold"
        if self.smoothed_max < self.threshold:
            return "the smoothing lost it"
        return "its smoothed score held, but another event or its own earlier one suppressed it"

    def line(self) -> str:
        side = ">=" if self.smoothed_max >= self.threshold else "<"
        return (f"{self.label}: step max {self.step_max:.2f}, smoothed max {self.smoothed_max:.2f} {side} "
                f"{self.threshold:.2f}: {self.reason}")


def verdicts(explanation: Explanation) -> list[KeywordVerdict]:
    compared = explanation.times_s >= explanation.compared_from_s - 1e-9
    fired = {event.label for event in explanation.events}
    return [KeywordVerdict(label, float(explanation.step_score(label).max(initial=0.0)),
                           float(explanation.smoothed_score(label)[compared].max(initial=0.0)),
                           explanation.settings.threshold_of(label), label in fired)
            for label in explanation.keywords]


def summary(explanation: Explanation) -> str:
    """The events, then each keyword's highest scores against its threshold; keywords that came near first."""
    lines = [f"{explanation.recording} ({explanation.seconds:.2f} s), model {explanation.model}, speeds "
             f"{','.join(f'{v:g}' for v in explanation.speeds)}, smoothed over {explanation.settings.average_ms:g} ms "
             f"(compared from {explanation.compared_from_s:.2f} s on)"]
    lines += [f"event {event.label} at {event.time_s:.2f} s, score {event.score:.2f}"
              + (" (it completed in the silence after the end)" if event.time_s >= explanation.seconds - 1e-9 else "")
              for event in explanation.events]
    if not explanation.events:
        lines.append("no events")
    if explanation.settings.sustained_ms > 0:
        lines.append(f"(the sustained rule, {explanation.settings.sustained_threshold:g} over "
                     f"{explanation.settings.sustained_ms:g} ms, can fire too; it is not drawn)")
    ranked = sorted(verdicts(explanation), key=lambda v: (-v.fired, -v.step_max))
    lines += [verdict.line() for verdict in ranked]
    if explanation.note:
        lines.append(explanation.note)
    return "\n".join(lines)


def _draw_waveform(axes, explanation: Explanation, colours: dict) -> None:
    axes.plot(np.arange(len(explanation.audio)) / explanation.sample_rate, explanation.audio, color="0.3",
              linewidth=0.5)
    for event in explanation.events:
        axes.axvline(event.time_s, color=colours[event.label], linewidth=1.5)
        axes.text(event.time_s, 1.02, f" {event.label} {event.score:.2f}", transform=axes.get_xaxis_transform(),
                  color=colours[event.label], fontsize=9, va="bottom")
    axes.set_ylabel("waveform")
    axes.set_title(f"{explanation.recording.name}: model {explanation.model.name}, speeds "
                   f"{','.join(f'{v:g}' for v in explanation.speeds)}"
                   + ("" if explanation.gates is not None else f" ({explanation.note})"), fontsize=10, pad=16)


def _draw_scores(axes, explanation: Explanation, label: str, colour: str) -> None:
    """Step score thin, smoothed score thick, threshold dashed; grey where nothing is compared yet."""
    axes.plot(explanation.times_s, explanation.step_score(label), color=colour, linewidth=0.8, label="step score")
    axes.plot(explanation.times_s, explanation.smoothed_score(label), color=colour, linewidth=2.4,
              label=f"smoothed ({explanation.settings.average_ms:g} ms)")
    axes.axhline(explanation.settings.threshold_of(label), color="black", linestyle="--", linewidth=0.9,
                 label="threshold")
    axes.axvspan(0, explanation.compared_from_s, color="0.85", alpha=0.5, linewidth=0)
    for event in explanation.events:
        if event.label == label:
            axes.plot([event.time_s], [event.score], marker="v", color=colour, markersize=8)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel(label)
    axes.legend(loc="upper left", fontsize=7, ncol=3, frameon=False)


def _draw_gates(axes, times_s: np.ndarray, gates: Gates) -> None:
    """One colour per gate, one line style per layer."""
    for g, name in enumerate(GATE_NAMES):
        for layer in range(gates.input.shape[1]):
            axes.plot(times_s, gates.of(name)[:, layer], color=f"C{g}", linewidth=1.0,
                      linestyle=("-", "--", ":", "-.")[layer % 4], label=f"{name} gate, layer {layer + 1}")
    axes.set_ylim(0, 1)
    axes.set_ylabel("LSTM gates\n(mean of units)")
    axes.legend(loc="upper left", fontsize=7, ncol=len(GATE_NAMES), frameon=False)


def draw(explanation: Explanation, path: str | Path, word: str | None = None) -> Path:
    """One picture: the waveform with the events, a panel per shown keyword, and the gates at speed 1;
    written atomically as PNG. Returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kws.files import atomic_write

    path = Path(path)
    shown = explanation.shown(word)
    ratios = [1.2, *([1.0] * len(shown)), *([1.2] if explanation.gates is not None else [])]
    figure, panels = plt.subplots(len(ratios), 1, figsize=(11, 1.9 * sum(ratios) + 0.6), dpi=100, sharex=True,
                                  squeeze=False, gridspec_kw={"height_ratios": ratios})
    panels = list(panels[:, 0])
    colours = {label: f"C{i % 10}" for i, label in enumerate(explanation.keywords)}
    _draw_waveform(panels[0], explanation, colours)
    for axes, label in zip(panels[1:], shown):
        _draw_scores(axes, explanation, label, colours[label])
    if explanation.gates is not None:
        _draw_gates(panels[-1], explanation.times_s, explanation.gates)
    end_s = max(explanation.seconds, float(explanation.times_s[-1]) if len(explanation.times_s) else 0.0)
    for axes in panels:
        if end_s > explanation.seconds:
            axes.axvspan(explanation.seconds, end_s, color="0.9", linewidth=0, hatch="//", fill=False)
        axes.set_xlim(0, end_s)
    panels[-1].set_xlabel("time, s (grey: the detector's average not yet full; hatched: silence after the end, "
                          "as the runtime hears when a stream ends)")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)
    return path
