"""When the exchange is open, from ``exchange_calendars`` (XNYS by default: holidays and early closes).

The calendar is built on first use (it takes about half a second) and cached; nothing
happens at import time. A session is open from its open minute (inclusive) to its close
(exclusive), so on an early-close day (e.g. 2024-11-29, 13:00 New York) 13:00 is closed.

Example:
    >>> import datetime as dt
    >>> cal = MarketCalendar()
    >>> cal.is_open(dt.datetime(2024, 11, 29, 17, 59, tzinfo=dt.UTC))  # 12:59 New York, early close at 13:00
    True
    >>> cal.is_open(dt.datetime(2024, 11, 29, 18, 0, tzinfo=dt.UTC))
    False
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
from collections.abc import Mapping
from typing import Protocol
from zoneinfo import ZoneInfo

from trader.domain import to_utc


class TradingCalendar(Protocol):
    """What the risk engine needs from a calendar (a fake in tests, :class:`MarketCalendar` in production)."""

    def is_open(self, ts: dt.datetime) -> bool: ...


@functools.lru_cache(maxsize=4)
def exchange_calendar(name: str):  # -> exchange_calendars.ExchangeCalendar (imported lazily: it pulls pandas)
    """The ``exchange_calendars`` calendar ``name`` (``XNYS``, ``24/7``), built once per process."""
    import exchange_calendars

    return exchange_calendars.get_calendar(name)


_calendar = exchange_calendar


class MarketCalendar:
    """Regular trading hours of one exchange calendar (``XNYS`` unless told otherwise)."""

    def __init__(self, name: str = "XNYS"):
        self.name = name
        self._last: tuple[dt.datetime, bool] | None = None  # every order of a cycle asks about the same minute

    def is_open(self, ts: dt.datetime) -> bool:
        """Whether ``ts`` (aware) falls in a regular session; outside the calendar's range raises ``ValueError``."""
        import pandas as pd

        key = to_utc(ts, "ts").replace(second=0, microsecond=0)
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        minute = pd.Timestamp(key)
        cal = _calendar(self.name)
        if not cal.first_minute <= minute <= cal.last_minute:
            raise ValueError(f"{ts.isoformat()} is outside the {self.name} calendar ({cal.first_session.date()}..{cal.last_session.date()})")
        answer = bool(cal.is_open_on_minute(minute))
        self._last = (key, answer)
        return answer

    def session_close(self, ts: dt.datetime) -> dt.datetime | None:
        """Close of the session open at ``ts`` (early closes included), or ``None`` when closed."""
        import pandas as pd

        if not self.is_open(ts):
            return None
        cal = _calendar(self.name)
        minute = pd.Timestamp(to_utc(ts, "ts")).floor("min")
        return cal.session_close(cal.minute_to_session(minute)).to_pydatetime()


# --- market profiles: which calendar and which trading day ---------------------------------------------------------

#: Environment variables of the market profile (the same names orchestration's ``Settings`` reads).
MARKET_ENV = "ALPHALINE_MARKET"
CUTOFF_ENV = "ALPHALINE_EOD_CUTOFF"
MARKETS = ("equities", "crypto")


@dataclasses.dataclass(frozen=True)
class MarketProfile:
    """What a market means for sessions, trading days and the EOD cut.

    ``equities``: XNYS sessions; a trading day is the New York date (unchanged behaviour).
    ``crypto``: the ``24/7`` calendar (every UTC day a session, 00:00-24:00); a trading day ends at ``cutoff`` UTC
    (midnight by default, ``ALPHALINE_EOD_CUTOFF=HH:MM`` for another cut).

    Example:
        >>> p = market_profile("crypto", cutoff="17:00")
        >>> p.trading_day(dt.datetime(2024, 3, 2, 18, 0, tzinfo=dt.UTC))  # after the 17:00 cut: the next day
        datetime.date(2024, 3, 3)
        >>> p.day_start(dt.date(2024, 3, 3)).isoformat()
        '2024-03-02T17:00:00+00:00'
    """

    name: str
    calendar: str
    zone: str
    cutoff: dt.time = dt.time(0, 0)

    @property
    def _shift(self) -> dt.timedelta:
        """How far a day's end lies before the next local midnight (0 for a cut at midnight)."""
        c = dt.timedelta(hours=self.cutoff.hour, minutes=self.cutoff.minute)
        return dt.timedelta(days=1) - c if c else dt.timedelta(0)

    def trading_day(self, ts: dt.datetime) -> dt.date:
        """The trading day ``ts`` (aware) belongs to."""
        return (to_utc(ts, "ts").astimezone(ZoneInfo(self.zone)) + self._shift).date()

    def day_start(self, day: dt.date) -> dt.datetime:
        """Where trading day ``day`` begins, in UTC (its fills are those in ``[day_start(day), day_start(day + 1))``)."""
        return (dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(self.zone)) - self._shift).astimezone(dt.UTC)

    def market_calendar(self) -> MarketCalendar:
        return MarketCalendar(self.calendar)


def _parse_cutoff(value: str | dt.time | None) -> dt.time:
    if value is None or value == "":
        return dt.time(0, 0)
    if isinstance(value, dt.time):
        return value.replace(second=0, microsecond=0)
    try:
        parsed = dt.time.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{CUTOFF_ENV}={value!r}: not a time of day (HH:MM, UTC)") from None
    if parsed.second or parsed.microsecond:
        raise ValueError(f"{CUTOFF_ENV}={value!r}: whole minutes only (HH:MM, UTC)")
    return parsed


def market_profile(name: str = "equities", *, cutoff: str | dt.time | None = None) -> MarketProfile:
    """The profile of ``name`` (``equities`` or ``crypto``); ``cutoff`` (HH:MM UTC) applies to crypto only.

    Raises:
        ValueError: an unknown market or a cutoff that is not HH:MM (one line naming the variable).
    """
    if name == "equities":
        return MarketProfile("equities", "XNYS", "America/New_York")
    if name == "crypto":
        return MarketProfile("crypto", "24/7", "UTC", _parse_cutoff(cutoff))
    raise ValueError(f"{MARKET_ENV}={name!r}: unknown market (choose one of {', '.join(MARKETS)})")


def active_profile(env: Mapping[str, str] | None = None) -> MarketProfile:
    """The profile named by ``ALPHALINE_MARKET`` (default ``equities``) and ``ALPHALINE_EOD_CUTOFF``."""
    env = os.environ if env is None else env
    return market_profile(env.get(MARKET_ENV, "").strip().lower() or "equities", cutoff=env.get(CUTOFF_ENV))
