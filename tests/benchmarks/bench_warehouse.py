"""Benchmark the warehouse interface on DuckDB and on PostgreSQL: raw ingest, reading bars, the trader's bar feed.

Run by hand, never under pytest (PostgreSQL 16 starts from the dev extra's wheel on 127.0.0.1)::

    python -m tests.benchmarks.bench_warehouse [--symbols 48] [--sessions 60] [--reads 50]

Same synthetic batch, same code (:class:`orchestration.warehouse.Warehouse`), in the same run:

* **ingest** — :func:`orchestration.market.warehouse.ingest_batch` of the whole batch (validation, ``raw.bars``
  appended: scanned in place by DuckDB, sent by ``COPY`` to PostgreSQL; symbols, sessions, oracle);
* **dbt** — ``dbt build`` in process (staging, ``marts.*`` and every dbt test) on the engine's own target
  (``local``: DuckDB, ``postgres``: the same models through ``dbt/macros/portable.sql``), as Dagster runs it;
* **read** — ``marts.bars`` back into polars (what features and training read);
* **trader feed** — :class:`trader.brokers.bars.WarehouseBars` for one session of every symbol, one connection
  per call as the trader opens it.

Ratios are PostgreSQL over DuckDB (× slower when above 1): an embedded columnar engine reading its own file
against a server a socket away. The profile is for several machines and writers, not speed on one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from orchestration.defs.market.dbt import dbt_project, prepare_manifest
from orchestration.deployment import dbt_postgres_env
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket
from orchestration.market.warehouse import ingest_batch
from orchestration.warehouse import Warehouse
from tests.benchmarks.bench_data_layer import dbt_build, fresh_home
from tests.benchmarks.summary import Verdict
from tests.benchmarks.summary import report as summary
from tests.servers import PostgresServer
from trader.brokers.bars import WarehouseBars

NOW = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


def profile(wh: Warehouse, batch, reads: int, home: Path) -> dict[str, float]:
    settings = fresh_home(home.parent, home.name)  # ALPHALINE_WAREHOUSE (dbt's local target) is this home's file
    dbt_env = dbt_postgres_env(wh.location) if wh.kind == "postgres" else {"ALPHALINE_DBT_TARGET": "local"}
    os.environ.update(dbt_env)
    t0 = time.perf_counter()
    with wh.connect() as con:
        rows = ingest_batch(con, batch, asset="raw_bars", now=NOW).rows_accepted
    ingest = time.perf_counter() - t0
    project = dbt_project(settings.dbt_target_dir)
    prepare_manifest(project)  # parsed at load time in Dagster, not part of a run
    t0 = time.perf_counter()
    dbt_build(project)
    dbt = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = wh.read("select * from marts.bars order by symbol, ts")
    read = time.perf_counter() - t0
    assert frame.height == rows, (frame.height, rows)
    last = frame["ts"].max()
    feed, symbols = WarehouseBars(wh.location), set(frame["symbol"].unique().to_list())
    times = []
    for _ in range(reads):
        t0 = time.perf_counter()
        bars = feed.bars(symbols, after=last - dt.timedelta(days=1), until=last)
        times.append(time.perf_counter() - t0)
    assert bars
    return {"rows": rows, "ingest": ingest, "dbt": dbt, "read": read, "feed": statistics.median(times), "feed_bars": len(bars)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=48)
    parser.add_argument("--sessions", type=int, default=60, help="weekdays of 15-minute bars from 2024-01-02")
    parser.add_argument("--reads", type=int, default=50, help="trader feed reads timed")
    args = parser.parse_args(argv)
    start = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    market = SyntheticMarket(SyntheticConfig(n_symbols=args.symbols, n_sectors=max(1, args.symbols // 6)))
    batch = market.fetch(start, start + dt.timedelta(days=args.sessions * 7 // 5), now=NOW)
    print(f"batch: {batch.bars.height:,} bars of {args.symbols} symbols")
    with tempfile.TemporaryDirectory(prefix="alphaline-bench-warehouse-") as tmp_dir:
        tmp = Path(tmp_dir)
        with PostgresServer.started(tmp / "pg") as pg:
            found = {"DuckDB": profile(Warehouse(tmp / "duckdb" / "warehouse.duckdb"), batch, args.reads, tmp / "duckdb"),
                     "PostgreSQL": profile(Warehouse(pg.url(pg.create_database("bench_warehouse"), driver="")), batch, args.reads,
                                           tmp / "postgres")}
    for name, f in found.items():
        print(f"  {name:<10} ingest {f['ingest']:.2f} s ({f['rows'] / f['ingest']:,.0f} rows/s)   dbt build {f['dbt']:.2f} s   "
              f"read {f['read']:.2f} s   "
              f"trader feed {f['feed'] * 1e3:.1f} ms for {f['feed_bars']} bars")
    d, p = found["DuckDB"], found["PostgreSQL"]
    n = f"{d['rows']:,} bars"
    summary([
        Verdict("warehouse", f"ingest_batch into PostgreSQL, {n}", f"{p['ingest']:.2f} s", f"DuckDB {d['ingest']:.2f} s",
                p["ingest"] / d["ingest"], "<= 5× DuckDB", p["ingest"] <= 5 * d["ingest"]),
        Verdict("warehouse", f"dbt build (marts + tests) on PostgreSQL, {n}", f"{p['dbt']:.2f} s", f"DuckDB {d['dbt']:.2f} s",
                p["dbt"] / d["dbt"], "- (reference)", None),
        Verdict("warehouse", f"raw → marts on PostgreSQL (ingest + dbt), {n}", f"{p['ingest'] + p['dbt']:.2f} s",
                f"DuckDB {d['ingest'] + d['dbt']:.2f} s", (p["ingest"] + p["dbt"]) / (d["ingest"] + d["dbt"]), "- (reference)", None),
        Verdict("warehouse", f"read marts.bars from PostgreSQL into polars, {n}", f"{p['read']:.2f} s", f"DuckDB {d['read']:.2f} s",
                p["read"] / d["read"], "- (reference)", None),
        Verdict("warehouse", "trader bar feed on PostgreSQL, one session", f"p50 {p['feed'] * 1e3:.1f} ms",
                f"DuckDB p50 {d['feed'] * 1e3:.1f} ms", p["feed"] / d["feed"], "p50 < 100 ms", p["feed"] < 0.1),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
