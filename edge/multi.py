"""Several models hearing one stream together (`--model` repeated in edge.listen and edge.serve): each at its
own stored settings, one event per spoken word where two models fire on it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Sequence

from edge.detect import Detection
from edge.errors import EdgeError
from edge.runtime import AudioCheck, Recognizer


@dataclass
class _Held:
    """An event of one of several models, held until it is known whether another model's event beats it."""

    detection: Detection
    model: int  # its model's place among the models given
    kept: bool | None = None  # None: not decided yet
    reported: bool = False

    @property
    def time_s(self) -> float:
        return self.detection.time_s

    @property
    def rank(self) -> tuple[float, int, float]:
        """Higher beats lower: the higher score; on a tie the model given first, then the earlier event."""
        return self.detection.score, -self.model, -self.detection.time_s


def _model_names(paths: Sequence[Path]) -> list[str]:
    """Each model's name in its events: its file's stem, or the path as given where two share a stem."""
    stems = [path.stem for path in paths]
    return [stem if stems.count(stem) == 1 else str(path) for stem, path in zip(stems, paths)]


class MultiRecognizer:
    """Several models hearing one stream together, e.g. the shipped commands and a user's own words; each
    keeps its own settings (threshold, average, speeds...) from its own metadata.

    >>> recognizer = MultiRecognizer.from_onnx(["models/kws.onnx", "lights.onnx"])
    >>> for chunk in chunks:  # mono at recognizer.sample_rate, as Recognizer.process takes
    ...     for detection in recognizer.process(chunk):
    ...         print(detection.model, detection.label, detection.time_s)

    One spoken word gives one event even where two models fire on it: events of two different models
    closer in time than the longer of the two models' suppression times are taken for one word, and only
    the one with the higher score is reported (on a tie, the model given first). Best first: an event is
    reported unless a reported event of another model beats it within that window. Labels may overlap
    between models; `Detection.model` says which model heard each event (None with one model).

    Streaming has a price: an event is held until every other model has heard past it by that window, so it
    comes up to the longest suppression time of the models (`hold_s`; 1 s for the shipped model) later than
    its model alone would report it, or later still where it waits for a better event near it to be
    decided; finish() reports every event still held. With one model nothing is held: the events, and when
    they come, are exactly its Recognizer's. Which events are reported does not depend on how the audio is
    cut into chunks.
    """

    def __init__(self, models: Mapping[str, Recognizer]):
        if not models:
            raise EdgeError("no model to listen with: give at least one")
        self._names, self._recognizers = tuple(models), tuple(models.values())
        if len({id(recognizer) for recognizer in self._recognizers}) < len(self._recognizers):
            raise EdgeError("each model needs a Recognizer of its own (Recognizer.fresh() makes another)")
        rates = {recognizer.sample_rate for recognizer in self._recognizers}
        if len(rates) > 1:
            heard = ", ".join(f"{r.path} at {r.sample_rate} Hz" for r in self._recognizers)
            raise EdgeError(f"models heard together must share a sample rate, not {heard}: export them at one rate")
        suppression_s = [recognizer.settings.suppression_ms / 1000 for recognizer in self._recognizers]
        # [model, model] seconds within which two events of these two models are one word
        self._windows = [[max(mine, theirs) for theirs in suppression_s] for mine in suppression_s]
        self._hold_s = max(suppression_s) if len(suppression_s) > 1 else 0.0
        self._check = AudioCheck()
        self.reset()

    @classmethod
    def from_onnx(cls, paths: Sequence[str | Path], threshold: float | None = None, streaming: bool = True,
                  speeds: tuple[float, ...] | None = None) -> MultiRecognizer:
        """Each model as Recognizer.from_onnx loads it; `threshold` and `speeds`, if given, apply to every
        one. Each is named by its file's stem (its path where two share a stem)."""
        paths = [Path(path) for path in paths]
        for n, path in enumerate(paths):
            if path.resolve() in [other.resolve() for other in paths[:n]]:
                raise EdgeError(f"model {path} is given twice; give each model once")
        return cls({name: Recognizer.from_onnx(path, threshold, streaming=streaming, speeds=speeds)
                    for name, path in zip(_model_names(paths), paths)})

    def fresh(self) -> MultiRecognizer:
        """Another with the same models and settings and its own state (see Recognizer.fresh)."""
        return MultiRecognizer({name: r.fresh() for name, r in zip(self._names, self._recognizers)})

    @property
    def models(self) -> Mapping[str, Recognizer]:
        """Each model's Recognizer by name, to read its settings; fed by this object only."""
        return MappingProxyType(dict(zip(self._names, self._recognizers)))

    @property
    def sample_rate(self) -> int:
        return self._recognizers[0].sample_rate

    @property
    def labels(self) -> tuple[str, ...]:
        """Every model's labels, each once, in the order the models were given."""
        return tuple(dict.fromkeys(label for r in self._recognizers for label in r.labels))

    @property
    def hold_s(self) -> float:
        """The longest an event is held for other models' events: the longest suppression time of the
        models, in seconds; 0 with one model."""
        return self._hold_s

    @property
    def bad_chunks(self) -> int:
        """Chunks that held NaN or infinite samples (each was heard as silence)."""
        return self._check.bad

    @property
    def seconds_heard(self) -> float:
        """Stream time at the end of the audio fed so far (the same for every model)."""
        return self._recognizers[0].seconds_heard

    def reset(self) -> None:
        """Forget all audio heard so far and every event held; time starts again at zero."""
        for recognizer in self._recognizers:
            recognizer.reset()
        self._check.bad = 0
        self._held: list[_Held] = []  # by time: events not reported yet, and those that may still beat one
        # per model: no event of it yet to come is earlier than this (seconds)
        self._horizons = [0.0] * len(self._recognizers)
        self._carrying = [False] * len(self._recognizers)  # an event from before a skip() still to come

    def skip(self, seconds: float) -> None:
        """Audio that was lost: every model's clock moves on and listening starts afresh (Recognizer.skip)."""
        for n, recognizer in enumerate(self._recognizers):
            recognizer.skip(seconds)
            # the event it was waiting on comes with its next step, timed before the gap: the horizon stays
            self._carrying[n] = True

    def process(self, chunk) -> list[Detection]:
        """Feed mono audio at `sample_rate` (as Recognizer.process); returns the events now decided."""
        audio = self._check(chunk)
        for n, recognizer in enumerate(self._recognizers):
            before = recognizer.seconds_processed
            self._hold(n, [d for step in recognizer._steps_of(audio) for d in step.detections])
            self._carrying[n] &= recognizer.seconds_processed == before  # a step came: it brought the event
            if not self._carrying[n]:
                self._horizons[n] = recognizer.seconds_processed  # later events are timed at later steps
        return self._report()

    def finish(self) -> list[Detection]:
        """The stream has ended: every model finishes (Recognizer.finish) and every event still held is
        decided and reported. reset() before another stream."""
        for n, recognizer in enumerate(self._recognizers):
            self._hold(n, recognizer.finish())
        self._horizons = [math.inf] * len(self._recognizers)
        return self._report()

    def _hold(self, model: int, detections: list[Detection]) -> None:
        several = len(self._recognizers) > 1
        self._held += [_Held(dataclasses.replace(d, model=self._names[model]) if several else d, model)
                       for d in detections]
        self._held.sort(key=lambda held: (held.time_s, held.model))  # stable: one model's order stays

    def _report(self) -> list[Detection]:
        """Events decided and kept, in time order: each once, and none before an earlier one is decided."""
        self._decide()
        out = []
        for held in self._held:
            if held.kept is None:
                break
            if held.kept and not held.reported:
                held.reported = True
                out.append(held.detection)
        self._forget()
        return out

    def _rivals(self, one: _Held, other: _Held) -> bool:
        """Whether two events are taken for the same spoken word."""
        return one.model != other.model and abs(one.time_s - other.time_s) < self._windows[one.model][other.model]

    def _decide(self) -> None:
        """Best first, as a stream allows: an event is decided once no event of another model that could be
        its rival is still to come, and every rival that beats it is decided: dropped if one was kept."""
        progress = True
        while progress:
            progress = False
            for held in self._held:
                if held.kept is not None or not all(
                        self._horizons[n] >= held.time_s + self._windows[held.model][n]
                        for n in range(len(self._recognizers)) if n != held.model):
                    continue
                better = [other.kept for other in self._held if self._rivals(other, held) and other.rank > held.rank]
                if True in better or None not in better:
                    held.kept, progress = True not in better, True

    def _forget(self) -> None:
        """Drop events reported or dropped that no event held or yet to come can be a rival of."""
        undecided = [held.time_s for held in self._held if held.kept is None]
        settled_until = min(self._horizons + undecided) - self._hold_s
        self._held = [held for held in self._held
                      if held.kept is None or (held.kept and not held.reported) or held.time_s > settled_until]
