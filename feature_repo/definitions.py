"""The Feast objects: entity ``symbol``, one source and feature view per family, and the model's feature service.

Built by a factory rather than at import time, because the sources' paths live
under ``$ALPHALINE_HOME`` (``repo.py`` calls it for the Feast CLI). One definition for
both offline stores: a family's source is its Parquet file (DuckDB offline store, the
default) or, given a ``postgres_schema``, its table there (PostgreSQL offline store, the
prod config); the views, TTLs and service are the same.

Example:
    >>> import datetime as dt
    >>> from pathlib import Path
    >>> repo = feast_objects(Path("/tmp/offline"), bar_length=dt.timedelta(minutes=15))
    >>> repo.service.name, len(repo.views)
    ('model_inputs', 8)
    >>> feast_objects(Path("/tmp/offline"), bar_length=dt.timedelta(minutes=15), postgres_schema="feast_offline").sources[0].get_table_query_string()
    'feast_offline.bar_ret'
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_source import DataSource
from feast.types import Float64, Int64

from feature_repo.library import FAMILIES, FEATURES, INTEGER_FEATURES

#: Feature views keep values this many bars: long enough to bridge a late bar, short
#: enough that the point-in-time join stays small (DESIGN.md §6: TTL drives its cost).
TTL_BARS = 4
SERVICE = "model_inputs"
FAMILY_TITLES = {
    "ret": "returns", "vol": "volatility", "tech": "momentum and oscillators", "trend": "trend",
    "band": "Bollinger bands", "volu": "volume", "sess": "session clock", "xs": "cross-sectional",
}


def view_name(family: str) -> str:
    return f"bar_{family}"


def offline_path(offline_dir: Path, family: str) -> Path:
    """Where a family's features are written for Feast (one Parquet file per family)."""
    return offline_dir / f"{view_name(family)}.parquet"


@dataclass(frozen=True)
class FeastRepo:
    entity: Entity
    sources: tuple[DataSource, ...]
    views: tuple[FeatureView, ...]
    service: FeatureService

    def objects(self) -> list:
        return [self.entity, *self.sources, *self.views, self.service]


def _source(family: str, offline_dir: Path, postgres_schema: str | None) -> DataSource:
    common = {
        "name": f"{view_name(family)}_source",
        "timestamp_field": "event_timestamp",
        "created_timestamp_column": "created",
        "description": f"{FAMILY_TITLES[family]} features, one row per bar (event_timestamp = the bar's close).",
    }
    if postgres_schema is not None:  # imported here: the embedded profile needs no PostgreSQL driver
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

        return PostgreSQLSource(table=f"{postgres_schema}.{view_name(family)}", **common)
    return FileSource(path=str(offline_path(offline_dir, family)), **common)


def feast_objects(offline_dir: Path, *, bar_length: dt.timedelta, postgres_schema: str | None = None) -> FeastRepo:
    """Every Feast object, reading the Parquet files in ``offline_dir`` (or the tables in ``postgres_schema``); TTL = :data:`TTL_BARS` bars."""
    symbol = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING, description="Traded symbol, e.g. AAPL.")
    sources, views = [], []
    for family in FAMILIES:
        source = _source(family, offline_dir, postgres_schema)
        fields = [
            Field(name=s.name, dtype=Int64 if s.name in INTEGER_FEATURES else Float64, description=s.definition)
            for s in FEATURES.values() if s.family == family
        ]
        views.append(
            FeatureView(
                name=view_name(family), entities=[symbol], ttl=TTL_BARS * bar_length, schema=fields,
                source=source, online=True, description=f"{FAMILY_TITLES[family]} features", tags={"family": family},
            )
        )
        sources.append(source)
    service = FeatureService(name=SERVICE, features=views, description="Every feature the models take as input, in library order.")
    return FeastRepo(symbol, tuple(sources), tuple(views), service)
