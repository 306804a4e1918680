"""The production Feast config for real: a SQL registry and the offline store on PostgreSQL, the online store on Redis.

Same repo, same views as the local (SQLite + DuckDB) store; these tests start real servers (tests/servers.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import redis
import sqlalchemy as sa

from feature_repo import FAMILIES, FEATURE_NAMES, FeatureStoreError, compute_features, compute_labels
from feature_repo import store as fs
from feature_repo.definitions import view_name
from tests.features.synthetic_bars import BAR, feature_bars
from tests.servers import count_rows

pytestmark = pytest.mark.servers

BARS = feature_bars(n_symbols=4, first=dt.date(2024, 6, 3), last=dt.date(2024, 6, 28))
SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]


@pytest.fixture
def prod_env(monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_server) -> str:
    redis_server.flush()
    monkeypatch.setenv("ALPHALINE_FEAST_REGISTRY_URL", postgres_url)
    monkeypatch.setenv("ALPHALINE_FEAST_REDIS", redis_server.feast_connection_string)
    return postgres_url


def _materialised(home: Path, variant: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    features = compute_features(BARS, bar_length=BAR)
    store = fs.open_store(home, variant)
    fs.write_features(features, fs.offline_dir(home), tables=fs.offline_tables(store.config))
    fs.write_labels(compute_labels(BARS), fs.offline_dir(home))
    fs.apply(store, fs.offline_dir(home), bar_length=BAR)
    fs.materialize(store, end=features["event_timestamp"].max() + dt.timedelta(microseconds=1))
    return features, fs.online_features(store, SYMBOLS).sort("symbol")


def test_prod_feast_serves_from_redis_what_the_local_sqlite_store_serves(tmp_path: Path, prod_env: str, redis_server) -> None:
    _, local = _materialised(tmp_path / "local", "local")
    features, prod = _materialised(tmp_path / "prod", "prod")
    assert redis.Redis(host="127.0.0.1", port=redis_server.port).dbsize() == len(SYMBOLS)  # one hash per entity key
    assert prod.columns == local.columns and prod.height == len(SYMBOLS)
    latest = features.sort("event_timestamp").group_by("symbol").last().sort("symbol")
    assert prod["ts_bar_ret"].to_list() == latest["event_timestamp"].to_list()
    for name in FEATURE_NAMES:
        got, want = prod[name].cast(pl.Float64), local[name].cast(pl.Float64)
        assert got.is_null().to_list() == want.is_null().to_list(), name
        assert got.drop_nulls().to_list() == pytest.approx(want.drop_nulls().to_list(), rel=1e-12, nan_ok=True), name
    assert not (tmp_path / "prod" / "feast" / "registry.db").exists() and not (tmp_path / "prod" / "feast" / "online.db").exists()


def test_prod_feast_registry_lives_in_postgres_and_is_shared_by_every_process(tmp_path: Path, prod_env: str) -> None:
    _materialised(tmp_path, "prod")
    engine = sa.create_engine(prod_env)
    try:
        with engine.connect() as conn:
            views = set(conn.exec_driver_sql("SELECT feature_view_name FROM feature_views").scalars())
    finally:
        engine.dispose()
    assert {"bar_ret", "bar_xs"} <= views
    # Another process (a fresh store on another home, same servers) sees the views and the online values.
    other = fs.open_store(tmp_path / "elsewhere", "prod")
    assert {v.name for v in other.list_feature_views()} == views
    assert fs.online_features(other, ["AAA"])["ts_bar_ret"][0] is not None


def test_prod_training_set_is_joined_in_postgres_and_equals_the_embedded_duckdb_join(tmp_path: Path, prod_env: str) -> None:
    _materialised(tmp_path / "local", "local")
    features, _ = _materialised(tmp_path / "prod", "prod")
    local, prod = fs.open_store(tmp_path / "local"), fs.open_store(tmp_path / "prod", "prod")
    assert type(prod.get_data_source("bar_ret_source")).__name__ == "PostgreSQLSource"
    assert count_rows(prod_env, "SELECT count(*) FROM feast_offline.bar_xs") == features.height
    with fs.offline_tables(prod.config)._connect() as conn:  # Feast's joins need hash joins (offline_tables.py)
        assert conn.execute("SHOW enable_nestloop").fetchone()[0] == "off"
    # Feast reads the tables, not the files: without the family Parquet files the prod join still answers.
    for family in FAMILIES:
        (fs.offline_dir(tmp_path / "prod") / f"{view_name(family)}.parquet").unlink()
    window = {"start": dt.datetime(2024, 6, 10, tzinfo=dt.UTC), "include_warmup": True, "chunk_rows": 500}  # several Feast calls
    want = fs.training_set(local, fs.offline_dir(tmp_path / "local"), **window)
    got = fs.training_set(prod, fs.offline_dir(tmp_path / "prod"), **window)
    assert got.height == want.height > 1000 and got.columns == want.columns
    assert got.select("symbol", "event_timestamp").equals(want.select("symbol", "event_timestamp"))
    for name in FEATURE_NAMES:
        assert got[name].is_null().to_list() == want[name].is_null().to_list(), name
        assert got[name].drop_nulls().to_list() == pytest.approx(want[name].drop_nulls().to_list(), rel=1e-12, nan_ok=True), name


def test_prod_incremental_features_replace_the_postgres_table_with_the_merged_rows(tmp_path: Path, prod_env: str) -> None:
    home = tmp_path / "prod"
    store = fs.open_store(home, "prod")
    tables = fs.offline_tables(store.config)
    features = compute_features(BARS, bar_length=BAR)
    cut = dt.datetime(2024, 6, 25, tzinfo=dt.UTC)
    fs.write_features(features.filter(pl.col("event_timestamp") < cut), fs.offline_dir(home), tables=tables)
    added = fs.merge_features(features, fs.offline_dir(home), tables=tables)
    assert added == features.filter(pl.col("event_timestamp") >= cut).height > 0
    stored = tables.read("bar_ret").sort("symbol", "event_timestamp")
    want = features.select(stored.columns).sort("symbol", "event_timestamp")
    assert stored.select("symbol", "event_timestamp", "created").equals(want.select("symbol", "event_timestamp", "created"))
    assert stored.drop("created").equals(want.drop("created"))  # the same doubles, nulls and NaNs as the Parquet


def test_prod_config_without_the_registry_url_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALPHALINE_FEAST_REGISTRY_URL", raising=False)
    monkeypatch.setenv("ALPHALINE_FEAST_REDIS", "127.0.0.1:6379")
    with pytest.raises(FeatureStoreError, match=r"^ALPHALINE_FEAST_REGISTRY_URL: not set \(the prod Feast config"):
        fs.load_config(tmp_path, "prod")
