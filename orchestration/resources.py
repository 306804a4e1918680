"""Resources per deployment, chosen in one place.

``local`` (default): synthetic market, DuckDB warehouse under ``ALPHALINE_HOME``.
``prod``: Alpaca historical bars (keys from the environment) into the same warehouse
layout; dbt's target is picked with ``ALPHALINE_DBT_TARGET``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject
from dagster_duckdb import DuckDBResource
from pydantic import Field

from orchestration.market.bars import BarSource, timeframe_delta
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket
from orchestration.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore


class MarketSourceResource(dg.ConfigurableResource):
    """Where the scheduled ingestion gets its bars."""

    kind: Literal["synthetic", "alpaca"] = "synthetic"
    seed: int = 7
    n_symbols: int = 48
    n_sectors: int = 8
    origin: str = "2024-01-02"
    timeframe: str = "15m"
    faults: dict[str, int] = Field(default_factory=dict)
    alpaca_symbols: list[str] = Field(default_factory=list)
    alpaca_feed: str = "iex"
    alpaca_url: str | None = None

    def source(self) -> BarSource:
        if self.kind == "alpaca":
            from orchestration.market.alpaca import AlpacaConfig, AlpacaSource

            return AlpacaSource(
                AlpacaConfig(symbols=tuple(self.alpaca_symbols), timeframe=self.timeframe, feed=self.alpaca_feed, url_override=self.alpaca_url)
            )
        return SyntheticMarket(
            SyntheticConfig(
                seed=self.seed, n_symbols=self.n_symbols, n_sectors=self.n_sectors,
                origin=dt.date.fromisoformat(self.origin), timeframe=self.timeframe, faults=dict(self.faults),
            )
        )


class FeatureStoreResource(dg.ConfigurableResource):
    """The Feast repo (``feature_repo/``) with its state under ``home/feast``, and the timeframe it serves."""

    home: str
    config: Literal["local", "prod"] = "local"
    timeframe: str = "15m"

    @property
    def offline(self) -> Path:
        from feature_repo.store import offline_dir

        return offline_dir(Path(self.home))

    @property
    def bar_length(self) -> dt.timedelta:
        return timeframe_delta(self.timeframe)

    def store(self) -> FeatureStore:
        from feature_repo.store import open_store

        return open_store(Path(self.home), self.config)


class DataQualityResource(dg.ConfigurableResource):
    """Thresholds of the blocking data checks and where their reports go."""

    max_reject_share: float = 0.01
    reports_dir: str


def build_resources(settings: Settings, dbt_project: DbtProject) -> dict[str, object]:
    if settings.deployment == "prod":
        market = MarketSourceResource(
            kind="alpaca", alpaca_symbols=[s for s in settings.alpaca_symbols.split(",") if s], origin=settings.market_start.isoformat()
        )
    else:
        market = MarketSourceResource(origin=settings.market_start.isoformat())
    return {
        "market": market,
        "warehouse": DuckDBResource(database=str(settings.warehouse_path)),
        "dbt": DbtCliResource(project_dir=dbt_project),
        "features": FeatureStoreResource(home=str(settings.home), config=settings.feast_config, timeframe=settings.feature_timeframe),
        "quality": DataQualityResource(max_reject_share=settings.max_reject_share, reports_dir=str(settings.reports_dir)),
    }
