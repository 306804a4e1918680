"""Features through Dagster: the ingest job builds features, labels, the Feast registry and the online store;
the intraday job updates them incrementally to the same values a full rebuild gives."""

import datetime as dt
from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from feature_repo import FEATURE_NAMES, compute_features
from feature_repo import store as fs
from orchestration.definitions import build_definitions
from orchestration.defs.features.assets import load_bars
from orchestration.defs.features.schedules import FEATURES_JOB, INCREMENTAL, INTRADAY_JOB
from orchestration.defs.market.schedules import INGEST_JOB
from tests.conftest import utc

pytestmark = pytest.mark.slow
SMALL = {"n_symbols": 4, "n_sectors": 2}
RANGE = {ASSET_PARTITION_RANGE_START_TAG: "2024-01-03", ASSET_PARTITION_RANGE_END_TAG: "2024-02-07"}  # 25 sessions


def _run(settings, job: str, instance, *, tags=None, partition_key=None, extra: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
    config: dict[str, Any] = {"resources": {"market": {"config": SMALL}}, **(extra or {})}
    return build_definitions(settings).resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags, partition_key=partition_key, run_config=config, raise_on_error=False
    )


def _failed_checks(result) -> dict[str, str]:
    return {f"{c.asset_key.to_user_string()}:{c.check_name}": c.description for c in result.get_asset_check_evaluations() if not c.passed}


def test_ingest_then_intraday_update_keeps_offline_online_and_full_rebuild_identical(settings):
    with dg.instance_for_test() as instance:
        result = _run(settings, INGEST_JOB, instance, tags=RANGE)
        assert result.success, _failed_checks(result)
        assert not _failed_checks(result)
        names = {c.check_name for c in result.get_asset_check_evaluations()}
        assert {"coverage_per_symbol", "nan_share_after_warmup", "value_ranges", "no_lookahead",
                "feature_label_leakage", "labels_null_only_past_the_end", "online_store_fresh"} <= names

        store = fs.open_store(settings.home)
        online = fs.online_features(store, ["AAA", "DDD"])
        assert online["ts_bar_ret"].to_list() == [utc(2024, 2, 7, 21, 0)] * 2
        frame = fs.training_set(store, fs.offline_dir(settings.home))
        assert frame.height > 0 and frame["label_fwd_ret_4"].drop_nulls().len() > 0

        intraday = _run(settings, INTRADAY_JOB, instance, partition_key="2024-02-08", extra=INCREMENTAL)
        assert intraday.success, _failed_checks(intraday)
        meta = intraday.asset_materializations_for_node("bar_features")[0].metadata
        assert meta["mode"].value == "incremental"

    online = fs.online_features(fs.open_store(settings.home), ["AAA"])
    assert online["ts_bar_ret"][0] == utc(2024, 2, 8, 21, 0)
    stored = fs.read_features(fs.offline_dir(settings.home))
    from orchestration.warehouse.resource import WarehouseResource

    bars, _ = load_bars(WarehouseResource(location=str(settings.warehouse_path)), "15m", incremental=False)
    full = compute_features(bars, bar_length=dt.timedelta(minutes=15))
    assert stored.height == full.height == 4 * 26 * 26
    for name in FEATURE_NAMES:
        diff = (stored[name].cast(pl.Float64) - full[name].cast(pl.Float64)).abs().max()
        assert (diff or 0.0) < 1e-9, name


def test_features_job_before_any_bars_fails_with_one_clear_line(settings):
    with dg.instance_for_test() as instance:
        result = _run(settings, FEATURES_JOB, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "marts.bars does not exist yet: ingest bars first" in failure.step_failure_data.error.message
