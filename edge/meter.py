"""`edge.listen --meter`: each keyword's smoothed score drawn against its threshold as the audio comes, the
way people tune a threshold: say the word at the distance and volume that matter, and watch how high its
score rises and how high the others rise with it.

On a terminal the meter is a block of lines redrawn in place on stderr (events still go to stdout, above
it); elsewhere (a log file) it is one line per update.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import TextIO

from edge.detect import Step

BAR = 30  # characters for scores 0..1
HOLD_S = 2.0  # "highest" is over this much of the recent past


class Meter:
    def __init__(self, thresholds: dict[str, float], names: dict[str, str] | None = None,
                 stream: TextIO | None = None, redraw: bool | None = None):
        """`thresholds`: each keyword's threshold, in the model's order; `names`: how to print each label
        (default: as it is)."""
        self._thresholds = thresholds
        self._names = names or {label: label for label in thresholds}
        self._stream = stream or sys.stderr
        self._redraw = self._stream.isatty() if redraw is None else redraw
        self._drawn = 0  # lines of the block on screen, to go back over
        self._recent: deque[tuple[float, dict[str, float]]] = deque()

    def show(self, steps: list[Step]) -> None:
        """Draw the scores of these steps (the highest of each keyword among them: a short rise still shows)."""
        if not steps:
            return
        now = steps[-1].time_s
        current = {label: max(step.scores[label] for step in steps) for label in self._thresholds}
        self._recent.append((now, current))
        while self._recent[0][0] < now - HOLD_S:
            self._recent.popleft()
        highest = {label: max(scores[label] for _, scores in self._recent) for label in self._thresholds}
        if self._redraw:
            lines = [f"{now:8.2f} s  smoothed score, | marks the threshold; highest in the last {HOLD_S:g} s"]
            lines += [self._bar(label, current[label], highest[label]) for label in self._thresholds]
            back = f"\x1b[{self._drawn}F" if self._drawn else ""
            self._stream.write(back + "".join(f"{line}\x1b[K\n" for line in lines))
            self._drawn = len(lines)
        else:
            self._stream.write(f"{now:8.2f} s  " + "  ".join(
                f"{self._names[label]} {current[label]:.2f}{'*' if current[label] >= threshold else ''}"
                for label, threshold in self._thresholds.items()) + "\n")
        self._stream.flush()

    def clear(self) -> None:
        """Erase the block (on a terminal), so that a line printed next takes its place; the next show()
        draws it again below."""
        if self._redraw and self._drawn:
            self._stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._stream.flush()
            self._drawn = 0

    def _bar(self, label: str, score: float, highest: float) -> str:
        threshold = self._thresholds[label]
        filled, mark = round(score * BAR), min(BAR - 1, round(threshold * BAR))
        cells = ["#" if i < filled else "." for i in range(BAR)]
        cells[mark] = "|"
        above = "  above" if score >= threshold else ""
        return (f"{self._names[label][:10]:<10} [{''.join(cells)}] {score:.2f} / {threshold:.2f}"
                f"  highest {highest:.2f}{above}")
