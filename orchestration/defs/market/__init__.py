"""Market-data domain: raw ingestion, dbt marts, data-quality checks, schedule and sensor."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtProject

from orchestration.defs.market.assets import build_actions_asset, build_import_asset, build_raw_assets
from orchestration.defs.market.checks import build_checks
from orchestration.defs.market.dbt import build_dbt_assets
from orchestration.defs.market.schedules import build_jobs_and_schedules
from orchestration.defs.market.sensors import build_imports_sensor
from orchestration.settings import Settings


def build_defs(settings: Settings, dbt_project: DbtProject) -> dg.Definitions:
    raw_bars, imported_bars = build_raw_assets(settings), build_import_asset(settings)
    raw_actions = build_actions_asset(raw_bars)
    dbt_models = build_dbt_assets(dbt_project)
    jobs, schedules = build_jobs_and_schedules(raw_bars, imported_bars, raw_actions)
    return dg.Definitions(
        assets=[raw_bars, imported_bars, raw_actions, dbt_models],
        asset_checks=build_checks(),
        jobs=jobs,
        schedules=schedules,
        sensors=[build_imports_sensor(settings.imports_dir)],
    )


__all__ = ["build_defs"]
