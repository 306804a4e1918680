"""Jobs and the daily ingest schedule (weekdays after the close, America/New_York; exchange holidays skipped)."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from orchestration.defs.partitions import daily_schedule

INGEST_JOB = "market_ingest_job"
IMPORT_JOB = "file_import_job"
#: After ``alphaline market stream --features`` wrote a bar: marts, then the features incrementally (no ingest).
STREAM_JOB = "streamed_bars_job"
EXCHANGE_TZ = "America/New_York"
#: 17:00 New York on weekdays: an hour after the regular close, once the day's last bars are final.
INGEST_CRON = "0 17 * * 1-5"
#: What a day's ingest rebuilds: bars, marts and features. Training, serving, the trader and compliance sit further
#: downstream of raw_bars and have their own jobs and schedules (a day's ingest must not wait on a retrain).
INGEST_GROUPS = ("market", "features")


def build_jobs_and_schedules(raw_bars: dg.AssetsDefinition, imported_bars: dg.AssetsDefinition,
                             raw_actions: dg.AssetsDefinition | None = None) -> tuple[list, list]:
    ingested = dg.AssetSelection.assets(raw_bars) | (dg.AssetSelection.assets(raw_actions) if raw_actions else dg.AssetSelection.assets())
    ingest_job = dg.define_asset_job(
        INGEST_JOB,
        selection=ingested.downstream() & dg.AssetSelection.groups(*INGEST_GROUPS),
        description="Ingest a day (or a range of days) of market bars, rebuild the marts, then the features, Feast and the online store.",
    )
    import_job = dg.define_asset_job(
        IMPORT_JOB,
        # Features follow on the next ingest or `alphaline features build`: an imported file may
        # hold another timeframe than the one the features are computed on.
        selection=dg.AssetSelection.assets(imported_bars).downstream() & dg.AssetSelection.groups("market"),
        description="Import CSV/Parquet files, then rebuild the marts and run every market check.",
    )

    stream_job = dg.define_asset_job(
        STREAM_JOB,
        selection=(dg.AssetSelection.assets(raw_bars).downstream() & dg.AssetSelection.groups(*INGEST_GROUPS))
        - dg.AssetSelection.assets(raw_bars, imported_bars),
        config={"ops": {name: {"config": {"incremental": True}} for name in ("bar_features", "bar_labels")}},
        description="Rebuild the marts from raw.bars as they are (bars streamed in by `alphaline market stream`), "
                    "then update the features incrementally and materialise them online.",
    )

    cron, zone = daily_schedule(INGEST_CRON, 10)  # crypto: every day, 10 minutes after the cut

    @dg.schedule(
        name="daily_ingest_schedule", job=ingest_job, cron_schedule=cron, execution_timezone=zone,
        description="Weekdays at 17:00 America/New_York: ingest the session that just closed (skipped on exchange holidays).",
    )
    def daily_ingest_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return ingest_request(context.scheduled_execution_time)

    return [ingest_job, import_job, stream_job], [daily_ingest_schedule]


def ingest_request(when: dt.datetime) -> dg.RunRequest | dg.SkipReason:
    """A run for the New York date of ``when`` if XNYS traded that day, else a skip that says why."""
    from orchestration.defs.partitions import day_just_closed
    from orchestration.market.calendars import sessions
    from trader.market_hours import active_profile

    day = day_just_closed(when)
    if sessions(active_profile().calendar, day, day).height != 1:
        return dg.SkipReason(f"{day} is not an XNYS session: no bars to ingest")
    return dg.RunRequest(run_key=f"ingest-{day.isoformat()}", partition_key=day.isoformat())
