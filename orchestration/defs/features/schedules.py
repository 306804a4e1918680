"""The features job and the intraday schedule (every 15 minutes of the regular session, New York)."""


import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from trader.market_hours import active_profile, exchange_calendar

FEATURES_JOB = "features_job"
INTRADAY_JOB = "intraday_features_job"
EXCHANGE_TZ = "America/New_York"
#: One minute after each 15-minute bar closes, so the bar is final at the source.
INTRADAY_CRON = "1,16,31,46 9-16 * * 1-5"
#: Crypto (24/7): a minute after each bar closes, every hour of every day (UTC).
CRYPTO_INTRADAY_CRON = "1,16,31,46 * * * *"
INCREMENTAL = {"ops": {"bar_features": {"config": {"incremental": True}}, "bar_labels": {"config": {"incremental": True}}}}


def build_jobs_and_schedules() -> tuple[list, list]:
    features_job = dg.define_asset_job(
        FEATURES_JOB,
        selection=dg.AssetSelection.groups("features"),
        description="Recompute every feature and label from marts.bars, apply the Feast repo and materialise online.",
    )
    intraday_job = dg.define_asset_job(
        INTRADAY_JOB,
        # partitioned like raw_bars (one key per weekday); retraining is the daily retrain schedule's job, not every 15 minutes
        selection=dg.AssetSelection.assets("raw_bars").downstream() & dg.AssetSelection.groups("market", "features"),
        config=INCREMENTAL,
        description="Ingest today's newest bars, rebuild the marts, update the features incrementally and materialise them online.",
    )

    crypto = active_profile().name == "crypto"  # 24/7: every quarter hour of every day, in UTC

    @dg.schedule(
        name="intraday_features_schedule", job=intraday_job, cron_schedule=CRYPTO_INTRADAY_CRON if crypto else INTRADAY_CRON,
        execution_timezone="UTC" if crypto else EXCHANGE_TZ,
        description="Every 15 minutes while XNYS is open (a minute after each bar closes): newest bars → features → online store.",
    )
    def intraday_features_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return intraday_request(context.scheduled_execution_time)

    return [features_job, intraday_job], [intraday_features_schedule]


def intraday_request(when: dt.datetime) -> dg.RunRequest | dg.SkipReason:
    """A run for today's partition if a regular-session bar has just closed at ``when``, else a skip."""
    profile = active_profile()
    calendar = exchange_calendar(profile.calendar)  # built once per process (half a second each)
    minute = when.astimezone(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=1)  # the bar's close
    # the bar's own session: on 24/7 the bar closing at midnight belongs to the day before
    session = (minute - dt.timedelta(seconds=1)).astimezone(ZoneInfo(profile.zone)).date()
    if not calendar.is_session(session):
        return dg.SkipReason(f"{session} is not an XNYS session")
    open_, close = calendar.session_open(session), calendar.session_close(session)
    if not (open_ < minute <= close):
        return dg.SkipReason(f"{when.isoformat()}: no regular-session bar closed a minute ago")
    return dg.RunRequest(run_key=f"intraday-{minute.isoformat()}", partition_key=session.isoformat())
