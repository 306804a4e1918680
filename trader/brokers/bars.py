"""Bars for the simulator: the :class:`BarFeed` interface, an in-memory feed for tests and :class:`WarehouseBars`.

A :class:`Bar` is one row of ``marts.bars`` (DESIGN.md §3.1) with its prices and volume as
``Decimal`` and its open time ``ts`` in UTC. The simulator asks a feed for the bars of a few
symbols whose open time lies in ``(after, until]``; that is the whole interface, so a test
can hand it a list and a replay can read the warehouse.

:class:`WarehouseBars` reads ``marts.bars`` from the warehouse (:mod:`trader.warehouse`: the DuckDB file
``$ALPHALINE_HOME/warehouse.duckdb``, or the servers profile's PostgreSQL database) **read-only** and opens it
only for the duration of one query: DuckDB allows one writer process per file, and the
trader must never stand in the way of (or become) that writer (DESIGN.md §6).

Example:
    >>> import datetime as dt
    >>> from decimal import Decimal as D
    >>> t0 = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC)
    >>> feed = InMemoryBars([Bar(symbol="AAA", ts=t0, open=D(100), high=D(101), low=D(99), close=D(100.5),
    ...                          volume=D(1000))], timeframe=dt.timedelta(minutes=15))
    >>> [b.close for b in feed.bars({"AAA"}, after=t0 - dt.timedelta(minutes=1), until=t0)]
    [Decimal('100.5')]
    >>> feed.bars({"AAA"}, after=t0, until=t0 + dt.timedelta(hours=1))
    []
"""

from __future__ import annotations

import bisect
import datetime as dt
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from trader.domain import Symbol, to_decimal, to_symbol, to_utc
from trader.errors import BrokerError

#: The timeframes of DESIGN.md §3.1 and their lengths.
TIMEFRAMES: Mapping[str, dt.timedelta] = {
    "1m": dt.timedelta(minutes=1),
    "5m": dt.timedelta(minutes=5),
    "15m": dt.timedelta(minutes=15),
    "1h": dt.timedelta(hours=1),
    "1d": dt.timedelta(days=1),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Bar:
    """One bar: ``ts`` is its open time (UTC); it is fully known only at ``end`` (its close time)."""

    symbol: Symbol
    ts: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    end: dt.datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", to_symbol(self.symbol))
        object.__setattr__(self, "ts", to_utc(self.ts, "bar.ts"))
        for name in ("open", "high", "low", "close", "volume"):
            object.__setattr__(self, name, to_decimal(getattr(self, name), f"bar.{name}"))
        if self.end is not None:
            object.__setattr__(self, "end", to_utc(self.end, "bar.end"))


class BarFeed(Protocol):
    """Where the simulator's prices come from."""

    #: Length of one bar; a bar opening at ``ts`` closes at ``ts + timeframe``.
    timeframe: dt.timedelta

    def bars(self, symbols: Collection[str], *, after: dt.datetime, until: dt.datetime) -> list[Bar]:
        """Bars of ``symbols`` whose open time is in ``(after, until]``, sorted by ``(ts, symbol)``."""
        ...


def _with_end(bar: Bar, timeframe: dt.timedelta) -> Bar:
    if bar.end is not None:
        return bar
    return Bar(symbol=bar.symbol, ts=bar.ts, open=bar.open, high=bar.high, low=bar.low, close=bar.close,
               volume=bar.volume, end=bar.ts + timeframe)


class InMemoryBars:
    """A :class:`BarFeed` over a list of bars (tests, and replays that already hold their bars)."""

    def __init__(self, bars: Iterable[Bar], *, timeframe: dt.timedelta = TIMEFRAMES["15m"]):
        self.timeframe = timeframe
        self._by_symbol: dict[str, list[Bar]] = {}
        for bar in sorted(bars, key=lambda b: (b.symbol, b.ts)):
            self._by_symbol.setdefault(bar.symbol, []).append(_with_end(bar, timeframe))
        self._times = {s: [b.ts for b in rows] for s, rows in self._by_symbol.items()}

    def bars(self, symbols: Collection[str], *, after: dt.datetime, until: dt.datetime) -> list[Bar]:
        out: list[Bar] = []
        for symbol in symbols:
            times = self._times.get(symbol)
            if times:
                lo, hi = bisect.bisect_right(times, after), bisect.bisect_right(times, until)
                out.extend(self._by_symbol[symbol][lo:hi])
        out.sort(key=lambda b: (b.ts, b.symbol))
        return out


def default_warehouse_path(env: Mapping[str, str] | None = None) -> Path:
    """``$ALPHALINE_HOME/warehouse.duckdb`` (``ALPHALINE_HOME`` defaults to ``.alphaline``), the embedded warehouse."""
    env = os.environ if env is None else env
    return Path(env.get("ALPHALINE_HOME", ".alphaline")).resolve() / "warehouse.duckdb"


# timezone('UTC', ts) is the naive UTC time on both engines (DuckDB and PostgreSQL).
_QUERY = """
    SELECT symbol, timezone('UTC', ts) AS ts_utc, {prices}
    FROM marts.bars
    WHERE timeframe = ? AND ts > ? AND ts <= ? AND symbol IN (SELECT unnest(CAST(? AS VARCHAR[])))
    ORDER BY ts, symbol
"""
_RAW = "open, high, low, close, volume"
_ADJUSTED = "adj_open, adj_high, adj_low, adj_close, adj_volume"
_HAS_ADJUSTED = ("SELECT count(*) FROM information_schema.columns "
                 "WHERE table_schema = 'marts' AND table_name = 'bars' AND column_name = 'adj_close'")


def _exact(value: float) -> Decimal:
    # repr() of a float is the shortest string that reads back as the same float: 100.12 stays
    # 100.12 instead of becoming 100.1199999999999903366...
    return Decimal(repr(value))


class WarehouseBars:
    """A :class:`BarFeed` reading ``marts.bars`` from the warehouse, read-only.

    Args:
        location: the DuckDB file or the PostgreSQL URL; default :func:`trader.warehouse.warehouse_location`
            (the servers profile's database when ``ALPHALINE_POSTGRES_URL`` is set, else the file under the home).
        timeframe: which bars (``15m`` by default; any of :data:`TIMEFRAMES`).
        adjusted: prices and volume adjusted for splits and cash dividends (``adj_*``), for returns and ADV over
            a window that may span an ex-date (:mod:`trader.history`); the default is the prices as traded, which
            the simulator fills at and positions are marked to. A warehouse built before the adjusted columns
            existed has no corporate actions: its raw prices are read.
    """

    def __init__(self, location: str | Path | None = None, *, timeframe: str = "15m", adjusted: bool = False):
        from trader.warehouse import warehouse_location

        if timeframe not in TIMEFRAMES:
            raise BrokerError(f"timeframe: {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
        self.location = str(location) if location is not None else warehouse_location()
        self.timeframe_code = timeframe
        self.timeframe = TIMEFRAMES[timeframe]
        self.adjusted = adjusted

    def bars(self, symbols: Collection[str], *, after: dt.datetime, until: dt.datetime) -> list[Bar]:
        if not symbols:
            return []
        args = [self.timeframe_code, to_utc(after, "after"), to_utc(until, "until"), sorted(symbols)]
        rows = self._query(args)
        return [Bar(symbol=Symbol(r[0]), ts=r[1].replace(tzinfo=dt.UTC), open=_exact(r[2]), high=_exact(r[3]),
                    low=_exact(r[4]), close=_exact(r[5]), volume=_exact(r[6]), end=r[1].replace(tzinfo=dt.UTC) + self.timeframe)
                for r in rows]

    def _query(self, args: list[Any]) -> list[tuple[Any, ...]]:
        # The drivers are imported on first use: the trader core stays lean (tests/trader/test_lean_imports.py).
        from trader.warehouse import WarehouseError, connect, fetch

        try:
            with connect(self.location) as conn:
                adjusted = self.adjusted and fetch(conn, _HAS_ADJUSTED)[0][0] > 0
                return fetch(conn, _QUERY.format(prices=_ADJUSTED if adjusted else _RAW), args)
        except WarehouseError as exc:
            raise BrokerError(str(exc)) from None
