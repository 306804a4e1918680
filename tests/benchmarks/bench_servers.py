"""Benchmark embedded vs servers: the trader cycle and the feature store, on SQLite/files and on PostgreSQL/Redis.

Run by hand, never under pytest (the servers start from the dev extra's wheels on 127.0.0.1)::

    python -m tests.benchmarks.bench_servers [--symbols 48] [--cycles 60] [--reads 300] [--sessions 20] [--only cycle]

What is measured, per profile, in the same run and on the same inputs:

* **trader cycle** — :meth:`trader.runner.Runner.cycle` end to end, as ``bench_trader`` runs it
  (seeded bars, random prediction batches, every check running, the start-up heap frozen as ``Runner.run`` does), with the state store on a SQLite
  file (WAL, ``synchronous=FULL``) and on PostgreSQL 16 (same SQLAlchemy code, ``fsync=on``).
* **kill-switch read** — :meth:`TraderStore.trading_state`, read before every order: both engines
  answer from a cache while a trigger-kept count of kill-switch writes does not move; SQLite reads the count in
  process, PostgreSQL in one autocommit round trip.
* **online features** — :func:`feature_repo.store.online_features` for every symbol (one request, as
  ``/predict`` does), from Feast's SQLite online store and from Redis.
* **materialise** — Feast ``materialize`` of the same offline Parquet files into each online store.

Ratios are servers over embedded (× slower when above 1). On one machine the servers pay a local
round trip and gain nothing; the profile is for several machines and several writers, not speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.benchmarks.bench_trader import CASH, Batches, make_bars, make_config, pct, symbols_for
from tests.benchmarks.summary import Verdict
from tests.benchmarks.summary import report as summary
from tests.servers import PostgresServer, RedisServer
from trader.brokers.bars import InMemoryBars
from trader.brokers.sim import SimBroker, SimConfig
from trader.risk import RiskEngine
from trader.runner import Runner, replay_ticks, steady_heap
from trader.store import TraderStore


def trader_cycles(url: str, symbols: Sequence[str], n_cycles: int) -> list[float]:
    """Seconds per :meth:`Runner.cycle` with the store at ``url`` (bench_trader's inputs)."""
    bars = make_bars(symbols, n_cycles + 2)
    ticks = replay_ticks(bars)[:n_cycles]
    cfg = make_config(symbols)
    engine = RiskEngine.from_config(cfg)
    engine.calendar.is_open(ticks[0].ts)  # load the exchange calendar once, untimed
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(initial_cash=CASH, max_participation=None), start=ticks[0].ts)
    times = []
    with TraderStore(url) as store:
        runner = Runner(config=cfg, store=store, broker=broker, predictor=Batches(symbols), run_id="bench", engine=engine, strict=True)
        runner.start()
        with steady_heap():  # as Runner.run does around its loop (and bench_trader): a full GC is not the p99 of one engine
            for tick in ticks:
                broker.advance_to(tick.ts)
                t0 = time.perf_counter()
                report = runner.cycle(tick)
                times.append(time.perf_counter() - t0)
                assert not report.problems, report.problems
                runner.idle()  # the upkeep Runner.run does between cycles, untimed as in bench_trader
    return times


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def state_reads(url: str, n: int) -> list[float]:
    with TraderStore(url) as store:
        store.trading_state()
        return timed(store.trading_state, n)


def feast_profile(home: Path, variant: str, n_symbols: int, n_sessions: int, reads: int) -> dict[str, list[float] | float]:
    """Materialise the same features into ``variant``'s online store, then time online reads of every symbol."""
    from feature_repo import compute_features
    from feature_repo import store as fs
    from tests.features.synthetic_bars import BAR, feature_bars

    first = dt.date(2024, 6, 3)
    bars = feature_bars(n_symbols=n_symbols, first=first, last=first + dt.timedelta(days=int(n_sessions * 7 / 5)))
    features = compute_features(bars, bar_length=BAR)
    fs.write_features(features, fs.offline_dir(home), tables=fs.offline_tables(fs.load_config(home, variant)))  # prod: in PostgreSQL
    store = fs.open_store(home, variant)
    fs.apply(store, fs.offline_dir(home), bar_length=BAR)
    t0 = time.perf_counter()
    fs.materialize(store, end=features["event_timestamp"].max() + dt.timedelta(microseconds=1))
    materialise = time.perf_counter() - t0
    symbols = features["symbol"].unique().sort().to_list()
    fs.online_features(store, symbols)  # warm: registry cached, connection open
    return {"materialise": materialise, "online": timed(lambda: fs.online_features(store, symbols), reads), "symbols": len(symbols)}


def ms(values: Sequence[float] | float, q: float | None = None) -> str:
    v = values if isinstance(values, float) else (pct(values, q) if q is not None else statistics.median(values))
    return f"{v * 1e3:.2f} ms"


def cycle_verdict(cycle: dict[str, list[float]], n_symbols: int) -> Verdict:
    c_s, c_p = pct(cycle["SQLite"], 99), pct(cycle["PostgreSQL"], 99)
    return Verdict("servers", f"Runner.cycle on PostgreSQL, {n_symbols} symbols", f"p99 {c_p * 1e3:.1f} ms (p50 {ms(cycle['PostgreSQL'])})",
                   f"SQLite store p99 {c_s * 1e3:.1f} ms", c_p / c_s, "p99 <= 2× SQLite", c_p <= 2 * c_s)


def print_cycles(cycle: dict[str, list[float]], n_symbols: int, n_cycles: int) -> None:
    print(f"trader Runner.cycle, {n_symbols} symbols, {n_cycles} cycles")
    for name, t in cycle.items():
        print(f"  {name:<10} p50 {ms(t)}  p99 {ms(t, 99)}")


def cycle_only(cycle: dict[str, list[float]], n_symbols: int, n_cycles: int) -> int:
    """``--only cycle``: the trader cycle's lines and verdict alone."""
    print_cycles(cycle, n_symbols, n_cycles)
    summary([cycle_verdict(cycle, n_symbols)])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=48)
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--reads", type=int, default=300, help="kill-switch and online-feature reads timed")
    parser.add_argument("--sessions", type=int, default=20, help="sessions of features materialised")
    parser.add_argument("--only", choices=["cycle"], help="only the trader cycle (no kill-switch reads, no Feast)")
    args = parser.parse_args(argv)
    symbols = symbols_for(args.symbols)
    os.environ.setdefault("FEAST_USAGE", "False")
    with tempfile.TemporaryDirectory(prefix="alphaline-bench-servers-") as tmp_dir:
        tmp = Path(tmp_dir)
        t0 = time.perf_counter()
        with PostgresServer.started(tmp / "pg") as pg, RedisServer.started(tmp / "redis") as redis:
            print(f"servers up in {time.perf_counter() - t0:.1f} s: PostgreSQL 16 on 127.0.0.1:{pg.port}, Redis on 127.0.0.1:{redis.port}")
            sqlite_url, pg_url = f"sqlite:///{tmp}/trader.db", pg.url(pg.create_database("bench_trader"))
            cycle = {"SQLite": trader_cycles(sqlite_url, symbols, args.cycles), "PostgreSQL": trader_cycles(pg_url, symbols, args.cycles)}
            if args.only == "cycle":
                return cycle_only(cycle, args.symbols, args.cycles)
            reads = {"SQLite": state_reads(sqlite_url, args.reads), "PostgreSQL": state_reads(pg_url, args.reads)}
            os.environ["ALPHALINE_FEAST_REGISTRY_URL"] = pg.url(pg.create_database("bench_feast"))
            os.environ["ALPHALINE_FEAST_REDIS"] = redis.feast_connection_string
            feast = {"SQLite": feast_profile(tmp / "local", "local", args.symbols, args.sessions, args.reads),
                     "Redis": feast_profile(tmp / "prod", "prod", args.symbols, args.sessions, args.reads)}
    print_cycles(cycle, args.symbols, args.cycles)
    print(f"kill-switch read (TraderStore.trading_state), {args.reads} reads")
    for name, t in reads.items():
        print(f"  {name:<10} p50 {ms(t)}  p99 {ms(t, 99)}")
    print(f"Feast online read of {feast['SQLite']['symbols']} symbols × all features, {args.reads} reads; materialise {args.sessions} sessions")
    for name, f in feast.items():
        print(f"  {name:<10} p50 {ms(f['online'])}  p99 {ms(f['online'], 99)}   materialise {f['materialise']:.2f} s")
    r_s, r_p = statistics.median(reads["SQLite"]), statistics.median(reads["PostgreSQL"])
    o_s, o_r = pct(feast["SQLite"]["online"], 99), pct(feast["Redis"]["online"], 99)
    m_s, m_r = feast["SQLite"]["materialise"], feast["Redis"]["materialise"]
    summary([
        cycle_verdict(cycle, args.symbols),
        Verdict("servers", "kill-switch read on PostgreSQL", f"p50 {r_p * 1e6:.0f} µs", f"SQLite (cached) p50 {r_s * 1e6:.0f} µs",
                r_p / r_s, "p50 < 1 ms", r_p < 0.001),
        Verdict("servers", f"Feast online read from Redis, {args.symbols} symbols", f"p99 {o_r * 1e3:.1f} ms",
                f"SQLite online store p99 {o_s * 1e3:.1f} ms", o_r / o_s, "<= 2× SQLite", o_r <= 2 * o_s),
        Verdict("servers", f"Feast materialise into Redis, {args.sessions} sessions", f"{m_r:.2f} s", f"into SQLite {m_s:.2f} s",
                m_r / m_s, "- (reference)", None),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
