"""``trading_status_job``: what is live and what the trader did, recorded weekdays after the close."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.compliance.schedules import eod_request
from orchestration.defs.partitions import daily_schedule

TRADING_STATUS_JOB = "trading_status_job"
#: 16:15 New York: the session has closed and the trader's last cycle is in; before the 17:00 ingest.
TRADING_STATUS_CRON = "15 16 * * 1-5"


def build_jobs_and_schedules() -> tuple[list, list]:
    job = dg.define_asset_job(
        TRADING_STATUS_JOB,
        selection=dg.AssetSelection.assets("serving_deployment", "trader_session", "session_tracking"),
        description="Record which model the prediction service answers with and what the trader's newest session did "
                    "(state, orders, fills, P&L, equity), with an observation of the trader's fills and audit log, and the "
                    "session's live-against-backtest tracking.",
    )

    cron, zone = daily_schedule(TRADING_STATUS_CRON, 5)  # crypto: every day, just after the cut

    @dg.schedule(name="trading_status_schedule", job=job, cron_schedule=cron, execution_timezone=zone,
                 description="Weekdays at 16:15 America/New_York (skipped on exchange holidays): serving and trader status.")
    def trading_status_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        request = eod_request(context.scheduled_execution_time)
        if isinstance(request, dg.SkipReason):
            return request
        return dg.RunRequest(run_key=f"trading-status-{request.partition_key}")

    return [job], [trading_status_schedule]
