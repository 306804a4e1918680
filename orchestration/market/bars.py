"""The bar contract of DESIGN.md §3.1 and the small interface every source implements.

A source yields a polars frame with :data:`SOURCE_COLUMNS` (``source_row`` is the
row's position in the original input, e.g. the line of a CSV file, so a rejected
row can be found again). Ingestion adds ``batch_id`` and ``ingested_at``.

Example:
    >>> timeframe_delta("15m")
    datetime.timedelta(seconds=900)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from orchestration.errors import ConfigError

TIMEFRAMES: dict[str, dt.timedelta] = {
    "1m": dt.timedelta(minutes=1),
    "5m": dt.timedelta(minutes=5),
    "15m": dt.timedelta(minutes=15),
    "1h": dt.timedelta(hours=1),
    "1d": dt.timedelta(days=1),
}
DEFAULT_TIMEFRAME = "15m"
KEY = ("symbol", "timeframe", "ts")
PRICE_COLUMNS = ("open", "high", "low", "close")
UTC_TS = pl.Datetime("us", "UTC")

#: Columns and dtypes a source hands to ingestion.
SOURCE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "timeframe": pl.String(),
    "ts": UTC_TS,
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "vwap": pl.Float64(),
    "trade_count": pl.Int64(),
    "source": pl.String(),
    "source_row": pl.Int64(),
}
SOURCE_COLUMNS = tuple(SOURCE_SCHEMA)
#: Columns of ``raw.bars``, in order.
RAW_COLUMNS = (*SOURCE_COLUMNS[:-1], "batch_id", "ingested_at")


def timeframe_delta(timeframe: str) -> dt.timedelta:
    """The length of a bar of ``timeframe``; raises :class:`ConfigError` for an unknown one."""
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        raise ConfigError(
            f"timeframe {timeframe!r} is not supported (choose one of {', '.join(TIMEFRAMES)})"
        ) from None


def calendar_for_symbol(symbol: str) -> str:
    """Trading calendar of a symbol: crypto pairs (``BTC/USD``) trade 24/7, the rest on XNYS."""
    return "24/7" if "/" in symbol else "XNYS"


def empty_source_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=SOURCE_SCHEMA)


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Select and order the source columns, adding optional ones as nulls.

    Casting here is strict: a source must already have produced the right types,
    so a wrong type is a bug in that source, not something to guess around.
    """
    missing = [c for c in SOURCE_COLUMNS if c not in df.columns]
    if missing:
        df = df.with_columns(pl.lit(None, dtype=SOURCE_SCHEMA[c]).alias(c) for c in missing)
    return df.select(pl.col(c).cast(t, strict=True) for c, t in SOURCE_SCHEMA.items())


@dataclass(frozen=True)
class SourceBatch:
    """What a source returns: bars plus side tables a source may produce.

    Attributes:
        bars: frame with :data:`SOURCE_COLUMNS`.
        label: human-readable origin, e.g. ``synthetic`` or ``csv:sp500_daily.csv``.
        symbols: reference data per symbol (``symbol``, ``sector``), if the source knows it.
        oracle: the synthetic market's expected forward returns, if any.
    """

    bars: pl.DataFrame
    label: str
    symbols: pl.DataFrame | None = None
    oracle: pl.DataFrame | None = None
    notes: dict[str, str] = field(default_factory=dict)


class BarSource(Protocol):
    """Anything that can produce bars for a time window.

    ``fetch(start, end)`` returns the bars whose open time is in ``[start, end)``,
    both UTC-aware datetimes.
    """

    name: str

    def fetch(self, start: dt.datetime, end: dt.datetime) -> SourceBatch: ...
