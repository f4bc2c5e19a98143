"""Headline figures of several training runs of one recipe: mean and range over the seeds.

    python tools/seed_spread.py runs/s0/eval runs/s1/eval runs/s2/eval

Each folder holds what `kws eval` and `kws eval-open-set --out` wrote for one run (`eval_validation.json`,
`*.open_set_validation.json` and, once a model is chosen, `*.open_set_testing.json`). Prints one line per
figure: each run's value, the mean and the range (largest minus smallest), so that a single run's figure
can be read against the spread between seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge.errors import EdgeError

# (name, file pattern, path into the JSON)
FIGURES = [
    ("clip accuracy, validation, %", "eval_validation.json", ("accuracy",), 100.0),
    ("stream matched, %", "*.open_set_{split}.json", ("stream", "overall", "matched_percent"), 1.0),
    ("stream wrong label, %", "*.open_set_{split}.json", ("stream", "overall", "wrong_percent"), 1.0),
    ("stream false alarms / h", "*.open_set_{split}.json", ("stream", "overall", "false_alarms_per_hour"), 1.0),
    ("stream commands the model never scored", "*.open_set_{split}.json",
     ("stream", "overall", "missed_because", "never_scored"), 1.0),
    ("real speech false alarms / h", "*.open_set_{split}.json", ("speech", "all", "false_alarms_per_hour"), 1.0),
    ("words in a row false alarms / h", "*.open_set_{split}.json", ("words_in_a_row", "all", "false_alarms_per_hour"),
     1.0),
    ("other words accepted, %", "*.open_set_{split}.json", ("words", "all", "accepted_percent"), 1.0),
    ("other words called a command, %", "*.open_set_{split}.json", ("words", "all", "called_command_percent"), 1.0),
]


def _value(folder: Path, pattern: str, keys: tuple[str, ...], scale: float) -> float | None:
    files = sorted(folder.glob(pattern))
    if not files:
        return None
    value = json.loads(files[0].read_text())
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return None if value is None else float(value) * scale


def _per_source(folder: Path, split: str) -> dict[str, float]:
    files = sorted(folder.glob(f"*.open_set_{split}.json"))
    if not files:
        return {}
    words = json.loads(files[0].read_text())["words"]
    rows = {f"accepted: {source}, %": row["accepted_percent"] for source, row in words["per_source"].items()}
    rows.update({f"accepted: '{word}', %": words[word]["accepted_percent"] for word in ("on", "off")})
    rows["accepted: words never trained on, %"] = words["never_trained"]["accepted_percent"]
    return {k: v for k, v in rows.items() if v is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--split", default="validation", choices=["validation", "testing"])
    args = parser.parse_args()
    for folder in args.folders:  # a mistyped folder would otherwise be a column of dashes and exit 0
        if not any(folder.glob("*.json")):
            raise EdgeError(f"{folder} holds no report (eval_validation.json, *.open_set_{args.split}.json): "
                            "run kws eval and kws eval-open-set with --out there first")
    rows: dict[str, list[float | None]] = {}
    for name, pattern, keys, scale in FIGURES:
        rows[name] = [_value(f, pattern.format(split=args.split), keys, scale) for f in args.folders]
    per_source = [_per_source(f, args.split) for f in args.folders]
    for name in sorted({k for p in per_source for k in p}):
        rows[name] = [p.get(name) for p in per_source]
    width = max(map(len, rows))
    print(f"{'figure':<{width}}  " + "  ".join(f"{str(f)[-10:]:>10}" for f in args.folders) + f"  {'mean':>7}  {'range':>6}")
    for name, values in rows.items():
        known = [v for v in values if v is not None]
        if not known:
            continue
        cells = "  ".join(f"{'-' if v is None else f'{v:.2f}':>10}" for v in values)
        print(f"{name:<{width}}  {cells}  {np.mean(known):>7.2f}  {max(known) - min(known):>6.2f}")


if __name__ == "__main__":
    from edge.cli import run_tool

    raise SystemExit(run_tool("seed_spread", main))
