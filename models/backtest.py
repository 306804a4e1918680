"""Cost-aware backtests in whole shares: a cross-sectional book from scores, or one instrument from a signal.

Timing (no look-ahead): a score or signal stamped with bar ``t`` is known at that
bar's close. Targets are sized from the equity and the close of bar ``t``, and the
orders fill at the **open of the symbol's next bar**, never on bar ``t`` itself. An
order waits for that next bar when the symbol has none on the following timestamp
(or trades zero volume there) unless a newer decision replaces it first.

Costs of a fill of ``q`` shares at price ``p`` (notional ``N = |q| p``), each kept on
the trade row so that cash reconciles exactly:

* commission = ``commission_per_trade + commission_bps / 1e4 * N``;
* spread = ``half_spread_bps / 1e4 * N`` (crossing half the quoted spread);
* impact = ``impact_coef * sigma * sqrt(|q| / V) * N``: the square-root law, with
  ``sigma`` the sample standard deviation of the symbol's log close-to-close returns
  over the ``vol_window`` timestamps up to the bar *before* the fill (gaps skipped; at
  least two returns, else 0) and ``V`` the fill bar's volume (the order's
  participation in the bar it trades in; a cost estimate, never a decision input).

Accounting: positions are integer shares; ``cash`` changes only by fills
(``-q p - costs``) and carry (``financing_rate`` on a negative cash balance and
``borrow_fee`` on the short book, annual rates accrued per bar); at every bar
``equity = cash + sum(shares * close)`` with the last known close of each symbol. Money
is float64 (research, not the ledger).

Two options change the semantics, for realism or for comparison with other backtesters:

* ``cash_constrained=True``: fills never spend cash the book does not have. Sells fill
  first; if the buys would take cash below zero (a gap up at the open makes the shares
  sized at the close cost more), every buy of that bar is scaled down to what the cash
  pays for, in whole shares, and the rest of those orders is dropped.
* ``size_at="open"``: targets are sized at the fill, from the equity and the price at the
  next bar's open (the "all-in at the next open" convention of backtesting.py and
  Backtrader's cheat-on-open), instead of from the decision bar's close.

**Parity with the trader** (``tests/trader/test_backtest_parity.py``): the trader's sim session
(:class:`trader.runner.Runner` with :class:`trader.brokers.sim.SimBroker`) set up as this engine
trades (equal weights, ``k`` per side, no caps, thresholds or minimums, direction ignored, no
participation limit, no slippage, fee ``bps = commission_bps``, a decision at every bar close)
makes the same fills and the same cash and equity at every bar, to the cent. By design they differ
where (the first five shown exactly by that test):

* ``half_spread_bps`` is a cost here, with the fill at the open; the simulator's ``slippage_bps``
  moves the fill price instead: the same shares and cash, but the trader's fee is charged on the
  moved price;
* a symbol without a score at a decision is closed here; the trader holds it;
* the trader cuts weights toward zero to 8 decimals (1/6 → 0.16666666), which can size a share less;
* with fewer than ``2k`` scored names this engine holds fewer names at ``gross / 2k``; the trader
  fills the long side first and spreads ``gross`` over the names it selected;
* the trader denies an order its buying power (cash, working buys reserved, sells not netted)
  cannot pay for; this engine fills it (``cash_constrained`` scales buys only, after the sells);
* not compared (the test switches them off): with ``risk.market_hours_only`` (its default) the
  trader makes no decision at a session's last close; ``commission_per_trade`` and
  ``impact_coef`` have no simulator counterpart (nor its ``per_share`` fee one here), nor do the
  trader's other risk limits and drawdown tiers.

:meth:`BacktestResult.round_trips` lists each position from flat to flat (entry and exit,
side, P&L after costs, bars held) and :meth:`BacktestResult.trade_stats` summarises them:
win rate, profit factor, average trade, exposure and duration.

Example:
    >>> import polars as pl
    >>> bars = pl.DataFrame({"symbol": ["A"] * 4, "ts": [0, 1, 2, 3], "open": [10.0, 10.0, 11.0, 12.0],
    ...                      "close": [10.0, 10.0, 11.0, 12.0], "volume": [1e6] * 4})
    >>> scores = pl.DataFrame({"symbol": ["A"], "ts": [1], "score": [1.0]})
    >>> r = run_backtest(scores, bars, k=1, long_only=True, initial_cash=1_000.0)
    >>> r.trades.select("ts", "shares", "price").rows()  # decided at ts 1 (close 10), filled at ts 2's open
    [(2, 100, 11.0)]
    >>> r.equity["equity"].to_list()
    [1000.0, 1000.0, 1000.0, 1100.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from models.backtest_inputs import (
    NO_COSTS,
    BacktestInputError,
    Costs,
    Market,
    check_integer,
    check_number,
    check_semantics,
    compiled_loops,
    market_from_bars,
    score_grid,
    signal_array,
    single_instrument_bars,
)
from models.backtest_result import COST_FIELDS, BacktestResult

__all__ = [
    "NO_COSTS",
    "BacktestInputError",
    "BacktestResult",
    "Costs",
    "Weigh",
    "run_backtest",
    "run_signal_backtest",
    "sma_cross_signal",
]


# --- entry points ---------------------------------------------------------------------------------


def run_backtest(
    scores: pl.DataFrame,
    bars: pl.DataFrame,
    *,
    k: int = 5,
    long_only: bool = False,
    gross_exposure: float = 1.0,
    initial_cash: float = 1_000_000.0,
    costs: Costs = NO_COSTS,
    compound: bool = True,
    rebalance_every: int = 1,
    cash_constrained: bool = False,
    size_at: str = "close",
    weigh: Weigh | None = None,
    lookback: int = 520,
) -> BacktestResult:
    """Backtest a cross-sectional book: top-``k`` long (and bottom-``k`` short) on each bar's scores.

    On each rebalance bar that has any score, the book is set to: long-short, the ``k``
    highest scores at ``+gross_exposure / (2k)`` of equity each and the ``k`` lowest at
    ``-gross_exposure / (2k)`` (dollar-neutral, gross = ``gross_exposure``); long-only,
    the ``k`` highest at ``gross_exposure / k``. With fewer than ``2k`` (``k``) scored
    symbols fewer names are held at the same per-name weight, so exposure falls instead
    of concentrating. Symbols rank by score, highest first and ties alphabetically; longs
    are the head of that ranking and shorts its tail (as the trader ranks them), so on a tie
    the alphabetically first goes long and the last short. Shares are the target
    value over the bar's close, truncated toward zero. A symbol without a score at a
    decision is not in the book (its holding is closed); bars without any score
    (warm-up) keep the book as it is.

    Args:
        scores: ``symbol, ts, score``; null/NaN scores mean "no score"; every row must
            match a bar of ``bars``.
        bars: ``symbol, ts, open, close, volume`` (``ts`` = bar open time, one row per key).
        k: names per side.
        long_only: hold only the top ``k``.
        gross_exposure: sum of |weights| of a full book (1.0 = 100% of equity).
        initial_cash: starting cash.
        costs: commission, spread and impact settings.
        compound: size from current equity (True) or always from ``initial_cash``.
        rebalance_every: decide only on every n-th timestamp (counted from the first bar).
        cash_constrained: never spend cash the book does not have (see the module docstring).
        size_at: ``"close"`` (the decision bar's close, default) or ``"open"`` (the fill bar's open).
        weigh: portfolio construction over the selected names (:data:`Weigh`), e.g. the trader's optimiser
            (``orchestration.portfolio.trader_weigh``): at each decision it gets the selected names' sides and
            scores and their trailing ``lookback`` bar log returns through that bar's close, and returns each
            name's share of the gross (summing to 1), or ``None`` to keep equal weights there.
        lookback: bars of trailing returns ``weigh`` sees.

    Example:
        >>> import polars as pl
        >>> bars = pl.DataFrame({"symbol": ["A", "B"] * 3, "ts": [0, 0, 1, 1, 2, 2], "open": [10.0, 20.0] * 3,
        ...                      "close": [10.0, 20.0] * 3, "volume": [1e6] * 6})
        >>> scores = pl.DataFrame({"symbol": ["A", "B"], "ts": [0, 0], "score": [2.0, 1.0]})
        >>> run_backtest(scores, bars, k=1, initial_cash=1_000.0).trades.select("symbol", "shares").rows()
        [('A', 50), ('B', -25)]
    """
    check_integer("k", k, minimum=1)
    check_integer("rebalance_every", rebalance_every, minimum=1)
    check_number("gross_exposure", gross_exposure, minimum=0.0, strict=True)
    check_number("initial_cash", initial_cash, minimum=0.0, strict=True)
    market = market_from_bars(bars, costs.vol_window)
    grid = score_grid(scores, market)
    weights, decide = _target_weights(grid, k=k, long_only=long_only, gross_exposure=gross_exposure)
    decide &= np.arange(len(decide)) % rebalance_every == 0
    check_semantics(cash_constrained, size_at)
    if weigh is not None:
        check_integer("lookback", lookback, minimum=2)
        weights = _constructed(weights, decide, grid, market, weigh, lookback)
    return _simulate(market, weights, decide, initial_cash=float(initial_cash), costs=costs, compound=compound,
                     cash_constrained=cash_constrained, size_at=size_at)


#: Portfolio construction: ``(sides, scores, trailing log returns (bars × names)) → shares of the gross`` or None.
Weigh = Callable[[np.ndarray, np.ndarray, np.ndarray], "np.ndarray | None"]


def _constructed(weights: np.ndarray, decide: np.ndarray, scores: np.ndarray, market: Market, weigh: Weigh,
                 lookback: int) -> np.ndarray:
    """``weights`` with each decision's selected names re-weighted by ``weigh`` (same sides and gross)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.log(np.where(market.close > 0, market.close, np.nan))
    returns = np.diff(log_close, axis=0, prepend=np.nan)  # row t: the return into bar t's close (known at t)
    out = weights.copy()
    for t in np.flatnonzero(decide):
        picked = np.flatnonzero(weights[t])
        if picked.size < 2:
            continue
        sides = np.sign(weights[t, picked])
        window = returns[max(0, t - lookback + 1): t + 1][:, picked]
        window = window[np.isfinite(window).all(axis=1)]
        shares = weigh(sides, scores[t, picked], window)
        if shares is None:
            continue
        shares = np.asarray(shares, dtype=np.float64)
        if shares.shape != picked.shape or not np.isfinite(shares).all() or (shares < 0).any() or not np.isclose(shares.sum(), 1.0):
            raise BacktestInputError(f"weigh: must return one share >= 0 per selected name, summing to 1; got {shares!r}")
        out[t, picked] = sides * shares * np.abs(weights[t, picked]).sum()
    return out


def run_signal_backtest(
    bars: pl.DataFrame,
    signal: Sequence[float] | np.ndarray | pl.Series,
    *,
    fraction: float = 1.0,
    initial_cash: float = 100_000.0,
    costs: Costs = NO_COSTS,
    cash_constrained: bool = False,
    size_at: str = "close",
) -> BacktestResult:
    """Backtest one instrument from a per-bar signal: +1 long, 0 flat, -1 short.

    Whenever the signal changes at bar ``t``'s close, the position is set to
    ``signal * fraction * equity_t / close_t`` whole shares (toward zero) and the order
    fills at bar ``t+1``'s open; while the signal is unchanged the position is held.
    A flip from long to short is one trade (one per-trade commission).

    Args:
        bars: ``ts, open, close`` (strictly increasing ``ts``), optionally ``volume``
            (required when ``costs.impact_coef > 0``) and one ``symbol``.
        signal: one value in {-1, 0, 1} per bar, aligned with ``bars``' rows.
        fraction: share of equity put in the position (1.0 = all of it).
        initial_cash: starting cash.
        costs: usually ``Costs(commission_per_trade=..., commission_bps=...)``.
        cash_constrained: never spend cash the account does not have (see the module docstring).
        size_at: ``"close"`` (the signal bar's close, default) or ``"open"`` (the fill bar's open: with
            ``fraction=1`` and ``cash_constrained=True``, the "all-in at the next open" of other backtesters).

    Example:
        >>> import polars as pl
        >>> bars = pl.DataFrame({"ts": [0, 1, 2, 3], "open": [10.0, 10.0, 12.0, 11.0], "close": [10.0, 12.0, 11.0, 11.0]})
        >>> r = run_signal_backtest(bars, [1, 1, -1, -1], initial_cash=1_000.0)
        >>> r.trades.select("ts", "shares", "price").rows()
        [(1, 100, 10.0), (3, -200, 11.0)]
    """
    check_number("fraction", fraction, minimum=0.0, strict=True)
    check_number("initial_cash", initial_cash, minimum=0.0, strict=True)
    frame = single_instrument_bars(bars, costs)
    sig = signal_array(signal, frame.height)
    market = market_from_bars(frame, costs.vol_window)
    previous = np.concatenate(([0.0], sig[:-1]))
    weights = (sig * fraction)[:, None]
    check_semantics(cash_constrained, size_at)
    return _simulate(market, weights, sig != previous, initial_cash=float(initial_cash), costs=costs, compound=True,
                     cash_constrained=cash_constrained, size_at=size_at)


def sma_cross_signal(close: Sequence[float] | np.ndarray | pl.Series, fast: int, slow: int) -> np.ndarray:
    """+1 where the ``fast``-bar simple moving average of ``close`` is above the ``slow`` one, -1 below, 0 before ``slow`` bars.

    Example:
        >>> sma_cross_signal([1.0, 2.0, 3.0, 2.0, 1.0, 0.5], fast=1, slow=3).tolist()
        [0, 0, 1, -1, -1, -1]
    """
    check_integer("fast", fast, minimum=1)
    check_integer("slow", slow, minimum=fast + 1)
    c = np.asarray(close, dtype=np.float64)
    out = np.zeros(c.size, dtype=np.int64)
    if c.size >= slow:
        fast_ma = np.convolve(c, np.full(fast, 1.0 / fast), "valid")[slow - fast :]
        slow_ma = np.convolve(c, np.full(slow, 1.0 / slow), "valid")
        out[slow - 1 :] = np.sign(fast_ma - slow_ma).astype(np.int64)
    return out


# --- book and simulation --------------------------------------------------------------------------


def _target_weights(scores: np.ndarray, *, k: int, long_only: bool, gross_exposure: float) -> tuple[np.ndarray, np.ndarray]:
    """Target weight of every (time, symbol), and whether each time has any score to decide on.

    One ranking per time, highest score first, ties in alphabetical order (a stable sort over the sorted
    symbols), as trader.sizing.select ranks: longs are its head, shorts its tail (on a tie, the
    alphabetically last goes short).
    """
    unit = gross_exposure / k if long_only else gross_exposure / (2 * k)
    return compiled_loops().rank_weights(np.ascontiguousarray(scores, dtype=np.float64), k, long_only, unit)


def _simulate(market: Market, weights: np.ndarray, decide: np.ndarray, *, initial_cash: float, costs: Costs, compound: bool,
              cash_constrained: bool = False, size_at: str = "close") -> BacktestResult:
    """Walk the bars once: fill pending orders at the open, then (on decision bars) size new targets at the close.

    Only what feeds back into sizing (cash, positions) is in the loop
    (:func:`models.backtest_loops.walk_bars`, compiled); the trade rows and the curves are
    rebuilt from the fills afterwards.
    """
    cash_path, fills, carry, book = compiled_loops().walk_bars(
        market.open, market.close, market.tradable, np.ascontiguousarray(weights, dtype=np.float64), market.sigma_before,
        market.volume, decide, initial_cash, compound, float(costs.impact_coef),
        (costs.commission_bps + costs.half_spread_bps) * 1e-4, float(costs.commission_per_trade), cash_constrained,
        size_at == "open", costs.financing_rate / costs.periods_per_year, costs.borrow_fee / costs.periods_per_year)
    return _result(market, cash_path, fills, carry, book, decide, costs, initial_cash)


def _result(market: Market, cash: np.ndarray, fills: np.ndarray, carry: np.ndarray, book: np.ndarray, decide: np.ndarray,
            costs: Costs, initial_cash: float) -> BacktestResult:
    long_value, short_value, equity = book
    trades, per_bar = _trades(market, fills, decide, costs)
    before = np.concatenate(([initial_cash], equity[:-1]))
    curve = pl.DataFrame({
        "ts": market.times, "cash": cash, "long_value": long_value, "short_value": short_value, "equity": equity,
        "gross_exposure": (long_value - short_value) / equity, "net_exposure": (long_value + short_value) / equity,
        "traded_notional": per_bar[0], **{c: per_bar[i + 1] for i, c in enumerate(COST_FIELDS)},
        "financing": carry[:, 0], "borrow": carry[:, 1],
        "turnover": per_bar[0] / before, "return": equity / before - 1.0,
    })

    def positions() -> pl.DataFrame:  # built on first use: many callers read only the curve and the trades
        held = np.cumsum(fills, axis=0)  # positions change only by fills
        ti, si, shares, held_value = compiled_loops().holdings(held, market.close)
        return pl.DataFrame({
            "ts": market.times.gather(ti), "symbol": market.symbols.gather(si), "shares": shares, "close": market.close[ti, si],
            "value": held_value,
        })

    return BacktestResult(equity=curve, trades=trades, initial_cash=initial_cash, build_positions=positions)


def _trades(market: Market, fills: np.ndarray, decide: np.ndarray, costs: Costs) -> tuple[pl.DataFrame, np.ndarray]:
    """One row per fill, in time then symbol order, with each cost component; and the notional and costs per bar."""
    index, money, per_bar = compiled_loops().fill_rows(
        fills, market.open, market.sigma_before, market.volume, decide, float(costs.impact_coef), costs.commission_bps * 1e-4,
        costs.half_spread_bps * 1e-4, float(costs.commission_per_trade))
    t, si, q, decided = index
    frame = pl.DataFrame({
        "decision_ts": market.times.gather(decided), "ts": market.times.gather(t),
        "symbol": market.symbols.gather(si), "shares": q, "side": pl.Series(["sell", "buy"]).gather((q > 0).astype(np.int64)),
        "price": money[0], "notional": money[1], **{c: money[i + 2] for i, c in enumerate(COST_FIELDS)},
    })
    return frame, per_bar
