"""The backtest's compiled loops and input shortcuts give what the plain definitions give, exactly."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from models.backtest import Costs, run_backtest
from tests.models.test_backtest import random_market

COSTS = Costs(commission_bps=1.0, commission_per_trade=0.5, half_spread_bps=2.0, impact_coef=0.5)


def stable_sort_weights(scores: np.ndarray, k: int, long_only: bool, unit: float) -> np.ndarray:
    """The book's definition: rank (-score, column) with a stable sort; longs from the head, shorts from the tail."""
    out = np.zeros_like(scores)
    for t, row in enumerate(scores):
        scored = np.flatnonzero(~np.isnan(row))
        order = scored[np.argsort(-row[scored], kind="stable")]
        per_side = min(k, order.size) if long_only else min(k, order.size // 2)
        out[t, order[:per_side]] = unit
        if not long_only and per_side:
            out[t, order[-per_side:]] = -unit
    return out


@pytest.mark.parametrize("long_only", [False, True])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_ranking_by_selection_matches_a_stable_sort_on_ties_and_gaps(long_only: bool, k: int) -> None:
    from models.backtest_loops import rank_weights

    rng = np.random.default_rng(k)
    scores = rng.integers(0, 4, (400, 12)).astype(np.float64)  # few values: ties everywhere
    scores[rng.random(scores.shape) < 0.3] = np.nan
    scores[:5] = np.nan  # rows with nothing to decide on
    scores[5, 1:] = np.nan  # a row with a single score
    weights, decide = rank_weights(scores, k, long_only, 0.25)
    assert np.array_equal(weights, stable_sort_weights(scores, k, long_only, 0.25))
    assert np.array_equal(decide, ~np.isnan(scores).all(axis=1))


def frames(result) -> tuple[pl.DataFrame, ...]:
    return result.equity, result.positions, result.trades


@pytest.mark.parametrize("options", [{}, {"cash_constrained": True, "size_at": "open"}, {"long_only": True}])
def test_backtest_is_the_same_whatever_the_row_order_of_bars_and_scores(options: dict) -> None:
    bars, scores = random_market(n_symbols=9, n_bars=240)  # time-major grid: the dense shortcut and reused keys
    reference = run_backtest(scores, bars, k=2, costs=COSTS, **options)
    shuffled = run_backtest(scores.sample(fraction=1.0, shuffle=True, seed=1), bars.sample(fraction=1.0, shuffle=True, seed=2),
                            k=2, costs=COSTS, **options)
    by_symbol = run_backtest(scores.sort("symbol", "ts"), bars.sort("symbol", "ts"), k=2, costs=COSTS, **options)
    for other in (shuffled, by_symbol):
        for got, want in zip(frames(other), frames(reference), strict=True):
            assert got.equals(want)


def test_near_grids_take_the_general_path_and_keep_every_bar() -> None:
    bars, scores = random_market(n_symbols=6, n_bars=120)
    # time-ordered but not a grid: one bar missing, and within a time the symbols out of order
    missing = bars.filter(~((pl.col("symbol") == "S02") & (pl.col("ts") == bars["ts"][60])))
    unsorted = bars.sort("ts", pl.col("symbol").str.reverse())
    # the first time in order, one later time with two symbols swapped
    rows = np.arange(bars.height)
    rows[[6 * 70, 6 * 70 + 1]] = rows[[6 * 70 + 1, 6 * 70]]
    swapped = bars[rows]
    for variant in (missing, unsorted, swapped):
        kept = scores.join(variant.select("symbol", "ts"), on=["symbol", "ts"], maintain_order="right")
        got = run_backtest(kept, variant, k=2, costs=COSTS)
        want = run_backtest(kept.sample(fraction=1.0, shuffle=True, seed=3), variant.sample(fraction=1.0, shuffle=True, seed=4),
                            k=2, costs=COSTS)
        for a, b in zip(frames(got), frames(want), strict=True):
            assert a.equals(b)
        assert got.equity.height == 120 and got.trades.height > 0


@pytest.mark.parametrize("n_symbols", [1, 5, 8, 9, 48, 128, 129, 300, 1000])
def test_book_marks_add_up_as_numpy_sums_the_holdings_bit_for_bit(n_symbols: int) -> None:
    from models.backtest_loops import _mark_book

    rng = np.random.default_rng(n_symbols)
    held = rng.integers(-5_000, 5_000, (50, n_symbols)).astype(np.float64)
    held[rng.random(held.shape) < 0.5] = 0.0
    close = rng.lognormal(3.0, 2.0, (50, n_symbols))
    value = held * close
    scratch = [np.empty(n_symbols) for _ in range(3)]
    marks = np.array([_mark_book(held[t], close[t], *scratch) for t in range(50)])
    assert np.array_equal(marks[:, 0], np.where(value > 0, value, 0.0).sum(axis=1))
    assert np.array_equal(marks[:, 1], np.where(value < 0, value, 0.0).sum(axis=1))
    assert np.array_equal(marks[:, 2], value.sum(axis=1))


def test_equity_curve_is_cash_plus_numpy_sums_of_the_positions_on_a_wide_book() -> None:
    bars, scores = random_market(n_symbols=140, n_bars=60)  # wider than NumPy's 128-value summing block
    result = run_backtest(scores, bars, k=20, costs=COSTS)
    symbols, times = bars["symbol"].unique().sort(), result.equity["ts"]
    value = np.zeros((times.len(), symbols.len()))  # the holdings' values on the (time × sorted symbol) grid
    held = result.positions
    value[times.search_sorted(held["ts"]).to_numpy(), symbols.search_sorted(held["symbol"]).to_numpy()] = held["value"].to_numpy()
    curve = result.equity
    assert np.array_equal(curve["long_value"].to_numpy(), np.where(value > 0, value, 0.0).sum(axis=1))
    assert np.array_equal(curve["equity"].to_numpy(), curve["cash"].to_numpy() + value.sum(axis=1))
