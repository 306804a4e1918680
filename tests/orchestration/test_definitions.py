import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from orchestration.definitions import build_definitions
from orchestration.defs.features.schedules import INTRADAY_JOB, intraday_request
from orchestration.defs.market.checks import build_checks
from orchestration.defs.market.schedules import IMPORT_JOB, INGEST_JOB, STREAM_JOB, ingest_request


@pytest.fixture
def defs(settings) -> dg.Definitions:
    return build_definitions(settings)


def test_definitions_load_with_the_market_assets_checks_jobs_schedule_and_sensor(defs):
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_bars", "imported_bars", "staging/stg_bars", "marts/bars", "marts/bars_daily"} <= keys
    parents = {p.to_user_string() for p in graph.get(dg.AssetKey(["staging", "stg_bars"])).parent_keys}
    assert parents == {"raw_bars", "imported_bars"}
    checks = {c.to_user_string() for c in graph.asset_check_keys}
    assert {"raw_bars:reject_share_within_limit", "imported_bars:reject_share_within_limit",
            "marts/bars:great_expectations_suite", "marts/bars:unique_combination_bars_symbol__timeframe__ts"} <= checks
    specs = {s.key.to_user_string(): s for c in build_checks() for s in c.check_specs}
    assert specs["raw_bars:reject_share_within_limit"].blocking
    assert specs["imported_bars:reject_share_within_limit"].blocking
    assert specs["marts/bars:great_expectations_suite"].blocking
    assert not specs["raw_bars:calendar_gaps"].blocking
    assert {j.name for j in defs.jobs} >= {INGEST_JOB, IMPORT_JOB}
    for name in ("raw_bars", "imported_bars", "marts/bars"):
        assert graph.get(dg.AssetKey.from_user_string(name)).group_name == "market"


def test_daily_ingest_schedule_at_17_new_york_on_weekdays_targets_the_session_that_just_closed(defs):
    schedule = defs.resolve_schedule_def("daily_ingest_schedule")
    assert (schedule.execution_timezone, schedule.job_name) == ("America/New_York", INGEST_JOB)
    assert schedule.cron_schedule == "0 17 * * 1-5"  # never on a weekend
    at_17 = lambda day: dt.datetime.combine(day, dt.time(17), tzinfo=ZoneInfo("America/New_York"))  # noqa: E731
    assert ingest_request(at_17(dt.date(2024, 3, 5))).partition_key == "2024-03-05"  # what the schedule returns that tick
    assert "not an XNYS session" in ingest_request(at_17(dt.date(2024, 7, 4))).skip_message


def test_imports_sensor_requests_one_run_per_new_file_and_not_again(defs, settings):
    sensor = defs.get_sensor_def("imports_sensor")
    (settings.imports_dir / "aaa.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,10\n")
    (settings.imports_dir / "notes.txt.bak").write_text("ignored")
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert len(first.run_requests) == 1
    config = first.run_requests[0].run_config["ops"]["imported_bars"]["config"]
    assert config["paths"] == [str(settings.imports_dir / "aaa.csv")]
    assert again.run_requests == [] and again.skip_message


def test_feature_assets_sit_downstream_of_the_clean_bars_with_blocking_checks(defs):
    graph = defs.resolve_asset_graph()
    for name in ("bar_features", "bar_labels", "feast_registry", "online_features"):
        assert graph.get(dg.AssetKey(name)).group_name == "features"
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("bar_features")).parent_keys} == {"marts/bars"}
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("online_features")).parent_keys} == {"feast_registry", "bar_features"}
    checks = {c.to_user_string() for c in graph.asset_check_keys}
    assert {"bar_features:coverage_per_symbol", "bar_features:nan_share_after_warmup", "bar_features:value_ranges",
            "bar_features:no_lookahead", "bar_features:feature_label_leakage", "bar_labels:labels_null_only_past_the_end",
            "online_features:online_store_fresh"} <= checks
    ingest = defs.resolve_job_def(INGEST_JOB)
    assert dg.AssetKey("online_features") in ingest.asset_layer.executable_asset_keys
    assert dg.AssetKey("bar_features") not in defs.resolve_job_def(IMPORT_JOB).asset_layer.executable_asset_keys
    streamed = {k.to_user_string() for k in defs.resolve_job_def(STREAM_JOB).asset_layer.executable_asset_keys}
    assert {"marts/bars", "bar_features", "online_features"} <= streamed  # `alphaline market stream --features`
    assert not {"raw_bars", "imported_bars"} & streamed  # the stream wrote raw.bars itself: no REST ingest


NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("when", "partition"),
    [
        (dt.datetime(2024, 3, 5, 10, 1, tzinfo=NY), "2024-03-05"),   # the 9:45-10:00 bar just closed
        (dt.datetime(2024, 3, 5, 16, 1, tzinfo=NY), "2024-03-05"),   # the last bar of the day
        (dt.datetime(2024, 7, 3, 13, 1, tzinfo=NY), "2024-07-03"),   # early close at 13:00
        (dt.datetime(2024, 3, 5, 9, 16, tzinfo=NY), None),           # before the open
        (dt.datetime(2024, 7, 3, 14, 1, tzinfo=NY), None),           # after an early close
        (dt.datetime(2024, 7, 4, 11, 1, tzinfo=NY), None),           # Independence Day
    ],
)
def test_intraday_schedule_runs_a_minute_after_each_regular_session_bar(defs, when, partition):
    schedule = defs.get_schedule_def("intraday_features_schedule")
    assert schedule.execution_timezone == "America/New_York" and schedule.job_name == INTRADAY_JOB
    assert schedule.cron_schedule == "1,16,31,46 9-16 * * 1-5"
    request = intraday_request(when)  # what the schedule's function returns for that tick
    if partition:
        assert isinstance(request, dg.RunRequest) and request.partition_key == partition
    else:
        assert isinstance(request, dg.SkipReason)


def test_intraday_job_updates_features_incrementally_by_default(defs):
    config = defs.resolve_job_def(INTRADAY_JOB).get_run_config_for_partition_key("2024-03-05")
    assert config["ops"]["bar_features"]["config"] == {"incremental": True}
    assert config["ops"]["bar_labels"]["config"] == {"incremental": True}
