"""Trader domain: the trader's tables (external: ``trader run`` writes them) and its session (``trader_session``).

Lineage: ``serving_deployment`` → ``trader/fills``, ``trader/audit_log`` (the trader trades the
service's predictions) → ``trader_session`` here and the compliance assets. ``trading_status_job``
(and its schedule, weekdays after the close) records what was live and what the trader did.
"""

from __future__ import annotations

import dagster as dg

from orchestration.defs.trader.assets import TRADER_AUDIT_LOG, TRADER_FILLS, TRADER_TABLES, session_tracking, trader_session
from orchestration.defs.trader.schedules import build_jobs_and_schedules


def build_defs() -> dg.Definitions:
    jobs, schedules = build_jobs_and_schedules()
    return dg.Definitions(assets=[*TRADER_TABLES, session_tracking, trader_session], jobs=jobs, schedules=schedules)


__all__ = ["TRADER_AUDIT_LOG", "TRADER_FILLS", "build_defs"]
