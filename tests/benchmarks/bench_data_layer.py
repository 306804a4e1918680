"""Benchmark the data layer (validate + ingest + dbt) against a bare DuckDB insert.

Run by hand (``make bench``), never under pytest::

    python -m tests.benchmarks.bench_data_layer [--years 1 5] [--symbols 48] [--keep]

What is measured, per size (``--symbols`` × ``--years`` of 15-minute synthetic bars
from 2020-01-02), each size in a fresh temporary ``ALPHALINE_HOME``:

* generate: simulating the market, once for the largest size (not part of the data layer);
* floor: a bare ``insert into raw.bars`` of the same rows into a scratch DuckDB file;
  this is what the hardware costs, measured in the same run;
* validate: ``validate_bars`` alone (for reference; it is also part of ingest);
* ingest: ``ingest_batch`` on a fresh warehouse: fingerprint, validation, the write
  of raw.bars/symbols/sessions in one transaction, and closing (checkpoint) the file;
* dbt: ``dbt build`` through ``DbtCliResource`` as Dagster runs it (a subprocess, reusing
  the parsed project): staging.stg_bars, marts.bars, marts.bars_daily and their tests.

The synthetic batch's oracle (3 rows per bar, synthetic-only) is dropped so that the
data layer writes the same rows as the floor. dbt's fixed cost (start-up, parsing
reuse, the tests' queries) is measured once by a ``dbt build`` on an empty warehouse.

How to read it: machines are noisy, so judge the ratios, not the seconds.
``total/floor`` is the data layer's cost in floors (goal: at most 5); ``(total-fix)/floor``
is the same without dbt's fixed cost, i.e. what grows with the data. The 5-year size
also has an absolute goal: under 60 s on 2 cores. ``marts.bars`` must hold every input row.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import polars as pl
from dagster_dbt import DbtCliResource, DbtProject

from orchestration.defs.market.dbt import dbt_project, prepare_manifest
from orchestration.market.bars import RAW_COLUMNS, SourceBatch
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket
from orchestration.market.validation import validate_bars
from orchestration.market.warehouse import ensure_schema, ingest_batch
from orchestration.settings import Settings, prepare_environment
from orchestration.warehouse import Warehouse
from tests.benchmarks.summary import Verdict, report

ORIGIN = dt.date(2020, 1, 2)
FLOOR_GOAL, SECONDS_GOAL, SECONDS_GOAL_YEARS = 5.0, 60.0, 5
T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@dataclass(frozen=True)
class Result:
    years: int
    symbols: int
    sessions: int
    rows: int
    floor: float
    validate: float
    ingest: float
    dbt: float

    @property
    def total(self) -> float:
        return self.ingest + self.dbt


def window_end(years: int) -> dt.datetime:
    return dt.datetime.combine(ORIGIN.replace(year=ORIGIN.year + years), dt.time(), dt.UTC)


def generate(symbols: int, years: int) -> SourceBatch:
    market = SyntheticMarket(SyntheticConfig(n_symbols=symbols, origin=ORIGIN))
    start = dt.datetime.combine(ORIGIN, dt.time(), dt.UTC)
    batch = market.fetch(start, window_end(years), now=dt.datetime.now(dt.UTC))
    return SourceBatch(bars=batch.bars, label=batch.label, symbols=batch.symbols)  # oracle dropped


def fresh_home(root: Path, name: str) -> Settings:
    home = root / name
    os.environ["ALPHALINE_HOME"] = str(home)
    for var in ("DBT_TARGET_PATH", "DBT_LOG_PATH"):  # prepare_environment only sets defaults
        os.environ.pop(var, None)
    return prepare_environment(Settings(home=home))


def floor_insert(path: Path, raw: pl.DataFrame) -> None:
    with Warehouse(path).connect() as con:
        ensure_schema(con)
        con.append("raw.bars", raw)


def ingest(path: Path, batch: SourceBatch) -> int:
    with Warehouse(path).connect() as con:  # closed before dbt opens the file, in another process
        return ingest_batch(con, batch, asset="raw_bars").rows_accepted


def dbt_build(project: DbtProject) -> float:
    """Run ``dbt build``; return dbt's own elapsed time (models + tests, without start-up)."""
    log = io.StringIO()  # dagster-dbt echoes dbt's log to stdout; show it only on failure
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            invocation = DbtCliResource(project_dir=project).cli(["build"], raise_on_error=True).wait()
    except Exception:
        sys.stderr.write(log.getvalue()[-5000:])
        raise
    return float(invocation.get_artifact("run_results.json")["elapsed_time"])


def count(path: Path, table: str) -> int:
    with Warehouse(path).connect(read_only=True) as con:
        return con.scalar(f"select count(*) from {table}")


def run_size(root: Path, full: SourceBatch, years: int, symbols: int, fixed: list[float]) -> Result:
    settings = fresh_home(root, f"{years}y")
    project = dbt_project(settings.dbt_target_dir)
    _, parse = timed(lambda: prepare_manifest(project))  # Dagster does this at load time
    wh = settings.warehouse_path
    if not fixed:  # dbt's fixed cost: a build over empty raw tables, then start afresh
        with Warehouse(wh).connect() as con:
            ensure_schema(con)
        exec_s, wall = timed(lambda: dbt_build(project))
        fixed.append(wall)
        print(f"  dbt on an empty warehouse: {wall:.2f} s, of which {exec_s:.2f} s running models+tests")
        for f in wh.parent.glob(wh.name + "*"):
            f.unlink()
    bars = full.bars.filter(pl.col("ts") < window_end(years))
    batch = SourceBatch(bars=bars, label=full.label, symbols=full.symbols)
    raw = bars.with_columns(
        pl.lit("floor").alias("batch_id"), pl.lit(dt.datetime.now(dt.UTC)).alias("ingested_at")
    ).select(RAW_COLUMNS)
    _, floor = timed(lambda: floor_insert(root / f"floor-{years}y.duckdb", raw))
    checked, validate = timed(lambda: validate_bars(bars))
    accepted, ingest_s = timed(lambda: ingest(wh, batch))
    dbt_exec, dbt_s = timed(lambda: dbt_build(project))
    marts = count(wh, "marts.bars")
    print(f"  {years}y: dbt parse {parse:.1f} s (untimed, load time); dbt {dbt_s:.2f} s of which "
          f"{dbt_exec:.2f} s running models+tests; rejected {checked.rejected.height}; "
          f"marts.bars {marts:,} / input {bars.height:,}")
    if not checked.rejected.is_empty() or accepted != bars.height or marts != bars.height:
        raise SystemExit(f"correctness guard failed for {years}y: marts.bars={marts}, input={bars.height}")
    sessions = bars.select(pl.col("ts").dt.convert_time_zone("America/New_York").dt.date().n_unique()).item()
    return Result(years, symbols, sessions, bars.height, floor, validate, ingest_s, dbt_s)


def print_table(results: list[Result], fixed: float) -> None:
    head = ("size", "rows", "floor s", "valid s", "ingest s", "dbt s", "total s", "rows/s",
            "total/floor", "(tot-fix)/floor", f"<={FLOOR_GOAL:g}x", f"<{SECONDS_GOAL:g}s")
    fmt = "{:>16} {:>9} {:>8} {:>8} {:>9} {:>7} {:>8} {:>9} {:>12} {:>16} {:>5} {:>5}"
    print(fmt.format(*head))
    for r in results:
        ratio = r.total / r.floor
        seconds_goal = ("yes" if r.total < SECONDS_GOAL else "NO") if r.years >= SECONDS_GOAL_YEARS else "-"
        print(fmt.format(
            f"{r.symbols}x{r.sessions} ({r.years}y)", f"{r.rows:,}", f"{r.floor:.2f}", f"{r.validate:.2f}",
            f"{r.ingest:.2f}", f"{r.dbt:.2f}", f"{r.total:.2f}", f"{r.rows / r.total:,.0f}",
            f"{ratio:.1f}", f"{(r.total - fixed) / r.floor:.1f}",
            "yes" if ratio <= FLOOR_GOAL else "NO", seconds_goal,
        ))
    print(f"dbt fixed overhead (build on an empty warehouse): {fixed:.2f} s; "
          "total = ingest (validate + write) + dbt; validate is shown alone for reference")


def verdict(r: Result) -> Verdict:
    ratio, goal, met = r.total / r.floor, f"<= {FLOOR_GOAL:g}× floor", r.total / r.floor <= FLOOR_GOAL
    if r.years >= SECONDS_GOAL_YEARS:
        goal, met = goal + f", < {SECONDS_GOAL:g} s", met and r.total < SECONDS_GOAL
    return Verdict("data_layer", f"raw → marts {r.symbols}×{r.sessions} ({r.years}y)", f"{r.total:.2f} s (dbt {r.dbt:.2f} s)",
                   "bare DuckDB insert", ratio, goal, met if r.symbols == 48 else None)  # the goals are for 48 symbols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--years", type=int, nargs="+", default=[1, 5], help="history lengths (default: 1 5)")
    parser.add_argument("--symbols", type=int, default=48)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="alphaline-bench-"))
    print(f"workdir {root}")
    try:
        full, gen = timed(lambda: generate(args.symbols, max(args.years)))
        print(f"generate: {full.bars.height:,} bars in {gen:.1f} s (not part of the data layer)")
        fixed: list[float] = []
        results = [run_size(root, full, y, args.symbols, fixed) for y in sorted(args.years)]
        print_table(results, fixed[0])
        report([verdict(r) for r in results])
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
