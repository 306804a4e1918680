"""One verdict table for every benchmark: goal, measured ratio against a same-run baseline, verdict.

Each benchmark ends with :func:`report`, which prints its rows in the common table and,
when ``make bench`` (``python -m tests.benchmarks``) runs it, also appends them as JSON
lines to the file named by :data:`RESULTS_ENV`; the runner then writes all rows into one
Markdown table (``$ALPHALINE_HOME/reports/bench.md``).

Machines are noisy and shared, so every row carries a *ratio* against a baseline measured
in the same run (the floor: what the stage cannot do without), next to the raw figure.

Example::

    >>> from tests.benchmarks.summary import Verdict, table
    >>> print(table([Verdict("backtest", "engine", "2.4M bar·symbols/s", "numpy loop", 1.9, ">= 10M bar·symbols/s", False)]))
    | bench | stage | measured | baseline (same run) | ratio | goal | verdict |
    |---|---|---|---|---|---|---|
    | backtest | engine | 2.4M bar·symbols/s | numpy loop | 1.90× | >= 10M bar·symbols/s | NOT met |
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS_ENV = "ALPHALINE_BENCH_RESULTS"
HEADER = ("bench", "stage", "measured", "baseline (same run)", "ratio", "goal", "verdict")


@dataclass(frozen=True)
class Verdict:
    """One row: ``ratio`` is the stage's figure over the baseline's (× slower, or × faster where the goal says so)."""

    bench: str
    stage: str
    measured: str
    baseline: str
    ratio: float | None
    goal: str
    met: bool | None  # None: reported for reference, no goal

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "-"}[self.met]

    def cells(self) -> tuple[str, ...]:
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}×"
        return (self.bench, self.stage, self.measured, self.baseline, ratio, self.goal, self.verdict)


def table(rows: Iterable[Verdict]) -> str:
    """The rows as a Markdown table (also readable as plain text)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def report(rows: list[Verdict]) -> None:
    """Print the benchmark's verdict rows; append them to ``$ALPHALINE_BENCH_RESULTS`` when set."""
    print("\nsummary\n" + table(rows), flush=True)
    target = os.environ.get(RESULTS_ENV)
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(asdict(row)) + "\n")


def load(path: Path) -> list[Verdict]:
    """Rows appended by :func:`report` (none if the file does not exist)."""
    if not path.exists():
        return []
    return [Verdict(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
