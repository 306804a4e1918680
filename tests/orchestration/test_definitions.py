import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from orchestration.defs.market.checks import build_checks
from orchestration.defs.market.schedules import IMPORT_JOB, INGEST_JOB
from orchestration.definitions import build_definitions


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


def test_daily_ingest_schedule_at_17_new_york_targets_the_session_that_just_closed(defs):
    schedule = defs.get_schedule_def("daily_ingest_schedule")
    assert schedule.execution_timezone == "America/New_York"
    assert schedule.cron_schedule == "0 17 * * *"
    when = dt.datetime(2024, 3, 5, 17, 0, tzinfo=ZoneInfo("America/New_York"))
    with dg.instance_for_test() as instance:
        result = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    assert [r.partition_key for r in result.run_requests] == ["2024-03-05"]


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
