"""End to end through Dagster and dbt, in-process, on a tiny synthetic market (4 symbols × 3 days)."""

import datetime as dt
from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from orchestration.definitions import build_definitions
from orchestration.defs.market.schedules import IMPORT_JOB, INGEST_JOB
from tests.conftest import real_csv, utc
from tests.conftest import warehouse_sql as _sql

pytestmark = pytest.mark.slow
RANGE = {ASSET_PARTITION_RANGE_START_TAG: "2024-01-03", ASSET_PARTITION_RANGE_END_TAG: "2024-01-05"}
TINY = {"n_symbols": 4, "n_sectors": 2}


def _run(settings, job: str, *, tags=None, market: dict[str, Any] | None = None, ops=None) -> dg.ExecuteInProcessResult:
    defs = build_definitions(settings)
    config: dict[str, Any] = {"resources": {"market": {"config": {**TINY, **(market or {})}}}}
    if ops:
        config["ops"] = ops
    with dg.instance_for_test() as instance:
        return defs.resolve_job_def(job).execute_in_process(instance=instance, tags=tags, run_config=config, raise_on_error=False)


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {f"{c.asset_key.to_user_string()}:{c.check_name}": c.passed for c in result.get_asset_check_evaluations()}


def test_ingest_job_builds_validated_marts_with_every_check_passing(settings):
    result = _run(settings, INGEST_JOB, tags=RANGE)
    assert result.success
    checks = _checks(result)
    assert len(checks) >= 30 and all(checks.values()), {k: v for k, v in checks.items() if not v}
    bars = _sql(settings, "select * from marts.bars order by symbol, ts")
    assert bars.height == 4 * 26 * 3
    assert bars["ts"].dtype == pl.Datetime("us", "UTC")
    assert bars["ts"].min() == utc(2024, 1, 3, 14, 30)
    # knowable at the bar's close; the session's last bar closes at 16:00 New York
    assert (bars["close_ts"] - bars["ts"]).unique().to_list() == [dt.timedelta(minutes=15)]
    assert bars["close_ts"].max() == utc(2024, 1, 5, 21, 0)
    daily = _sql(settings, "select * from marts.bars_daily")
    assert daily.height == 4 * 3 and daily["bar_count"].unique().to_list() == [26]
    assert (settings.reports_dir / "data_docs" / "index.html").exists()
    meta = result.asset_materializations_for_node("raw_bars")[0].metadata
    assert meta["rows_rejected"].value == 0 and meta["symbols"].value == 4

    again = _run(settings, INGEST_JOB, tags=RANGE)  # re-ingesting the same days is idempotent
    assert again.success
    assert _sql(settings, "select count(*) n from marts.bars")["n"][0] == 4 * 26 * 3
    batches = _sql(settings, "select duplicate_of from raw.batches order by started_at")
    assert batches["duplicate_of"].is_null().to_list() == [True, False]


def test_ingest_job_when_rejects_exceed_the_limit_blocks_everything_downstream(settings):
    faults = {"negative_volume": 10, "outside_session": 5, "duplicate_key": 5}  # 20 of 332 rows: 6% > 1%
    result = _run(settings, INGEST_JOB, tags=RANGE, market={"faults": faults})
    assert not result.success
    checks = _checks(result)
    assert checks["raw_bars:reject_share_within_limit"] is False
    evaluation = next(c for c in result.get_asset_check_evaluations() if c.check_name == "reject_share_within_limit")
    assert "synthetic" in evaluation.description and "volume_negative:volume ×10 (rows" in evaluation.description
    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert "raw_bars" in steps and "market_dbt_models" not in steps
    rejected = _sql(settings, "select reason, count(*) n from raw.bars_rejected group by 1 order by 1")
    assert dict(rejected.iter_rows()) == {"duplicate_key": 5, "outside_session": 5, "volume_negative:volume": 10}
    assert _sql(settings, "select count(*) n from raw.bars")["n"][0] == 4 * 26 * 3 - 10  # clean rows kept


def test_import_job_loads_a_real_daily_file_into_the_marts(settings, tmp_path):
    path = str(real_csv("sp500_daily.csv", tmp_path))
    result = _run(settings, IMPORT_JOB, ops={"imported_bars": {"config": {"paths": [path]}}})
    assert result.success, _checks(result)
    bars = _sql(settings, "select * from marts.bars")
    assert bars.height == 5031 and bars["timeframe"].unique().to_list() == ["1d"]
    assert bars["close_ts"].min() == utc(1999, 1, 4, 21, 0)
    daily = _sql(settings, "select count(*) n, min(from_timeframe) tf from marts.bars_daily")
    assert daily.row(0) == (5031, "1d")
