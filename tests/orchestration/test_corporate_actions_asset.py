"""The raw_corporate_actions asset in Dagster: a day's partition lands the actions with ex-date in it and the week after."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.market.assets import build_actions_asset, build_raw_assets
from orchestration.defs.market.checks import build_checks
from orchestration.resources import DataQualityResource, MarketSourceResource
from orchestration.settings import Settings
from orchestration.warehouse.resource import WarehouseResource
from tests.conftest import warehouse_sql


def test_raw_corporate_actions_when_the_synthetic_market_plants_actions_lands_them_and_its_check_passes(tmp_path):
    settings = Settings(home=tmp_path)  # no dbt here: only the raw asset and its check
    asset = build_actions_asset(build_raw_assets(settings))
    checks = [c for c in build_checks() if any(k.asset_key == asset.key for k in c.check_keys)]
    resources = {"market": MarketSourceResource(n_symbols=4, n_sectors=2, corporate_actions=True),
                 "warehouse": WarehouseResource(location=str(settings.warehouse_path)),
                 "quality": DataQualityResource(reports_dir=str(settings.reports_dir))}
    result = dg.materialize([asset, *checks], partition_key="2024-01-08", resources=resources)
    assert result.success
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True]
    rows = warehouse_sql(settings, "select symbol, ex_date::varchar d, kind, ratio::double r, amount::double a "
                                   "from raw.corporate_actions order by ex_date")
    assert rows.select("symbol", "d", "kind").rows() == [("AAA", "2024-01-09", "cash_dividend"), ("DDD", "2024-01-12", "split")]
    assert rows["r"].to_list()[1] == 2.0 and 0 < rows["a"].to_list()[0] < 5
    again = dg.materialize([asset], partition_key="2024-01-09", resources=resources)  # overlapping window: nothing new
    assert again.success and warehouse_sql(settings, "select count(*) n from raw.corporate_actions")["n"][0] == 2
