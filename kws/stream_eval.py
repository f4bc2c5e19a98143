"""`kws eval-stream` and `kws calibrate`: the edge runtime on long audio, scored against its truth.

The audio goes through `edge.runtime.Recognizer` exactly as in `edge.listen`; the per-step scores are kept,
so the detector can be replayed at many thresholds for the price of one pass of the model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.detect import NON_KEYWORDS, Detector, DetectorSettings
from edge.runtime import Recognizer
from kws.streams import LabelScore, StreamScore, Word, score_events

# Thresholds the calibration tries, and those a DET curve shows (above 0.95 a word's score can dip under
# the threshold and come back within one word, and the curve then shows those second events).
THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.20, 0.991, 0.01), 2))
DET_THRESHOLDS = tuple(t for t in THRESHOLDS if t <= 0.95)


@dataclass(frozen=True)
class StepScores:
    """What the runtime said about a recording, before detection."""

    labels: tuple[str, ...]
    times_s: np.ndarray  # [steps], the end of each model step
    probabilities: np.ndarray  # [steps, n_labels]
    seconds: float  # length of the recording
    settings: DetectorSettings  # the model's own detection settings

    @property
    def keywords(self) -> list[str]:
        return [label for label in self.labels if label not in NON_KEYWORDS]


def run_model(model: str | Path, audio: np.ndarray, progress: bool = True, streaming: bool = True) -> StepScores:
    """One pass of the edge runtime over `audio` (float32 at the model's rate), in 0.1 s chunks as a
    microphone would deliver them, plus half a second of silence so a word at the very end can finish."""
    recognizer = Recognizer.from_onnx(model, streaming=streaming)
    chunk = recognizer.sample_rate // 10
    padded = np.concatenate([audio, np.zeros(recognizer.sample_rate // 2, np.float32)])
    times, probabilities = [], []
    for start in tqdm(range(0, len(padded), chunk), desc="scoring", unit="chunk", disable=not progress,
                      leave=False):
        for time_s, p in recognizer.scores(padded[start:start + chunk]):
            times.append(time_s)
            probabilities.append(p)
    return StepScores(recognizer.labels, np.array(times), np.array(probabilities),
                      len(audio) / recognizer.sample_rate, recognizer.settings)


def detect(scores: StepScores, settings: DetectorSettings) -> list[tuple[str, float]]:
    """(label, time_s) of every event the detector gives on these scores."""
    detector = Detector(scores.labels, settings)
    events = []
    for time_s, p in zip(scores.times_s, scores.probabilities):
        detection = detector.update(p, float(time_s))
        if detection is not None:
            events.append((detection.label, detection.time_s))
    return events


def sweep(scores: StepScores, words: list[Word], thresholds) -> list[StreamScore]:
    """The detector replayed once per threshold, the same one for every keyword."""
    return [score_events(detect(scores, scores.settings.with_threshold(t)), words, scores.seconds) for t in thresholds]


def describe(settings: DetectorSettings) -> str:
    """The detection settings in a few words, for reports and plot titles."""
    text = f"threshold {settings.threshold:g} on a {settings.average_ms:.0f} ms average"
    if settings.thresholds:
        text += " (or per keyword)"
    if settings.sustained_ms:
        text += f", or {settings.sustained_threshold:g} on {settings.sustained_ms:.0f} ms"
    return text + f", events {settings.suppression_ms:.0f} ms apart"


def det_points(scores: StepScores, words: list[Word], thresholds=DET_THRESHOLDS) -> dict[str, list[dict]]:
    """Per keyword, across thresholds: miss rate (a wrong label counts as a miss) and its false alarms
    per hour. Also "all" for the whole set."""
    curves: dict[str, list[dict]] = {label: [] for label in [*scores.keywords, "all"]}
    for threshold, result in zip(thresholds, sweep(scores, words, thresholds)):
        for label in scores.keywords:
            part = result.per_label.get(label)
            spoken = part.spoken if part else 0
            curves[label].append({
                "threshold": threshold,
                "miss_rate": (spoken - part.matched) / spoken if spoken else None,
                "false_alarms_per_hour": (part.false_alarms if part else 0) / result.hours})
        curves["all"].append({"threshold": threshold,
                              "miss_rate": (result.keywords - result.matched) / max(1, result.keywords),
                              "false_alarms_per_hour": result.false_alarms_per_hour})
    return curves


def calibrate(negatives: StepScores, budget_per_hour: float, thresholds=THRESHOLDS) -> dict[str, float]:
    """Per-keyword thresholds, as low as they can be (fewest misses) while all keywords together fire
    at most `budget_per_hour` times per hour on `negatives`, audio in which no keyword is spoken.

    From one sweep of a common threshold: each keyword starts at the lowest threshold where its own false
    alarms stay within an equal share of the budget; what the shares leave unspent goes, one step at a
    time, to the keyword whose threshold is highest. A replay with the chosen thresholds then checks the
    total, and while it is over budget the keyword with the most false alarms moves up one step."""
    allowed = budget_per_hour * negatives.seconds / 3600  # false alarms the budget permits on this audio
    results = sweep(negatives, [], thresholds)
    counts = {label: [r.per_label[label].false_alarms if label in r.per_label else 0 for r in results]
              for label in negatives.keywords}  # [label][threshold index] -> false alarms
    share = allowed / len(negatives.keywords)
    position = {label: next((i for i, n in enumerate(counts[label]) if n <= share), len(thresholds) - 1)
                for label in negatives.keywords}
    while True:
        total = sum(counts[label][i] for label, i in position.items())
        lowerable = [label for label, i in position.items()
                     if i > 0 and total - counts[label][i] + counts[label][i - 1] <= allowed]
        if not lowerable:
            break
        position[max(lowerable, key=lambda label: position[label])] -= 1
    while True:
        chosen = {label: thresholds[i] for label, i in position.items()}
        result = score_events(detect(negatives, dataclasses.replace(negatives.settings, thresholds=chosen)), [],
                              negatives.seconds)
        movable = [label for label in chosen if position[label] < len(thresholds) - 1]
        if result.false_alarms <= allowed or not movable:
            return chosen
        position[max(movable, key=lambda label: result.per_label[label].false_alarms
                     if label in result.per_label else -1)] += 1


def report(result: StreamScore, settings: DetectorSettings, keywords: list[str]) -> dict:
    """JSON-ready figures: overall and per keyword, in the model's label order."""
    def latency(values) -> dict:
        if not values:
            return {"median_s": None, "p90_s": None}
        return {"median_s": round(float(np.median(values)), 3), "p90_s": round(float(np.percentile(values, 90)), 3)}

    def rates(spoken, matched, wrong, false_alarms) -> dict:
        return {"spoken": spoken, "matched": matched, "wrong": wrong, "missed": spoken - matched - wrong,
                "matched_percent": round(100 * matched / spoken, 2) if spoken else None,
                "wrong_percent": round(100 * wrong / spoken, 2) if spoken else None,
                "false_alarms": false_alarms,
                "false_alarms_per_hour": round(false_alarms / result.hours, 2)}

    return {
        "hours": round(result.hours, 4),
        "settings": {**dataclasses.asdict(settings), "thresholds": dict(settings.thresholds or {})},
        "overall": {**rates(result.keywords, result.matched, result.wrong, result.false_alarms),
                    "latency": latency(result.latencies_s)},
        "per_keyword": {label: {**rates(s.spoken, s.matched, s.wrong, s.false_alarms),
                                "threshold": settings.threshold_of(label), "latency": latency(s.latencies_s)}
                        for label, s in ((k, result.per_label.get(k, LabelScore())) for k in keywords)},
    }


def table(figures: dict) -> str:
    """The report as a short text table."""
    def pct(value) -> str:
        return "-" if value is None else f"{value:.1f}%"

    def secs(value) -> str:
        return "-" if value is None else f"{value:+.2f}"

    lines = [f"{'keyword':<10} {'thr':>5} {'spoken':>6} {'matched':>8} {'wrong':>6} {'FA/h':>6} "
             f"{'latency median / p90 s':>23}"]
    rows = [*figures["per_keyword"].items(), ("all", figures["overall"])]
    for label, row in rows:
        threshold = f"{row['threshold']:.2f}" if "threshold" in row else ""
        lines.append(f"{label:<10} {threshold:>5} {row['spoken']:>6} {pct(row['matched_percent']):>8} "
                     f"{pct(row['wrong_percent']):>6} {row['false_alarms_per_hour']:>6.1f} "
                     f"{secs(row['latency']['median_s']):>11} / {secs(row['latency']['p90_s'])}")
    return "\n".join(lines)


def save_json(path: Path, figures: dict) -> None:
    from kws.checkpoint import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(figures, indent=2)))


def plot_det(path: Path, curves: dict[str, list[dict]], title: str) -> None:
    """Miss rate against false alarms per hour across thresholds: one small panel per keyword, each with
    the whole set's curve in grey behind it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kws.checkpoint import atomic_write

    def draw(axes, points, **style):
        points = [p for p in points if p["miss_rate"] is not None]
        axes.plot([p["false_alarms_per_hour"] for p in points], [100 * p["miss_rate"] for p in points], **style)

    keywords = [label for label in curves if label != "all"]
    columns = 4
    rows = -(-len(keywords) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(3 * columns, 2.6 * rows), dpi=100, sharex=True,
                                sharey=True, squeeze=False)
    for axes, label in zip(grid.flat, keywords):
        draw(axes, curves["all"], color="grey", linewidth=1, label="all")
        draw(axes, curves[label], color="C0", marker=".", markersize=3, linewidth=1.2, label=label)
        axes.set_title(label, fontsize=10)
        axes.set_xscale("symlog", linthresh=1.0)
        axes.set_ylim(0, 100)
        axes.grid(True, which="both", alpha=0.3)
    for axes in list(grid.flat)[len(keywords):]:
        axes.axis("off")
    figure.supxlabel("false alarms per hour with this label (symmetric log scale)", fontsize=10)
    figure.supylabel("miss rate, % (a wrong label is a miss)", fontsize=10)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)


def plot_timeline(path: Path, scores: StepScores, words: list[Word], events: list[tuple[str, float]],
                  settings: DetectorSettings, start_s: float, seconds: float) -> None:
    """An excerpt: each keyword's score over time, the truth as shaded spans, events as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kws.checkpoint import atomic_write

    end_s = start_s + seconds
    inside = (scores.times_s >= start_s) & (scores.times_s <= end_s)
    figure, axes = plt.subplots(figsize=(12, 4), dpi=100)
    colours = {label: f"C{i}" for i, label in enumerate(scores.keywords)}
    for label in scores.keywords:
        column = scores.labels.index(label)
        axes.plot(scores.times_s[inside], scores.probabilities[inside, column], color=colours[label],
                  linewidth=1, label=label)
    for word in words:
        if word.end_s >= start_s and word.start_s <= end_s:
            colour = colours.get(word.label, "grey")
            axes.axvspan(word.start_s, word.end_s, color=colour, alpha=0.15)
            axes.text(word.start_s, 1.04, word.label, fontsize=8, color=colour if word.is_keyword else "grey")
    for label, time_s in events:
        if start_s <= time_s <= end_s:
            axes.plot([time_s], [settings.threshold_of(label)], marker="v", markersize=9, color=colours[label])
    axes.axhline(settings.threshold, color="black", linestyle=":", linewidth=0.8)
    axes.set_xlim(start_s, end_s)
    axes.set_ylim(0, 1.1)
    axes.set_xlabel("time, s (shaded: words spoken, grey: other words; triangles: detections)")
    axes.set_ylabel("score")
    axes.legend(ncol=len(colours), fontsize="small", loc="upper right", bbox_to_anchor=(1, -0.15))
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)


def validation_stream(model: str | Path, data_dir: str | Path, minutes: float, seed: int,
                      snr_db: tuple[float, float] | None = None, keywords: bool = True):
    """A seeded stream of the data's validation clips for this model's labels: (audio, words)."""
    from kws.data import load_split, scan
    from kws.evaluate import load_predictor
    from kws.streams import build_stream

    _, config, labels = load_predictor(Path(model))
    audio = load_split(scan(data_dir, config.data), "validation", labels[2:], config)
    return build_stream(audio, labels, config, 60 * minutes, seed=seed, snr_db=snr_db, keywords=keywords)


def recording(path: str | Path, model: str | Path) -> np.ndarray:
    """A user's own long recording, at the model's rate."""
    from kws.data import load_audio
    from kws.evaluate import load_predictor

    _, config, _ = load_predictor(Path(model))
    return load_audio(path, config.features.sample_rate)


@dataclass(frozen=True)
class StreamEvaluation:
    figures: dict
    files: tuple[Path, ...]
    settings: DetectorSettings


def evaluate_stream(model: str | Path, audio: np.ndarray, words: list[Word], out: Path | None,
                    threshold: float | None = None, progress: bool = True, streaming: bool = True,
                    excerpt_s: float = 30.0) -> StreamEvaluation:
    """Score the runtime on one recording; with `out`, write the report JSON, a DET picture and a timeline."""
    scores = run_model(model, audio, progress, streaming)
    settings = scores.settings if threshold is None else scores.settings.with_threshold(threshold)
    events = detect(scores, settings)
    figures = report(score_events(events, words, scores.seconds), settings, scores.keywords)
    files: list[Path] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        name = Path(model).stem
        figures["det"] = det_points(scores, words)
        files.append(out / f"{name}.stream_report.json")
        save_json(files[-1], figures)
        files.append(out / f"{name}.det.png")
        plot_det(files[-1], figures["det"], f"{name}: {scores.seconds / 60:.0f} min, {figures['overall']['spoken']} "
                 f"keywords\n{describe(settings)}")
        files.append(out / f"{name}.timeline.png")
        plot_timeline(files[-1], scores, words, events, settings, 0.0, min(excerpt_s, scores.seconds))
    return StreamEvaluation(figures, tuple(files), settings)


def write_thresholds(model: str | Path, thresholds: dict[str, float]) -> None:
    """Store per-keyword thresholds in the model's detection metadata (the file is replaced atomically)."""
    from kws.export import update_metadata

    def with_thresholds(props: dict[str, str]) -> dict[str, str]:
        detection = json.loads(props.get("detection", "{}"))
        return {**props, "detection": json.dumps({**detection, "thresholds": thresholds})}

    update_metadata(Path(model), with_thresholds)
