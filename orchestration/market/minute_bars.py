"""Streamed 1-minute bars folded into bars of the platform's timeframe (DESIGN.md §3.1), without any I/O.

Alpaca streams one bar per minute with trades. :class:`MinuteAggregator` collects them per
window of the timeframe (``15m``: 14:30, 14:45, ... UTC) and hands a window over once it has
closed (its end plus a grace, for the last minute to arrive). Rules:

* Only regular-session minutes count (Alpaca also streams 04:00-20:00 New York); the others
  are counted in ``extended_hours_dropped``, like :class:`~orchestration.market.alpaca.AlpacaSource`.
* A window that overlaps a **gap** (the stream was not listening: before its first
  connection, between a disconnect and the reconnect) or holds a malformed minute is marked
  ``backfill``: its minutes must be read over REST before its bar is built.
* :func:`window_batch` builds the batch for the warehouse: one bar per symbol from the clean
  minutes (REST minutes win over streamed ones of the same time), plus every malformed
  minute as received, so that ingestion quarantines it with its reason (never dropped).

Example:
    >>> import datetime as dt
    >>> agg = MinuteAggregator(["AAA"], "15m")
    >>> t = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC)  # 09:30 New York
    >>> agg.add(minute_row("AAA", t, 10.0, 11.0, 9.5, 10.5, 100.0))
    >>> agg.add(minute_row("AAA", t + dt.timedelta(minutes=14), 10.5, 12.0, 10.0, 11.5, 50.0))
    >>> [w.start.time() for w in agg.due(t + dt.timedelta(minutes=16))]
    [datetime.time(14, 30)]
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from orchestration.errors import ConfigError
from orchestration.market.bars import SOURCE_SCHEMA, conform, timeframe_delta
from orchestration.market.calendars import bar_grid, sessions
from orchestration.market.validation import validate_bars

STREAM_SOURCE = "alpaca-stream"
_NEW_YORK = ZoneInfo("America/New_York")
_NUMBERS = ("open", "high", "low", "close", "volume", "vwap")


def minute_row(symbol: Any, ts: Any, open_: Any, high: Any, low: Any, close: Any, volume: Any, *, vwap: Any = None,
               trade_count: Any = None, source: str = STREAM_SOURCE) -> dict[str, Any]:
    """One ``1m`` bar as a source row; a value that is not a number becomes null (validation then names it)."""
    row = {"symbol": symbol if isinstance(symbol, str) else None, "timeframe": "1m", "ts": ts, "source": source,
           "trade_count": trade_count if isinstance(trade_count, int) and not isinstance(trade_count, bool) else None}
    for name, value in zip(_NUMBERS, (open_, high, low, close, volume, vwap), strict=True):
        row[name] = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    return row


def from_alpaca_message(msg: dict[str, Any]) -> dict[str, Any]:
    """A raw stream message (``{"T": "b", "S", "t", "o", "h", "l", "c", "v", "n", "vw"}``) as a source row.

    ``t`` arrives as a msgpack ``Timestamp`` (alpaca-py's raw mode leaves it so) or a datetime.
    """
    t = msg.get("t")
    ts = t.to_datetime() if hasattr(t, "to_datetime") else t
    ts = ts.astimezone(dt.UTC) if isinstance(ts, dt.datetime) and ts.tzinfo is not None else None
    return minute_row(msg.get("S"), ts, msg.get("o"), msg.get("h"), msg.get("l"), msg.get("c"), msg.get("v"),
                      vwap=msg.get("vw"), trade_count=msg.get("n"))


@dataclass
class Window:
    """The minutes of one bar-to-be; ``backfill``: its minutes must also be read over REST."""

    start: dt.datetime
    end: dt.datetime
    minutes: list[dict[str, Any]] = field(default_factory=list)
    backfill: bool = False


class MinuteAggregator:
    """Collects streamed minutes into windows of ``timeframe`` (module docstring)."""

    def __init__(self, symbols: list[str], timeframe: str = "15m", *, grace: dt.timedelta = dt.timedelta(seconds=5)):
        if timeframe == "1d" or timeframe_delta(timeframe) < dt.timedelta(minutes=1):
            raise ConfigError(f"stream: timeframe {timeframe!r} cannot be built from minute bars (use 1m, 5m, 15m or 1h)")
        self.symbols, self.timeframe, self.grace = list(symbols), timeframe, grace
        self._step = timeframe_delta(timeframe)
        self._windows: dict[dt.datetime, Window] = {}
        self._gaps: list[list[dt.datetime | None]] = []  # [start, end]; end None: still not listening
        self._done: dt.datetime | None = None  # windows starting before this were handed over
        self._orphans: list[dict[str, Any]] = []
        self._sessions: dict[dt.date, tuple[dt.datetime, dt.datetime] | None] = {}
        self.extended_hours_dropped = 0
        self.late = 0

    def floor(self, ts: dt.datetime) -> dt.datetime:
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return ts - (ts - epoch) % self._step

    def gap_started(self, at: dt.datetime) -> None:
        """The stream stopped listening at ``at`` (or has not started yet)."""
        if not self._gaps or self._gaps[-1][1] is not None:
            self._gaps.append([at, None])

    def gap_ended(self, at: dt.datetime) -> None:
        """The stream listens again from ``at``."""
        if self._gaps and self._gaps[-1][1] is None:
            self._gaps[-1][1] = at

    def add(self, row: dict[str, Any]) -> None:
        """One streamed minute (a :func:`minute_row`); a malformed one marks its window for backfill."""
        ts = row.get("ts")
        if not isinstance(ts, dt.datetime):  # no window to place it in: it travels with the next one, to be quarantined
            self._orphans.append(row)
            return
        start = self.floor(ts)
        if self._done is not None and start < self._done:
            self.late += 1  # the window's bar is written already; REST (the daily ingest) has the final minutes
            return
        if not self._in_session(ts):
            self.extended_hours_dropped += 1
            return
        window = self._window(start)
        window.minutes.append(row)
        if any(row.get(k) is None for k in ("symbol", "open", "high", "low", "close", "volume")):
            window.backfill = True

    def due(self, now: dt.datetime) -> list[Window]:
        """Windows closed by ``now`` (minus the grace), oldest first, each once; gap windows included."""
        last_end = now - self.grace
        for start in self._gap_windows(last_end):
            self._window(start).backfill = True
        ready = sorted(s for s in self._windows if s + self._step <= last_end)
        out = [self._windows.pop(s) for s in ready]
        if out and self._orphans:
            out[0].minutes += self._orphans
            self._orphans = []
        if ready:
            self._done = max(self._done or ready[-1], ready[-1] + self._step)
        # a closed gap is forgotten once every window it touches has been handed over
        self._gaps = [g for g in self._gaps if g[1] is None or self._done is None or g[1] > self._done]
        return out

    def _in_session(self, ts: dt.datetime) -> bool:
        day = ts.astimezone(_NEW_YORK).date()
        if day not in self._sessions:
            s = sessions("XNYS", day, day)
            self._sessions[day] = (s["open_ts"][0], s["close_ts"][0]) if s.height else None
        span = self._sessions[day]
        return span is not None and span[0] <= ts < span[1]

    def _window(self, start: dt.datetime) -> Window:
        if start not in self._windows:
            self._windows[start] = Window(start, start + self._step)
        return self._windows[start]

    def _gap_windows(self, last_end: dt.datetime) -> list[dt.datetime]:
        """Session windows that overlap a gap and have closed by ``last_end``."""
        starts: list[dt.datetime] = []
        for gap_start, gap_end in self._gaps:
            assert gap_start is not None
            lo = max(self.floor(gap_start), self._done or self.floor(gap_start))
            hi = min(gap_end or last_end, last_end)
            if lo >= hi:
                continue
            grid = bar_grid("XNYS", self.timeframe, lo.date() - dt.timedelta(days=1), hi.date() + dt.timedelta(days=1))
            starts += [t for t in grid["ts"] if lo <= t < hi and t + self._step <= last_end]
        return starts


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = {k: v for k, v in SOURCE_SCHEMA.items() if k != "source_row"}
    df = pl.from_dicts(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return conform(df.with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64)))


def _split(frame: pl.DataFrame, now: dt.datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(clean rows, malformed rows as received)."""
    result = validate_bars(frame, now=now)
    return result.clean, frame.filter(pl.col("source_row").is_in(result.rejected["source_row"].to_list()))


def window_batch(window: Window, timeframe: str, fetch_rest: Callable[[dt.datetime, dt.datetime], pl.DataFrame], *,
                 now: dt.datetime) -> pl.DataFrame:
    """The window's bars (one per symbol with minutes) plus its malformed minutes, as source rows for ingestion.

    ``fetch_rest(start, end)`` reads the window's ``1m`` bars over REST (source columns); it is called when
    the window overlaps a gap or a streamed minute is malformed, and its minutes win over streamed ones.
    """
    clean, bad = _split(_frame(window.minutes), now)
    if window.backfill or bad.height:
        rest_clean, rest_bad = _split(_frame(fetch_rest(window.start, window.end).drop("source_row").to_dicts()), now)
        clean = pl.concat([rest_clean, clean]).unique(["symbol", "ts"], keep="first", maintain_order=True)
        bad = pl.concat([bad, rest_bad])
    bars = aggregate(clean, window.start, timeframe)
    return pl.concat([_frame(bars), bad]) if bars else bad


def aggregate(minutes: pl.DataFrame, start: dt.datetime, timeframe: str) -> list[dict[str, Any]]:
    """One bar per symbol: first open, highest high, lowest low, last close, summed volume and trades, volume-weighted vwap."""
    out = []
    for (symbol,), part in minutes.sort("ts").group_by("symbol", maintain_order=True):
        volume = float(part["volume"].sum())
        vw = part["vwap"]
        vwap = float((vw * part["volume"]).sum() / volume) if volume > 0 and vw.null_count() == 0 else None
        n = part["trade_count"]
        high, low = float(part["high"].max()), float(part["low"].min())
        if vwap is not None:  # float rounding of the weighted mean must not step outside the bar
            vwap = min(max(vwap, low), high) if math.isfinite(vwap) else None
        out.append({"symbol": symbol, "timeframe": timeframe, "ts": start, "open": part["open"][0], "high": high,
                    "low": low, "close": part["close"][-1], "volume": volume, "vwap": vwap,
                    "trade_count": int(n.sum()) if n.null_count() == 0 else None, "source": STREAM_SOURCE})
    return out
