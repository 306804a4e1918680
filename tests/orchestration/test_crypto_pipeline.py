"""The crypto market through Dagster, dbt and Feast, in-process: a weekend of 24/7 bars for three pairs."""

import datetime as dt

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from orchestration.definitions import build_definitions
from orchestration.defs.market.schedules import INGEST_JOB
from orchestration.settings import Settings, prepare_environment
from tests.conftest import utc
from tests.conftest import warehouse_sql as _sql

pytestmark = pytest.mark.slow
WEEKEND = {ASSET_PARTITION_RANGE_START_TAG: "2024-01-06", ASSET_PARTITION_RANGE_END_TAG: "2024-01-07"}


@pytest.fixture
def crypto_settings(settings, monkeypatch) -> Settings:
    monkeypatch.setenv("ALPHALINE_MARKET", "crypto")  # before prepare_environment: the test's teardown restores it
    crypto = prepare_environment(Settings(home=settings.home))
    assert crypto.market == "crypto" and crypto.dbt_target_dir == settings.dbt_target_dir
    return crypto


def test_a_weekend_of_crypto_pairs_goes_through_marts_and_features(crypto_settings):
    defs = build_definitions(crypto_settings)
    config = {"resources": {"market": {"config": {"n_symbols": 3, "n_sectors": 2, "market": "crypto"}}}}
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(INGEST_JOB).execute_in_process(instance=instance, tags=WEEKEND, run_config=config,
                                                                     raise_on_error=False)
    checks = {f"{c.asset_key.to_user_string()}:{c.check_name}": c.passed for c in result.get_asset_check_evaluations()}
    assert result.success and all(checks.values()), {k: v for k, v in checks.items() if not v}
    bars = _sql(crypto_settings, "select symbol, ts, close_ts, session, volume from marts.bars order by symbol, ts")
    assert sorted(bars["symbol"].unique()) == ["BTC/USD", "ETH/USD", "SOL/USD"]
    assert bars.height == 3 * 96 * 2 and bars["ts"].min() == utc(2024, 1, 6, 0, 0)
    assert sorted(bars["session"].unique()) == [dt.date(2024, 1, 6), dt.date(2024, 1, 7)]  # Saturday and Sunday
    assert (bars["volume"] % 1 != 0).any()
    daily = _sql(crypto_settings, "select bar_count from marts.bars_daily")
    assert daily.height == 3 * 2 and daily["bar_count"].unique().to_list() == [96]
    offline = list((crypto_settings.feast_dir / "offline").glob("*.parquet"))
    assert offline and all("/" not in p.name for p in offline)
