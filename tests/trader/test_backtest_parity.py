"""One truth for backtest and trader (issue 17, item 6).

The vectorised backtest (:func:`models.backtest.run_backtest`, float64) and the trader's sim
session (:class:`trader.runner.Runner` + :class:`trader.brokers.sim.SimBroker`, Decimal) run on
the same bars, the same score per (symbol, bar) and the same commission, and must agree on
every fill (time, symbol, signed shares, price, fee) and on the equity and cash at every bar's
close. The trader is configured as the backtest trades (:func:`parity_config`): equal weights,
``k`` names per side, no caps, thresholds or minimums, direction ignored, no participation
limit, no slippage, the fee as ``commission_bps``, decisions at every bar close (also the
session's last) and risk limits too wide to bind.

Where the engines differ by design, a test here shows the difference exactly (both module
docstrings list them: ``models.backtest`` "Parity with the trader", ``trader.sizing`` "Parity
with the backtest"):

* the backtest charges ``half_spread_bps`` as a cost with the fill at the open; the simulator
  moves the fill price by ``slippage_bps``: the same shares, the same cash but for the
  commission on the spread, which only the trader pays;
* a symbol without a score at a decision is closed by the backtest and held by the trader;
* the trader denies an order its buying power cannot pay for; the backtest fills it;
* the trader cuts weights toward zero to 8 decimals before sizing (1/6 → 0.16666666);
* with fewer than ``2k`` scored names the backtest holds fewer names at ``gross / 2k``, the
  trader fills the long side first and spreads ``gross`` over the names it selected.

The trader's ``risk.market_hours_only`` (no decision at a session's last close) is switched off
here rather than shown: with it on, the backtest's decision at 16:00 New York has no counterpart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal as D

import numpy as np
import polars as pl
import pytest

from models.backtest import BacktestResult, Costs, run_backtest
from trader.brokers.bars import Bar, InMemoryBars
from trader.brokers.sim import FeeModel, SimBroker, SimConfig
from trader.config import TraderConfig
from trader.domain import Symbol, TradingState
from trader.predictions import Prediction, PredictionBatch
from trader.runner import CycleReport, Runner, replay_ticks
from trader.sizing import target_weights
from trader.store import TraderStore

SYMBOLS = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")
STEP = dt.timedelta(minutes=15)
#: A regular XNYS session (14:30–21:00 UTC, 26 bars) and the first hour and a half of the next: the first
#: session's last decision (at 16:00 New York) fills at the second's first open, after an overnight gap.
SESSIONS = ((dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC), 26), (dt.datetime(2024, 3, 6, 14, 30, tzinfo=dt.UTC), 6))
CASH = 100_000
COMMISSION_BPS = 1.5
#: The backtest's float equity against the trader's exact Decimal: far inside a cent.
MONEY_TOLERANCE = 1e-6

Scores = Mapping[tuple[str, dt.datetime], float]


# -- one market, one set of scores ------------------------------------------------------------------
def seeded_bars(seed: int = 17, symbols: Sequence[str] = SYMBOLS) -> list[Bar]:
    """:data:`SESSIONS` of 15-minute bars per symbol, prices in whole cents, an overnight gap between them."""
    rng = np.random.default_rng(seed)
    bars = []
    for i, symbol in enumerate(symbols):
        close = 20.0 + 15.0 * i
        for start, n in SESSIONS:
            gap = rng.normal(0.0, 0.01)
            for k in range(n):
                open_ = round(close * (1 + (gap if k == 0 else rng.normal(0.0, 0.001))), 2)
                close = round(open_ * (1 + rng.normal(0.0, 0.006)), 2)
                o, c = D(f"{open_:.2f}"), D(f"{close:.2f}")
                bars.append(Bar(symbol=Symbol(symbol), ts=start + k * STEP, open=o, high=max(o, c), low=min(o, c), close=c,
                                volume=D(int(rng.integers(5_000, 50_000)))))
    return sorted(bars, key=lambda b: (b.ts, b.symbol))


def flat_bars(price: str, n: int = 3, symbols: Sequence[str] = SYMBOLS) -> list[Bar]:
    return [Bar(symbol=Symbol(s), ts=SESSIONS[0][0] + k * STEP, open=D(price), high=D(price), low=D(price), close=D(price),
                volume=D(10_000)) for k in range(n) for s in symbols]


def seeded_scores(bars: Sequence[Bar], seed: int = 5) -> dict[tuple[str, dt.datetime], float]:
    """One score per (symbol, bar), on a coarse grid so that ties are common (both engines must break them alike)."""
    rng = np.random.default_rng(seed)
    return {(b.symbol, b.ts): float(rng.integers(-4, 5)) / 4 for b in bars}


class ScoreBook:
    """A :class:`~trader.predictions.PredictionClient` answering, as of a bar's close, exactly that bar's scores."""

    def __init__(self, scores: Scores):
        self.scores = scores

    def predict(self, symbols: Sequence[Symbol], *, as_of: dt.datetime | None = None) -> PredictionBatch:
        assert as_of is not None, "a replay asks as of each bar's close"
        bar_ts = as_of - STEP
        preds = tuple(Prediction(symbol=s, score=self.scores[(s, bar_ts)], direction="flat", confidence=0.5, feature_ts=as_of,
                                 stale=False, model_version="parity")
                      for s in symbols if (s, bar_ts) in self.scores)
        return PredictionBatch("parity", preds)


# -- the two engines ---------------------------------------------------------------------------------
def parity_config(*, k: int, long_only: bool, gross: float) -> TraderConfig:
    """The trader set up to trade as :func:`run_backtest` does: every cap, threshold and limit out of the way."""
    return TraderConfig.model_validate({
        "universe": {"symbols": list(SYMBOLS)},
        "risk": {"max_notional_per_order": "1e12", "max_position_pct": "1", "max_gross_exposure_pct": "10",
                 "max_net_exposure_pct": "10", "max_sector_pct": None, "daily_loss_limit_pct": "0.99",
                 "drawdown": {"tiers": [], "flatten_and_halt_at": "0.99"}, "price_collar_pct": "1",
                 "max_orders_per_minute": 10_000, "market_hours_only": False},
        "sizing": {"mode": "long_only" if long_only else "long_short", "k": k, "gross_exposure": str(gross),
                   "weighting": "equal", "max_weight": "1", "min_order_notional": "0", "rebalance_threshold": "0",
                   "respect_direction": False},
        "prediction": {"explain": 0},
    })


def trader_session(store: TraderStore, bars: list[Bar], scores: Scores, *, k: int, long_only: bool = False,
                   gross: float = 1.0, commission_bps: float = COMMISSION_BPS, slippage_bps: float = 0.0,
                   cash: int = CASH) -> tuple[list[CycleReport], SimBroker]:
    broker = SimBroker(InMemoryBars(bars), start=bars[0].ts, config=SimConfig(
        slippage_bps=D(str(slippage_bps)), fees=FeeModel(bps=D(str(commission_bps))), max_participation=None,
        initial_cash=D(cash)))
    runner = Runner(config=parity_config(k=k, long_only=long_only, gross=gross), store=store, broker=broker,
                    predictor=ScoreBook(scores), run_id="parity", strict=True)
    reports = runner.run(replay_ticks(bars), before_cycle=lambda tick: broker.advance_to(tick.ts))
    return reports, broker


def backtest(bars: list[Bar], scores: Scores, *, k: int, long_only: bool = False, gross: float = 1.0,
             commission_bps: float = COMMISSION_BPS, half_spread_bps: float = 0.0, cash: int = CASH) -> BacktestResult:
    frame = pl.DataFrame([{"symbol": b.symbol, "ts": b.ts, "open": float(b.open), "close": float(b.close),
                           "volume": float(b.volume)} for b in bars])
    score_frame = pl.DataFrame([{"symbol": s, "ts": ts, "score": x} for (s, ts), x in scores.items()],
                               schema={"symbol": pl.String, "ts": frame["ts"].dtype, "score": pl.Float64})
    return run_backtest(score_frame, frame, k=k, long_only=long_only, gross_exposure=gross, initial_cash=float(cash),
                        costs=Costs(commission_bps=commission_bps, half_spread_bps=half_spread_bps))


def trader_fills(store: TraderStore) -> list[tuple[dt.datetime, str, int, D, D]]:
    """(ts, symbol, signed shares, price, fee) of every recorded fill, in time then symbol order."""
    return sorted((f.ts, str(f.symbol), int(f.signed_qty), f.price, f.fee) for f in store.list_fills())


def backtest_fills(result: BacktestResult) -> list[tuple[dt.datetime, str, int, float, float]]:
    return sorted(result.trades.select("ts", "symbol", "shares", "price", "commission").iter_rows())


def equity_by_bar(reports: Sequence[CycleReport]) -> dict[dt.datetime, tuple[D, D]]:
    """The trader's (equity, cash) at each bar's close, keyed by the bar's open time as the backtest keys it."""
    return {r.ts - STEP: (r.equity, r.cash) for r in reports}


def assert_clean(reports: Sequence[CycleReport]) -> None:
    """Every cycle ran, nothing was denied and the books agreed with the venue: the config did not bind."""
    assert all(r.state is TradingState.ACTIVE and r.problems == () and r.denied == 0 for r in reports), \
        [r.line() for r in reports if r.denied or r.problems]


def assert_same_money(trader: D, backtest: float) -> None:
    assert abs(float(trader) - backtest) < MONEY_TOLERANCE, (trader, backtest)
    assert trader.quantize(D("0.01")) == D(repr(backtest)).quantize(D("0.01"))  # to the cent


# -- parity ------------------------------------------------------------------------------------------
def boundary_ties(scores: Scores, k: int) -> int:
    """Bars where a score ties across the edge of the long (or short) book: there the tie-break decides the book."""
    ties = 0
    for ts in sorted({ts for _, ts in scores}):
        x = sorted(-scores[(s, ts)] for s in SYMBOLS)
        ties += x[k - 1] == x[k] or x[-k] == x[-k - 1]
    return ties


@pytest.mark.parametrize(("k", "long_only", "gross"), [(2, False, 0.4), (1, False, 0.4), (2, True, 0.4)],
                         ids=["long-short-k2", "long-short-k1", "long-only-k2"])
def test_parity_trader_sim_session_and_backtest_make_the_same_fills_and_equity_to_the_cent(store, k, long_only, gross):
    bars = seeded_bars()
    scores = seeded_scores(bars)
    assert boundary_ties(scores, k) > 10  # ties at the book's edge are common: both engines must break them alike
    reports, _ = trader_session(store, bars, scores, k=k, long_only=long_only, gross=gross)
    result = backtest(bars, scores, k=k, long_only=long_only, gross=gross)
    assert_clean(reports)

    ours, theirs = trader_fills(store), backtest_fills(result)
    assert len(ours) > 25  # a real session: the book turns over most bars
    assert any(ts == SESSIONS[1][0] for ts, *_ in ours)  # the first session's last decision, at the next open
    assert [(ts, s, q, float(p)) for ts, s, q, p, _ in ours] == [(ts, s, q, p) for ts, s, q, p, _ in theirs]
    for (*_, fee), (*_, commission) in zip(ours, theirs, strict=True):
        assert abs(float(fee) - commission) < 1e-9

    marks = equity_by_bar(reports)
    assert list(marks) == result.equity["ts"].to_list()  # one mark per bar, both sessions
    for ts, equity, cash in result.equity.select("ts", "equity", "cash").iter_rows():
        assert_same_money(marks[ts][0], equity)
        assert_same_money(marks[ts][1], cash)
    assert result.equity["equity"][-1] != CASH  # the book moved


# -- documented differences, shown exactly ------------------------------------------------------------
def test_parity_half_spread_is_a_cost_in_the_backtest_and_slippage_in_the_trader(store):
    """Same shares; the trader's price is the open moved by the spread and its fee is charged on that price."""
    bars = seeded_bars()
    scores = seeded_scores(bars)
    bps, cash = 5.0, 1_000_000
    reports, _ = trader_session(store, bars, scores, k=2, gross=0.4, slippage_bps=bps, cash=cash)
    result = backtest(bars, scores, k=2, gross=0.4, half_spread_bps=bps, cash=cash)
    assert_clean(reports)

    ours = trader_fills(store)
    assert [f[:3] for f in ours] == [f[:3] for f in backtest_fills(result)]
    opens = {(b.symbol, b.ts): b.open for b in bars}
    spread = {(ts, s): x for ts, s, x in result.trades.select("ts", "symbol", "spread").iter_rows()}
    fee_on_spread: dict[dt.datetime, D] = {}
    for ts, symbol, shares, price, fee in ours:
        moved = opens[(symbol, ts)] * (1 + (1 if shares > 0 else -1) * D(str(bps)) / 10_000)
        assert price == moved  # the trader pays the spread in the price, the backtest books it as a cost at the open
        assert abs(float(abs(shares) * abs(price - opens[(symbol, ts)])) - spread[(ts, symbol)]) < 1e-9
        assert fee == abs(shares) * price * D(str(COMMISSION_BPS)) / 10_000
        # Commission on the price moved by the spread: more on a buy, less on a sell than on the open.
        fee_on_spread[ts] = fee_on_spread.get(ts, D(0)) + abs(shares) * (price - opens[(symbol, ts)]) * D(str(COMMISSION_BPS)) / 10_000
    # The cash paid for a fill is the same but for the commission on the spread, which only the trader pays.
    marks, extra, largest = equity_by_bar(reports), D(0), D(0)
    for ts, equity, cash in result.equity.select("ts", "equity", "cash").iter_rows():
        extra += fee_on_spread.get(ts, D(0))
        largest = max(largest, abs(extra))
        assert_same_money(marks[ts][0] + extra, equity)
        assert_same_money(marks[ts][1] + extra, cash)
    assert largest > 100 * D(str(MONEY_TOLERANCE))  # small (a fee on a spread), yet far above the tolerance


def test_parity_a_symbol_without_a_score_is_closed_by_the_backtest_and_held_by_the_trader(store):
    bars = seeded_bars()
    scores = seeded_scores(bars)
    times = sorted({b.ts for b in bars})
    # A name the book holds at a decision's close; that decision gets no score for it.
    held = backtest(bars, scores, k=2, gross=0.4).positions.select("ts", "symbol", "shares").rows()
    decision, symbol, shares = next((ts, s, q) for ts, s, q in held if 0 < times.index(ts) < len(times) - 1)
    nxt = times[times.index(decision) + 1]
    gappy = {(s, ts): x for (s, ts), x in scores.items() if ts <= nxt and (s, ts) != (symbol, decision)}
    upto = [b for b in bars if b.ts <= nxt]

    reports, broker = trader_session(store, upto, gappy, k=2, gross=0.4)
    result = backtest(upto, gappy, k=2, gross=0.4)
    assert_clean(reports)
    ours = [(ts, s, q, float(p)) for ts, s, q, p, _ in trader_fills(store)]
    theirs = [f[:4] for f in backtest_fills(result)]
    assert [f for f in ours if f[0] < nxt] == [f for f in theirs if f[0] < nxt]
    # At the next open the backtest closes the unscored name; every other fill is the same in both.
    close = next(b.open for b in bars if b.ts == nxt and b.symbol == symbol)
    assert sorted([f for f in ours if f[0] == nxt] + [(nxt, symbol, -int(shares), float(close))]) == [f for f in theirs if f[0] == nxt]
    assert broker.positions()[Symbol(symbol)].qty == shares  # the trader still holds it


def test_parity_the_trader_never_spends_more_buying_power_than_its_cash_the_backtest_does(store):
    """At gross 0.8 a cycle of flips asks for more new risk (longs, and shorts opened by a flip) than the cash: the
    trader denies the order that would overdraw it, the backtest fills it. Before that, and for every other order
    of that decision, the two agree."""
    bars = seeded_bars()
    scores = seeded_scores(bars)
    reports, _ = trader_session(store, bars, scores, k=2, gross=0.8)
    # A decision at a bar's close fills at the open of the bar that starts at that instant.
    decided = min(r.ts for r in reports if r.denied)
    denied = [(r.payload["symbol"], r.payload["reason"]) for r in store.audit_records()
              if r.kind == "risk_decision" and not r.payload["approved"] and dt.datetime.fromisoformat(r.ts) == decided]
    assert denied and {reason for _, reason in denied} == {"INSUFFICIENT_BUYING_POWER"}

    result = backtest(bars, scores, k=2, gross=0.8)
    ours = [(ts, s, q, float(p)) for ts, s, q, p, _ in trader_fills(store)]
    theirs = [f[:4] for f in backtest_fills(result)]
    assert [f for f in ours if f[0] < decided] == [f for f in theirs if f[0] < decided]
    at_ours, at_theirs = [f for f in ours if f[0] == decided], [f for f in theirs if f[0] == decided]
    assert at_ours == [f for f in at_theirs if f[1] not in {s for s, _ in denied}]
    assert sorted(f[1] for f in at_theirs if f not in at_ours) == sorted(s for s, _ in denied)


def first_bar_scores() -> dict[tuple[str, dt.datetime], float]:
    return {(s, SESSIONS[0][0]): float(i) for i, s in enumerate(SYMBOLS)}


def test_parity_trader_weights_cut_to_8_decimals_can_size_one_share_less(store):
    """k=3 names per side at 1/6 each: 120,000 × 1/6 / 20.00 is 1,000 shares; the trader's 0.16666666 gives 999."""
    bars, scores = flat_bars("20.00"), first_bar_scores()
    reports, _ = trader_session(store, bars, scores, k=3, cash=120_000, commission_bps=0.0)
    result = backtest(bars, scores, k=3, cash=120_000, commission_bps=0.0)
    assert_clean(reports)
    assert [f[1:3] for f in backtest_fills(result)] == [
        ("AAA", -1000), ("BBB", -1000), ("CCC", -1000), ("DDD", 1000), ("EEE", 1000), ("FFF", 1000)]
    assert [f[1:3] for f in trader_fills(store)] == [
        ("AAA", -999), ("BBB", -999), ("CCC", -999), ("DDD", 999), ("EEE", 999), ("FFF", 999)]
    weights, _ = target_weights(ScoreBook(scores).predict(list(SYMBOLS), as_of=SESSIONS[0][0] + STEP).predictions,
                                parity_config(k=3, long_only=False, gross=1.0).sizing)
    assert set(weights.values()) == {D("0.16666666"), D("-0.16666666")}  # 6,000 × 0.16666666 = 999.99996 shares


def test_parity_with_fewer_than_2k_scored_names_the_engines_build_different_books(store):
    """k=4 over 6 names: the backtest holds 3 + 3 at 1/8 each (exposure falls); the trader 4 long + 2 short at 1/6."""
    bars, scores = flat_bars("20.00"), first_bar_scores()
    reports, _ = trader_session(store, bars, scores, k=4, cash=120_000, commission_bps=0.0)
    result = backtest(bars, scores, k=4, cash=120_000, commission_bps=0.0)
    assert_clean(reports)
    assert [f[1:3] for f in backtest_fills(result)] == [
        ("AAA", -750), ("BBB", -750), ("CCC", -750), ("DDD", 750), ("EEE", 750), ("FFF", 750)]
    assert [f[1:3] for f in trader_fills(store)] == [
        ("AAA", -999), ("BBB", -999), ("CCC", 999), ("DDD", 999), ("EEE", 999), ("FFF", 999)]
