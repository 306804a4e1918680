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
from orchestration.resources import TradingResource, build_resources
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
    engines = {"duckdb": Warehouse.for_settings(settings).kind}
    trading = TradingResource.for_home(settings.home, mode=settings.trader_mode)
    backend = sa.make_url(trading.store_url).get_backend_name()
    if backend != "sqlite":  # the trader's store on a server (the servers profile, or trader.yaml's store_url)
        engines["sqlite"] = {"postgresql": "postgres"}.get(backend, backend)
    return defs.map_asset_specs(func=lambda spec: _engine_kinds(spec, engines, online=servers(settings) is not None))


def _engine_kinds(spec: dg.AssetSpec, engines: dict[str, str], *, online: bool) -> dg.AssetSpec:
    """Assets declare the embedded profile's engines (``duckdb``, ``sqlite``); name those the data really lives in: the
    warehouse's engine, the trader store's (``sqlite`` of the trader group), Redis for Feast's online store."""
    swap = {"duckdb": engines["duckdb"]}
    if spec.group_name == "trader" and "sqlite" in engines:
        swap["sqlite"] = engines["sqlite"]
    if "feast" in spec.kinds and online:
        swap["sqlite"] = "redis"
    kinds = {swap.get(k, k) for k in spec.kinds}
    if kinds == set(spec.kinds):
        return spec
    tags = {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")}
    return spec.replace_attributes(tags=tags, kinds=kinds)


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
