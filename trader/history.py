"""Trailing bars for portfolio decisions: :class:`MarketHistory` reads them, :class:`MarketSnapshot` holds them.

The optimiser (:mod:`trader.optimizer`) and the portfolio risk checks (:mod:`trader.risk.portfolio`)
need the recent joint behaviour of the universe: bar-to-bar returns (covariance, VaR, correlation)
and traded volume (ADV). Both come from ``marts.bars`` through a :class:`~trader.brokers.bars.BarFeed`
(:class:`~trader.brokers.bars.WarehouseBars` in a run), adjusted for splits and cash dividends so that a window
spanning an ex-date has no fake return (ADV in today's shares).

**Point in time.** A snapshot at ``until`` holds only bars *closed* by ``until`` (open time
``≤ until − timeframe``, DESIGN.md §3.1): a decision at a bar close never sees the next bar.

Returns are simple close-to-close returns between consecutive bars of the window (an overnight gap
is one return); a symbol without a bar at a time has NaN there and at its next bar. ADV is the mean
volume (shares) of the *complete* sessions in the window: the session ``until`` falls in is left out.

Example:
    >>> import datetime as dt
    >>> from decimal import Decimal as D
    >>> from trader.brokers.bars import Bar, InMemoryBars
    >>> t0 = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC)
    >>> step = dt.timedelta(minutes=15)
    >>> bars = [Bar(symbol="AAA", ts=t0 + i * step, open=D(100), high=D(110), low=D(90), close=D(c), volume=D(10))
    ...         for i, c in enumerate([100, 110, 99, 500])]
    >>> snap = MarketHistory(InMemoryBars(bars), lookback=dt.timedelta(days=5)).snapshot(["AAA"], until=t0 + 3 * step)
    >>> [round(float(x), 4) for x in snap.returns[:, 0]]  # the bar closing at 15:30 (close 500) is not known yet
    [0.1, -0.1]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from trader.brokers.bars import Bar, BarFeed
from trader.domain import Symbol
from trader.market_hours import active_profile

if TYPE_CHECKING:
    import numpy as np

    from trader.config import TraderConfig

_OVERLAP = dt.timedelta(days=1)


@dataclass(frozen=True)
class MarketSnapshot:
    """The trailing window at ``asof``: returns ``(T, n)`` in the column order of ``symbols``, and ADV per symbol."""

    asof: dt.datetime
    symbols: tuple[Symbol, ...]
    returns: np.ndarray
    adv: dict[Symbol, Decimal] = field(default_factory=dict)
    #: Fewer complete rows than this are not enough to estimate risk from (``history.min_observations``).
    min_observations: int = 60

    def window(self, symbols: Sequence[str]) -> np.ndarray:
        """Returns of ``symbols`` (in that order) on the rows where all of them have one; a missing symbol gives 0 rows."""
        import numpy as np

        index = {s: i for i, s in enumerate(self.symbols)}
        if any(s not in index for s in symbols):
            return np.empty((0, len(symbols)))
        block = self.returns[:, [index[s] for s in symbols]] if len(symbols) else np.empty((self.returns.shape[0], 0))
        return block[~np.isnan(block).any(axis=1)]


def snapshot_from_bars(bars: Sequence[Bar], symbols: Sequence[str], *, asof: dt.datetime,
                       min_observations: int = 60) -> MarketSnapshot:
    """Returns and ADV from ``bars`` (already cut to the window) for ``symbols``."""
    import numpy as np

    cols = tuple(Symbol(s) for s in sorted(set(symbols)))
    col = {s: j for j, s in enumerate(cols)}
    times = sorted({b.ts for b in bars if b.symbol in col})
    row = {t: i for i, t in enumerate(times)}
    closes = np.full((len(times), len(cols)), np.nan)
    volume: dict[tuple[Symbol, dt.date], Decimal] = {}
    today = active_profile().trading_day(asof)
    for b in bars:
        if b.symbol not in col:
            continue
        closes[row[b.ts], col[b.symbol]] = float(b.close)
        day = active_profile().trading_day(b.ts)
        if day < today:  # only complete sessions count for ADV
            volume[(b.symbol, day)] = volume.get((b.symbol, day), Decimal(0)) + b.volume
    returns = closes[1:] / closes[:-1] - 1.0 if len(times) > 1 else np.empty((0, len(cols)))
    adv = {}
    for s in cols:
        days = [v for (sym, _), v in volume.items() if sym == s]
        if days:
            adv[s] = sum(days, Decimal(0)) / len(days)
    return MarketSnapshot(asof=asof, symbols=cols, returns=returns, adv=adv, min_observations=min_observations)


class MarketHistory:
    """Reads the trailing ``lookback`` of bars from ``feed`` for each decision; each call reads only the new bars.

    Args:
        feed: where bars come from (:class:`~trader.brokers.bars.WarehouseBars` reads the warehouse read-only).
        lookback: how far back the window reaches from the decision time.
        min_observations: carried by each snapshot (too few rows: no optimisation, risk checks deny).
    """

    def __init__(self, feed: BarFeed, *, lookback: dt.timedelta, min_observations: int = 60):
        self.feed, self.lookback, self.min_observations = feed, lookback, min_observations
        self._bars: list[Bar] = []
        self._symbols: frozenset[str] = frozenset()
        self._through: dt.datetime | None = None  # open time of the newest bar asked for

    def snapshot(self, symbols: Collection[str], *, until: dt.datetime) -> MarketSnapshot:
        """Bars of ``symbols`` closed by ``until`` and opened after ``until − lookback``."""
        last_open = until - self.feed.timeframe
        first = until - self.lookback
        wanted = frozenset(symbols)
        if wanted != self._symbols or self._through is None or last_open < self._through:
            self._bars = self.feed.bars(wanted, after=first, until=last_open)
        elif last_open > self._through:
            # Re-read the last day too: a bar that reached the warehouse late is picked up, not a hole for good.
            since = max(self._through - _OVERLAP, first)
            fresh = self.feed.bars(wanted, after=since, until=last_open)
            self._bars = [b for b in self._bars if b.ts <= since] + fresh
        self._symbols, self._through = wanted, last_open
        self._bars = [b for b in self._bars if b.ts > first]
        return snapshot_from_bars(self._bars, sorted(wanted), asof=until, min_observations=self.min_observations)

    @classmethod
    def from_config(cls, config: TraderConfig, feed: BarFeed | None = None) -> MarketHistory | None:
        """The history ``config`` asks for (an optimiser or a portfolio risk limit), else ``None``.

        Without ``feed``: the warehouse's ``marts.bars`` (read-only, one query per decision).
        """
        if config.sizing.optimizer == "none" and not config.risk.needs_history():
            return None
        if feed is None:
            from trader.brokers.bars import WarehouseBars

            feed = WarehouseBars(timeframe="15m", adjusted=True)  # a split is not a -50% return in the covariance
        return cls(feed, lookback=dt.timedelta(days=config.history.lookback_days),
                   min_observations=config.history.min_observations)
