"""One optimiser for the trader and the research backtest: the backtest's book is weighted by trader.optimizer."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from models.backtest import BacktestInputError, run_backtest
from orchestration.portfolio import trader_weigh
from tests.models.test_backtest import random_market


@pytest.mark.parametrize("method", ["hrp", "mvo"])
def test_the_backtest_weighs_its_book_with_the_traders_optimiser(method):
    bars, scores = random_market(n_symbols=8, n_bars=260)
    plain = run_backtest(scores, bars, k=2, initial_cash=1_000_000.0, rebalance_every=20)
    built = run_backtest(scores, bars, k=2, initial_cash=1_000_000.0, rebalance_every=20,
                         weigh=trader_weigh(method, min_observations=60), lookback=200)
    first = plain.trades["decision_ts"].min()
    same_names = (plain.trades.filter(pl.col("decision_ts") == first)["symbol"].sort().to_list()
                  == built.trades.filter(pl.col("decision_ts") == first)["symbol"].sort().to_list())
    assert same_names  # the optimiser weighs the names selection picked; it never picks others
    # Too little history at the first decisions (fewer than 60 bars): equal weights there, as the trader falls back.
    early = plain.trades.filter(pl.col("decision_ts") == first)
    assert early.select("symbol", "shares").sort("symbol").equals(built.trades.filter(pl.col("decision_ts") == first)
                                                                  .select("symbol", "shares").sort("symbol"))
    later = built.trades.filter(pl.col("decision_ts") > first)
    assert later.height and not later.select("symbol", "shares").equals(plain.trades.filter(pl.col("decision_ts") > first)
                                                                          .select("symbol", "shares"))


def test_the_optimiser_sees_only_returns_closed_by_the_decision():
    bars, scores = random_market(n_symbols=6, n_bars=200)
    seen: list[int] = []

    def probe(sides, s, returns):
        seen.append(returns.shape[0])
        return np.full(len(sides), 1.0 / len(sides))

    run_backtest(scores, bars, k=1, rebalance_every=50, weigh=probe, lookback=1000)
    decisions = [t for t in range(200) if t % 50 == 0 and t >= 5]  # scores start after a 5-bar warm-up
    assert seen == [t for t in decisions]  # bar t sees the t returns into closes 1..t, never a later one


def test_a_weigh_that_breaks_the_contract_is_named():
    bars, scores = random_market(n_symbols=6, n_bars=60)
    with pytest.raises(BacktestInputError, match=r"^weigh: must return one share"):
        run_backtest(scores, bars, k=1, weigh=lambda sides, s, r: np.array([0.7, 0.7]))


def test_an_unknown_optimizer_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^backtest_optimizer: must be none, hrp or mvo, got 'hrpp'"):
        trader_weigh("hrpp")
