"""Compliance domain: the end-of-day tax-lot ledger, reports, audit-trail verification and WORM archive (issue 7).

Partitions: one key per weekday from where this home's data begins
(:mod:`orchestration.defs.partitions`, shared with the market ingest).
"""

import dagster as dg

from orchestration.defs.compliance.assets import build_assets
from orchestration.defs.compliance.checks import COMPLIANCE_CHECKS
from orchestration.defs.compliance.resources import ComplianceResource
from orchestration.defs.compliance.schedules import build_jobs_and_schedules
from orchestration.defs.partitions import trading_day_partitions
from orchestration.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    partitions = trading_day_partitions(settings.first_partition, settings.market)
    jobs, schedules = build_jobs_and_schedules()
    return dg.Definitions(
        assets=build_assets(partitions),
        asset_checks=COMPLIANCE_CHECKS,
        jobs=jobs,
        schedules=schedules,
    )


__all__ = ["ComplianceResource", "build_defs", "trading_day_partitions"]
