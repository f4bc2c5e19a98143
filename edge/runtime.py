"""Load an exported model and turn any stream of 16 kHz audio into keyword detections.

Uses the streaming twin of the model when it lies beside the window model: each call then costs one
chunk of audio, not a whole second. The metadata says everything (labels, rates, sizes, defaults); nothing
here is specific to one model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.detect import NON_KEYWORDS, Detection, Detector, DetectorSettings, Step
from edge.errors import EdgeError, Throttled

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ModelInfo:
    """What the ONNX metadata of a window model promises."""

    path: Path
    labels: tuple[str, ...]
    sample_rate: int
    clip_samples: int
    readout: str  # how per-step logits become a clip's logits: "max" over the last clip, or "last"
    stream: dict  # file, context_samples, step_samples, steps, state_shape
    detection: dict  # default DetectorSettings fields chosen for this model
    weights_id: str | None = None  # hash of the weights, the same in the streaming twin
    version: str | None = None  # the exporter's "kws-edge X.Y.Z"
    speeds: tuple[float, ...] = (1.0,)  # the speeds it is heard at (see Recognizer); older exports: one

    @property
    def stream_path(self) -> Path | None:
        path = self.path.with_name(self.stream.get("file", "")) if self.stream.get("file") else None
        return path if path is not None and path.is_file() else None


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1  # one hop of audio is tiny: threads cost more than they give
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EdgeError(f"{path} is not a usable ONNX model ({detail[:200]})") from None


def read_model_info(path: str | Path, session=None) -> ModelInfo:
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.onnx") if not p.name.endswith(".stream.onnx"))
        raise EdgeError(f"model {path} is a folder; pass the .onnx file in it"
                        + (f", e.g. {path / found[0]}" if found else " (it holds none)"))
    if not path.is_file():
        raise EdgeError(f"model {path} not found; pass --model PATH to an exported kws .onnx file")
    session = session or _session(path)
    meta = session.get_modelmeta().custom_metadata_map
    try:
        labels = tuple(json.loads(meta["labels"]))
        info = ModelInfo(path, labels, int(meta["sample_rate"]), int(meta["clip_samples"]),
                         json.loads(meta.get("config", "{}")).get("model", {}).get("readout", "last"),
                         json.loads(meta.get("stream", "{}")), json.loads(meta.get("detection", "{}")),
                         meta.get("weights_id"), meta.get("model_version"),
                         tuple(float(v) for v in json.loads(meta.get("speeds", "[1.0]"))))
    except (KeyError, ValueError, TypeError) as error:
        raise EdgeError(f"{path} lacks kws metadata ({error}); export it with `kws export`") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].shape[-1] != info.clip_samples or len(inputs[0].shape) != 2:
        raise EdgeError(f"{path} takes {[(i.name, i.shape) for i in inputs]}, not audio "
                        f"[batch, {info.clip_samples}]: is it a kws window model?")
    return info


def _check_pair(info: ModelInfo, stream: Path, stream_session) -> None:
    """Refuse a streaming model from another export than its window model (a stale or half-replaced
    pair): both carry the hash of the weights they were exported from."""
    stream_id = stream_session.get_modelmeta().custom_metadata_map.get("weights_id")
    if info.weights_id != stream_id:
        raise EdgeError(f"{stream.name} does not belong to {info.path.name} (weights {stream_id} and "
                        f"{info.weights_id}): they come from different exports; export the model again")


class StreamScorer:
    """The streaming model: carries `context` samples and the LSTM state from call to call. Also what
    `kws export` checks an export with, so that the runtime's own stepping is what it verifies."""

    def __init__(self, session, info: ModelInfo):
        self._session, self._info = session, info
        self._context = int(info.stream["context_samples"])
        self._advance = int(info.stream["step_samples"]) * int(info.stream["steps"])
        self._state_shape = tuple(info.stream["state_shape"])
        self.reset()

    @classmethod
    def from_onnx(cls, window: str | Path, stream: str | Path) -> StreamScorer:
        """The streaming model at `stream`, fed as the metadata of window model `window` says. The pair is
        not checked (Recognizer.from_onnx does): `kws export` compares its numbers with PyTorch instead."""
        return cls(_session(Path(stream)), read_model_info(window))

    def reset(self) -> None:
        self._buffer = np.zeros(self._context, np.float32)  # as if the stream began after silence
        self._h = self._c = np.zeros(self._state_shape, np.float32)

    @property
    def pending_samples(self) -> int:
        """Samples heard but not yet part of a step."""
        return len(self._buffer) - self._context

    def fresh(self) -> StreamScorer:
        return StreamScorer(self._session, self._info)

    def push(self, audio: np.ndarray) -> list[np.ndarray]:
        """New samples in; logits [n_labels] of every LSTM step they complete out."""
        self._buffer = np.concatenate([self._buffer, audio])
        out = []
        while len(self._buffer) >= self._context + self._advance:
            chunk = self._buffer[None, : self._context + self._advance]
            logits, self._h, self._c = self._session.run(
                ["logits", "h_out", "c_out"], {"audio": chunk, "h": self._h, "c": self._c})
            out.extend(logits[0])
            self._buffer = self._buffer[self._advance:]
        return out


class _WindowScorer:
    """Fallback without a streaming model: the window model on the last clip, once per step."""

    def __init__(self, session, info: ModelInfo, step_samples: int):
        self._session, self._info = session, info
        self._clip = info.clip_samples
        self._step = step_samples
        self.reset()

    def reset(self) -> None:
        self._window = np.zeros(self._clip, np.float32)
        self._pending = np.zeros(0, np.float32)

    @property
    def pending_samples(self) -> int:
        return len(self._pending)

    def fresh(self) -> _WindowScorer:
        return _WindowScorer(self._session, self._info, self._step)

    def push(self, audio: np.ndarray) -> list[np.ndarray]:
        self._pending = np.concatenate([self._pending, audio])
        out = []
        while len(self._pending) >= self._step:
            self._window = np.concatenate([self._window[self._step:], self._pending[: self._step]])
            self._pending = self._pending[self._step:]
            out.append(self._session.run(["logits"], {"audio": self._window[None]})[0][0])
        return out


def mono_float32(chunk) -> np.ndarray:
    """A chunk as float32 mono samples. Takes float32/float64 in [-1, 1] or int16 PCM (scaled by 1/32768),
    1-D or with one channel ([n, 1]); refuses anything else rather than guess."""
    audio = np.asarray(chunk)
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if audio.ndim != 1:
        raise EdgeError(f"audio must be mono: a 1-D array of samples (or [n, 1]), not shape {audio.shape}; "
                        "pick or mix the channels first")
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    if audio.dtype in (np.float32, np.float64):
        return audio.astype(np.float32, copy=False)
    raise EdgeError(f"audio must be float32/float64 in [-1, 1] or int16 PCM, not {audio.dtype}")


class AudioCheck:
    """What every chunk goes through once before any model hears it: NaN or infinite samples are heard as
    silence of the same length (counted in `bad`), and float audio far outside [-1, 1] is warned about."""

    def __init__(self):
        self.bad = 0
        self._bad_chunk, self._loud_chunk = Throttled(log), Throttled(log)

    def __call__(self, chunk) -> np.ndarray:
        audio = mono_float32(chunk)
        peak = float(np.abs(audio).max()) if len(audio) else 0.0  # NaN or inf if any sample is
        if not np.isfinite(peak):
            # A glitch, not a reason to stop: heard as silence of the same length, so time stays true.
            self.bad += 1
            self._bad_chunk.warn(f"a chunk of {len(audio)} samples held NaN or infinite values; "
                                 "it was replaced by silence")
            return np.zeros(len(audio), np.float32)
        if peak > 2.0:
            self._loud_chunk.warn(f"float audio should lie in [-1, 1], this chunk peaks at {peak:.4g}: "
                                  "is it integer PCM passed as float?")
        return audio


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


SPEEDS = (0.8, 1.25)  # speeds a stream may be heard at; at 0.75 or 1.33 the shipped model missed a clear command


def check_speeds(speeds) -> tuple[float, ...]:
    """The speeds a stream is heard at, 1 first: a tuple of distinct numbers in SPEEDS that holds 1 (the
    stream as it is, whose steps keep the clock)."""
    shown = ",".join(map(str, speeds)) if isinstance(speeds, (list, tuple)) else str(speeds)
    try:
        values = tuple(float(v) for v in speeds)
    except (TypeError, ValueError):
        raise EdgeError(f"speeds must be numbers, e.g. 1,0.95,1.05, not {shown!r}") from None
    low, high = SPEEDS
    if 1.0 not in values or len(set(values)) != len(values) or not all(low <= v <= high for v in values):
        raise EdgeError(f"speeds must be distinct numbers from {low:g} to {high:g} and include 1 (the stream as it "
                        f"is), e.g. 1,0.95,1.05; not {','.join(f'{v:g}' for v in values)}")
    return (1.0, *(v for v in values if v != 1.0))


class _View:
    """The model hearing the stream at one speed: its scorer, fed the audio as it is or played `speed` times
    as fast (resampled with soxr, which keeps state across chunks and gives the same samples however the
    audio is cut), and the readout of its recent step logits. Its steps come out on the stream's clock."""

    def __init__(self, scorer, speed: float, readout_steps: int, n_labels: int, rate: int, step_s: float):
        self.scorer, self.speed = scorer, speed
        self._ring_shape = (readout_steps, n_labels)
        self._rate, self._step_s = rate, step_s
        self.reset()

    @property
    def pending_samples(self) -> int:
        return self.scorer.pending_samples

    def reset(self) -> None:
        self.scorer.reset()
        self._resampler = None
        if self.speed != 1.0:
            import soxr

            self._resampler = soxr.ResampleStream(self._rate, self._rate / self.speed, 1, dtype="float32")
        self._recent_logits = np.full(self._ring_shape, -np.inf, np.float32)  # a ring; -inf where no step has come yet
        self._steps = 0

    def push(self, audio: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """(seconds since the last reset, class probabilities) of every step this audio completes."""
        if self._resampler is not None:
            audio = self._resampler.resample_chunk(audio)
        out = []
        for logits in self.scorer.push(audio):
            self._steps += 1
            self._recent_logits[self._steps % len(self._recent_logits)] = logits
            # a sample n of audio played `speed` times as fast was heard at n * speed in the stream
            out.append((self._steps * self._step_s * self.speed, _softmax(self._recent_logits.max(axis=0))))
        return out


class Recognizer:
    """Streaming keyword recognizer.

    >>> recognizer = Recognizer.from_onnx("models/kws.onnx")
    >>> for chunk in chunks:  # mono at recognizer.sample_rate, float in [-1, 1] or int16, any length
    ...     for detection in recognizer.process(chunk):
    ...         print(detection.label, detection.time_s)

    Results do not depend on how the audio is cut into chunks: audio is consumed in fixed model steps.
    `time_s` counts every sample fed, and every second passed to `skip()` for audio that was lost, so it
    stays true to the stream.

    With more than one speed (`speeds`, stored in the model by `kws export --speeds`), the model also hears
    the stream played a little slower and faster, and each step's class probabilities are the mean over
    the speeds: like a vote of several models, a word that only one hearing takes for a command scores
    lower, at the cost of one more model pass per speed.
    """

    def __init__(self, info: ModelInfo, scorer, step_samples: int, settings: DetectorSettings,
                 speeds: tuple[float, ...] = (1.0,)):
        self._info = info
        self._step_samples = step_samples
        self._detector = Detector(info.labels, settings, step_samples / info.sample_rate)
        self._keyword_ids = [i for i, label in enumerate(info.labels) if label not in NON_KEYWORDS]
        self._check = AudioCheck()
        clip_steps = info.stream.get("clip_steps") or \
            max(1, (info.clip_samples - int(info.stream.get("context_samples", 0))) // step_samples)  # older exports
        # The window model reads a clip as the max of its step logits; a stream reads the last clip's worth.
        readout_steps = clip_steps if (info.readout == "max" and isinstance(scorer, StreamScorer)) else 1
        speeds = check_speeds(speeds)
        self._views = [_View(scorer if speed == 1.0 else scorer.fresh(), speed, readout_steps, len(info.labels),
                             info.sample_rate, self.step_s) for speed in speeds]
        self.reset()

    @classmethod
    def from_onnx(cls, path: str | Path, threshold: float | None = None, settings: DetectorSettings | None = None,
                  streaming: bool = True, speeds: tuple[float, ...] | None = None) -> Recognizer:
        """Load a window model (and its streaming twin beside it, unless `streaming` is False).
        `threshold` overrides the model's own thresholds, all keywords alike (its sustained rule stays);
        `speeds` the speeds it is heard at ((1,): once, the cheapest)."""
        path = Path(path)
        info = read_model_info(path, None)
        step = int(info.stream.get("step_samples") or info.sample_rate * 30 // 1000)
        if threshold is not None and not 0.0 < threshold <= 1.0:  # the caller's mistake, not the model's
            raise EdgeError(f"a threshold is a score in (0, 1], e.g. 0.65; not {threshold:g}")
        try:
            if settings is None:
                settings = DetectorSettings(**info.detection)
            if threshold is not None:
                settings = settings.with_threshold(threshold)
            settings.check(info.labels, step / info.sample_rate)
        except (ValueError, TypeError) as error:
            raise EdgeError(f"detection settings of {path}: {error}") from None
        stream_path = info.stream_path if streaming else None
        if stream_path is not None:
            session = _session(stream_path)
            _check_pair(info, stream_path, session)
            scorer = StreamScorer(session, info)
        else:
            scorer = _WindowScorer(_session(path), info, step)
        return cls(info, scorer, step, settings, info.speeds if speeds is None else speeds)

    def fresh(self) -> Recognizer:
        """Another recognizer of the same model and settings with its own state, as if just loaded. The
        ONNX sessions are shared (onnxruntime runs them from many threads; all state is in the inputs), so
        one more listener costs kilobytes, not another model in memory."""
        return Recognizer(self._info, self._views[0].scorer.fresh(), self._step_samples, self.settings, self.speeds)

    @property
    def path(self) -> Path:
        """The window model's file."""
        return self._info.path

    @property
    def sample_rate(self) -> int:
        return self._info.sample_rate

    @property
    def labels(self) -> tuple[str, ...]:
        return self._info.labels

    @property
    def model_version(self) -> str | None:
        """Which kws-edge exported the model, from its metadata."""
        return self._info.version

    @property
    def weights_id(self) -> str | None:
        """A hash of the model's weights, from its metadata: it tells one trained model from another."""
        return self._info.weights_id

    @property
    def settings(self) -> DetectorSettings:
        return self._detector.settings

    @property
    def streaming(self) -> bool:
        return isinstance(self._views[0].scorer, StreamScorer)

    @property
    def speeds(self) -> tuple[float, ...]:
        """The speeds the stream is heard at, 1 first."""
        return tuple(view.speed for view in self._views)

    @property
    def step_s(self) -> float:
        """Seconds of audio per model step: the resolution of event times."""
        return self._step_samples / self._info.sample_rate

    @property
    def bad_chunks(self) -> int:
        """Chunks that held NaN or infinite samples (each was heard as silence)."""
        return self._check.bad

    @property
    def seconds_processed(self) -> float:
        """Stream time at the end of the last whole model step: the clock of `Detection.time_s`."""
        return self._skipped_s + self._steps * self._step_samples / self._info.sample_rate

    def reset(self) -> None:
        """Forget all audio heard so far (an event still waiting for its score's peak too); time starts
        again at zero."""
        self._skipped_s = 0.0
        self._check.bad = 0
        self._start_afresh()
        self._carried: list[Detection] = []  # events to report with the next step (see skip)

    def _start_afresh(self) -> None:
        for view in self._views:
            view.reset()
        self._detector.reset()
        self._clock_steps = deque()  # steps of the stream as it is, waiting for the other speeds
        self._other_speeds = [deque() for _ in self._views[1:]]  # their steps not yet matched to the clock's
        self._steps = 0

    def skip(self, seconds: float) -> None:
        """Audio that was lost (a microphone reopened after a failure): the clock moves on by its length
        and listening starts afresh, as after silence, so no word is pieced together across the gap."""
        if not seconds >= 0:
            raise ValueError(f"skip() takes seconds >= 0, not {seconds}")
        waiting = self._detector.flush(self.seconds_processed)  # a word before the gap is not lost in it
        if waiting is not None:
            self._carried.append(waiting)
        self._skipped_s = self.seconds_heard + seconds
        self._start_afresh()

    @property
    def seconds_heard(self) -> float:
        """Stream time at the end of the audio fed so far, whole model steps or not (seconds_processed
        lags it by the audio still waiting for a whole streaming call, and for the other speeds)."""
        pending = len(self._clock_steps) * self._step_samples + self._views[0].pending_samples
        return self.seconds_processed + pending / self._info.sample_rate

    def scores(self, chunk) -> list[tuple[float, np.ndarray]]:
        """(time_s, class probabilities) for every model step this chunk completes, before detection."""
        return self._scores(self._check(chunk))

    def _scores(self, audio: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """scores() of audio already checked."""
        heard = [view.push(audio) for view in self._views]
        self._clock_steps.extend(heard[0])
        for pending, steps in zip(self._other_speeds, heard[1:]):
            pending.extend(steps)
        out = []
        while self._clock_steps:
            time_s, probabilities = self._clock_steps[0]
            reach = time_s + self.step_s / 2 + 1e-6  # half a step on (1 µs more, so rounding decides no tie)
            # A step waits until every other speed has heard past it (its resampler lags by a few
            # milliseconds): then each speed's latest step at this time is known, however the audio was cut.
            if any(not pending or pending[-1][0] <= reach for pending in self._other_speeds):
                break
            self._clock_steps.popleft()
            self._steps += 1
            mean = [probabilities]
            for pending in self._other_speeds:
                while len(pending) > 1 and pending[1][0] <= reach:
                    pending.popleft()
                if pending[0][0] <= reach:
                    mean.append(pending[0][1])
            out.append((self.seconds_processed, mean[0] if len(mean) == 1 else np.mean(mean, axis=0)))
        return out

    def process(self, chunk) -> list[Detection]:
        """Feed mono audio at `sample_rate`, any length: float32/float64 in [-1, 1] or int16 PCM, 1-D or
        [n, 1]. Returns the events it completes. Other shapes and types raise EdgeError."""
        return [detection for step in self.steps(chunk) for detection in step.detections]

    def steps(self, chunk) -> list[Step]:
        """As process(), step by step: every model step the chunk completes, with each keyword's smoothed
        score (what its threshold is compared with) and the events reported at that step."""
        return self._steps_of(self._check(chunk))

    def _steps_of(self, audio: np.ndarray) -> list[Step]:
        """steps() of audio already checked (MultiRecognizer checks a chunk once for all its models)."""
        out = []
        for time_s, probabilities in self._scores(audio):
            detection = self._detector.update(probabilities, time_s)
            detections, self._carried = (*self._carried, *([detection] if detection else [])), []
            smoothed = self._detector.smoothed
            out.append(Step(time_s, {self.labels[i]: float(smoothed[i]) for i in self._keyword_ids}, detections))
        return out

    def finish(self) -> list[Detection]:
        """The stream has ended: hears as much silence as the detector looks back and waits for a peak (1 s
        for the shipped model), so that a word in its last moments fills its average and completes,
        and reports every event that completes or still waits for its score's peak. No event is timed after
        the end of the audio fed (the silence is not part of the stream). reset() before another stream."""
        end_s = self.seconds_heard
        settings = self.settings
        flush_ms = max(settings.average_ms, settings.sustained_ms) + settings.peak_ms
        detections = self.process(np.zeros(round(self.sample_rate * flush_ms / 1000), np.float32)) + self._carried
        waiting = self._detector.flush(self.seconds_processed)
        self._carried = []
        return [d if d.time_s <= end_s else dataclasses.replace(d, time_s=end_s)
                for d in detections + ([waiting] if waiting else [])]
