"""Opening the Feast store, writing the offline Parquet files, materialising online, building training sets.

Example (after ``alphaline demo``)::

    from pathlib import Path
    from feature_repo.store import open_store, training_set
    store = open_store(Path(".alphaline"))
    frame = training_set(store, Path(".alphaline/feast/offline"), start=..., end=...)
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow as pa
import yaml
from feast import FeatureStore, RepoConfig

from feature_repo.definitions import SERVICE, feast_objects, offline_path, view_name
from feature_repo.errors import FeatureStoreError
from feature_repo.labels import LABEL_NAMES
from feature_repo.library import FAMILIES, FEATURE_NAMES, FEATURES
from feature_repo.offline_tables import OfflineTables, complete_offline_store

REPO_DIR = Path(__file__).resolve().parent
KEYS = ("symbol", "event_timestamp")
UTC_TS = pl.Datetime("us", "UTC")
FIRST_MATERIALIZATION = dt.timedelta(days=30)  # a symbol silent for longer has no online values
#: Entity rows per Feast ``get_historical_features`` call in :func:`training_set` (bounds its memory).
CHUNK_ROWS = 100_000
CONFIGS = {"local": "feature_store.yaml", "prod": "feature_store.prod.yaml"}


def feast_dir(home: Path) -> Path:
    return home / "feast"


def offline_dir(home: Path) -> Path:
    return feast_dir(home) / "offline"


def labels_path(offline: Path) -> Path:
    return offline / "labels.parquet"


def spine_path(offline: Path) -> Path:
    """One row per bar with features: ``symbol, event_timestamp, warmup`` (the entity frame's source)."""
    return offline / "bars.parquet"


def load_config(home: Path, variant: Literal["local", "prod"] = "local") -> RepoConfig:
    """The repo's ``feature_store[.prod].yaml`` with ``${ALPHALINE_HOME}`` set to ``home``.

    Other ``${VARS}`` (the prod secrets) come from the environment, as with Feast's own loader; an
    unset one is a :class:`FeatureStoreError` naming it. A PostgreSQL offline store without connection
    keys takes the registry's database (:func:`feature_repo.offline_tables.complete_offline_store`).
    """
    if variant not in CONFIGS:
        raise FeatureStoreError(f"feast config {variant!r} is unknown (choose one of {', '.join(CONFIGS)})")
    path = REPO_DIR / CONFIGS[variant]
    text = os.path.expandvars(path.read_text().replace("${ALPHALINE_HOME}", str(home)))
    unset = re.search(r"^[^#\n]*\$\{(\w+)\}", text, re.MULTILINE)  # outside comments
    if unset:
        raise FeatureStoreError(f"{unset.group(1)}: not set (the {variant} Feast config, {path.name}, needs it)")
    config = RepoConfig(**complete_offline_store(yaml.safe_load(text)))
    config.repo_path = REPO_DIR
    return config


def open_store(home: Path, variant: Literal["local", "prod"] = "local", *, offline_store: str | None = None) -> FeatureStore:
    """A :class:`feast.FeatureStore` whose registry, online and offline data live under ``home/feast``.

    ``offline_store`` replaces the config's offline store type, e.g. ``"duckdb"``: Feast's stock DuckDB
    store, the reference that the tests and the training-set benchmark hold the ASOF store to.
    """
    offline_dir(home).mkdir(parents=True, exist_ok=True)
    config = load_config(home, variant)
    if offline_store is not None:
        fields = config.model_dump(by_alias=True, exclude_none=True, exclude={"repo_path"})
        config = RepoConfig(**{**fields, "offline_store": {"type": offline_store}})
        config.repo_path = REPO_DIR
    return FeatureStore(config=config)


def offline_tables(config: RepoConfig) -> OfflineTables | None:
    """The offline store's PostgreSQL tables when the config puts it there (prod), else ``None`` (Parquet only)."""
    return OfflineTables(config) if config.offline_store.type == "postgres" else None


def apply(store: FeatureStore, offline: Path, *, bar_length: dt.timedelta) -> list[str]:
    """Register (or update) the entity, sources, feature views and service; returns the view names.

    The views read the Parquet files (DuckDB offline store) or the tables (PostgreSQL), as the store's config says.
    """
    tables = offline_tables(store.config)
    repo = feast_objects(offline, bar_length=bar_length, postgres_schema=tables.schema if tables else None)
    store.apply(repo.objects())
    return [v.name for v in repo.views]


# --- offline files -----------------------------------------------------------------------------


def write_features(features: pl.DataFrame, offline: Path, *, tables: OfflineTables | None = None) -> int:
    """Replace the offline features: one Parquet per family, plus the spine with the warm-up flag.

    With ``tables`` (:func:`offline_tables` of a prod config) each family also replaces its table there.
    """
    offline.mkdir(parents=True, exist_ok=True)
    for family in FAMILIES:
        cols = [s.name for s in FEATURES.values() if s.family == family]
        frame = features.select(*KEYS, "created", *cols)
        frame.write_parquet(offline_path(offline, family))
        if tables is not None:
            tables.replace(view_name(family), frame)
    features.select(*KEYS, "warmup").write_parquet(spine_path(offline))
    return features.height


def write_labels(labels: pl.DataFrame, offline: Path) -> int:
    """Replace the labels file (never registered online)."""
    offline.mkdir(parents=True, exist_ok=True)
    labels.select(*KEYS, *LABEL_NAMES).write_parquet(labels_path(offline))
    return labels.height


def read_features(offline: Path) -> pl.DataFrame:
    """The offline features of every family joined into one frame (``symbol, event_timestamp, created, warmup, ...``)."""
    if not spine_path(offline).exists():
        raise FeatureStoreError(f"{spine_path(offline)}: no features written yet (materialize bar_features first)")
    out = pl.read_parquet(spine_path(offline))
    for i, family in enumerate(FAMILIES):
        frame = pl.read_parquet(offline_path(offline, family))
        out = out.join(frame if i == 0 else frame.drop("created"), on=list(KEYS), how="left")
    return out.select(*KEYS, "created", "warmup", *FEATURE_NAMES)


def merge_features(features: pl.DataFrame, offline: Path, *, tables: OfflineTables | None = None) -> int:
    """Append an incremental batch computed on a trailing window of bars; returns the rows added.

    Only rows after each symbol's last stored bar are taken: the window's earlier rows
    were computed without their full history.
    """
    if not spine_path(offline).exists():
        return write_features(features, offline, tables=tables)
    stored = read_features(offline)
    last = stored.group_by("symbol").agg(pl.col("event_timestamp").max().alias("_last"))
    fresh = features.join(last, on="symbol", how="left").filter(
        pl.col("_last").is_null() | (pl.col("event_timestamp") > pl.col("_last"))
    ).select(stored.columns)
    write_features(pl.concat([stored, fresh]).sort(*KEYS), offline, tables=tables)
    return fresh.height


def merge_labels(labels: pl.DataFrame, offline: Path) -> int:
    """Replace the stored labels of the window's bars (those near the old end were null and are now known)."""
    if not labels_path(offline).exists():
        return write_labels(labels, offline)
    stored = pl.read_parquet(labels_path(offline))
    kept = stored.join(labels, on=list(KEYS), how="anti")
    write_labels(pl.concat([kept, labels.select(stored.columns)]).sort(*KEYS), offline)
    return labels.height


# --- online store ------------------------------------------------------------------------------


def materialize(store: FeatureStore, *, end: dt.datetime, start: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """Copy the latest feature values up to ``end`` into the online store.

    Incremental: starts where the previous materialisation of the views ended (or at
    ``start``; 30 days before ``end`` the first time). Returns the interval loaded.
    """
    if start is None:
        ends = [iv[1] for v in store.list_feature_views() for iv in v.materialization_intervals]
        start = max(ends) if ends else None
        if start is None or start >= end:  # first time, or the data was rebuilt with an earlier end
            start = end - FIRST_MATERIALIZATION
    store.materialize(start_date=start, end_date=end)
    return start, end


def online_features(store: FeatureStore, symbols: Iterable[str]) -> pl.DataFrame:
    """The online store's values for ``symbols`` with each view's event timestamp (``ts_<view>``)."""
    symbols = list(symbols)
    response = store.get_online_features(
        features=store.get_feature_service(SERVICE), entity_rows=[{"symbol": s} for s in symbols]
    ).to_dict(include_event_timestamps=True)
    frame = pl.DataFrame({k: v for k, v in response.items() if k == "symbol" or k in FEATURES})
    # Feast gives each value's event time in epoch seconds, 0 when the symbol has no row.
    stamps = {
        f"ts_{view_name(f)}": pl.from_epoch(pl.Series(response[f"{_first_feature(f)}__ts"]), time_unit="s")
        .dt.replace_time_zone("UTC").cast(UTC_TS).replace(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), None)
        for f in FAMILIES
    }
    return frame.with_columns(**stamps).select("symbol", *FEATURE_NAMES, *stamps)


def _first_feature(family: str) -> str:
    return next(s.name for s in FEATURES.values() if s.family == family)


# --- training sets -----------------------------------------------------------------------------


def training_set(
    store: FeatureStore,
    offline: Path,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    symbols: Iterable[str] | None = None,
    include_warmup: bool = False,
    chunk_rows: int = CHUNK_ROWS,
) -> pl.DataFrame:
    """Features (Feast point-in-time join) and labels for every labelled bar in ``[start, end)``.

    The entity frame is each (symbol, bar close) that has labels (warm-up bars left out unless asked); Feast's
    ``get_historical_features`` returns, for each, the latest feature row with
    ``event_timestamp`` ≤ the entity's (within the views' TTL). The entity rows go to Feast in
    time-ordered chunks of at most ``chunk_rows`` so that memory stays bounded on long histories.

    The embedded profile's offline store (:mod:`feature_repo.asof_offline_store`) runs each call as
    DuckDB ASOF joins over the feature rows of the chunk's time span, so the work grows with the rows;
    each call also costs Feast ~0.2 s whatever its size (registry, entity frame checks). With Feast's
    stock DuckDB store the join pairs every entity row with every
    feature row of its symbol: ~11x slower on a year of 15-minute bars (bench_training_set --stock).

    Returns ``symbol, event_timestamp`` + :data:`FEATURE_NAMES` + :data:`LABEL_NAMES`, sorted.
    """
    for path in (spine_path(offline), labels_path(offline)):
        if not path.exists():
            raise FeatureStoreError(f"{path}: not written yet (materialize bar_features and bar_labels first)")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows: {chunk_rows}, must be at least 1")
    rows = pl.scan_parquet(spine_path(offline)).join(pl.scan_parquet(labels_path(offline)), on=list(KEYS), how="inner")
    if start is not None:
        rows = rows.filter(pl.col("event_timestamp") >= start)
    if end is not None:
        rows = rows.filter(pl.col("event_timestamp") < end)
    if symbols is not None:
        rows = rows.filter(pl.col("symbol").is_in(list(symbols)))
    if not include_warmup:
        rows = rows.filter(~pl.col("warmup"))
    labels = rows.drop("warmup").collect().sort(*KEYS)
    if labels.is_empty():
        empty = {"symbol": pl.String, "event_timestamp": UTC_TS, **{n: pl.Float64 for n in FEATURE_NAMES}}
        return pl.DataFrame(schema=empty).hstack(labels.drop(*KEYS).clear())
    service = store.get_feature_service(SERVICE)
    entities = labels.select(*KEYS).sort("event_timestamp", "symbol")
    parts = [_from_feast(store.get_historical_features(entity_df=entities.slice(at, chunk_rows).to_pandas(),
                                                       features=service).to_arrow())
             for at in range(0, entities.height, chunk_rows)]
    return pl.concat(parts).join(labels, on=list(KEYS), how="left").select(*KEYS, *FEATURE_NAMES, *LABEL_NAMES).sort(*KEYS)


def _from_feast(table: pa.Table) -> pl.DataFrame:
    # Arrow straight from Feast's DuckDB job: no pandas round trip (nulls stay nulls, integers stay exact).
    out = pl.from_arrow(table)
    assert isinstance(out, pl.DataFrame)
    return out.with_columns(pl.col("event_timestamp").cast(UTC_TS)).select(
        *KEYS, *[pl.col(n).cast(pl.Float64) for n in FEATURE_NAMES]
    )
