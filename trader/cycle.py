"""What a decision cycle runs at and what it reports: :class:`Tick`, :class:`CycleReport`, :class:`CycleObserver`.

Ticks come from :func:`replay_ticks` (a day of bars, e.g. from :class:`~trader.brokers.bars.WarehouseBars`)
or :func:`live_ticks` (bar boundaries on the wall clock); a bar is knowable at its close, never earlier
(DESIGN.md §3.1). :func:`session_start` is the start of a trading day (the daily loss baseline),
:func:`last_closes` the prices known at a time, and :func:`steady_heap` keeps the start-up heap out of the
garbage collector's way while :class:`trader.runner.Runner` runs its cycles, and :func:`collect_if_due` runs the
collections it would soon run by itself between them.

Example:
    >>> from decimal import Decimal as D
    >>> bar = Bar(symbol="AAA", ts=dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC), open=D(10), high=D(11), low=D(9),
    ...           close=D("10.5"), volume=D(100))
    >>> [(t.ts.isoformat(), t.prices, t.as_of == t.ts) for t in replay_ticks([bar], timeframe="15m")]
    [('2024-03-05T14:45:00+00:00', {'AAA': Decimal('10.5')}, True)]
"""

from __future__ import annotations

import datetime as dt
import gc
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from trader.brokers.bars import TIMEFRAMES, Bar, BarFeed
from trader.domain import ZERO, Symbol, TradingState
from trader.errors import TraderError
from trader.market_hours import active_profile

_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, kw_only=True)
class Tick:
    """One decision point: its time, the last prices known then, and the prediction ``as_of`` (``None`` = latest)."""

    ts: dt.datetime
    prices: Mapping[Symbol, Decimal] = field(default_factory=dict)
    as_of: dt.datetime | None = None


def _step(timeframe: str) -> dt.timedelta:
    if timeframe not in TIMEFRAMES:
        raise TraderError(f"timeframe: {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
    return TIMEFRAMES[timeframe]


def session_start(ts: dt.datetime | dt.date) -> dt.datetime:
    """Start of the trading day ``ts`` falls on (or of the date), in UTC (the daily loss baseline).

    Equities: midnight in New York; crypto (``ALPHALINE_MARKET=crypto``): the EOD cut, midnight UTC by default.
    """
    profile = active_profile()
    day = profile.trading_day(ts) if isinstance(ts, dt.datetime) else ts
    return profile.day_start(day)


def replay_ticks(bars: Iterable[Bar], *, timeframe: str = "15m") -> list[Tick]:
    """One tick per bar close, with every symbol's latest close, asking predictions ``as_of`` that close.

    A bar is knowable at its close (``ts + timeframe``, DESIGN.md §3.1), never earlier.
    """
    step, by_ts = _step(timeframe), {}
    for bar in bars:
        by_ts.setdefault(bar.ts, []).append(bar)
    last: dict[Symbol, Decimal] = {}
    ticks = []
    for ts in sorted(by_ts):
        last.update({b.symbol: b.close for b in by_ts[ts]})
        ticks.append(Tick(ts=ts + step, prices=dict(last), as_of=ts + step))
    return ticks


def last_closes(feed: BarFeed, symbols: Sequence[str], at: dt.datetime) -> dict[Symbol, Decimal]:
    """Each symbol's close from the latest bar closed by ``at`` (within a week), e.g. from the warehouse."""
    bars = feed.bars(symbols, after=at - 7 * _DAY, until=at - feed.timeframe)
    return {b.symbol: b.close for b in bars}  # sorted by time: the last one wins


def live_ticks(read_prices: Callable[[dt.datetime], Mapping[Symbol, Decimal]], *, timeframe: str = "15m",
               once: bool = False, grace: dt.timedelta = dt.timedelta(seconds=30),
               clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
               sleep: Callable[[float], object] = time.sleep) -> Iterator[Tick]:
    """A tick at each bar boundary on the wall clock (``grace`` after it, for the bar to land in the warehouse).

    The tick's time is the boundary itself, so a restart within the same bar re-derives the
    same ``client_order_id`` values and the duplicate check stops a second order.
    """
    step = _step(timeframe)
    while True:
        now = clock()
        boundary = now - (now - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) % step
        yield Tick(ts=boundary, prices=read_prices(boundary), as_of=None)
        if once:
            return
        wait = (boundary + step + grace - clock()).total_seconds()
        if wait > 0:
            sleep(wait)


@contextmanager
def steady_heap() -> Iterator[None]:
    """Inside the block, the objects alive at its start (modules, config, calendars, the store) are out of the
    cyclic garbage collector's way (:func:`gc.freeze`); they go back when it ends.

    A full collection otherwise walks that whole start-up heap: measured on the 48-symbol
    benchmark, ~50 ms inside one cycle (that cycle was the p99), against ~5 ms frozen.
    Nothing is leaked: garbage frozen with them is collected after the block.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def collect_if_due() -> bool:
    """Between cycles: a full collection now if the cyclic GC would soon run one by itself, inside a cycle.

    CPython collects the oldest generation when its count (one per collection of the middle generation, which
    a 48-symbol benchmark cycle runs about once in ten cycles) passes its threshold. Collecting at two below
    the threshold, in the idle time between cycles, keeps that full collection (7–11 ms after a few hundred
    cycles on that benchmark, the frozen start-up heap left out) out of the cycles. Whether it collected.
    """
    if gc.isenabled() and gc.get_count()[2] >= gc.get_threshold()[2] - 2:
        gc.collect()
        return True
    return False


@dataclass(frozen=True, kw_only=True)
class CycleReport:
    """What one cycle did; ``status`` is the one line ``trader status`` shows."""

    ts: dt.datetime
    state: TradingState
    status: str
    submitted: int = 0
    denied: int = 0
    canceled: int = 0
    fills: int = 0
    #: Predictions held because their features were older than the bar this cycle decides on.
    behind: int = 0
    #: No decision: none of the predictions came from the bar that has just closed (see ``Runner._current_bar``).
    refused: bool = False
    cash: Decimal = ZERO
    positions_value: Decimal = ZERO
    equity: Decimal = ZERO
    problems: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {**self.__dict__, "state": self.state.value, "problems": list(self.problems)}

    def line(self) -> str:
        problems = f" [{len(self.problems)} problems: {self.problems[0]}]" if self.problems else ""
        return (f"{self.ts.isoformat()} {self.state.value:8} equity {self.equity:.2f} cash {self.cash:.2f} "
                f"sent {self.submitted} denied {self.denied} fills {self.fills} — {self.status}{problems}")


class CycleObserver(Protocol):
    """Watches each finished cycle (metrics, alerts); ``denials`` counts denied orders by reason code this cycle."""

    def on_cycle(self, report: CycleReport, *, denials: Mapping[str, int], seconds: float) -> None: ...

