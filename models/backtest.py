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

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from models import performance as perf

BAR_FIELDS = ("symbol", "ts", "open", "close", "volume")
SCORE_FIELDS = ("symbol", "ts", "score")
COST_FIELDS = ("commission", "spread", "impact", "cost")


class BacktestInputError(ValueError):
    """Scores, bars, signal or settings a backtest cannot run on; the message names the field."""


def _check_number(field: str, value: object, *, minimum: float, strict: bool = False) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value < minimum or (strict and value == minimum):
        raise BacktestInputError(f"{field}: must be a finite number {'>' if strict else '>='} {minimum:g}, got {value!r}")


def _check_integer(field: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BacktestInputError(f"{field}: must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Costs:
    """Trading costs; every field ≥ 0 (see the module docstring for the formulas).

    Example:
        >>> Costs(commission_bps=1.0, half_spread_bps=2.0, impact_coef=0.1).vol_window
        20
    """

    commission_bps: float = 0.0
    commission_per_trade: float = 0.0
    half_spread_bps: float = 0.0
    impact_coef: float = 0.0
    vol_window: int = 20
    #: Annual rate charged on borrowed cash (a negative cash balance), accrued at each bar's close.
    financing_rate: float = 0.0
    #: Annual fee on the market value of short positions, accrued at each bar's close.
    borrow_fee: float = 0.0
    #: Bars per year, to turn the annual rates into per-bar ones (15-minute XNYS bars: 26 × 252).
    periods_per_year: int = 6552

    def __post_init__(self) -> None:
        for name in ("commission_bps", "commission_per_trade", "half_spread_bps", "impact_coef", "financing_rate", "borrow_fee"):
            _check_number(f"costs.{name}", getattr(self, name), minimum=0.0)
        if not isinstance(self.vol_window, int) or self.vol_window < 2:
            raise BacktestInputError(f"costs.vol_window: must be an integer >= 2, got {self.vol_window!r}")
        _check_integer("costs.periods_per_year", self.periods_per_year, minimum=1)


NO_COSTS = Costs()


@dataclass(frozen=True)
class BacktestResult:
    """What a backtest produced.

    Attributes:
        equity: one row per timestamp: ``ts, cash, long_value, short_value, equity,
            gross_exposure, net_exposure, traded_notional, commission, spread, impact,
            cost, financing, borrow, turnover, return`` (values at the bar's close).
        positions: ``ts, symbol, shares, close, value`` for every non-zero holding.
        trades: ``decision_ts, ts, symbol, shares`` (signed), ``side, price, notional,
            commission, spread, impact, cost``.
        initial_cash: cash before the first bar.
    """

    equity: pl.DataFrame
    positions: pl.DataFrame
    trades: pl.DataFrame
    initial_cash: float

    @property
    def returns(self) -> np.ndarray:
        """Simple return of each bar (the first against ``initial_cash``)."""
        return self.equity["return"].to_numpy()

    @property
    def turnover(self) -> float:
        """Mean two-sided turnover per bar (traded notional over the previous bar's equity)."""
        return float(self.equity["turnover"].mean())

    def metrics(self, periods_per_year: int, risk_free: float = 0.0) -> dict[str, float]:
        """:func:`models.performance.summary` of the returns plus turnover, exposure and cost totals."""
        out = perf.summary(self.returns, periods_per_year=periods_per_year, risk_free=risk_free)
        out["turnover"] = self.turnover
        out["exposure"] = perf.exposure(self.equity["gross_exposure"].to_numpy())
        out["trades"] = self.trades.height
        for column in COST_FIELDS:
            out[f"total_{column}"] = float(self.trades[column].sum())
        out["total_financing"], out["total_borrow"] = float(self.equity["financing"].sum()), float(self.equity["borrow"].sum())
        return out

    def round_trips(self) -> pl.DataFrame:
        """Each position from flat back to flat, per symbol (a flip closes one and opens the next).

        Columns: ``symbol, side`` (long/short), ``entry_ts, exit_ts`` (null while open), ``bars``
        (bars held), ``max_shares``, ``entry_value`` (the largest absolute notional at entry prices), ``pnl``
        (cash in and out of the trip after its fills' costs, plus the open remainder at the last
        close), ``return`` (pnl over entry value) and ``open``. A fill that flips the position
        splits its costs in proportion to the shares on each side.
        """
        last_close = self.positions.group_by("symbol").agg(pl.col("close").last()) if self.positions.height else None
        closes = dict(last_close.iter_rows()) if last_close is not None else {}
        index = {ts: i for i, ts in enumerate(self.equity["ts"].to_list())}
        rows: list[dict[str, object]] = []
        for (symbol,), fills in self.trades.sort("ts").group_by("symbol", maintain_order=True):
            pos, trip = 0, None
            for ts, shares, price, cost in fills.select("ts", "shares", "price", "cost").iter_rows():
                while shares:
                    if pos == 0:
                        trip = {"symbol": symbol, "side": "long" if shares > 0 else "short", "entry_ts": ts, "cash": 0.0,
                                "max_shares": 0, "entry_value": 0.0}
                    closing = -pos if pos and (pos > 0) != (shares > 0) else 0
                    part = shares if not closing or abs(shares) <= abs(closing) else closing
                    share_cost = cost * abs(part) / abs(shares)
                    trip["cash"] += -part * price - share_cost
                    cost -= share_cost
                    pos += part
                    shares -= part
                    trip["max_shares"] = max(trip["max_shares"], abs(pos))
                    if not closing:  # the largest notional the trip reached, at the prices it was built at
                        trip["entry_value"] = max(trip["entry_value"], abs(pos) * price)
                    if pos == 0:
                        rows.append(_trip_row(trip, ts, 0.0, index, open_=False))
            if pos:
                rows.append(_trip_row(trip, None, pos * closes.get(symbol, 0.0), index, open_=True, last=len(index) - 1))
        schema = {"symbol": pl.String, "side": pl.String, "entry_ts": self.equity["ts"].dtype, "exit_ts": self.equity["ts"].dtype,
                  "bars": pl.Int64, "max_shares": pl.Int64, "entry_value": pl.Float64, "pnl": pl.Float64, "return": pl.Float64,
                  "open": pl.Boolean}
        return pl.DataFrame(rows, schema=schema)

    def trade_stats(self) -> dict[str, float]:
        """Round-trip statistics of the closed trips: count, win rate, profit factor, average (win, loss) trade,
        average bars held, and exposure (the share of bars with any position)."""
        trips = self.round_trips()
        closed = trips.filter(~pl.col("open"))
        pnl = closed["pnl"].to_numpy()
        wins, losses = pnl[pnl > 0], pnl[pnl < 0]
        held = (self.equity["long_value"] - self.equity["short_value"]).to_numpy() != 0
        return {
            "round_trips": float(closed.height), "open_trips": float(trips.height - closed.height),
            "win_rate": float(len(wins) / len(pnl)) if len(pnl) else math.nan,
            "profit_factor": float(wins.sum() / -losses.sum()) if len(losses) and losses.sum() else (math.inf if len(wins) else math.nan),
            "avg_trade": float(pnl.mean()) if len(pnl) else math.nan,
            "avg_win": float(wins.mean()) if len(wins) else math.nan,
            "avg_loss": float(losses.mean()) if len(losses) else math.nan,
            "avg_return": float(closed["return"].mean()) if closed.height else math.nan,
            "avg_bars_held": float(closed["bars"].mean()) if closed.height else math.nan,
            "exposure_time": float(held.mean()) if len(held) else math.nan,
        }


def _trip_row(trip: dict[str, object], exit_ts: object, mark: float, index: dict[object, int], *, open_: bool,
              last: int | None = None) -> dict[str, object]:
    pnl = float(trip["cash"]) + mark
    end = index[exit_ts] if exit_ts is not None else last
    value = float(trip["entry_value"])
    return {"symbol": trip["symbol"], "side": trip["side"], "entry_ts": trip["entry_ts"], "exit_ts": exit_ts,
            "bars": int(end - index[trip["entry_ts"]]), "max_shares": int(trip["max_shares"]), "entry_value": value,
            "pnl": pnl, "return": pnl / value if value else math.nan, "open": open_}


@dataclass(frozen=True)
class _Market:
    """Bars on a dense (time × symbol) grid; NaN where a symbol has no bar."""

    symbols: pl.Series
    times: pl.Series
    open: np.ndarray
    close: np.ndarray  # last known close (0 before a symbol's first bar, where it holds nothing)
    volume: np.ndarray
    tradable: np.ndarray  # a bar exists and traded volume
    sigma_before: np.ndarray  # trailing volatility through the previous timestamp (0 while undefined)


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
    _check_integer("k", k, minimum=1)
    _check_integer("rebalance_every", rebalance_every, minimum=1)
    _check_number("gross_exposure", gross_exposure, minimum=0.0, strict=True)
    _check_number("initial_cash", initial_cash, minimum=0.0, strict=True)
    market = _market_from_bars(bars, costs.vol_window)
    grid = _score_grid(scores, market)
    weights, decide = _target_weights(grid, k=k, long_only=long_only, gross_exposure=gross_exposure)
    decide &= np.arange(len(decide)) % rebalance_every == 0
    _check_semantics(cash_constrained, size_at)
    if weigh is not None:
        _check_integer("lookback", lookback, minimum=2)
        weights = _constructed(weights, decide, grid, market, weigh, lookback)
    return _simulate(market, weights, decide, initial_cash=float(initial_cash), costs=costs, compound=compound,
                     cash_constrained=cash_constrained, size_at=size_at)


#: Portfolio construction: ``(sides, scores, trailing log returns (bars × names)) → shares of the gross`` or None.
Weigh = Callable[[np.ndarray, np.ndarray, np.ndarray], "np.ndarray | None"]


def _constructed(weights: np.ndarray, decide: np.ndarray, scores: np.ndarray, market: _Market, weigh: Weigh,
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


def _check_semantics(cash_constrained: object, size_at: object) -> None:
    if not isinstance(cash_constrained, bool):
        raise BacktestInputError(f"cash_constrained: must be true or false, got {cash_constrained!r}")
    if size_at not in ("close", "open"):
        raise BacktestInputError(f"size_at: must be 'close' (the decision bar's close) or 'open' (the fill bar's open), got {size_at!r}")


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
    _check_number("fraction", fraction, minimum=0.0, strict=True)
    _check_number("initial_cash", initial_cash, minimum=0.0, strict=True)
    frame = _single_instrument_bars(bars, costs)
    sig = _signal_array(signal, frame.height)
    market = _market_from_bars(frame, costs.vol_window)
    previous = np.concatenate(([0.0], sig[:-1]))
    weights = (sig * fraction)[:, None]
    _check_semantics(cash_constrained, size_at)
    return _simulate(market, weights, sig != previous, initial_cash=float(initial_cash), costs=costs, compound=True,
                     cash_constrained=cash_constrained, size_at=size_at)


def sma_cross_signal(close: Sequence[float] | np.ndarray | pl.Series, fast: int, slow: int) -> np.ndarray:
    """+1 where the ``fast``-bar simple moving average of ``close`` is above the ``slow`` one, -1 below, 0 before ``slow`` bars.

    Example:
        >>> sma_cross_signal([1.0, 2.0, 3.0, 2.0, 1.0, 0.5], fast=1, slow=3).tolist()
        [0, 0, 1, -1, -1, -1]
    """
    _check_integer("fast", fast, minimum=1)
    _check_integer("slow", slow, minimum=fast + 1)
    c = np.asarray(close, dtype=np.float64)
    out = np.zeros(c.size, dtype=np.int64)
    if c.size >= slow:
        fast_ma = np.convolve(c, np.full(fast, 1.0 / fast), "valid")[slow - fast :]
        slow_ma = np.convolve(c, np.full(slow, 1.0 / slow), "valid")
        out[slow - 1 :] = np.sign(fast_ma - slow_ma).astype(np.int64)
    return out


# --- inputs ---------------------------------------------------------------------------------------


def _require_columns(df: pl.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BacktestInputError(f"{name}: missing column(s) {', '.join(missing)} (need {', '.join(columns)})")
    if df.height == 0:
        raise BacktestInputError(f"{name}: empty frame; need at least one row of {', '.join(columns)}")
    if df["symbol"].null_count() or df["ts"].null_count():
        raise BacktestInputError(f"{name}.symbol/ts: {df['symbol'].null_count() + df['ts'].null_count()} null key value(s)")


def _index(symbol: pl.Series, ts: pl.Series, symbols: pl.Series, times: pl.Series) -> np.ndarray:
    """Flat grid index ``ti * n_symbols + si`` of each row (``ti`` clipped to the grid for absent times)."""
    si = symbol.cast(pl.String).cast(pl.Enum(symbols)).to_physical().to_numpy().astype(np.int64)
    ti = np.minimum(times.search_sorted(ts).to_numpy().astype(np.int64), times.len() - 1)
    return ti * symbols.len() + si


def _check_unique(name: str, flat: np.ndarray, size: int) -> None:
    if np.bincount(flat, minlength=size).max() > 1:
        raise BacktestInputError(f"{name}: duplicate (symbol, ts) rows; each key must appear once")


def _market_from_bars(bars: pl.DataFrame, vol_window: int) -> _Market:
    _require_columns(bars, "bars", BAR_FIELDS)
    values = {c: bars[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in BAR_FIELDS[2:]}
    for column, x in values.items():
        bad = ~np.isfinite(x) | ((x < 0) if column == "volume" else (x <= 0))
        if bad.any():
            raise BacktestInputError(f"bars.{column}: {int(bad.sum())} value(s) missing, not finite or {'< 0' if column == 'volume' else '<= 0'}")
    symbols, times = bars["symbol"].cast(pl.String).unique().sort(), bars["ts"].unique().sort()
    flat = _index(bars["symbol"], bars["ts"], symbols, times)
    _check_unique("bars", flat, times.len() * symbols.len())

    def grid(x: np.ndarray) -> np.ndarray:
        out = np.full(times.len() * symbols.len(), np.nan)
        out[flat] = x
        return out.reshape(times.len(), symbols.len())

    open_, close, volume = grid(values["open"]), grid(values["close"]), grid(values["volume"])
    last_close = _ffill(close)
    # A return spans a symbol's missing bars; the window counts timestamps and skips the gaps.
    log_ret = np.log(close / np.vstack([np.full((1, symbols.len()), np.nan), last_close[:-1]]))
    sigma = _jit(_rolling_std)(log_ret, vol_window)
    sigma_before = np.vstack([np.full((1, symbols.len()), np.nan), _ffill(sigma)[:-1]])
    return _Market(
        symbols=symbols, times=times, open=open_, close=np.nan_to_num(last_close, nan=0.0), volume=volume,
        tradable=~np.isnan(open_) & (np.nan_to_num(volume) > 0), sigma_before=np.nan_to_num(sigma_before, nan=0.0),
    )


def _rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Per column, the sample standard deviation of the non-NaN values among the last ``window`` rows (NaN below two).

    Compiled by numba: one pass per column with running sums of the values and their
    squares, taken about the column's first value (shifted data: no cancellation when the
    values sit far from zero).
    """
    n_rows, n_cols = x.shape
    out = np.full((n_rows, n_cols), np.nan)
    for c in range(n_cols):
        col = x[:, c].copy()  # contiguous
        shift = 0.0
        for v in col:
            if not np.isnan(v):
                shift = v
                break
        total, squares, count = 0.0, 0.0, 0
        for t in range(n_rows):
            v = col[t]
            if not np.isnan(v):
                total += v - shift
                squares += (v - shift) ** 2
                count += 1
            if t >= window:
                old = col[t - window]
                if not np.isnan(old):
                    total -= old - shift
                    squares -= (old - shift) ** 2
                    count -= 1
            if count >= 2:
                out[t, c] = np.sqrt(max(squares - total * total / count, 0.0) / (count - 1))
    return out


def _ffill(a: np.ndarray) -> np.ndarray:
    """Carry each column's last non-NaN value down (NaN until the first one)."""
    idx = np.where(np.isnan(a), 0, np.arange(a.shape[0])[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    return a[idx, np.arange(a.shape[1])]


def _score_grid(scores: pl.DataFrame, market: _Market) -> np.ndarray:
    _require_columns(scores, "scores", SCORE_FIELDS)
    names = scores["symbol"].cast(pl.String).unique()
    unknown = names.filter(~names.is_in(market.symbols.implode())).sort()
    if unknown.len():
        raise BacktestInputError(f"scores.symbol: {unknown.len()} symbol(s) have no bars, e.g. {unknown[0]!r}")
    try:
        ts = scores["ts"].cast(market.times.dtype)
    except pl.exceptions.PolarsError:
        raise BacktestInputError(f"scores.ts: type {scores['ts'].dtype} does not match bars.ts ({market.times.dtype})") from None
    score = scores["score"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    if np.isinf(score).any():
        raise BacktestInputError("scores.score: infinite value(s); use null for 'no score'")
    flat = _index(scores["symbol"], ts, market.symbols, market.times)
    orphan = (market.times.gather(flat // market.symbols.len()) != ts).to_numpy() | np.isnan(market.open.ravel()[flat])
    if orphan.any():
        example = scores.row(int(np.argmax(orphan)))[:2]
        raise BacktestInputError(f"scores.ts: {int(orphan.sum())} row(s) have no bar for their symbol at that ts, e.g. {example!r}")
    _check_unique("scores", flat, market.open.size)
    out = np.full(market.open.size, np.nan)
    out[flat] = score
    return out.reshape(market.open.shape)


def _single_instrument_bars(bars: pl.DataFrame, costs: Costs) -> pl.DataFrame:
    missing = [c for c in ("ts", "open", "close") if c not in bars.columns]
    if missing:
        raise BacktestInputError(f"bars: missing column(s) {', '.join(missing)} (need ts, open, close)")
    if "symbol" in bars.columns and bars["symbol"].n_unique() > 1:
        raise BacktestInputError(f"bars.symbol: a signal backtest trades one instrument, got {bars['symbol'].n_unique()}")
    if "volume" not in bars.columns and costs.impact_coef > 0:
        raise BacktestInputError("bars.volume: required when costs.impact_coef > 0")
    if not (bars["ts"].is_sorted() and bars["ts"].n_unique() == bars.height):
        raise BacktestInputError("bars.ts: must be strictly increasing (the signal is aligned to the rows)")
    # Volume only feeds the impact term, which is off when the file has none.
    extra = [pl.lit("ASSET").alias("symbol")] if "symbol" not in bars.columns else []
    extra += [pl.lit(1.0).alias("volume")] if "volume" not in bars.columns else []
    return bars.with_columns(extra).select(BAR_FIELDS)


def _signal_array(signal: Sequence[float] | np.ndarray | pl.Series, n_bars: int) -> np.ndarray:
    sig = signal.cast(pl.Float64).fill_null(np.nan).to_numpy() if isinstance(signal, pl.Series) else np.asarray(signal, dtype=np.float64)
    if sig.ndim != 1 or sig.size != n_bars:
        raise BacktestInputError(f"signal: needs one value per bar ({n_bars}), got shape {sig.shape}")
    if not np.isin(sig, (-1.0, 0.0, 1.0)).all():
        raise BacktestInputError("signal: values must be -1, 0 or 1 (no nulls)")
    return sig


# --- book and simulation --------------------------------------------------------------------------


def _target_weights(scores: np.ndarray, *, k: int, long_only: bool, gross_exposure: float) -> tuple[np.ndarray, np.ndarray]:
    """Target weight of every (time, symbol), and whether each time has any score to decide on."""
    valid = ~np.isnan(scores)
    n = valid.sum(axis=1)[:, None]
    # One ranking, highest score first, ties in alphabetical order (a stable sort over the sorted symbols), as
    # trader.sizing.select ranks: longs are its head, shorts its tail (on a tie, the alphabetically last goes short).
    order = np.argsort(np.where(valid, -scores, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(scores.shape[1]), order.shape), axis=1)
    if long_only:
        weights = np.where(valid & (rank < np.minimum(k, n)), gross_exposure / k, 0.0)
    else:
        # Ranking once (not top and bottom separately) keeps the two sides disjoint even on ties.
        per_side = np.minimum(k, n // 2)
        side = (valid & (rank < per_side)).astype(np.float64) - (valid & (rank >= n - per_side))
        weights = side * (gross_exposure / (2 * k))
    return weights, n[:, 0] > 0


def _trade_costs(shares: np.ndarray, price: np.ndarray, sigma: np.ndarray, volume: np.ndarray, costs: Costs) -> dict[str, np.ndarray]:
    """Commission, spread and impact (cash) of fills of ``shares`` (signed) at ``price``, one value per fill."""
    size = np.abs(shares).astype(np.float64)
    notional = size * price
    impact = costs.impact_coef * sigma * np.sqrt(size / volume) * notional if costs.impact_coef else np.zeros_like(notional)
    commission = costs.commission_per_trade + costs.commission_bps * 1e-4 * notional
    return {"commission": commission, "spread": costs.half_spread_bps * 1e-4 * notional, "impact": impact}


def _simulate(market: _Market, weights: np.ndarray, decide: np.ndarray, *, initial_cash: float, costs: Costs, compound: bool,
              cash_constrained: bool = False, size_at: str = "close") -> BacktestResult:
    """Walk the bars once: fill pending orders at the open, then (on decision bars) size new targets at the close.

    Only what feeds back into sizing (cash, positions) is in the loop (:func:`_walk_bars`,
    compiled); every per-cell input is prepared here as whole arrays, and the trade rows and
    the curves are rebuilt from the fills afterwards. Shares are held as integer-valued
    float64 (exact below 2**53) inside the loop.
    """
    open_ = np.nan_to_num(market.open, nan=0.0)  # untradable cells never fill (q = 0 there)
    # Weight per unit of price, so a decision is one multiply; untraded symbols may have no price yet.
    weight_per_price = np.divide(weights, market.close, out=np.zeros_like(weights), where=market.close > 0)
    linear_cost = (costs.commission_bps + costs.half_spread_bps) * 1e-4 * open_
    # impact = coef * sigma * sqrt(|q| / V) * |q| * open = |q|^1.5 * (coef * sigma / sqrt(V) * open)
    with np.errstate(divide="ignore", invalid="ignore"):
        impact_cost = np.nan_to_num(costs.impact_coef * market.sigma_before / np.sqrt(market.volume) * open_, nan=0.0, posinf=0.0)
    cash_path, fills, carry = _jit(_walk_bars)(
        open_, market.close, market.tradable, weight_per_price, np.ascontiguousarray(weights, dtype=np.float64), linear_cost,
        impact_cost, decide, initial_cash, compound, bool(costs.impact_coef), float(costs.commission_per_trade),
        cash_constrained, size_at == "open", costs.financing_rate / costs.periods_per_year, costs.borrow_fee / costs.periods_per_year)
    return _result(market, cash_path, fills, carry, decide, costs, initial_cash)


def _walk_bars(open_: np.ndarray, close: np.ndarray, tradable: np.ndarray, weight_per_price: np.ndarray, weights: np.ndarray,
               linear_cost: np.ndarray, impact_cost: np.ndarray, decide: np.ndarray, initial_cash: float, compound: bool,
               impact: bool, per_trade: float, constrained: bool, size_open: bool, financing: float,
               borrow: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bar loop of :func:`_simulate`, compiled by numba: cash after each bar, the fills (shares), and the carry.

    At each bar: (with ``size_open``, the pending targets are first re-sized from the equity and
    prices at this open) pending orders (target − position) fill at the open where the symbol
    trades, paying notional, linear costs, ``|q|^1.5``-impact and per-trade commission — with
    ``constrained``, sells first and then the buys scaled down to the cash left; then carry
    accrues at the close (``financing`` per bar on negative cash, ``borrow`` per bar on the short
    book); then, on a decision bar, new targets are whole shares of ``weight / close`` × equity
    (× initial cash without compounding; a wiped-out book goes flat: sizing from negative equity
    would invert it).
    """
    n_times, n_symbols = weight_per_price.shape
    pos, target = np.zeros(n_symbols), np.zeros(n_symbols)
    cash_path, fills = np.empty(n_times), np.zeros((n_times, n_symbols), dtype=np.int64)
    carry = np.zeros((n_times, 2))
    pending, resize, decided, cash = False, False, 0, initial_cash
    for t in range(n_times):
        if pending and resize:  # size at this open: equity marked at the open where a symbol trades
            book = initial_cash
            if compound:
                book = cash
                for s in range(n_symbols):
                    price = open_[t, s] if tradable[t, s] else (close[t - 1, s] if t > 0 else 0.0)
                    book += pos[s] * price
            book = max(book, 0.0)
            for s in range(n_symbols):
                price = open_[t, s] if tradable[t, s] else (close[t - 1, s] if t > 0 else 0.0)
                target[s] = np.trunc(weights[decided, s] * book / price) if price > 0 else 0.0
            resize = False
        if pending:
            paid, trades, pending = 0.0, 0, False
            for s in range(n_symbols):
                q = target[s] - pos[s]
                if q != 0.0 and tradable[t, s]:
                    if constrained and q > 0:
                        continue  # buys after every sell, below
                    size = abs(q)
                    paid += q * open_[t, s] + size * linear_cost[t, s]
                    if impact:
                        paid += size**1.5 * impact_cost[t, s]
                    trades += 1
                    pos[s] = target[s]
                    fills[t, s] = np.int64(q)
                elif q != 0.0:
                    pending = True  # waits for the symbol's next tradable bar
            cash -= paid + per_trade * trades
            if constrained:
                need, buys = 0.0, 0
                for s in range(n_symbols):
                    q = target[s] - pos[s]
                    if q > 0.0 and tradable[t, s]:
                        need += q * open_[t, s] + q * linear_cost[t, s] + (q**1.5 * impact_cost[t, s] if impact else 0.0)
                        buys += 1
                scale = 1.0
                if need > 0.0 and need + per_trade * buys > cash:
                    scale = max(cash - per_trade * buys, 0.0) / need
                paid, trades = 0.0, 0
                for s in range(n_symbols):
                    q = target[s] - pos[s]
                    if q > 0.0 and tradable[t, s]:
                        q = np.trunc(q * scale) if scale < 1.0 else q
                        if q > 0.0:
                            paid += q * open_[t, s] + q * linear_cost[t, s] + (q**1.5 * impact_cost[t, s] if impact else 0.0)
                            trades += 1
                            pos[s] += q
                            fills[t, s] = np.int64(q)
                        target[s] = pos[s]  # what the cash could not pay for is dropped, not chased
                cash -= paid + per_trade * trades
        if financing > 0.0 and cash < 0.0:
            carry[t, 0] = -cash * financing
        if borrow > 0.0:
            for s in range(n_symbols):
                if pos[s] < 0.0:
                    carry[t, 1] += -pos[s] * close[t, s] * borrow
        cash -= carry[t, 0] + carry[t, 1]
        cash_path[t] = cash
        if decide[t]:
            if size_open:
                decided, resize = t, True
            else:
                book = initial_cash
                if compound:
                    book = cash
                    for s in range(n_symbols):
                        book += pos[s] * close[t, s]
                book = max(book, 0.0)
                for s in range(n_symbols):
                    target[s] = np.trunc(weight_per_price[t, s] * book)
            pending = True
    return cash_path, fills, carry


@functools.cache
def _jit(fn):  # type: ignore[no-untyped-def]  # -> fn compiled by numba (imported on first use; cached on disk)
    import numba

    return numba.njit(cache=True, nogil=True)(fn)


def _result(market: _Market, cash: np.ndarray, fills: np.ndarray, carry: np.ndarray, decide: np.ndarray, costs: Costs,
            initial_cash: float) -> BacktestResult:
    pos = np.cumsum(fills, axis=0)
    value = pos * market.close
    long_value, short_value = np.where(value > 0, value, 0.0).sum(axis=1), np.where(value < 0, value, 0.0).sum(axis=1)
    equity = cash + value.sum(axis=1)
    trades = _trades_frame(market, fills, decide, costs)
    t_idx = trades["_t"].to_numpy()
    per_bar = {c: np.bincount(t_idx, trades[c].to_numpy(), minlength=len(cash)) for c in ("notional", *COST_FIELDS)}
    before = np.concatenate(([initial_cash], equity[:-1]))
    curve = pl.DataFrame({
        "ts": market.times, "cash": cash, "long_value": long_value, "short_value": short_value, "equity": equity,
        "gross_exposure": (long_value - short_value) / equity, "net_exposure": (long_value + short_value) / equity,
        "traded_notional": per_bar["notional"], **{c: per_bar[c] for c in COST_FIELDS},
        "financing": carry[:, 0], "borrow": carry[:, 1],
        "turnover": per_bar["notional"] / before, "return": equity / before - 1.0,
    })
    ti, si = np.nonzero(pos)
    positions = pl.DataFrame({
        "ts": market.times.gather(ti), "symbol": market.symbols.gather(si),
        "shares": pos[ti, si], "close": market.close[ti, si], "value": value[ti, si],
    })
    return BacktestResult(equity=curve, positions=positions, trades=trades.drop("_t"), initial_cash=initial_cash)


def _trades_frame(market: _Market, fills: np.ndarray, decide: np.ndarray, costs: Costs) -> pl.DataFrame:
    """One row per fill, in time then symbol order, with each cost component."""
    t, si = np.nonzero(fills)
    q, price = fills[t, si], market.open[t, si]
    # Every decision replaces all targets, so a fill comes from the last decision before its bar.
    decisions = np.flatnonzero(decide)
    decided = decisions[np.searchsorted(decisions, t) - 1]
    parts = _trade_costs(q, price, market.sigma_before[t, si], market.volume[t, si], costs)
    return pl.DataFrame({
        "decision_ts": market.times.gather(decided), "ts": market.times.gather(t), "_t": t,
        "symbol": market.symbols.gather(si), "shares": q, "side": pl.Series(["sell", "buy"]).gather((q > 0).astype(np.int64)),
        "price": price, "notional": np.abs(q) * price, **parts, "cost": parts["commission"] + parts["spread"] + parts["impact"],
    })
