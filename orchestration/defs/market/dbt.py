"""The dbt project as Dagster assets: staging and marts models, dbt tests as asset checks."""


from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from orchestration.market.warehouse import ensure_schema
from orchestration.warehouse.resource import WarehouseResource

DBT_DIR = Path(__file__).resolve().parents[3] / "dbt"


def dbt_project(target_dir: Path) -> DbtProject:
    return DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR, target_path=target_dir)


def prepare_manifest(project: DbtProject) -> Path:
    """Parse the dbt project into ``manifest.json`` if it is missing (tests, CI, first run)."""
    if not project.manifest_path.exists():
        project.preparer.prepare(project)
    return project.manifest_path


class MarketTranslator(DagsterDbtTranslator):
    """Models keyed ``<schema>/<name>`` in the market group; file imports feed staging too."""

    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True))

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "model":
            return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "market"

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if unique_id.endswith((".stg_bars", ".stg_corporate_actions")):
            spec = spec.merge_attributes(deps=[dg.AssetKey("imported_bars")])
        return spec


def build_dbt_assets(project: DbtProject) -> dg.AssetsDefinition:
    @dbt_assets(manifest=prepare_manifest(project), project=project, dagster_dbt_translator=MarketTranslator(), name="market_dbt_models")
    def market_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource) -> Iterator:
        # dbt's sources must exist even before the first ingestion; the connection is closed again
        # before dbt opens the warehouse (DuckDB allows one writer process; on PostgreSQL dbt's target is the same database).
        with warehouse.get_connection() as con:
            ensure_schema(con)
        yield from dbt.cli(["build"], context=context).stream()

    return market_dbt_models
