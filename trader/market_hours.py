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

import datetime as dt
import functools
from typing import Protocol

from trader.domain import to_utc


class TradingCalendar(Protocol):
    """What the risk engine needs from a calendar (a fake in tests, :class:`MarketCalendar` in production)."""

    def is_open(self, ts: dt.datetime) -> bool: ...


@functools.lru_cache(maxsize=4)
def _calendar(name: str):  # -> exchange_calendars.ExchangeCalendar (imported lazily: it pulls pandas)
    import exchange_calendars

    return exchange_calendars.get_calendar(name)


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
