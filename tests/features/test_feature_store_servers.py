"""The production Feast config for real: a SQL registry on PostgreSQL and the online store on Redis.

Same repo, same views as the local (SQLite) store; these tests start real servers (tests/servers.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import redis
import sqlalchemy as sa

from feature_repo import FEATURE_NAMES, compute_features, compute_labels
from feature_repo import store as fs
from tests.features.synthetic_bars import BAR, feature_bars

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
    fs.write_features(features, fs.offline_dir(home))
    fs.write_labels(compute_labels(BARS), fs.offline_dir(home))
    store = fs.open_store(home, variant)
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
