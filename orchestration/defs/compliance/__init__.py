"""Compliance domain: the end-of-day tax-lot ledger, reports, audit-trail verification and WORM archive (issue 7).

Partitions: one key per *weekday* (``TimeWindowPartitionsDefinition`` on the cron
``0 0 * * 1-5``, New York), from ``ALPHALINE_MARKET_START`` (no closing prices exist before
it). Weekends never appear; the nine or ten weekday exchange holidays a year do, and
materialize as no-ops that say so. Why not the alternatives:

* a ``DailyPartitionsDefinition`` would add 104 weekend keys a year that can only be skipped;
* a static list of XNYS sessions would have to be recomputed (and its end chosen) at every
  load, and Dagster treats a changing static set as a different definition;
* dynamic partitions must be registered before they can be run or backfilled, so re-running
  an old day from the UI would need an extra step.

Time windows keep ranges, backfills and "the day that just closed" working out of the box.
"""

import datetime as dt

import dagster as dg

from orchestration.defs.compliance.assets import TRADER_TABLES, build_assets
from orchestration.defs.compliance.checks import COMPLIANCE_CHECKS
from orchestration.defs.compliance.resources import ComplianceResource
from orchestration.defs.compliance.schedules import EXCHANGE_TZ, build_jobs_and_schedules
from orchestration.settings import Settings


def trading_day_partitions(start: dt.date) -> dg.TimeWindowPartitionsDefinition:
    """One partition per weekday from ``start``; today's exists already (``end_offset=1``) so 17:30 can close it."""
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5", start=start.isoformat(), timezone=EXCHANGE_TZ, fmt="%Y-%m-%d", end_offset=1,
    )


def build_defs(settings: Settings) -> dg.Definitions:
    partitions = trading_day_partitions(settings.market_start)
    jobs, schedules = build_jobs_and_schedules()
    return dg.Definitions(
        assets=[*TRADER_TABLES, *build_assets(partitions)],
        asset_checks=COMPLIANCE_CHECKS,
        jobs=jobs,
        schedules=schedules,
    )


__all__ = ["ComplianceResource", "build_defs", "trading_day_partitions"]
