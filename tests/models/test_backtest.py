"""The backtest engine: fills at the next open, exact cash with known costs, costs only hurt, the book's shape, bad input."""

from __future__ import annotations

import datetime as dt
import gzip
import math

import numpy as np
import polars as pl
import pytest

from models.backtest import (
    BacktestInputError,
    Costs,
    run_backtest,
    run_signal_backtest,
    sma_cross_signal,
)
from tests.conftest import TEST_DATA

T0 = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC)
BAR = dt.timedelta(minutes=15)
COSTS = Costs(commission_bps=1.0, commission_per_trade=0.5, half_spread_bps=2.0, impact_coef=0.5)


def bars_frame(opens: dict[str, list[float]], closes: dict[str, list[float]], volume: float = 10_000.0) -> pl.DataFrame:
    """One row per (symbol, bar) at 15-minute steps from T0; a NaN close leaves that bar out."""
    rows = [
        {"symbol": s, "ts": T0 + i * BAR, "open": o, "close": c, "volume": volume}
        for s in opens
        for i, (o, c) in enumerate(zip(opens[s], closes[s], strict=True))
        if not math.isnan(c)
    ]
    return pl.DataFrame(rows)


def random_market(n_symbols: int = 12, n_bars: int = 300, seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Seeded random-walk bars and noise scores (with a null warm-up) on a complete grid."""
    rng = np.random.default_rng(seed)
    log_close = np.log(rng.uniform(20, 200, n_symbols)) + np.cumsum(rng.normal(0, 0.004, (n_bars, n_symbols)), axis=0)
    close = np.exp(log_close)
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.001, (n_bars, n_symbols)))
    symbols = [f"S{i:02d}" for i in range(n_symbols)]
    bars = pl.DataFrame({
        "symbol": symbols * n_bars, "ts": [T0 + i * BAR for i in range(n_bars) for _ in symbols],
        "open": open_.ravel(), "close": close.ravel(), "volume": rng.lognormal(9, 0.5, n_bars * n_symbols),
    })
    score = rng.normal(size=n_bars * n_symbols)
    score[: 5 * n_symbols] = np.nan  # warm-up: no scores, no trades
    return bars, bars.select("symbol", "ts", pl.Series("score", score).fill_nan(None))


def sp500() -> pl.DataFrame:
    return pl.read_csv(gzip.decompress((TEST_DATA / "sp500_daily.csv.gz").read_bytes())).select(
        pl.col("Date").str.to_date("%m/%d/%Y").alias("ts"), pl.col("Open").alias("open"),
        pl.col("Close").alias("close"), pl.col("Volume").cast(pl.Float64).alias("volume"),
    )


# --- timing and exact accounting ------------------------------------------------------------------


def test_backtest_fills_at_next_bar_open() -> None:
    bars = bars_frame({"A": [10, 11, 12, 13], "B": [20, 21, 22, 23]}, {"A": [10.5, 11.5, 12.5, 13.5], "B": [20.5, 21.5, 22.5, 23.5]})
    scores = pl.DataFrame({"symbol": ["A", "B"], "ts": [T0 + BAR] * 2, "score": [1.0, -1.0]})
    trades = run_backtest(scores, bars, k=1, initial_cash=10_000.0).trades
    assert trades.select("decision_ts", "ts", "symbol", "price").rows() == [
        (T0 + BAR, T0 + 2 * BAR, "A", 12.0),
        (T0 + BAR, T0 + 2 * BAR, "B", 22.0),
    ]
    # sized at the decision bar's close (known then), not at the fill price
    assert trades["shares"].to_list() == [int(5_000 / 11.5), -int(5_000 / 21.5)]


def test_backtest_order_waits_for_the_symbols_next_bar_when_it_skips_one() -> None:
    nan = float("nan")
    bars = bars_frame({"A": [10, 11, 12, 13], "B": [20, 21, 22, 23]}, {"A": [10, 11, 12, 13], "B": [20, 21, nan, 23]})
    scores = pl.DataFrame({"symbol": ["A", "B"], "ts": [T0 + BAR] * 2, "score": [1.0, -1.0]})
    trades = run_backtest(scores, bars, k=1, initial_cash=10_000.0).trades
    assert trades.filter(pl.col("symbol") == "B").select("ts", "price").rows() == [(T0 + 3 * BAR, 23.0)]


def test_backtest_one_trade_gives_exact_cash_and_equity_with_known_costs() -> None:
    closes = [100.0, 102.0, 101.0, 103.0, 104.0]
    bars = bars_frame({"A": [100.0, 101.0, 102.0, 102.5, 103.5]}, {"A": closes}, volume=10_000.0)
    scores = pl.DataFrame({"symbol": ["A"], "ts": [T0 + 2 * BAR], "score": [1.0]})
    result = run_backtest(scores, bars, k=1, long_only=True, initial_cash=100_000.0, costs=COSTS)

    shares = int(100_000.0 / 101.0)  # 990: full equity at the decision close
    notional = shares * 102.5  # filled at the next open
    r1, r2 = math.log(102 / 100), math.log(101 / 102)  # the two returns before the fill bar
    sigma = abs(r1 - r2) / math.sqrt(2)  # their sample std (ddof=1)
    commission, spread = 0.5 + 1e-4 * notional, 2e-4 * notional
    impact = 0.5 * sigma * math.sqrt(shares / 10_000.0) * notional
    cash = 100_000.0 - notional - commission - spread - impact

    trade = result.trades.row(0, named=True)
    assert result.trades.height == 1 and trade["shares"] == shares and trade["side"] == "buy"
    assert trade["commission"] == pytest.approx(commission, abs=1e-9)
    assert trade["spread"] == pytest.approx(spread, abs=1e-9)
    assert trade["impact"] == pytest.approx(impact, abs=1e-9)
    assert result.equity["cash"].to_list()[3:] == pytest.approx([cash, cash], abs=1e-6)
    assert result.equity["equity"].to_list() == pytest.approx([100_000.0] * 3 + [cash + shares * 103.0, cash + shares * 104.0], abs=1e-6)


def test_backtest_cash_reconciles_with_trades_and_equity_is_cash_plus_positions_at_every_bar() -> None:
    bars, scores = random_market()
    result = run_backtest(scores, bars, k=3, initial_cash=1_000_000.0, costs=COSTS)
    flows = result.trades.group_by("ts").agg(flow=(-pl.col("shares") * pl.col("price") - pl.col("cost")).sum())
    curve = (
        result.equity.join(flows, on="ts", how="left")
        .join(result.positions.group_by("ts").agg(held=pl.col("value").sum()), on="ts", how="left")
        .with_columns(pl.col("flow", "held").fill_null(0.0))
    )
    assert np.allclose(1_000_000.0 + curve["flow"].cum_sum().to_numpy(), curve["cash"].to_numpy(), rtol=0, atol=1e-6)
    assert np.allclose(curve["cash"] + curve["held"], curve["equity"], rtol=0, atol=1e-6)
    assert result.positions["shares"].dtype == pl.Int64


def test_a_result_pickles_with_its_positions_and_comes_back_equal() -> None:
    """Dagster's IO manager pickles backtest results; the lazy positions builder is a closure, so they go built."""
    import pickle

    bars, scores = random_market()
    result = run_backtest(scores, bars, k=3, initial_cash=1_000_000.0, costs=COSTS)
    back = pickle.loads(pickle.dumps(pickle.loads(pickle.dumps(result))))  # twice: a restored result pickles too
    assert back.positions.height > 0 and back.positions.equals(result.positions)
    assert back.equity.equals(result.equity) and back.trades.equals(result.trades) and back.initial_cash == result.initial_cash


def test_backtest_costs_only_lower_equity_at_every_bar() -> None:
    bars, scores = random_market()
    free = run_backtest(scores, bars, k=3, costs=Costs(), compound=False)
    paid = run_backtest(scores, bars, k=3, costs=COSTS, compound=False)
    gap = free.equity["equity"].to_numpy() - paid.equity["equity"].to_numpy()
    assert (gap >= -1e-9).all() and gap[-1] > 0
    # sized from fixed capital, both runs trade the same shares; the gap is exactly the costs paid so far
    assert free.trades["shares"].to_list() == paid.trades["shares"].to_list()
    assert np.allclose(gap, paid.equity["cost"].cum_sum().to_numpy(), rtol=0, atol=1e-6)
    compounding = run_backtest(scores, bars, k=3, costs=COSTS)
    assert compounding.equity["equity"][-1] < run_backtest(scores, bars, k=3).equity["equity"][-1]


def test_backtest_decisions_ignore_bars_after_the_fill() -> None:
    bars, scores = random_market()
    cut = bars["ts"].unique().sort()[150]
    shocked = bars.with_columns(pl.when(pl.col("ts") > cut).then(pl.col(c) * 1.5).otherwise(pl.col(c)) for c in ("open", "close"))
    before, after = run_backtest(scores, bars, k=3, costs=COSTS), run_backtest(scores, shocked, k=3, costs=COSTS)
    assert before.equity.filter(pl.col("ts") <= cut).equals(after.equity.filter(pl.col("ts") <= cut))
    # orders decided at the cut are sized before the shocked bar opens, so they are the same shares
    decided = [r.trades.filter(pl.col("decision_ts") <= cut).select("decision_ts", "symbol", "shares") for r in (before, after)]
    assert decided[0].height > 0 and decided[0].equals(decided[1])


# --- the book -------------------------------------------------------------------------------------


def test_long_short_book_is_dollar_neutral_with_integer_shares() -> None:
    bars, scores = random_market(n_symbols=20)
    result = run_backtest(scores, bars, k=4, gross_exposure=1.0, initial_cash=1_000_000.0)
    invested = result.equity.filter(pl.col("gross_exposure") > 0)
    assert invested.height > 250
    assert invested["net_exposure"].abs().max() < 0.01
    assert ((invested["gross_exposure"] - 1.0).abs() < 0.02).all()
    per_bar = result.positions.group_by("ts").agg(longs=(pl.col("shares") > 0).sum(), shorts=(pl.col("shares") < 0).sum())
    assert set(per_bar["longs"]) == {4} and set(per_bar["shorts"]) == {4}


def test_long_only_book_holds_top_k_at_gross_over_k_each() -> None:
    bars, scores = random_market()
    result = run_backtest(scores, bars, k=2, long_only=True, gross_exposure=0.5)
    last_decision = scores.filter(pl.col("ts") == scores["ts"].max() - BAR).sort("score", descending=True)
    held = result.positions.filter(pl.col("ts") == scores["ts"].max())
    assert sorted(held["symbol"]) == sorted(last_decision["symbol"][:2])
    weights = held["value"] / result.equity["equity"][-1]
    assert ((weights - 0.25).abs() < 0.01).all()


@pytest.mark.parametrize(("long_only", "book"), [(False, [("A", 50), ("D", -50)]), (True, [("A", 100)])])
def test_tied_scores_go_long_alphabetically_first_and_short_alphabetically_last(long_only: bool, book: list) -> None:
    # The trader's sizing ranks (-score, symbol) and takes longs from the head, shorts from the tail; the backtest
    # used to rank the other way round (B long, C short here), so the two books differed on every tie.
    flat = [10.0] * 2
    bars = bars_frame(dict.fromkeys("ABCD", flat), dict.fromkeys("ABCD", flat))
    scores = pl.DataFrame({"symbol": list("ABCD"), "ts": [T0] * 4, "score": [1.0, 1.0, 0.0, 0.0]})
    result = run_backtest(scores, bars, k=1, long_only=long_only, initial_cash=1_000.0)
    assert result.trades.select("symbol", "shares").rows() == book


def test_rebalance_every_n_bars_decides_only_on_those_bars() -> None:
    bars, scores = random_market()
    trades = run_backtest(scores, bars, k=3, rebalance_every=4).trades
    times = bars["ts"].unique().sort()
    decision_rows = trades.select(pl.col("decision_ts").unique()).join(times.to_frame().with_row_index("row"), left_on="decision_ts", right_on="ts")
    assert decision_rows.height > 10 and (decision_rows["row"] % 4 == 0).all()


# --- one instrument -------------------------------------------------------------------------------


def test_sma_cross_signal_is_flat_until_the_slow_average_exists() -> None:
    assert sma_cross_signal([1.0, 2.0, 3.0, 2.0, 1.0, 0.5], fast=1, slow=3).tolist() == [0, 0, 1, -1, -1, -1]


def test_signal_backtest_sma_cross_on_real_sp500_trades_alternate_and_fill_next_open() -> None:
    bars = sp500()
    signal = sma_cross_signal(bars["close"], fast=20, slow=100)
    result = run_signal_backtest(bars, signal, initial_cash=100_000.0, costs=Costs(commission_per_trade=1.0, commission_bps=0.5))
    trades = result.trades
    assert trades.height >= 10
    assert (np.diff(np.sign(trades["shares"].to_numpy())) != 0).all()
    by_day = bars.with_row_index("i")
    fills = trades.join(by_day.select("ts", "i", "open"), on="ts").join(by_day.select(pl.col("ts").alias("decision_ts"), pl.col("i").alias("d")), on="decision_ts")
    assert (fills["i"] == fills["d"] + 1).all() and (fills["price"] == fills["open"]).all()
    assert (trades["commission"] == 1.0 + 0.5e-4 * trades["notional"]).all()
    final_cash = 100_000.0 - (trades["shares"] * trades["price"]).sum() - trades["cost"].sum()
    assert final_cash == pytest.approx(result.equity["cash"][-1], abs=1e-6)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("empty scores", "scores"),
        ("unknown symbol", "scores.symbol"),
        ("score without a bar", "scores.ts"),
        ("negative close", "bars.close"),
        ("k of zero", "k"),
    ],
)
def test_backtest_bad_input_raises_a_one_line_value_error_naming_the_field(case: str, field: str) -> None:
    bars, scores = random_market(n_symbols=3, n_bars=10)
    kwargs: dict = {"k": 1}
    if case == "empty scores":
        scores = scores.clear()
    elif case == "unknown symbol":
        scores = pl.concat([scores, scores.tail(1).with_columns(symbol=pl.lit("ZZZ"))])
    elif case == "score without a bar":
        scores = scores.with_columns(pl.col("ts") + dt.timedelta(minutes=1))
    elif case == "negative close":
        bars = bars.with_columns(close=-pl.col("close"))
    else:
        kwargs["k"] = 0
    with pytest.raises(BacktestInputError) as info:
        run_backtest(scores, bars, **kwargs)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{field}:") and "\n" not in str(info.value)


def test_negative_cost_raises_naming_the_cost_field() -> None:
    with pytest.raises(ValueError, match=r"^costs\.commission_bps: must be a finite number >= 0, got -1\.0$"):
        Costs(commission_bps=-1.0)


def test_signal_backtest_rejects_a_signal_of_the_wrong_length() -> None:
    with pytest.raises(BacktestInputError, match=r"^signal: needs one value per bar \(5031\)"):
        run_signal_backtest(sp500(), [1, 0, -1])


# --- realism: cash, carry, sizing at the open, round trips -----------------------------------------


def _long_flat(bars: pl.DataFrame) -> np.ndarray:
    return np.maximum(sma_cross_signal(bars["close"], fast=10, slow=30), 0)


def test_cash_constrained_never_spends_cash_it_does_not_have_on_real_gap_ups() -> None:
    bars = sp500()
    signal = _long_flat(bars)
    loose = run_signal_backtest(bars, signal, initial_cash=100_000.0)
    assert loose.equity["cash"].min() < 0  # shares sized at the close, bought at a higher open: more than the cash
    tight = run_signal_backtest(bars, signal, initial_cash=100_000.0, cash_constrained=True,
                                costs=Costs(commission_per_trade=1.0, commission_bps=0.5))
    assert tight.equity["cash"].min() >= 0
    # A buy is what the decision sized (equity / close at the signal bar), or, when that cost more than the
    # cash, cut to whole shares with less than one more share's price (and costs) left over.
    decided = tight.equity.select(pl.col("ts").alias("decision_ts"), pl.col("equity").alias("book")).join(
        bars.select(pl.col("ts").alias("decision_ts"), pl.col("close").alias("decision_close")), on="decision_ts")
    buys = (tight.trades.filter(pl.col("shares") > 0).join(tight.equity.select("ts", "cash"), on="ts").join(decided, on="decision_ts")
            .with_columns(wanted=(pl.col("book") / pl.col("decision_close")).floor()))
    assert (buys["shares"] <= buys["wanted"]).all()
    cut = buys.filter(pl.col("shares") < pl.col("wanted"))
    assert cut.height > 0 and (cut["cash"] < cut["price"] * (1 + 0.5e-4) + 1.0).all()


def test_sizing_at_the_open_buys_all_in_at_the_fill_price() -> None:
    bars = bars_frame({"A": [10.0, 10.0, 12.5, 13.0]}, {"A": [10.0, 11.0, 13.0, 13.0]})
    result = run_signal_backtest(bars.drop("symbol"), [0, 1, 1, 1], initial_cash=1_000.0, size_at="open", cash_constrained=True)
    assert result.trades.select("ts", "shares", "price").rows() == [(T0 + 2 * BAR, 80, 12.5)]  # 1000 / 12.5, not 1000 / 11
    at_close = run_signal_backtest(bars.drop("symbol"), [0, 1, 1, 1], initial_cash=1_000.0)
    assert at_close.trades["shares"].to_list() == [90]  # 1000 / 11 at the signal bar's close: 1125 paid, cash -125
    assert at_close.equity["cash"][-1] == pytest.approx(1_000.0 - 90 * 12.5)


def test_financing_accrues_on_borrowed_cash_and_the_borrow_fee_on_the_short_book() -> None:
    bars = bars_frame({"A": [10.0] * 4, "B": [20.0] * 4}, {"A": [10.0] * 4, "B": [20.0] * 4})
    scores = pl.DataFrame({"symbol": ["A", "B"], "ts": [T0, T0], "score": [1.0, -1.0]})
    costs = Costs(financing_rate=0.05, borrow_fee=0.02, periods_per_year=100)
    result = run_backtest(scores, bars, k=1, gross_exposure=3.0, initial_cash=1_000.0, costs=costs)
    # Long 150 A (1,500) and short 75 B (1,500) at bar 1: cash 1,000 - 1,500 + 1,500 = 1,000, never negative.
    assert result.equity["financing"].sum() == 0.0
    assert result.equity["borrow"].to_list()[1:] == pytest.approx([1_500.0 * 0.02 / 100] * 3)
    long_only = run_backtest(scores, bars, k=1, long_only=True, gross_exposure=1.5, initial_cash=1_000.0, costs=costs)
    # 150 A bought with 1,000 of cash: 500 borrowed, charged every bar from the fill on (and the charge compounds).
    financing = long_only.equity["financing"].to_list()
    assert financing[0] == 0.0 and financing[1] == pytest.approx(500.0 * 0.05 / 100) and financing[2] > financing[1]
    assert long_only.equity["equity"][-1] == pytest.approx(1_000.0 - sum(financing))
    assert long_only.metrics(100)["total_financing"] == pytest.approx(sum(financing))


def test_round_trips_pair_entries_with_exits_and_split_a_flip() -> None:
    bars = bars_frame({"A": [10.0, 10.0, 12.0, 11.0, 9.0, 9.0]}, {"A": [10.0, 11.0, 12.0, 11.0, 9.0, 9.0]})
    result = run_signal_backtest(bars.drop("symbol"), [1, 1, -1, -1, 0, 0], initial_cash=1_000.0,
                                 costs=Costs(commission_per_trade=2.0))
    # Long 100 at bar 1's open; the flip sized at bar 2's close (equity 1,198 / 12 → short 99) fills at bar 3's open.
    assert result.trades.select("shares", "price").rows() == [(100, 10.0), (-199, 11.0), (99, 9.0)]
    trips = result.round_trips()
    assert trips.select("side", "max_shares", "bars", "open").rows() == [("long", 100, 2, False), ("short", 99, 2, False)]
    # The flip's commission (2) is split 100 : 99 between the trip it closes and the one it opens.
    flip_long, flip_short = 2.0 * 100 / 199, 2.0 * 99 / 199
    assert trips["pnl"].to_list() == pytest.approx([100 * (11 - 10) - 2.0 - flip_long, 99 * (11 - 9) - flip_short - 2.0])
    stats = result.trade_stats()
    assert stats["round_trips"] == 2 and stats["win_rate"] == 1.0 and stats["avg_trade"] == pytest.approx(sum(trips["pnl"]) / 2)
    assert math.isinf(stats["profit_factor"]) and stats["exposure_time"] == pytest.approx(4 / 6)
    # The trips' P&L is the whole P&L: nothing is open at the end.
    assert sum(trips["pnl"]) == pytest.approx(result.equity["equity"][-1] - 1_000.0)


def test_an_open_trip_is_marked_at_the_last_close() -> None:
    bars = bars_frame({"A": [10.0, 10.0, 12.0]}, {"A": [10.0, 11.0, 12.5]})
    trips = run_signal_backtest(bars.drop("symbol"), [1, 1, 1], initial_cash=1_000.0).round_trips()
    assert trips.select("side", "open", "exit_ts").rows() == [("long", True, None)] and trips["pnl"][0] == pytest.approx(250.0)


@pytest.mark.parametrize(("kwargs", "field"), [({"size_at": "noon"}, "size_at"), ({"cash_constrained": "yes"}, "cash_constrained")])
def test_backtest_semantics_options_are_checked_by_name(kwargs: dict, field: str) -> None:
    bars, scores = random_market(n_symbols=4, n_bars=20)
    with pytest.raises(BacktestInputError, match=f"^{field}: "):
        run_backtest(scores, bars, k=1, **kwargs)


def test_negative_carry_rate_is_refused_by_name() -> None:
    with pytest.raises(BacktestInputError, match=r"^costs\.borrow_fee: "):
        Costs(borrow_fee=-0.01)


def test_the_tear_sheet_lists_the_round_trip_statistics(tmp_path) -> None:
    from models.tearsheet import write_tearsheet

    bars = bars_frame({"A": [10.0, 10.0, 12.0, 11.0, 9.0, 9.0]}, {"A": [10.0, 11.0, 12.0, 11.0, 9.0, 9.0]})
    result = run_signal_backtest(bars.drop("symbol"), [1, 1, -1, -1, 0, 0], initial_cash=1_000.0, costs=Costs(commission_per_trade=2.0))
    text = write_tearsheet(result, tmp_path, periods_per_year=252)["summary"].read_text()
    stats = result.trade_stats()
    assert "## Round trips" in text
    assert f"| 2 (0) | 100.0% | ∞ | {stats['avg_trade']:,.2f} | {stats['avg_win']:,.2f} | n/a | 2.0 | 66.7% |" in text


def test_the_examples_in_the_backtest_and_its_inputs_run():
    import doctest

    from models import backtest, backtest_inputs

    for module in (backtest, backtest_inputs):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
