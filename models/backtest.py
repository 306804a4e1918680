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
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from models.backtest_result import COST_FIELDS, BacktestResult

if TYPE_CHECKING:
    from types import ModuleType

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

BAR_FIELDS = ("symbol", "ts", "open", "close", "volume")
SCORE_FIELDS = ("symbol", "ts", "score")


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
class _Market:
    """Bars on a dense (time × symbol) grid; NaN where a symbol has no bar."""

    symbols: pl.Series
    times: pl.Series
    open: np.ndarray
    close: np.ndarray  # last known close (0 before a symbol's first bar, where it holds nothing)
    volume: np.ndarray
    tradable: np.ndarray  # a bar exists and traded volume
    sigma_before: np.ndarray  # trailing volatility through the previous timestamp (0 while undefined)
    keys: tuple[pl.Series, pl.Series]  # the bars' (symbol, ts) columns, row by row
    flat: np.ndarray | None  # each bar row's flat grid index (None: the rows are the grid, in order)


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


def _floats(column: pl.Series) -> np.ndarray:
    """The column as float64 with NaN for null (no cast or fill when there is nothing to do)."""
    column = column if column.dtype == pl.Float64 else column.cast(pl.Float64)
    return (column.fill_null(np.nan) if column.null_count() else column).to_numpy()


def _check_unique(name: str, flat: np.ndarray, size: int) -> None:
    if np.bincount(flat, minlength=size).max() > 1:
        raise BacktestInputError(f"{name}: duplicate (symbol, ts) rows; each key must appear once")


def _grid_keys(bars: pl.DataFrame) -> tuple[pl.Series, pl.Series, np.ndarray | None]:
    """Sorted symbols, sorted times and each row's flat grid index (None: the rows are the grid, in order); checks that
    each key appears once."""
    symbol, ts = bars["symbol"].cast(pl.String), bars["ts"]
    dense = _dense_grid(symbol, ts)
    if dense is not None:
        return dense
    symbols, times = symbol.unique().sort(), ts.unique().sort()
    flat = _index(symbol, ts, symbols, times)
    _check_unique("bars", flat, times.len() * symbols.len())
    return symbols, times, flat


def _dense_grid(symbol: pl.Series, ts: pl.Series) -> tuple[pl.Series, pl.Series, None] | None:
    """The grid of rows already laid out as one, in (ts, symbol) order with every symbol at every time; else None.

    Market data usually comes so: then the grid index is the row number, found without hashing
    or searching every key (a shortcut only: the general path gives the same grid).
    """
    if not ts.len() or ts.null_count() or not ts.to_physical().dtype.is_numeric() or not ts.is_sorted():
        return None
    stamps = ts.to_physical().to_numpy()  # integers in the same order as the times (no copy)
    width = int(np.searchsorted(stamps, stamps[0], side="right"))  # the first time's rows
    if ts.len() % width:
        return None
    # ts is sorted, so each block of `width` rows is one time when its first and last rows agree, and no two
    # blocks share one when the firsts strictly increase.
    firsts = stamps[::width]
    if not np.array_equal(firsts, stamps[width - 1 :: width]) or (np.diff(firsts) <= 0).any():
        return None
    symbols = symbol.head(width)
    if symbols.null_count() or not symbols.is_sorted() or symbols.n_unique() != width:
        return None
    # Every block repeats the first when each row equals the one a block earlier (two views, no copy).
    if not symbol.slice(width).equals(symbol.slice(0, symbol.len() - width)):
        return None
    return symbols, ts.gather_every(width), None


def _market_from_bars(bars: pl.DataFrame, vol_window: int) -> _Market:
    _require_columns(bars, "bars", BAR_FIELDS)
    values = {c: _floats(bars[c]) for c in BAR_FIELDS[2:]}
    for column, x in values.items():
        bad = ~np.isfinite(x) | ((x < 0) if column == "volume" else (x <= 0))
        if bad.any():
            raise BacktestInputError(f"bars.{column}: {int(bad.sum())} value(s) missing, not finite or {'< 0' if column == 'volume' else '<= 0'}")
    symbols, times, flat = _grid_keys(bars)
    shape = (times.len(), symbols.len())
    complete = flat is None or flat.size == shape[0] * shape[1]
    loops = _loops()
    open_, close, volume = (_on_grid(values[c], flat, shape) for c in ("open", "close", "volume"))
    last_close = close if complete else loops.ffill(close)
    # A return spans a symbol's missing bars; the window counts timestamps and skips the gaps.
    log_ret = np.full(shape, np.nan)
    np.divide(close[1:], last_close[:-1], out=log_ret[1:])
    np.log(log_ret, out=log_ret)
    return _Market(
        symbols=symbols, times=times, open=open_, close=last_close if complete else np.nan_to_num(last_close, nan=0.0),
        volume=volume, tradable=volume > 0,  # False where there is no bar (NaN)
        sigma_before=loops.volatility_before(log_ret, vol_window), keys=(bars["symbol"].cast(pl.String), bars["ts"]), flat=flat,
    )


@functools.cache
def _loops() -> ModuleType:
    """:mod:`models.backtest_loops`, imported on the first backtest (it imports numba and loads the compiled code)."""
    from models import backtest_loops

    return backtest_loops


def _score_grid(scores: pl.DataFrame, market: _Market) -> np.ndarray:
    _require_columns(scores, "scores", SCORE_FIELDS)
    symbol = scores["symbol"].cast(pl.String)
    # Scores keyed row for row like the bars (the usual case) reuse the bars' grid index and checks.
    same_symbols = symbol.equals(market.keys[0])
    if not same_symbols:
        names = symbol.unique()
        unknown = names.filter(~names.is_in(market.symbols.implode())).sort()
        if unknown.len():
            raise BacktestInputError(f"scores.symbol: {unknown.len()} symbol(s) have no bars, e.g. {unknown[0]!r}")
    try:
        ts = scores["ts"].cast(market.times.dtype)
    except pl.exceptions.PolarsError:
        raise BacktestInputError(f"scores.ts: type {scores['ts'].dtype} does not match bars.ts ({market.times.dtype})") from None
    score = _floats(scores["score"])
    if np.isinf(score).any():
        raise BacktestInputError("scores.score: infinite value(s); use null for 'no score'")
    if same_symbols and ts.equals(market.keys[1]):
        flat = market.flat
    else:
        flat = _index(symbol, ts, market.symbols, market.times)
        orphan = (market.times.gather(flat // market.symbols.len()) != ts).to_numpy() | np.isnan(market.open.ravel()[flat])
        if orphan.any():
            example = scores.row(int(np.argmax(orphan)))[:2]
            raise BacktestInputError(f"scores.ts: {int(orphan.sum())} row(s) have no bar for their symbol at that ts, e.g. {example!r}")
        _check_unique("scores", flat, market.open.size)
    return _on_grid(score, flat, market.open.shape)


def _on_grid(x: np.ndarray, flat: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Row values on the (time × symbol) grid at their flat index (None: in row order); NaN where no row."""
    if flat is None:
        return np.asarray(x, dtype=np.float64).reshape(shape)  # a read-only view of the column when it is float64
    out = np.full(shape[0] * shape[1], np.nan)
    out[flat] = x
    return out.reshape(shape)


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
    """Target weight of every (time, symbol), and whether each time has any score to decide on.

    One ranking per time, highest score first, ties in alphabetical order (a stable sort over the sorted
    symbols), as trader.sizing.select ranks: longs are its head, shorts its tail (on a tie, the
    alphabetically last goes short).
    """
    unit = gross_exposure / k if long_only else gross_exposure / (2 * k)
    return _loops().rank_weights(np.ascontiguousarray(scores, dtype=np.float64), k, long_only, unit)


def _simulate(market: _Market, weights: np.ndarray, decide: np.ndarray, *, initial_cash: float, costs: Costs, compound: bool,
              cash_constrained: bool = False, size_at: str = "close") -> BacktestResult:
    """Walk the bars once: fill pending orders at the open, then (on decision bars) size new targets at the close.

    Only what feeds back into sizing (cash, positions) is in the loop
    (:func:`models.backtest_loops.walk_bars`, compiled); the trade rows and the curves are
    rebuilt from the fills afterwards.
    """
    cash_path, fills, carry, book = _loops().walk_bars(
        market.open, market.close, market.tradable, np.ascontiguousarray(weights, dtype=np.float64), market.sigma_before,
        market.volume, decide, initial_cash, compound, float(costs.impact_coef),
        (costs.commission_bps + costs.half_spread_bps) * 1e-4, float(costs.commission_per_trade), cash_constrained,
        size_at == "open", costs.financing_rate / costs.periods_per_year, costs.borrow_fee / costs.periods_per_year)
    return _result(market, cash_path, fills, carry, book, decide, costs, initial_cash)


def _result(market: _Market, cash: np.ndarray, fills: np.ndarray, carry: np.ndarray, book: np.ndarray, decide: np.ndarray,
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
        ti, si, shares, held_value = _loops().holdings(held, market.close)
        return pl.DataFrame({
            "ts": market.times.gather(ti), "symbol": market.symbols.gather(si), "shares": shares, "close": market.close[ti, si],
            "value": held_value,
        })

    return BacktestResult(equity=curve, trades=trades, initial_cash=initial_cash, build_positions=positions)


def _trades(market: _Market, fills: np.ndarray, decide: np.ndarray, costs: Costs) -> tuple[pl.DataFrame, np.ndarray]:
    """One row per fill, in time then symbol order, with each cost component; and the notional and costs per bar."""
    index, money, per_bar = _loops().fill_rows(
        fills, market.open, market.sigma_before, market.volume, decide, float(costs.impact_coef), costs.commission_bps * 1e-4,
        costs.half_spread_bps * 1e-4, float(costs.commission_per_trade))
    t, si, q, decided = index
    frame = pl.DataFrame({
        "decision_ts": market.times.gather(decided), "ts": market.times.gather(t),
        "symbol": market.symbols.gather(si), "shares": q, "side": pl.Series(["sell", "buy"]).gather((q > 0).astype(np.int64)),
        "price": money[0], "notional": money[1], **{c: money[i + 2] for i, c in enumerate(COST_FIELDS)},
    })
    return frame, per_bar
