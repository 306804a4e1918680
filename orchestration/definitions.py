"""Dagster entry point (``workspace.yaml`` loads this module): assembles the domains.

Loading is lazy: settings are read, state folders created and the dbt manifest
parsed (first time only) when Dagster asks for the definitions, not at import.
"""

from __future__ import annotations

import dagster as dg

from orchestration.defs import compliance, features, market, ops, serving, trader, training
from orchestration.defs.market.dbt import dbt_project
from orchestration.resources import build_resources
from orchestration.settings import Settings, prepare_environment
from orchestration.warehouse import Warehouse


def build_definitions(settings: Settings | None = None, *, loggers: dict | None = None) -> dg.Definitions:
    """All definitions for ``settings`` (default: from the environment).

    Args:
        settings: where state lives and which deployment's resources to use.
        loggers: Dagster loggers to replace the console logger (the CLI prints progress lines).
    """
    settings = prepare_environment(settings or Settings())
    project = dbt_project(settings.dbt_target_dir)
    defs = dg.Definitions.merge(
        market.build_defs(settings, project),
        features.build_defs(),
        training.build_defs(),
        serving.build_defs(),
        trader.build_defs(),
        compliance.build_defs(settings),
        ops.build_defs(settings),
        dg.Definitions(resources=build_resources(settings, project), loggers=loggers),
    )
    kind = Warehouse.for_settings(settings).kind
    return defs if kind == "duckdb" else defs.map_asset_specs(func=lambda spec: _warehouse_kind(spec, kind))


def _warehouse_kind(spec: dg.AssetSpec, kind: str) -> dg.AssetSpec:
    """Assets declare the embedded warehouse's kind (``duckdb``); name the engine the warehouse really runs on."""
    if "duckdb" not in spec.kinds:
        return spec
    tags = {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")}
    return spec.replace_attributes(tags=tags, kinds=(spec.kinds - {"duckdb"}) | {kind})


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
