"""Benchmark the trader's decision cycle: predictions in hand → sized, risk-checked orders routed to the SimBroker.

Run by hand, never under pytest::

    python -m tests.benchmarks.bench_trader [--symbols 48] [--cycles 240] [--orders 10000]

Input (not timed): ``--symbols`` seeded random-walk 15-minute bars on real XNYS sessions
(8 sectors), a fresh prediction batch per bar (random scores, so the book turns over and
every cycle sends orders), long-short top/bottom ``k = symbols // 5``, limits loose enough
that most orders pass (every check still runs, the market-hours one against the real
exchange calendar).

What is measured, per cycle, in the same run:

* **core** — what one decision costs in memory: :func:`trader.sizing.size_orders`, then
  :meth:`RiskEngine.check_all` over the orders, then ``SimBroker.submit`` of the approved
  ones. The simulator's clock moves between cycles (not timed).
* **runner** — :meth:`trader.runner.Runner.cycle` end to end with a SQLite store on disk
  (WAL): sync of the venue's fills, kill-switch reads, sizing, risk, audit records, and three
  commits: the venue's events, the decisions with the orders (NEW, synced to disk before any
  order leaves: the cycle's one durable commit), the venue's answers with the cycle record.
  Between cycles the loop calls :meth:`Runner.idle` as ``Runner.run`` does (a live runner's wait for
  the next bar: a WAL checkpoint once the log has grown, the GC's full collection once due); that
  upkeep is timed apart and printed, not counted in the cycle. ``--cycles`` (240 by default) cycles
  are timed in each loop, so the p99 is the third-slowest of 240, not one outlier.
* **per order** — one :meth:`RiskEngine.check` (all 15 checks) on each order of a cycle.

The store's share is judged twice: on wall time (what the goal means on a quiet machine) and on
this process's CPU time (``time.process_time``), which on a shared, loaded machine leaves out
the time spent waiting for other processes — and the fsync of the durable commit, which the
"core + durable commits" reference row shows.

Baselines, measured in the same run: ``size_orders`` alone (the cycle's share that is not
risk or routing) and a bare Python loop over the same orders (one attribute read and one
multiplication per order). Ratios, not seconds, are what to compare across machines.

``--phases`` times each phase of every runner cycle in a second, instrumented loop
(:mod:`tests.benchmarks.trader_phases`: sync, context reads, predictions, sizing, risk, routing with
its durable commit, the last commit, the GC's pauses, CPU beside wall time) and prints the slowest
cycles phase by phase against the medians: what made them slow.

``--profile N`` prints the runner's N most expensive functions (cProfile on CPU time, cumulative) after
the table: where the store's share goes (audit encoding, bulk writes, commits, reads).

``--orders`` then pushes that many orders through the core path and checks that nothing
is lost: orders sent = orders the venue knows = orders filled, filled quantity = sent
quantity, and the venue's positions = the sum of its fills. A mismatch exits non-zero.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import pstats
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from decimal import Decimal as D
from pathlib import Path

import exchange_calendars as xcals
import numpy as np

from tests.benchmarks.summary import Verdict
from tests.benchmarks.summary import report as summary
from tests.benchmarks.trader_floor import store_floor
from tests.benchmarks.trader_phases import phase_rows, print_phases
from trader.brokers.bars import Bar, InMemoryBars
from trader.brokers.sim import SimBroker, SimConfig
from trader.config import TraderConfig
from trader.domain import Account, Side, SubmitOrder, Symbol, TradingState, positions_from_fills
from trader.predictions import Prediction, PredictionBatch
from trader.risk import RiskContext, RiskEngine
from trader.runner import Runner, Tick, replay_ticks, steady_heap
from trader.sizing import size_orders
from trader.store import TraderStore

P99_GOAL_S = 0.020  # the full cycle with the SQLite store, 48 symbols
STORE_SHARE_GOAL = 0.30  # the store's share of the cycle (runner p50 - core p50, over runner p50)
DURABLE_COMMITS = 1  # the orders before they leave (the cycle's other commits are synced by the next durable one)

STEP = dt.timedelta(minutes=15)
CASH = D(1_000_000)


def symbols_for(n: int) -> list[str]:
    return [f"S{i:03d}" for i in range(n)]


def make_config(symbols: Sequence[str]) -> TraderConfig:
    sectors: dict[str, list[str]] = {}
    for i, s in enumerate(symbols):
        sectors.setdefault(f"sector{i % 8}", []).append(s)
    k = max(1, len(symbols) // 5)
    return TraderConfig.model_validate({
        "universe": {"symbols": list(symbols), "sectors": sectors},
        "risk": {"max_notional_per_order": 1_000_000, "max_position_pct": "0.2", "max_gross_exposure_pct": "2",
                 "max_net_exposure_pct": "1", "max_sector_pct": "0.9", "daily_loss_limit_pct": "0.5",
                 "max_orders_per_minute": 100_000},
        "sizing": {"k": k, "max_weight": "0.05", "rebalance_threshold": "0.001"},
    })


def make_bars(symbols: Sequence[str], n_bars: int, seed: int = 7) -> list[Bar]:
    """Random-walk bars on consecutive XNYS sessions, 26 per session, cents exact."""
    cal = xcals.get_calendar("XNYS")
    sessions = cal.sessions_in_range("2024-03-04", "2024-12-31")
    opens = []
    for session in sessions:
        first = cal.session_open(session).to_pydatetime()
        close = cal.session_close(session).to_pydatetime()
        opens += [first + i * STEP for i in range(int((close - first) / STEP))]
        if len(opens) >= n_bars:
            break
    rng = np.random.default_rng(seed)
    paths = 50 + 100 * rng.random(len(symbols)) * np.exp(np.cumsum(rng.normal(0, 0.004, (n_bars, len(symbols))), axis=0))
    bars = []
    for t, ts in enumerate(opens[:n_bars]):
        for j, s in enumerate(symbols):
            o = D(f"{paths[t - 1, j] if t else paths[0, j]:.2f}")
            c = D(f"{paths[t, j]:.2f}")
            bars.append(Bar(symbol=s, ts=ts, open=o, high=max(o, c), low=min(o, c), close=c, volume=D(1_000_000)))
    return bars


class Batches:
    """A prediction batch per tick, seeded; the runner asks it like the HTTP service."""

    def __init__(self, symbols: Sequence[str], seed: int = 11):
        self.symbols, self.rng = list(symbols), np.random.default_rng(seed)

    def batch(self, as_of: dt.datetime) -> PredictionBatch:
        scores = self.rng.normal(size=len(self.symbols))
        return PredictionBatch("bench:v1", tuple(
            Prediction(symbol=s, score=float(x), direction="long" if x > 0 else "short", confidence=0.6, feature_ts=as_of,
                       stale=False, model_version="bench:v1") for s, x in zip(self.symbols, scores, strict=True)))

    def predict(self, symbols: Sequence[Symbol], *, as_of: dt.datetime | None = None) -> PredictionBatch:
        assert as_of is not None
        return self.batch(as_of)


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def core_cycles(symbols: Sequence[str], ticks: list[Tick], bars: list[Bar], *, max_orders: int | None = None) -> dict:
    """The in-memory decision path per tick; returns timings (seconds) and what went through the venue."""
    cfg = make_config(symbols)
    engine, batches = RiskEngine.from_config(cfg), Batches(symbols)
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(initial_cash=CASH, max_participation=None), start=ticks[0].ts)
    out: dict = {"cycle": [], "cpu": [], "sizing": [], "risk": [], "per_order": [], "bare": [], "sent": [], "orders": 0}
    with steady_heap():  # as Runner.run, for both loops alike
        _core_loop(ticks, out, cfg=cfg, engine=engine, batches=batches, broker=broker, max_orders=max_orders)
    broker.advance_to(ticks[-1].ts + 10 * STEP)
    out["broker"] = broker
    return out


def _core_loop(ticks: list[Tick], out: dict, *, cfg: TraderConfig, engine: RiskEngine, batches: Batches, broker: SimBroker,
               max_orders: int | None) -> None:
    account = Account(cash=CASH)
    for n, tick in enumerate(ticks):
        broker.advance_to(tick.ts)
        for event in broker.poll_events():  # the fills of the previous cycle move the book (not timed)
            if hasattr(event, "fill"):
                account = account.apply_fill(event.fill)
        batch = batches.batch(tick.ts)
        ctx = RiskContext(now=tick.ts, trading_state=TradingState.ACTIVE, account=account, prices=tick.prices,
                          day_start_equity=account.equity(tick.prices), peak_equity=account.equity(tick.prices),
                          buying_power=CASH * 4, working_orders=tuple(broker.list_orders()))
        equity = ctx.equity
        c0, t0 = time.process_time(), time.perf_counter()
        sizing = size_orders(batch.predictions, positions={s: p.qty for s, p in account.positions.items()}, prices=tick.prices,
                             equity=equity, config=cfg.sizing, run_id="bench", decision_ts=tick.ts)
        t1 = time.perf_counter()
        decisions, _ = engine.check_all(sizing.commands, ctx)
        t2 = time.perf_counter()
        for d in decisions:
            if d.approved:
                broker.submit(d.command.order)
                out["sent"].append(d.command.order)
        t3 = time.perf_counter()
        out["cpu"].append(time.process_time() - c0)
        out["cycle"].append(t3 - t0)
        out["sizing"].append(t1 - t0)
        out["risk"].append(t2 - t1)
        if n < 60:  # per-order latencies and the bare loop on a sample of cycles
            out["per_order"] += _per_order(engine, sizing.commands, ctx)
            out["bare"] += _bare(sizing.commands, tick)
        if max_orders is not None and len(out["sent"]) >= max_orders:
            break


def _per_order(engine: RiskEngine, commands: list[SubmitOrder], ctx: RiskContext) -> list[float]:
    times = []
    for command in commands:
        t0 = time.perf_counter()
        engine.check(command, ctx)
        times.append(time.perf_counter() - t0)
    return times


def _bare(commands: list[SubmitOrder], tick: Tick) -> list[float]:
    times = []
    for command in commands:
        t0 = time.perf_counter()
        _ = command.order.qty * tick.prices[command.order.symbol]
        times.append(time.perf_counter() - t0)
    return times


def durable_commits(n: int) -> list[float]:
    """The store's floor: a one-row SQLite commit in WAL mode with ``synchronous=FULL`` (one fsync), on the same disk."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(f"{tmp}/floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (a INTEGER)")
        for i in range(n):
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?)", (i,))
            conn.execute("COMMIT")
            times.append(time.perf_counter() - t0)
        conn.close()
    return times


def runner_cycles(symbols: Sequence[str], ticks: list[Tick], bars: list[Bar], profile: int = 0) -> dict:
    """Runner.cycle end to end with a SQLite store on disk; risk time measured by wrapping check_all."""
    cfg = make_config(symbols)
    engine, risk_times = RiskEngine.from_config(cfg), []
    check_all = engine.check_all

    def timed_check_all(commands, ctx):
        t0 = time.perf_counter()
        out = check_all(commands, ctx)
        risk_times.append(time.perf_counter() - t0)
        return out

    engine.check_all = timed_check_all  # type: ignore[method-assign]
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(initial_cash=CASH, max_participation=None), start=ticks[0].ts)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        with TraderStore(f"sqlite:///{db}") as store:
            runner = Runner(config=cfg, store=store, broker=broker, predictor=Batches(symbols), run_id="bench", engine=engine,
                            strict=True)
            runner.start()
            profiler = cProfile.Profile(time.process_time) if profile else None
            with steady_heap():  # as Runner.run does around its loop
                cycles, cpu, sent, heads, idle = _runner_loop(runner, broker, ticks, profiler, db)
        floor, volume = ([], {}) if profile else store_floor(
            db, [t.ts.astimezone(dt.UTC).isoformat(timespec="microseconds") for t in ticks], heads)
    return {"cycle": cycles, "cpu": cpu, "risk": risk_times, "sent": sent, "fsync": durable_commits(len(cycles)), "idle": idle,
            "profile": profiler, "floor": floor, "volume": volume}


def _runner_loop(runner: Runner, broker: SimBroker, ticks: list[Tick], profiler: cProfile.Profile | None, db: Path
                 ) -> tuple[list[float], list[float], int, list[int], list[float]]:
    cycles, cpu, sent, heads, idle = [], [], 0, [], []
    head = sqlite3.connect(db)  # the audit chain's head after each cycle (not timed), for the floor
    try:
        for tick in ticks:
            broker.advance_to(tick.ts)
            t0, c0 = time.perf_counter(), time.process_time()
            if profiler is not None:
                report = profiler.runcall(runner.cycle, tick)  # timings of a profiled run are not comparable
            else:
                report = runner.cycle(tick)
            cycles.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            sent += report.submitted
            assert not report.problems, report.problems
            heads.append(head.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0])
            t0 = time.perf_counter()
            runner.idle()  # as Runner.run between cycles (a live runner's wait for the next bar): timed apart
            idle.append(time.perf_counter() - t0)
    finally:
        head.close()
    return cycles, cpu, sent, heads, idle


def phased_cycles(symbols: Sequence[str], ticks: list[Tick], bars: list[Bar]) -> tuple[list[dict[str, float]], list[float]]:
    """The runner loop again, each phase timed (:mod:`tests.benchmarks.trader_phases`); not the timed run."""
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(initial_cash=CASH, max_participation=None), start=ticks[0].ts)
    return phase_rows(lambda store: Runner(config=make_config(symbols), store=store, broker=broker, predictor=Batches(symbols),
                                           run_id="bench", strict=True), ticks, lambda tick: broker.advance_to(tick.ts))


def check_nothing_lost(result: dict) -> list[str]:
    broker, sent = result["broker"], result["sent"]
    known = {o.client_order_id: o for o in broker.list_orders(open_only=False)}
    fills = broker.fills(since=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    problems = []
    if len(known) != len(sent) or set(known) != {o.client_order_id for o in sent}:
        problems.append(f"sent {len(sent)} orders, the venue knows {len(known)}")
    filled = [o for o in known.values() if o.filled_qty == o.qty]
    if len(filled) != len(sent):
        problems.append(f"{len(sent) - len(filled)} orders not fully filled")
    sent_qty, fill_qty = sum(o.qty for o in sent), sum(f.qty for f in fills)
    if sent_qty != fill_qty:
        problems.append(f"sent quantity {sent_qty} != filled quantity {fill_qty}")
    from_fills = {s: p.qty for s, p in positions_from_fills(fills).items() if p.qty}
    if from_fills != {s: p.qty for s, p in broker.positions().items()}:
        problems.append("venue positions differ from the sum of its fills")
    signed = sum(o.qty * (1 if o.side is Side.BUY else -1) for o in sent)
    if signed != sum(from_fills.values(), D(0)):
        problems.append("net signed quantity of orders differs from net position")
    return problems


def us(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f} ms"


def report(core: dict, run: dict, n_symbols: int) -> None:
    orders = len(core["sent"]) / len(core["cycle"])
    size50, bare50 = pct(core["sizing"], 50), pct(core["bare"], 50)
    print(f"decision cycle, {n_symbols} symbols, {len(core['cycle'])} cycles, {orders:.1f} orders sent per cycle "
          f"({len(core['per_order'])} orders timed one by one)")
    print(f"  baseline  size_orders alone       p50 {ms(size50)}   p99 {ms(pct(core['sizing'], 99))}")
    print(f"  baseline  bare loop, per order    p50 {us(bare50)}")
    for name, data in (("core", core), ("runner", run)):
        total, risk = sum(data["cycle"]), sum(data["risk"])
        c50, c99 = pct(data["cycle"], 50), pct(data["cycle"], 99)
        print(f"  {name:<7} cycle  p50 {ms(c50)}  p99 {ms(c99)}   = {c50 / size50:6.1f}× sizing alone; "
              f"risk checks {risk / total:5.1%} of the time (risk p50 {ms(pct(data['risk'], 50))}, p99 {ms(pct(data['risk'], 99))})")
    p50, p99 = pct(core["per_order"], 50), pct(core["per_order"], 99)
    single_sum = p50 * orders
    print(f"  per-order risk check (15 checks)   p50 {us(p50)}   p99 {us(p99)}   = {p50 / bare50:6.0f}× the bare loop per order")
    print(f"    one check per order × {orders:.1f} orders = {ms(single_sum)}, {single_sum / pct(core['cycle'], 50):5.1%} of the core "
          f"cycle p50; check_all takes {pct(core['risk'], 50) / single_sum:4.1f}× that (each approval rebuilds the context)")
    print(f"  runner orders sent: {run['sent']} in {len(run['cycle'])} cycles; upkeep between cycles (Runner.idle: WAL checkpoint, "
          f"full GC when due; not in the cycle) p50 {ms(pct(run['idle'], 50))}  p99 {ms(pct(run['idle'], 99))}  "
          f"max {ms(max(run['idle'], default=float('nan')))}")
    f50, f99 = pct(run["fsync"], 50), pct(run["fsync"], 99)
    r50, r99, c50, c99 = pct(run["cycle"], 50), pct(run["cycle"], 99), pct(core["cycle"], 50), pct(core["cycle"], 99)
    share = (r50 - c50) / r50
    print(f"  baseline  durable commit (fsync)  p50 {ms(f50)}   p99 {ms(f99)}   (the runner makes {DURABLE_COMMITS} per cycle that "
          f"sends orders); store share of the runner cycle p50: {share:5.1%}")
    cpu_r50, cpu_c50 = pct(run["cpu"], 50), pct(core["cpu"], 50)
    cpu_share = (cpu_r50 - cpu_c50) / cpu_r50
    print(f"  runner  cycle CPU time (this process, excludes waiting for the disk and for other processes) "
          f"p50 {ms(cpu_r50)}  p99 {ms(pct(run['cpu'], 99))}; core p50 {ms(cpu_c50)}; store share of the CPU p50: {cpu_share:5.1%}")
    floor50, volume = pct(run["floor"], 50), run["volume"]
    floor_share = floor50 / (c50 + floor50)
    print(f"  store floor: each cycle's rows ({volume['audit records']:.0f} audit records, {volume['audit kB']:.0f} kB of payload, "
          f"{volume['orders']:.0f} orders × 3 writes, {volume['fills']:.0f} fills) by the bare sqlite3 driver in one durable "
          f"transaction: p50 {ms(floor50)}  p99 {ms(pct(run['floor'], 99))}; a core cycle plus that floor would give the store "
          f"{floor_share:5.1%}; the runner's store part is {(r50 - c50) / floor50:4.1f}× the floor")
    summary([
        Verdict("trader", f"Runner.cycle, SQLite store, {n_symbols} symbols", f"p99 {r99 * 1e3:.1f} ms (p50 {r50 * 1e3:.1f}; {len(run['cycle'])} cycles)",
                "in-memory core cycle p99", r99 / c99, f"p99 < {P99_GOAL_S * 1e3:g} ms", r99 < P99_GOAL_S),
        Verdict("trader", "store's share of Runner.cycle (p50, runner - core)", f"{share:.0%} ({(r50 - c50) * 1e3:.1f} ms)",
                "in-memory core cycle p50", r50 / c50, f"<= {STORE_SHARE_GOAL:.0%}", share <= STORE_SHARE_GOAL),
        Verdict("trader", "store's share of Runner.cycle CPU time (p50, runner - core)",
                f"{cpu_share:.0%} ({(cpu_r50 - cpu_c50) * 1e3:.1f} ms)", "in-memory core cycle CPU p50", cpu_r50 / cpu_c50,
                f"<= {STORE_SHARE_GOAL:.0%}", cpu_share <= STORE_SHARE_GOAL),
        Verdict("trader", "store's part of Runner.cycle (p50, runner - core) against its floor", f"{(r50 - c50) * 1e3:.1f} ms",
                f"the cycle's rows, bare driver, one durable commit: {floor50 * 1e3:.1f} ms = {floor_share:.0%} of core + floor",
                (r50 - c50) / floor50, f"- (reference; the share goal is below the floor when {floor_share:.0%} > "
                f"{STORE_SHARE_GOAL:.0%})", None),
        Verdict("trader", f"Runner.cycle floor: core + {DURABLE_COMMITS} durable commits", f"p99 {(c99 + DURABLE_COMMITS * f99) * 1e3:.1f} ms",
                "durable SQLite commit p99", (c99 + DURABLE_COMMITS * f99) / f99, "- (reference)", None),
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=48)
    parser.add_argument("--cycles", type=int, default=240, help="cycles timed per loop (a p99 needs a few hundred)")
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the runner's N costliest functions")
    parser.add_argument("--phases", action="store_true", help="print each phase of the runner's cycle, and its slowest cycles")
    args = parser.parse_args(argv)
    symbols = symbols_for(args.symbols)
    need = max(args.cycles, args.orders // max(1, args.symbols // 3)) + 2
    bars = make_bars(symbols, need)
    ticks = replay_ticks(bars)[:-1]  # the last close has no next bar to fill at
    RiskEngine.from_config(make_config(symbols)).calendar.is_open(ticks[0].ts)  # load the exchange calendar once, untimed
    core = core_cycles(symbols, ticks[: args.cycles], bars)
    run = runner_cycles(symbols, ticks[: args.cycles], bars)
    report(core, run, args.symbols)
    if args.profile:
        profiled = runner_cycles(symbols, ticks[: min(args.cycles, 60)], bars, profile=args.profile)
        print(f"\nRunner.cycle, {len(profiled['cycle'])} cycles under cProfile (CPU time; per cycle = cumtime / cycles):")
        pstats.Stats(profiled["profile"], stream=sys.stdout).sort_stats("cumulative").print_stats(args.profile)
    if args.phases:
        print_phases(*phased_cycles(symbols, ticks[: args.cycles], bars))
    flood = core_cycles(symbols, ticks, bars, max_orders=args.orders)
    problems = check_nothing_lost(flood)
    print(f"orders through the SimBroker: {len(flood['sent'])} sent in {len(flood['cycle'])} cycles, "
          f"{len(flood['broker'].list_orders(open_only=False))} known to the venue, "
          f"{len(flood['broker'].fills(since=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))} fills — "
          + ("nothing lost" if not problems else "MISMATCH: " + "; ".join(problems)))
    return 1 if problems or len(flood["sent"]) < args.orders else 0


if __name__ == "__main__":
    sys.exit(main())
