"""The EOD compliance job and its schedule: weekdays 17:30 New York, the session that just closed."""


import datetime as dt

import dagster as dg

from orchestration.defs.compliance.sources import is_session
from orchestration.defs.partitions import daily_schedule, day_just_closed

EOD_JOB = "eod_compliance_job"
EXCHANGE_TZ = "America/New_York"
#: 17:30 New York: after the 16:00 close and the 17:00 market ingest that brings the closing prices.
EOD_CRON = "30 17 * * 1-5"


def build_jobs_and_schedules() -> tuple[list, list]:
    eod_job = dg.define_asset_job(
        EOD_JOB,
        selection=dg.AssetSelection.groups("compliance").materializable(),
        description="Close the day's tax-lot ledger, write the compliance reports, verify the audit trail and seal the "
                    "day in the WORM archive (blocking checks in between).",
    )

    cron, zone = daily_schedule(EOD_CRON, 30)  # crypto: every day, 30 minutes after the EOD cut

    @dg.schedule(
        name="eod_compliance_schedule", job=eod_job, cron_schedule=cron, execution_timezone=zone,
        description="Weekdays at 17:30 America/New_York: the EOD compliance run for the session that just closed "
                    "(skipped on exchange holidays).",
    )
    def eod_compliance_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return eod_request(context.scheduled_execution_time)

    return [eod_job], [eod_compliance_schedule]


def eod_request(when: dt.datetime) -> dg.RunRequest | dg.SkipReason:
    """A run for the day that just closed at ``when`` (New York date; crypto: the day before the last cut) if it is
    a session, else a skip that says why."""
    day = day_just_closed(when)
    if not is_session(day):
        return dg.SkipReason(f"{day} is not an XNYS session")
    # One run per day: a re-evaluated tick never starts a second run for the same session.
    return dg.RunRequest(run_key=f"eod-compliance-{day.isoformat()}", partition_key=day.isoformat())
