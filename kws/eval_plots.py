"""Pictures of a long-audio evaluation: DET curves per keyword and a timeline of scores and events."""

from __future__ import annotations

from pathlib import Path

from edge.detect import DetectorSettings
from kws.eval_scoring import StepScores, Word


def plot_det(path: Path, curves: dict[str, list[dict]], title: str) -> None:
    """Miss rate against false alarms per hour across thresholds: one small panel per keyword, each with
    the whole set's curve in grey behind it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kws.files import atomic_write

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

    from kws.files import atomic_write

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
