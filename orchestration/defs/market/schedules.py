"""Jobs and the daily ingest schedule (after the close, America/New_York)."""

from __future__ import annotations

import dagster as dg

INGEST_JOB = "market_ingest_job"
IMPORT_JOB = "file_import_job"


def build_jobs_and_schedules(raw_bars: dg.AssetsDefinition, imported_bars: dg.AssetsDefinition) -> tuple[list, list]:
    ingest_job = dg.define_asset_job(
        INGEST_JOB,
        # Training has its own job and schedule (after the ingest): a day's ingest must not wait on a retrain.
        selection=dg.AssetSelection.assets(raw_bars).downstream() - dg.AssetSelection.groups("training"),
        description="Ingest a day (or a range of days) of market bars, rebuild the marts, then the features, Feast and the online store.",
    )
    import_job = dg.define_asset_job(
        IMPORT_JOB,
        # Features follow on the next ingest or `alphaline features build`: an imported file may
        # hold another timeframe than the one the features are computed on.
        selection=dg.AssetSelection.assets(imported_bars).downstream() & dg.AssetSelection.groups("market"),
        description="Import CSV/Parquet files, then rebuild the marts and run every market check.",
    )
    # 17:00 New York: an hour after the regular close, once the day's last bars are final.
    daily = dg.build_schedule_from_partitioned_job(
        ingest_job, name="daily_ingest_schedule", hour_of_day=17, minute_of_hour=0,
        description="Every day at 17:00 America/New_York: ingest the day that just closed.",
    )
    return [ingest_job, import_job], [daily]
