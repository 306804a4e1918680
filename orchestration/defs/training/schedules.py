"""The training job and the daily retrain schedule (after the day's ingest and features)."""


import dagster as dg

from orchestration.defs.partitions import daily_schedule

TRAINING_JOB = "training_job"
EXCHANGE_TZ = "America/New_York"
#: 18:30 New York on weekdays: after the 17:00 ingest (marts, features, Feast) has finished.
RETRAIN_CRON = "30 18 * * 1-5"


def build_jobs_and_schedules() -> tuple[list, list]:
    training_job = dg.define_asset_job(
        TRAINING_JOB,
        # the search is run on demand by its own job (learner_search_job), never by the daily retrain
        selection=dg.AssetSelection.groups("training") - dg.AssetSelection.assets("learner_search"),
        description="Feast training frame → purged walk-forward CV of every learner → stacked ensemble, backtest and gates → "
        "candidate in the BentoML store → champion/challenger promotion.",
    )
    cron, zone = daily_schedule(RETRAIN_CRON, 90)  # crypto: every day, after the ingest that follows the cut
    retrain = dg.ScheduleDefinition(
        name="daily_retrain_schedule", job=training_job, cron_schedule=cron, execution_timezone=zone,
        description="Weekdays at 18:30 America/New_York: retrain on the updated features and promote the candidate if it wins.",
    )
    return [training_job], [retrain]
