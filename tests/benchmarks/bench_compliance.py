"""Benchmark the EOD compliance run (one day after a year of lot history) and audit-chain verification.

Run by hand, never under pytest::

    python -m tests.benchmarks.bench_compliance [--day-fills 10000] [--history-fills 400] [--audit-records 1000000]

Part 1, the EOD run. Input (not timed): the 2024 XNYS sessions; on each session before the
last, ``--history-fills`` fills over ``--symbols`` symbols (mostly buys, sells never more than
held, so lots pile up over the year and sells close them FIFO); on the last session
``--day-fills`` fills. They go into a real trader store (SQLite), with one audit record per
fill, and one close per symbol and session goes into ``marts.bars`` (DuckDB). Measured, in one
run, all through :mod:`orchestration.defs.compliance.eod` (the code the Dagster assets call):

* baseline: reading and validating the day's fills (SQL + ``ComplianceFill``), the least any
  EOD run must do (best of three);
* replay: the ledger step closing the previous session from nothing (no checkpoint): what
  every day cost before checkpoints. Its checkpoint is then sealed;
* the day, resumed from that checkpoint: ledger, reports, the Great Expectations suite
  (GX import excluded: paid once per process), audit verification (whole chain) and sealing;
  then the ledger step once more by full replay, for the ratio, and its reports (not timed).
  The two must write identical checkpoints and report files, or the script exits non-zero.

Part 2, the audit chain: ``--audit-records`` fill records chained with ``trader.audit``
(built untimed), in the form the store holds them (payload as canonical JSON text).
Measured: :func:`~trader.compliance.audit_check.scan_chain` (whole chain, day head, Merkle
root: the EOD check) over those rows in memory and read from a SQLite store in chunks, and
:func:`verify_audit_trail` over ``AuditRecord`` objects (it encodes each payload first); the
baseline is plain SHA-256 over exactly the bytes the chain hashes (``prev_hash`` +
canonical JSON), precomputed. How to read it: judge the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import duckdb
import sqlalchemy as sa

from orchestration.defs.compliance import eod, sources
from orchestration.defs.compliance.expectations import run_day_suite
from orchestration.defs.compliance.paths import FILLS, REPORTS
from orchestration.market.calendars import sessions
from tests.benchmarks.summary import Verdict, report
from trader.audit import GENESIS, AuditRecord, canonical, record_body
from trader.compliance import close_day, verify_audit_trail
from trader.compliance.audit_check import scan_chain, stored_records
from trader.store import TraderStore
from trader.store_schema import audit, fills

EOD_GOAL_S, AUDIT_GOAL_RPS, AUDIT_GOAL_RATIO = 5.0, 500_000, 3.0
AUDIT_GOAL_RECORDS = 1_000_000  # the goal is stated for a chain this long (other sizes: no verdict)

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def fill_rows(days: list[dt.date], per_day: list[int], n_symbols: int, seed: int = 7) -> list[dict]:
    """Deterministic fills: prices walk, 70% buys, sells at most the shares held (FIFO closes real lots)."""
    rng = random.Random(seed)
    price = {f"S{i:03d}": rng.uniform(20, 300) for i in range(n_symbols)}
    held = dict.fromkeys(price, 0)
    rows = []
    for day, count in zip(days, per_day, strict=True):
        start = dt.datetime.combine(day, dt.time(15), tzinfo=dt.UTC)  # 10:00/11:00 New York: same trade date
        for symbol in price:
            price[symbol] *= 1 + rng.gauss(0, 0.015)
        for n in range(count):
            symbol = rng.choice(list(price))
            qty = rng.randint(1, 100)
            side = "sell" if held[symbol] >= qty and rng.random() < 0.3 else "buy"
            held[symbol] += qty if side == "buy" else -qty
            fid = f"{day:%Y%m%d}-{n:06d}"
            rows.append({"fill_id": fid, "order_id": f"O{fid}", "client_order_id": f"C{fid}", "symbol": symbol, "side": side,
                         "qty": Decimal(qty), "price": Decimal(f"{price[symbol] * (1 + rng.gauss(0, 0.002)):.2f}"),
                         "fee": Decimal(f"{qty * 0.005:.3f}"), "ts": start + dt.timedelta(seconds=n * 18_000 / count),
                         "venue": "sim", "account": "A1"})
    return rows


def chain(payloads: list[dict], times: list[dt.datetime]) -> list[AuditRecord]:
    records, prev = [], GENESIS
    for seq, (payload, ts) in enumerate(zip(payloads, times, strict=True), start=1):
        record = AuditRecord.create(seq=seq, ts=ts, kind="fill", payload=payload, prev_hash=prev)
        records.append(record)
        prev = record.hash
    return records


def build_home(home: Path, args: argparse.Namespace) -> tuple[eod.CompliancePaths, str, list[dt.date]]:
    """The trader store, its audit chain and marts.bars for every session of 2024 (not timed)."""
    days = sessions("XNYS", dt.date(2024, 1, 1), dt.date(2024, 12, 31))["session"].to_list()
    rows = fill_rows(days, [args.history_fills] * (len(days) - 1) + [args.day_fills], args.symbols)
    url = f"sqlite:///{home / 'trader' / 'trader.db'}"
    TraderStore(url).close()  # creates the schema
    records = chain([{k: str(v) for k, v in r.items() if k != "ts"} for r in rows], [r["ts"] for r in rows])
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(fills), rows)
        conn.execute(sa.insert(audit), [{"seq": r.seq, "ts": r.ts, "kind": r.kind, "payload": canonical(r.payload).decode(),
                                         "prev_hash": r.prev_hash, "hash": r.hash} for r in records])
    engine.dispose()
    warehouse = str(home / "warehouse.duckdb")
    con = duckdb.connect(warehouse)
    con.execute("create schema marts; create table marts.bars (symbol varchar, timeframe varchar, ts timestamptz, "
                "close_ts timestamptz, session date, close double)")
    last = {}
    for r in rows:
        last[r["symbol"], r["ts"].date()] = float(r["price"])
    symbols = sorted({s for s, _ in last})
    marks, bars = {}, []
    for day in days:
        close_ts = dt.datetime.combine(day, dt.time(21), tzinfo=dt.UTC)
        for s in symbols:
            marks[s] = last.get((s, day), marks.get(s, 100.0))
            bars.append((s, "1d", close_ts - dt.timedelta(hours=6, minutes=30), close_ts, day, marks[s]))
    con.executemany("insert into marts.bars values (?, ?, ?, ?, ?, ?)", bars)
    con.close()
    paths = eod.CompliancePaths(store_url=url, reports_dir=home / "reports", archive_root=home / "archive", work_dir=home / "compliance")
    print(f"input: {len(rows):,} fills over {len(days)} sessions ({args.history_fills}/session of history, {args.day_fills:,} "
          f"on {days[-1]}), {len(symbols)} symbols, {len(records):,} audit records (not timed)")
    return paths, warehouse, days


def bench_eod(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        paths, warehouse, days = build_home(Path(tmp), args)
        day, previous = days[-1], days[-2]
        run_day_suite(close_day([], day=day, closing_marks={}))  # pays the GX import outside the timings
        replay_prev, t_history = timed(lambda: eod.close_ledger(replace(paths, resume=False), day=previous,
                                                                warehouse=warehouse))
        paths.archive().put(paths.checkpoint(previous).read_bytes(), name=eod.LEDGER_STATE, date=previous)
        print(f"\nhistory: {replay_prev.fills_applied:,} fills, {len(replay_prev.close.ledger.open_lots()):,} open lots, "
              f"{len(replay_prev.close.ledger.disposals):,} disposals this year; checkpoint "
              f"{paths.checkpoint(previous).stat().st_size / 1e6:.1f} MB")

        del replay_prev  # measure the day with only what a fresh process would hold
        eod.forget_day_closes()  # the previous day's close, kept for its reports and checks: a new day's run starts without it
        gc.collect()
        base = [timed(lambda: sources.read_fills(paths.store_url, after=previous, through=day)) for _ in range(3)]
        fills_today, t_base = base[0][0], min(t for _, t in base)
        steps = {
            "ledger (resumed)": lambda: eod.close_ledger(paths, day=day, warehouse=warehouse),
            "reports": lambda: eod.write_day_reports(paths, day),
            "great expectations": lambda: run_day_suite(eod.load_day_close(paths, day)),
            "audit verification": lambda: eod.verify_day_audit(paths, day),
            "seal": lambda: eod.seal_day(paths, day),
        }
        took = {}
        for name, step in steps.items():
            _, took[name] = timed(step)
        resumed_bytes = paths.checkpoint(day).read_bytes()
        reports = [*(paths.day_dir(day) / name for name in REPORTS), paths.day_dir(day) / FILLS]
        resumed_reports = {path.name: path.read_bytes() for path in reports if path.exists()}
        _, t_replay = timed(lambda: eod.close_ledger(replace(paths, resume=False), day=day, warehouse=warehouse))
        eod.write_day_reports(paths, day)  # from the replayed close (not timed)
        same_reports = resumed_reports == {path.name: path.read_bytes() for path in reports if path.exists()}
        total = sum(took.values())
        print(f"\nEOD for {day}: {len(fills_today):,} fills")
        print(f"  baseline: read + validate the day's fills {t_base:8.2f} s")
        for name, seconds in took.items():
            print(f"  {name:<40} {seconds:8.2f} s")
        print(f"  {'total (resumed)':<40} {total:8.2f} s   = {total / t_base:5.1f} x baseline")
        print(f"  ledger by full replay (no checkpoint)    {t_replay:8.2f} s   = {t_replay / took['ledger (resumed)']:5.1f} x the "
              f"resumed ledger; the previous session's replay took {t_history:.2f} s")
        same_checkpoint = paths.checkpoint(day).read_bytes() == resumed_bytes
        same = same_checkpoint and same_reports
        print(f"  resumed = replayed: checkpoint ({len(resumed_bytes) / 1e6:.1f} MB) {'identical' if same_checkpoint else 'DIFFERENT'}, "
              f"{len(resumed_reports)} report files {'identical' if same_reports else 'DIFFERENT'}")
        report([Verdict("compliance", f"EOD {len(fills_today):,} fills, resumed", f"{total:.2f} s",
                        "read + validate the day's fills", total / t_base, f"< {EOD_GOAL_S:g} s, resumed = replayed",
                        (total < EOD_GOAL_S and same) if (args.day_fills, args.history_fills) == (10_000, 400) else None)])
        if not same:
            print("MISMATCH: the replayed and the resumed checkpoints or reports differ", file=sys.stderr)
            return 1
    return 0


def bench_audit(n: int) -> None:
    start = dt.datetime(2024, 1, 2, 15, tzinfo=dt.UTC)
    times = [start + dt.timedelta(seconds=i * 20) for i in range(n)]  # ~7 months of records
    payloads = [{"fill_id": f"F{i:07d}", "symbol": "S001", "side": "buy", "qty": "10", "price": "101.25", "fee": "0.05"}
                for i in range(n)]
    t0 = time.perf_counter()
    records = chain(payloads, times)
    rows = list(stored_records(records))  # what the store holds: the payload as canonical JSON text
    blobs = [prev.encode() + record_body(seq=seq, ts=ts, kind=kind, payload_json=payload.encode())
             for seq, ts, kind, payload, prev, _ in rows]
    print(f"\naudit chain: {n:,} records ({sum(map(len, blobs)) / 1e6:.0f} MB hashed), built in {time.perf_counter() - t0:.1f} s "
          "(not timed)")
    last_day = times[-1].date()
    _, t_sha = timed(lambda: [hashlib.sha256(b).digest() for b in blobs])
    scan, t_scan = timed(lambda: scan_chain(rows, day=last_day))
    result, t_objects = timed(lambda: verify_audit_trail(records, day=last_day))
    assert scan.sealed.ok and result.ok and scan.sealed == result, result.problems[:3]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/trader.db"
        TraderStore(url).close()
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.insert(audit), [dict(zip(("seq", "ts", "kind", "payload", "prev_hash", "hash"), r, strict=True)) for r in rows])
        engine.dispose()
        with TraderStore(url) as store:
            _, t_read = timed(lambda: sum(1 for _ in store.audit_rows()))
            stored, t_stored = timed(lambda: scan_chain(store.audit_rows(), day=last_day))
    assert stored.sealed == scan.sealed
    print(f"  baseline: plain sha256 over the same bytes          {t_sha:7.2f} s  {n / t_sha:>12,.0f} records/s")
    print(f"  scan_chain over stored rows (chain, head, Merkle)   {t_scan:7.2f} s  {n / t_scan:>12,.0f} records/s  "
          f"= {t_scan / t_sha:.1f} x baseline")
    print(f"  the same, read from a SQLite store in chunks       {t_stored:7.2f} s  {n / t_stored:>12,.0f} records/s  "
          f"(reading alone {t_read:.2f} s)")
    print(f"  verify_audit_trail over AuditRecord objects         {t_objects:7.2f} s  {n / t_objects:>12,.0f} records/s  "
          "(encodes each payload first)")
    rate, ratio = n / t_scan, t_scan / t_sha
    report([Verdict("compliance", f"audit verify {n:,} stored records", f"{rate:,.0f} records/s", "plain sha256 over the same bytes",
                    ratio, f">= {AUDIT_GOAL_RPS:,} records/s, <= {AUDIT_GOAL_RATIO:g}× sha256",
                    (rate >= AUDIT_GOAL_RPS and ratio <= AUDIT_GOAL_RATIO) if n == AUDIT_GOAL_RECORDS else None),
            Verdict("compliance", f"audit verify {n:,}, read from SQLite", f"{n / t_stored:,.0f} records/s",
                    "plain sha256 over the same bytes", t_stored / t_sha, "- (reference)", None)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, default=48)
    parser.add_argument("--history-fills", type=int, default=400, help="fills per session before the benchmarked day")
    parser.add_argument("--day-fills", type=int, default=10_000)
    parser.add_argument("--audit-records", type=int, default=1_000_000)
    parser.add_argument("--skip-audit", action="store_true")
    parser.add_argument("--skip-eod", action="store_true")
    args = parser.parse_args()
    code = 0 if args.skip_eod else bench_eod(args)
    if not args.skip_audit:
        bench_audit(args.audit_records)
    return code


if __name__ == "__main__":
    sys.exit(main())
