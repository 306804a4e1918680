"""Dagster entry point (``workspace.yaml`` loads this module): assembles the domains.

Loading is lazy: settings are read, state folders created and the dbt manifest
parsed (first time only) when Dagster asks for the definitions, not at import.
"""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from orchestration.defs import compliance, features, market, ops, serving, trader, training
from orchestration.defs.market.dbt import dbt_project
from orchestration.deployment import servers
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
    resources = build_resources(settings, project)
    defs = dg.Definitions.merge(
        market.build_defs(settings, project),
        features.build_defs(),
        training.build_defs(),
        serving.build_defs(),
        trader.build_defs(),
        compliance.build_defs(settings),
        ops.build_defs(settings),
        dg.Definitions(resources=resources, loggers=loggers),
    )
    # Assets declare the embedded profile's engines (duckdb, sqlite); name those the data really lives in.
    warehouse = {"duckdb": Warehouse.for_settings(settings).kind}
    store = sa.make_url(resources["trading"].store_url).get_backend_name()  # the servers profile or trader.yaml's URL
    trader_kinds = warehouse | ({"sqlite": {"postgresql": "postgres"}.get(store, store)} if store != "sqlite" else {})
    feast_kinds = warehouse | ({"sqlite": "redis"} if servers(settings) is not None else {})  # Feast's online store

    def swap(spec: dg.AssetSpec) -> dict[str, str]:
        return trader_kinds if spec.group_name == "trader" else feast_kinds if "feast" in spec.kinds else warehouse

    return defs.map_asset_specs(func=lambda spec: _with_kinds(spec, swap(spec)))


def _with_kinds(spec: dg.AssetSpec, swap: dict[str, str]) -> dg.AssetSpec:
    """``spec`` with each kind in ``swap`` replaced (its ``dagster/kind/*`` tags too); unchanged when none applies."""
    kinds = {swap.get(k, k) for k in spec.kinds}
    if kinds == set(spec.kinds):
        return spec
    tags = {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")}
    return spec.replace_attributes(tags=tags, kinds=kinds)


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
