"""A file whose batch failed the blocking reject-share check stays blocked when imported again (DESIGN.md §3.1)."""

from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import build_definitions
from orchestration.defs.market.schedules import IMPORT_JOB
from tests.conftest import warehouse_sql as _sql

pytestmark = pytest.mark.slow
SESSIONS = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08",
            "2024-01-09", "2024-01-10", "2024-01-11", "2024-01-12", "2024-01-16"]
NEGATIVE = {"2024-01-04", "2024-01-10"}  # 2 of 10 rows: 20% > the 1% limit


def _bad_csv(folder: Path) -> Path:
    lines = ["Date,Open,High,Low,Close,Volume"]
    lines += [f"{day},10,11,9,10.5,{-5 if day in NEGATIVE else 1000}" for day in SESSIONS]
    path = folder / "abc.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _import(settings, path: Path) -> dg.ExecuteInProcessResult:
    job = build_definitions(settings).resolve_job_def(IMPORT_JOB)
    config = {"ops": {"imported_bars": {"config": {"paths": [str(path)]}}}}
    with dg.instance_for_test() as instance:
        return job.execute_in_process(instance=instance, run_config=config, raise_on_error=False)


def _reject_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    return next(c for c in result.get_asset_check_evaluations() if c.check_name == "reject_share_within_limit")


def _ran(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}


def test_import_job_when_a_blocked_file_is_imported_again_fails_the_same_way_naming_the_first_batch(settings, tmp_path):
    path = _bad_csv(tmp_path)
    first = _import(settings, path)
    assert not first.success and _reject_check(first).passed is False
    first_batch = _sql(settings, "select batch_id from raw.batches")["batch_id"][0]

    second = _import(settings, path)
    assert not second.success
    check = _reject_check(second)
    assert check.passed is False
    assert "csv:abc.csv (batch " in check.description
    assert f"identical to blocked batch {first_batch}, nothing appended): 2 of 10 rows rejected (20.00% > 1.00%)" in check.description
    assert "volume_negative:volume ×2 (rows " in check.description and "\n" not in check.description
    assert "market_dbt_models" not in _ran(second)  # still blocked downstream

    # nothing lost, nothing doubled: the first batch's rejects and clean rows are where it put them
    rejected = _sql(settings, "select batch_id, count(*) n from raw.bars_rejected group by 1")
    assert rejected.rows() == [(first_batch, 2)]
    assert _sql(settings, "select count(*) n from raw.bars")["n"][0] == 8
    batches = _sql(settings, "select batch_id, duplicate_of from raw.batches order by started_at")
    assert batches["duplicate_of"].to_list() == [None, first_batch]
