"""`kws eval-stream`: matched %, wrong labels, false alarms per hour and latency of the runtime on long
audio, as a table, a JSON report, DET curves and a timeline picture."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.detect import DetectorSettings
from kws.eval_plots import plot_det, plot_timeline
from kws.eval_scoring import (MISS_CAUSES, LabelScore, StepScores, StreamScore, Word, detect, miss_causes, run_model,
                              score_events, sweep)


# Thresholds a DET curve shows (above 0.95 a word's score can dip under the threshold and come back within
# one word, and the curve then shows those second events).
DET_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.20, 0.951, 0.01), 2))


def describe(settings: DetectorSettings, speeds: tuple[float, ...] = (1.0,)) -> str:
    """The detection settings (and the speeds the stream was heard at) in a few words, for reports and plot
    titles."""
    text = f"threshold {settings.threshold:g} on a {settings.average_ms:.0f} ms average"
    if settings.thresholds:
        text += " (or per keyword)"
    if settings.sustained_ms:
        text += f", or {settings.sustained_threshold:g} on {settings.sustained_ms:.0f} ms"
    text += f", events {settings.suppression_ms:.0f} ms apart"
    if settings.peak_ms:
        text += f", reported at their score's peak (within {settings.peak_ms:.0f} ms)"
    return text if len(speeds) == 1 else text + f"; heard at speeds {', '.join(f'{v:g}' for v in speeds)}"


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


def report(result: StreamScore, settings: DetectorSettings, scores: StepScores) -> dict:
    """JSON-ready figures: overall and per keyword (in the model's label order), each with its misses by
    cause (`kws.eval_scoring.miss_causes`)."""
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

    causes = miss_causes(scores, result.missed_words, settings)
    per_label = {label: result.per_label.get(label, LabelScore()) for label in scores.keywords}
    return {
        "hours": round(result.hours, 4),
        "settings": {**dataclasses.asdict(settings), "thresholds": dict(settings.thresholds or {})},
        "overall": {**rates(result.keywords, result.matched, result.wrong, result.false_alarms),
                    "latency": latency(result.latencies_s),
                    "missed_because": {cause: sum(c[cause] for c in causes.values()) for cause in MISS_CAUSES}},
        "per_keyword": {label: {**rates(s.spoken, s.matched, s.wrong, s.false_alarms),
                                "threshold": settings.threshold_of(label), "latency": latency(s.latencies_s),
                                "missed_because": causes[label]}
                        for label, s in per_label.items()},
    }


def table(figures: dict) -> str:
    """The report as a short text table: a row per keyword and one for all, misses by cause (the model never
    scored the word / the smoothing lost it / the detector suppressed it)."""
    def pct(value) -> str:
        return "-" if value is None else f"{value:.1f}%"

    def secs(value) -> str:
        return "-" if value is None else f"{value:+.2f}"

    lines = [f"{'keyword':<10} {'thr':>5} {'spoken':>6} {'matched':>8} {'wrong':>6} {'FA/h':>6} "
             f"{'missed: model/smoothing/detector':>33} {'latency median / p90 s':>23}"]
    rows = [*figures["per_keyword"].items(), ("all", figures["overall"])]
    for label, row in rows:
        threshold = f"{row['threshold']:.2f}" if "threshold" in row else ""
        causes = "/".join(str(row["missed_because"][cause]) for cause in MISS_CAUSES)
        lines.append(f"{label:<10} {threshold:>5} {row['spoken']:>6} {pct(row['matched_percent']):>8} "
                     f"{pct(row['wrong_percent']):>6} {row['false_alarms_per_hour']:>6.1f} {causes:>33} "
                     f"{secs(row['latency']['median_s']):>11} / {secs(row['latency']['p90_s'])}")
    return "\n".join(lines)


def save_json(path: Path, figures: dict) -> None:
    from kws.files import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(figures, indent=2)))


@dataclass(frozen=True)
class StreamEvaluation:
    figures: dict
    files: tuple[Path, ...]
    settings: DetectorSettings
    speeds: tuple[float, ...]


def evaluate_stream(model: str | Path, audio: np.ndarray, words: list[Word], out: Path | None,
                    threshold: float | None = None, progress: bool = True, streaming: bool = True,
                    excerpt_s: float = 30.0) -> StreamEvaluation:
    """Score the runtime on one recording; with `out`, write the report JSON, a DET picture and a timeline."""
    scores = run_model(model, audio, progress, streaming)
    settings = scores.settings if threshold is None else scores.settings.with_threshold(threshold)
    events = detect(scores, settings)
    result = score_events(events, words, scores.seconds)
    figures = report(result, settings, scores)
    files: list[Path] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        name = Path(model).stem
        figures["det"] = det_points(scores, words)
        files.append(out / f"{name}.stream_report.json")
        save_json(files[-1], figures)
        files.append(out / f"{name}.det.png")
        plot_det(files[-1], figures["det"], f"{name}: {scores.seconds / 60:.0f} min, {figures['overall']['spoken']} "
                 f"keywords\n{describe(settings, scores.speeds)}")
        files.append(out / f"{name}.timeline.png")
        plot_timeline(files[-1], scores, words, events, settings, 0.0, min(excerpt_s, scores.seconds))
    return StreamEvaluation(figures, tuple(files), settings, scores.speeds)
