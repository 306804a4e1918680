"""Benchmark the backtest engine against the same accounting written as a plain NumPy loop over bars.

Run by hand, never under pytest::

    python -m tests.benchmarks.bench_backtest [--symbols 48] [--sessions 250] [--repeat 3]

Input (not timed): ``--symbols`` seeded random-walk price paths, 26 fifteen-minute bars
per weekday session for ``--sessions`` sessions (about a year of XNYS bars; holidays are
not skipped, which does not matter to a backtest), lognormal volumes, and scores that are
noise plus a little of the next four bars' return (so the book trades a real signal).

What is measured, both from the same polars frames to the equity curve and the trades:

* engine: ``models.backtest.run_backtest`` (long-short, ``k`` per side, compounding, with
  commission, spread and square-root impact);
* numpy: the same rules as a newcomer would write them: one Python iteration per bar that
  fills the previous bar's orders at this bar's open (costs from a trailing volatility
  computed on that bar's window), values the book at the close, ranks that bar's scores
  with ``argsort`` and sizes the next targets. It assumes the complete grid this script
  builds (every symbol has every bar), which the engine does not.

Each side runs once untimed (the engine's compiled loops load or compile then), then ``--repeat``
times, and the best time counts. Before any figure is printed
the two are compared: the same number of trades, the same shares in each, and final equity
within 1e-6; a difference is printed and the script exits non-zero.

How to read it: judge the ratio, not the seconds. ``numpy/engine`` is the loop's time over
the engine's in the same run. Throughput is bars x symbols per second. Nothing is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import polars as pl

from models.backtest import BacktestResult, Costs, run_backtest
from tests.benchmarks.summary import Verdict, report

GOAL = 10e6  # bar·symbols per second, long-short, 48 symbols × 6,500 bars

BARS_PER_SESSION, BAR = 26, dt.timedelta(minutes=15)
K, GROSS, CASH, TOLERANCE = 5, 1.0, 1_000_000.0, 1e-6
COSTS = Costs(commission_bps=0.5, half_spread_bps=1.0, impact_coef=0.1, vol_window=26)
T = TypeVar("T")


def best_of(fn: Callable[[], T], repeat: int) -> tuple[T, float, list[float]]:
    """``repeat`` timed runs after one untimed warm-up (numba's compile or cache load, first-touch allocations), so
    both sides are measured in their steady state."""
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    return out, min(runs), runs


def build_inputs(n_symbols: int, n_sessions: int, seed: int = 42) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Bars (symbol, ts, open, close, volume) and scores (symbol, ts, score) on a complete grid."""
    rng = np.random.default_rng(seed)
    days = np.busday_offset("2024-01-02", np.arange(n_sessions), roll="forward").astype("datetime64[us]")
    slots = np.timedelta64(14 * 60 + 30, "m") + np.arange(BARS_PER_SESSION) * np.timedelta64(15, "m")
    ts = (days[:, None] + slots[None, :]).ravel()
    n_bars = ts.size
    log_close = np.log(rng.uniform(20, 300, n_symbols)) + np.cumsum(rng.normal(0, 0.003, (n_bars, n_symbols)), axis=0)
    close = np.exp(log_close)
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.0005, (n_bars, n_symbols)))
    future = np.vstack([log_close[4:] - log_close[:-4], np.zeros((4, n_symbols))])
    score = 0.05 * future / 0.006 + rng.normal(size=(n_bars, n_symbols))
    symbols = [f"S{i:03d}" for i in range(n_symbols)]
    keys = {"symbol": np.tile(np.array(symbols), n_bars), "ts": pl.Series(np.repeat(ts, n_symbols)).dt.replace_time_zone("UTC")}
    bars = pl.DataFrame({**keys, "open": open_.ravel(), "close": close.ravel(), "volume": rng.lognormal(10, 0.6, close.size)})
    return bars, pl.DataFrame({**keys, "score": score.ravel()})


def numpy_backtest(scores: pl.DataFrame, bars: pl.DataFrame) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]:
    """The same accounting, one Python iteration per bar: (equity per bar, fills as (bar, symbols, shares))."""
    b = bars.sort("ts", "symbol")
    n = b["symbol"].n_unique()
    open_, close, volume = (b[c].to_numpy().reshape(-1, n) for c in ("open", "close", "volume"))
    sc = scores.sort("ts", "symbol")["score"].to_numpy().reshape(-1, n)
    pos, cash, target = np.zeros(n, np.int64), CASH, None
    equity, fills = np.empty(len(close)), []
    for t in range(len(close)):
        if target is not None:
            idx = np.flatnonzero(target != pos)
            if idx.size:
                lo = max(1, t - COSTS.vol_window)
                rets = np.log(close[lo:t, idx] / close[lo - 1 : t - 1, idx])
                sigma = rets.std(axis=0, ddof=1) if t - lo >= 2 else np.zeros(idx.size)
                q, price = target[idx] - pos[idx], open_[t, idx]
                size = np.abs(q).astype(float)
                notional = size * price
                commission = COSTS.commission_per_trade + COSTS.commission_bps * 1e-4 * notional
                spread = COSTS.half_spread_bps * 1e-4 * notional
                impact = COSTS.impact_coef * sigma * np.sqrt(size / volume[t, idx]) * notional
                cash -= float(q @ price) + commission.sum() + spread.sum() + impact.sum()
                pos[idx] = target[idx]
                fills.append((t, idx, q))
        equity[t] = cash + float(pos @ close[t])
        ids = np.flatnonzero(~np.isnan(sc[t]))
        target = None
        if ids.size:
            order = ids[np.argsort(sc[t, ids], kind="stable")]
            m = min(K, ids.size // 2)
            w = np.zeros(n)
            w[order[ids.size - m :]], w[order[:m]] = GROSS / (2 * K), -GROSS / (2 * K)
            target = np.trunc(w * equity[t] / close[t]).astype(np.int64)
    return equity, fills


def compare(engine: BacktestResult, baseline: tuple[np.ndarray, list]) -> list[str]:
    equity, fills = baseline
    problems = []
    shares = np.concatenate([q for _, _, q in fills]) if fills else np.zeros(0, np.int64)
    if engine.trades.height != shares.size or not np.array_equal(engine.trades["shares"].to_numpy(), shares):
        problems.append(f"trades differ: engine {engine.trades.height}, numpy {shares.size}")
    diff = float(np.abs(engine.equity["equity"].to_numpy() - equity).max())
    if diff > TOLERANCE:
        problems.append(f"equity differs by up to {diff:.3e}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, default=48)
    parser.add_argument("--sessions", type=int, default=250, help="sessions of 26 fifteen-minute bars (250 = about a year)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per implementation; the best counts (at least 3)")
    args = parser.parse_args()
    repeat = max(3, args.repeat)

    t0 = time.perf_counter()
    bars, scores = build_inputs(args.symbols, args.sessions)
    n_bars = bars.height // args.symbols
    print(f"input: {bars.height:,} bars = {args.symbols} symbols x {n_bars:,} fifteen-minute bars ({args.sessions} sessions), "
          f"long-short k={K}, gross {GROSS:g}, costs {COSTS}; built in {time.perf_counter() - t0:.1f} s (not timed)")

    engine, engine_best, engine_runs = best_of(lambda: run_backtest(scores, bars, k=K, gross_exposure=GROSS, initial_cash=CASH, costs=COSTS), repeat)
    baseline, numpy_best, numpy_runs = best_of(lambda: numpy_backtest(scores, bars), repeat)

    problems = compare(engine, baseline)
    final = engine.equity["equity"][-1]
    print(f"check: {engine.trades.height:,} trades; final equity engine {final:,.6f}, numpy {baseline[0][-1]:,.6f} "
          f"(|diff| {abs(final - baseline[0][-1]):.2e}, tolerance {TOLERANCE:g}); {'identical' if not problems else 'DIFFER'}")
    for problem in problems:
        print(f"  DIFFERS {problem}")

    cells = bars.height
    fmt = "{:>8} {:>10} {:>26} {:>22} {:>14}"
    print(fmt.format("impl", "best s", f"runs s (x{repeat})", "bar-symbols/s", "numpy/engine"))
    for name, best, runs in (("numpy", numpy_best, numpy_runs), ("engine", engine_best, engine_runs)):
        print(fmt.format(name, f"{best:.3f}", " ".join(f"{s:.2f}" for s in runs), f"{cells / best:,.0f}", f"{numpy_best / best:.1f}x"))
    print(f"engine is {numpy_best / engine_best:.1f}x the plain NumPy loop measured in this run; results {'identical' if not problems else 'DIFFER'}")
    rate = cells / engine_best
    report([Verdict("backtest", f"run_backtest {args.symbols}×{n_bars:,} long-short", f"{rate / 1e6:.1f}M bar·symbols/s",
                    "plain NumPy loop (× faster)", numpy_best / engine_best, f">= {GOAL / 1e6:g}M bar·symbols/s, identical",
                    (rate >= GOAL and not problems) if (args.symbols, n_bars) == (48, 6_500) else None)])  # the goal's size only
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
