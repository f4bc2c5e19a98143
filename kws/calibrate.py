"""`kws calibrate`: per-keyword thresholds for a false-alarm budget, stored in the model's metadata."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from kws.eval_scoring import StepScores, detect, score_events, sweep


# Thresholds the calibration tries.
THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.20, 0.991, 0.01), 2))


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


def write_thresholds(model: str | Path, thresholds: dict[str, float]) -> None:
    """Store per-keyword thresholds in the model's detection metadata (the file is replaced atomically)."""
    from kws.export import update_metadata

    def with_thresholds(props: dict[str, str]) -> dict[str, str]:
        detection = json.loads(props.get("detection", "{}"))
        return {**props, "detection": json.dumps({**detection, "thresholds": thresholds})}

    update_metadata(Path(model), with_thresholds)
