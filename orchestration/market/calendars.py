"""Trading sessions from ``exchange_calendars``: the grid of valid bar open times.

Intraday bars are stamped at their open, aligned to the timeframe in UTC; a bar
is inside a session when its interval overlaps the session. Daily bars are
stamped at the session open and are knowable at the session close.

Example:
    >>> import datetime as dt
    >>> s = sessions("XNYS", dt.date(2024, 11, 28), dt.date(2024, 11, 29))
    >>> s["session"].to_list()  # Thanksgiving is closed, the day after closes early
    [datetime.date(2024, 11, 29)]
    >>> s["close_ts"].dt.hour().to_list()
    [18]
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import polars as pl

from orchestration.market.bars import UTC_TS, timeframe_delta

SESSION_SCHEMA = {"calendar": pl.String(), "session": pl.Date(), "open_ts": UTC_TS, "close_ts": UTC_TS}


@lru_cache(maxsize=32)
def _calendar(name: str, start_year: int, end_year: int) -> xcals.ExchangeCalendar:
    first = max(dt.date(start_year, 1, 1), dt.date(1900, 1, 1))
    return xcals.get_calendar(name, start=first.isoformat(), end=dt.date(end_year, 12, 31).isoformat())


def sessions(calendar: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Sessions of ``calendar`` with ``start <= session <= end`` (open/close in UTC)."""
    if end < start:
        return pl.DataFrame(schema=SESSION_SCHEMA)
    cal = _calendar(calendar, start.year, end.year + 1)
    sched = cal.schedule.loc[start.isoformat() : end.isoformat()]
    return pl.DataFrame(
        {
            "calendar": [calendar] * len(sched),
            "session": [d.date() for d in sched.index],
            "open_ts": pl.from_pandas(sched["open"].reset_index(drop=True)),
            "close_ts": pl.from_pandas(sched["close"].reset_index(drop=True)),
        },
    ).cast(SESSION_SCHEMA)


def bar_grid(calendar: str, timeframe: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Every valid bar open time of ``timeframe`` in the sessions from ``start`` to ``end``.

    Columns: ``session``, ``ts``. Intraday grids start at the session open floored to
    the timeframe and stop before the close, so an early close has fewer bars.
    """
    s = sessions(calendar, start, end)
    if timeframe == "1d":
        return s.select("session", pl.col("open_ts").alias("ts"))
    every = f"{int(timeframe_delta(timeframe).total_seconds())}s"
    return (
        s.select(
            "session",
            pl.datetime_ranges(
                pl.col("open_ts").dt.truncate(every), pl.col("close_ts"), interval=every, closed="left"
            ).alias("ts"),
        )
        .explode("ts")
        .with_columns(pl.col("ts").cast(UTC_TS))
    )
