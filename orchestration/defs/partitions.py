"""One partition per weekday, shared by the market ingest and the EOD compliance assets.

``TimeWindowPartitionsDefinition`` on the cron ``0 0 * * 1-5`` (New York), from
``Settings.first_partition`` (where this home's data begins). Weekends never appear; the nine
or ten weekday exchange holidays a year do, and their schedules skip them. Why not the
alternatives:

* a ``DailyPartitionsDefinition`` would add 104 weekend keys a year that can only be skipped
  (and show as missing forever);
* a static list of XNYS sessions would have to be recomputed (and its end chosen) at every
  load, and Dagster treats a changing static set as a different definition;
* dynamic partitions must be registered before they can be run or backfilled, so re-running
  an old day from the UI would need an extra step.

Time windows keep ranges, backfills and "the day that just closed" working out of the box.
A Friday's window runs to Monday midnight, which holds no more bars than Friday itself.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

EXCHANGE_TZ = "America/New_York"


def trading_day_partitions(start: dt.date, market: str = "equities") -> dg.TimeWindowPartitionsDefinition:
    """One partition per weekday from ``start``; today's exists already (``end_offset=1``) so the evening jobs can close it.

    ``market="crypto"``: one partition per UTC day, weekends included (the 24/7 calendar).
    """
    if market == "crypto":
        return dg.TimeWindowPartitionsDefinition(
            cron_schedule="0 0 * * *", start=start.isoformat(), timezone="UTC", fmt="%Y-%m-%d", end_offset=1,
        )
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5", start=start.isoformat(), timezone=EXCHANGE_TZ, fmt="%Y-%m-%d", end_offset=1,
    )


def daily_schedule(equities_cron: str, minutes_after_cut: int) -> tuple[str, str]:
    """``(cron, timezone)`` of a daily job under the market profile (``ALPHALINE_MARKET``).

    Equities: ``equities_cron`` (weekdays) in New York, unchanged. Crypto: every day, ``minutes_after_cut`` after
    the EOD cut (``ALPHALINE_EOD_CUTOFF``, midnight UTC by default), in UTC.

    Example (``ALPHALINE_MARKET=crypto``, cut at midnight UTC)::

        daily_schedule("30 17 * * 1-5", 30)  # ('30 0 * * *', 'UTC'); equities: ('30 17 * * 1-5', 'America/New_York')
    """
    from trader.market_hours import active_profile

    profile = active_profile()
    if profile.name != "crypto":
        return equities_cron, EXCHANGE_TZ
    at = dt.datetime.combine(dt.date(2000, 1, 1), profile.cutoff) + dt.timedelta(minutes=minutes_after_cut)
    return f"{at.minute} {at.hour} * * *", "UTC"


def day_just_closed(when: dt.datetime) -> dt.date:
    """The trading day a daily job at ``when`` closes: the New York date (equities' evening jobs), or for crypto
    the day that ended at the last EOD cut before ``when``."""
    from zoneinfo import ZoneInfo

    from trader.market_hours import active_profile

    profile = active_profile()
    if profile.name == "crypto":
        return profile.trading_day(when) - dt.timedelta(days=1)
    return when.astimezone(ZoneInfo(EXCHANGE_TZ)).date()
