"""What a backtest takes, checked: its settings (:class:`Costs`), and bars and scores laid on a (time × symbol) grid.

:mod:`models.backtest` runs the book on what this module builds; every input a user can get wrong fails here
with a :class:`BacktestInputError` that names the field. A :class:`Market` holds the bars as dense arrays
(NaN where a symbol has no bar) with each symbol's last known close and the trailing volatility the
impact cost uses (see :mod:`models.backtest` for the timing and cost rules).

Example:
    >>> import polars as pl
    >>> bars = pl.DataFrame({"symbol": ["A", "B", "A"], "ts": [0, 0, 1], "open": [10.0, 20.0, 11.0],
    ...                      "close": [10.0, 20.0, 11.0], "volume": [1e6] * 3})
    >>> market = market_from_bars(bars, vol_window=20)
    >>> market.close.tolist()  # B has no bar at ts 1: its last close carries
    [[10.0, 20.0], [11.0, 20.0]]
    >>> market.tradable.tolist()
    [[True, True], [True, False]]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from types import ModuleType


BAR_FIELDS = ("symbol", "ts", "open", "close", "volume")
SCORE_FIELDS = ("symbol", "ts", "score")


class BacktestInputError(ValueError):
    """Scores, bars, signal or settings a backtest cannot run on; the message names the field."""


def check_number(field: str, value: object, *, minimum: float, strict: bool = False) -> None:
    """Refuse ``value`` unless it is a finite number ≥ ``minimum`` (> with ``strict``), naming ``field``."""
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value < minimum or (strict and value == minimum):
        raise BacktestInputError(f"{field}: must be a finite number {'>' if strict else '>='} {minimum:g}, got {value!r}")


def check_integer(field: str, value: object, *, minimum: int) -> None:
    """Refuse ``value`` unless it is an integer (not a bool) ≥ ``minimum``, naming ``field``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BacktestInputError(f"{field}: must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Costs:
    """Trading costs; every field ≥ 0 (see :mod:`models.backtest` for the formulas).

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
            check_number(f"costs.{name}", getattr(self, name), minimum=0.0)
        if not isinstance(self.vol_window, int) or self.vol_window < 2:
            raise BacktestInputError(f"costs.vol_window: must be an integer >= 2, got {self.vol_window!r}")
        check_integer("costs.periods_per_year", self.periods_per_year, minimum=1)


NO_COSTS = Costs()


@dataclass(frozen=True)
class Market:
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


def check_semantics(cash_constrained: object, size_at: object) -> None:
    """Refuse a ``cash_constrained`` that is not a bool or a ``size_at`` other than ``"close"``/``"open"``."""
    if not isinstance(cash_constrained, bool):
        raise BacktestInputError(f"cash_constrained: must be true or false, got {cash_constrained!r}")
    if size_at not in ("close", "open"):
        raise BacktestInputError(f"size_at: must be 'close' (the decision bar's close) or 'open' (the fill bar's open), got {size_at!r}")


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


def market_from_bars(bars: pl.DataFrame, vol_window: int) -> Market:
    """``bars`` (``symbol, ts, open, close, volume``) checked and laid on the grid, with ``vol_window``-timestamp volatility."""
    _require_columns(bars, "bars", BAR_FIELDS)
    values = {c: _floats(bars[c]) for c in BAR_FIELDS[2:]}
    for column, x in values.items():
        bad = ~np.isfinite(x) | ((x < 0) if column == "volume" else (x <= 0))
        if bad.any():
            raise BacktestInputError(f"bars.{column}: {int(bad.sum())} value(s) missing, not finite or {'< 0' if column == 'volume' else '<= 0'}")
    symbols, times, flat = _grid_keys(bars)
    shape = (times.len(), symbols.len())
    complete = flat is None or flat.size == shape[0] * shape[1]
    loops = compiled_loops()
    open_, close, volume = (_on_grid(values[c], flat, shape) for c in ("open", "close", "volume"))
    last_close = close if complete else loops.ffill(close)
    # A return spans a symbol's missing bars; the window counts timestamps and skips the gaps.
    log_ret = np.full(shape, np.nan)
    np.divide(close[1:], last_close[:-1], out=log_ret[1:])
    np.log(log_ret, out=log_ret)
    return Market(
        symbols=symbols, times=times, open=open_, close=last_close if complete else np.nan_to_num(last_close, nan=0.0),
        volume=volume, tradable=volume > 0,  # False where there is no bar (NaN)
        sigma_before=loops.volatility_before(log_ret, vol_window), keys=(bars["symbol"].cast(pl.String), bars["ts"]), flat=flat,
    )


@functools.cache
def compiled_loops() -> ModuleType:
    """:mod:`models.backtest_loops`, imported on the first backtest (it imports numba and loads the compiled code)."""
    from models import backtest_loops

    return backtest_loops


def score_grid(scores: pl.DataFrame, market: Market) -> np.ndarray:
    """``scores`` (``symbol, ts, score``) on ``market``'s grid, NaN where none; every row must match a bar."""
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


def single_instrument_bars(bars: pl.DataFrame, costs: Costs) -> pl.DataFrame:
    """One instrument's ``bars`` checked for a signal backtest, with the ``symbol`` and ``volume`` columns it may lack."""
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


def signal_array(signal: Sequence[float] | np.ndarray | pl.Series, n_bars: int) -> np.ndarray:
    """``signal`` as float64, checked to hold one value in {-1, 0, 1} per bar."""
    sig = signal.cast(pl.Float64).fill_null(np.nan).to_numpy() if isinstance(signal, pl.Series) else np.asarray(signal, dtype=np.float64)
    if sig.ndim != 1 or sig.size != n_bars:
        raise BacktestInputError(f"signal: needs one value per bar ({n_bars}), got shape {sig.shape}")
    if not np.isin(sig, (-1.0, 0.0, 1.0)).all():
        raise BacktestInputError("signal: values must be -1, 0 or 1 (no nulls)")
    return sig
