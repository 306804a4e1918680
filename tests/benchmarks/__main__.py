"""Run every benchmark, each in its own process, and write one verdict table.

From the repository root (``make bench`` does exactly this)::

    python -m tests.benchmarks                 # all, full sizes
    python -m tests.benchmarks --quick         # all, small inputs (minutes, for a smoke run)
    python -m tests.benchmarks trader backtest # some of them

Each benchmark runs as a module (``python -m tests.benchmarks.bench_trader``), so imports
resolve from the repository root and never from the current file's folder. Every one prints
its own detail and ends with the common table (:mod:`tests.benchmarks.summary`); the rows of
all of them land in ``$ALPHALINE_HOME/reports/bench.md`` (``--out`` picks another file).
A benchmark that fails (non-zero exit: a result that differs, an error) is listed there as
failed and makes this command exit non-zero; a goal not met does not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks.summary import RESULTS_ENV, Verdict, load, table

# Order: upstream to downstream. Quick arguments keep each one to a minute or so on 2 cores.
BENCHES: dict[str, tuple[str, ...]] = {
    "data_layer": ("--years", "1", "--symbols", "8"),
    "features": ("--symbols", "8", "--sessions", "60"),
    "training_set": ("--symbols", "8", "--sessions", "60"),
    "backtest": ("--symbols", "48", "--sessions", "60"),
    "training": ("--symbols", "8", "--sessions", "80", "--folds", "2", "--skip-final", "--no-second-world"),
    "trader": ("--cycles", "60", "--orders", "2000"),
    "serving": ("--symbols", "8", "--requests", "60"),
    "compliance": ("--day-fills", "2000", "--history-fills", "40", "--audit-records", "200000"),
    "servers": ("--symbols", "16", "--cycles", "30", "--reads", "100", "--sessions", "10"),
    "warehouse": ("--symbols", "16", "--sessions", "20", "--reads", "20"),
}


def default_out() -> Path:
    return Path(os.environ.get("ALPHALINE_HOME", ".alphaline")) / "reports" / "bench.md"


def run_one(name: str, quick: bool, results: Path) -> tuple[int, float]:
    cmd = [sys.executable, "-m", f"tests.benchmarks.bench_{name}", *(BENCHES[name] if quick else ())]
    print(f"\n=== {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    code = subprocess.call(cmd, env={**os.environ, RESULTS_ENV: str(results)})
    return code, time.perf_counter() - t0


def markdown(rows: list[Verdict], runs: dict[str, tuple[int, float]], quick: bool) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"# Benchmarks ({'quick sizes' if quick else 'full sizes'}), {when}", "",
             f"Host: {os.cpu_count()} cores, load average at the end {load1:.1f}. Ratios are against a baseline "
             "measured in the same run; judge them, not the seconds." + (
                 " Quick sizes: a goal stated for another input size shows no verdict (-)." if quick else ""), "", table(rows), "", "| bench | exit | wall s |", "|---|---|---|"]
    lines += [f"| {name} | {'ok' if code == 0 else f'FAILED ({code})'} | {wall:.0f} |" for name, (code, wall) in runs.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {', '.join(BENCHES)}")
    parser.add_argument("--quick", action="store_true", help="small inputs: a smoke run, not a measurement")
    parser.add_argument("--out", type=Path, default=None, help="Markdown table (default: $ALPHALINE_HOME/reports/bench.md)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    names = args.only or list(BENCHES)
    out = args.out or default_out()
    runs: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="alphaline-bench-") as tmp:
        results = Path(tmp) / "rows.jsonl"
        for name in names:
            runs[name] = run_one(name, args.quick, results)
        rows = load(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(rows, runs, args.quick), encoding="utf-8")
    print(f"\n{table(rows)}\n\nwritten to {out}")
    failed = [n for n, (code, _) in runs.items() if code]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
