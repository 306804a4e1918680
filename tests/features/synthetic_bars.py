"""Bars in the feature layer's input shape, straight from the synthetic market (no warehouse, no Dagster)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import polars as pl

from orchestration.market.calendars import sessions
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket

BAR = dt.timedelta(minutes=15)


@lru_cache(maxsize=4)
def feature_bars(n_symbols: int = 6, first: dt.date = dt.date(2024, 6, 3), last: dt.date = dt.date(2024, 8, 30)) -> pl.DataFrame:
    """``BAR_COLUMNS`` for ``n_symbols`` synthetic symbols over the XNYS sessions ``first..last``."""
    market = SyntheticMarket(SyntheticConfig(n_symbols=n_symbols))
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    batch = market.fetch(start, end, now=end + dt.timedelta(days=2))
    cal = sessions("XNYS", first, last).select(
        "session", pl.col("open_ts").alias("session_open"), pl.col("close_ts").alias("session_close")
    )
    return (
        batch.bars.with_columns(session=pl.col("ts").dt.convert_time_zone("America/New_York").dt.date())
        .join(cal, on="session")
        .join(batch.symbols.select("symbol", "sector"), on="symbol")
        .with_columns(close_ts=pl.min_horizontal(pl.col("ts") + BAR, pl.col("session_close")))
        .sort("symbol", "ts")
    )
