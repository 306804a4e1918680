"""The Feast repo for real: apply, point-in-time joins, chunked training sets, online materialisation and parity."""

from __future__ import annotations

import datetime as dt
import importlib
import sys
from pathlib import Path

import polars as pl
import pytest

from feature_repo import FEATURE_NAMES, LABEL_NAMES, FeatureStoreError, compute_features, compute_labels
from feature_repo import store as fs
from feature_repo.definitions import SERVICE, TTL_BARS
from tests.features.synthetic_bars import BAR, feature_bars

BARS = feature_bars(n_symbols=4, first=dt.date(2024, 6, 3), last=dt.date(2024, 7, 31))


def _write(home: Path, bars: pl.DataFrame) -> pl.DataFrame:
    features = compute_features(bars, bar_length=BAR)
    fs.write_features(features, fs.offline_dir(home))
    fs.write_labels(compute_labels(bars), fs.offline_dir(home))
    return features


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("feast_home")
    features = _write(home, BARS)
    store = fs.open_store(home)
    fs.apply(store, fs.offline_dir(home), bar_length=BAR)
    return home, store, features


def test_apply_registers_one_view_per_family_and_the_model_service(repo) -> None:
    _, store, _ = repo
    views = {v.name: v for v in store.list_feature_views()}
    assert set(views) == {"bar_ret", "bar_vol", "bar_tech", "bar_trend", "bar_band", "bar_volu", "bar_sess", "bar_xs"}
    assert all(v.ttl == TTL_BARS * BAR for v in views.values())
    served = [f.name for p in store.get_feature_service(SERVICE).feature_view_projections for f in p.features]
    assert sorted(served) == sorted(FEATURE_NAMES)


def test_point_in_time_join_never_returns_a_value_written_after_the_entity_timestamp(repo) -> None:
    _, store, features = repo
    aaa = features.filter(pl.col("symbol") == "AAA", ~pl.col("warmup")).sort("event_timestamp")
    picks = aaa[100:110]
    # One microsecond before bar k closes, only bar k-1 is knowable; 7 minutes after, bar k.
    just_before = picks.select("symbol", (pl.col("event_timestamp") - dt.timedelta(microseconds=1)).alias("event_timestamp"))
    after = picks.select("symbol", (pl.col("event_timestamp") + dt.timedelta(minutes=7)).alias("event_timestamp"))
    service = store.get_feature_service(SERVICE)
    got_before = pl.from_pandas(store.get_historical_features(entity_df=just_before.to_pandas(), features=service).to_df())
    got_after = pl.from_pandas(store.get_historical_features(entity_df=after.to_pandas(), features=service).to_df())
    got_before, got_after = got_before.sort("event_timestamp"), got_after.sort("event_timestamp")
    for name in ("ret_log_1", "tech_rsi_14", "xs_rank_ret_26", "vol_natr_14"):
        assert got_before[name].to_list() == pytest.approx(aaa[99:109][name].to_list(), rel=1e-12)
        assert got_after[name].to_list() == pytest.approx(picks[name].to_list(), rel=1e-12)


def test_point_in_time_join_beyond_the_ttl_returns_null_not_an_old_value(repo) -> None:
    _, store, features = repo
    last = features["event_timestamp"].max()
    late = pl.DataFrame({"symbol": ["AAA"], "event_timestamp": [last + (TTL_BARS + 1) * BAR]})
    got = store.get_historical_features(entity_df=late.to_pandas(), features=["bar_ret:ret_log_1"]).to_df()
    assert got["ret_log_1"].isna().all()


def test_training_set_equals_offline_features_with_labels_and_skips_warmup(repo) -> None:
    home, store, features = repo
    frame = fs.training_set(store, fs.offline_dir(home))
    assert frame.columns == ["symbol", "event_timestamp", *FEATURE_NAMES, *LABEL_NAMES]
    expected = features.filter(~pl.col("warmup")).join(compute_labels(BARS), on=["symbol", "event_timestamp"]).sort("symbol", "event_timestamp")
    assert frame.height == expected.height
    for name in FEATURE_NAMES:
        a, e = frame[name].cast(pl.Float64), expected[name].cast(pl.Float64)
        assert ((a - e).abs().max() or 0.0) < 1e-12 and a.null_count() == e.null_count(), name
    assert frame["label_fwd_ret_4"].equals(expected["label_fwd_ret_4"])


def test_training_set_built_in_small_chunks_equals_one_chunk(repo) -> None:
    home, store, _ = repo
    start = dt.datetime(2024, 7, 8, tzinfo=dt.UTC)
    end = dt.datetime(2024, 7, 20, tzinfo=dt.UTC)
    one = fs.training_set(store, fs.offline_dir(home), start=start, end=end, chunk_rows=1_000_000)
    many = fs.training_set(store, fs.offline_dir(home), start=start, end=end, chunk_rows=max(1, one.height // 3))
    assert one.height > 3 and one.equals(many)
    assert one["event_timestamp"].min() >= start and one["event_timestamp"].max() < end


def test_online_store_latest_values_equal_offline_values_at_the_same_timestamp(tmp_path: Path) -> None:
    features = _write(tmp_path, BARS)
    store = fs.open_store(tmp_path)
    fs.apply(store, fs.offline_dir(tmp_path), bar_length=BAR)
    fs.materialize(store, end=features["event_timestamp"].max() + dt.timedelta(microseconds=1))
    online = fs.online_features(store, ["AAA", "BBB", "CCC", "DDD"]).sort("symbol")
    latest = features.sort("event_timestamp").group_by("symbol").last().sort("symbol")
    assert online["ts_bar_xs"].to_list() == latest["event_timestamp"].to_list()
    for name in FEATURE_NAMES:
        assert online[name].cast(pl.Float64).to_list() == pytest.approx(latest[name].cast(pl.Float64).to_list(), rel=1e-12), name


def test_materialize_is_incremental_and_moves_the_online_store_to_the_newest_bar(tmp_path: Path) -> None:
    sessions = BARS["session"].unique().sort()
    first = _write(tmp_path, BARS.filter(pl.col("session") < sessions[-1]))
    store = fs.open_store(tmp_path)
    fs.apply(store, fs.offline_dir(tmp_path), bar_length=BAR)
    _, end1 = fs.materialize(store, end=first["event_timestamp"].max() + dt.timedelta(microseconds=1))
    full = _write(tmp_path, BARS)
    start2, _ = fs.materialize(store, end=full["event_timestamp"].max() + dt.timedelta(microseconds=1))
    assert start2 == end1
    online = fs.online_features(store, ["AAA"])
    assert online["ts_bar_ret"][0] == full["event_timestamp"].max()


def test_online_features_for_an_unknown_symbol_are_null_with_no_timestamp(repo) -> None:
    _, store, _ = repo
    row = fs.online_features(store, ["NOPE"]).row(0, named=True)
    assert row["ret_log_1"] is None and row["ts_bar_ret"] is None


def test_training_set_before_anything_is_written_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match=r"bars\.parquet: not written yet"):
        fs.training_set(fs.open_store(tmp_path), fs.offline_dir(tmp_path))


def test_production_config_with_redis_and_sql_registry_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHALINE_FEAST_REGISTRY_URL", "postgresql+psycopg://feast:secret@db:5432/feast")
    monkeypatch.setenv("ALPHALINE_FEAST_REDIS", "redis:6379")
    config = fs.load_config(tmp_path, "prod")
    assert config.registry.registry_type == "sql"
    assert config.registry.path.startswith("postgresql+psycopg://")
    assert config.online_store.type == "redis" and config.online_store.connection_string == "redis:6379"
    # The offline store on PostgreSQL, in the registry's database unless the yaml names another.
    offline = config.offline_store
    assert (offline.type, offline.host, offline.port, offline.database, offline.user, offline.password, offline.db_schema) == (
        "postgres", "db", 5432, "feast", "feast", "secret", "feast_offline")
    local = fs.load_config(tmp_path, "local")
    assert local.online_store.path == str(tmp_path / "feast" / "online.db")


def test_unknown_feast_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match="'staging' is unknown"):
        fs.load_config(tmp_path, "staging")  # type: ignore[arg-type]


def test_feast_cli_module_defines_the_same_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path))
    sys.modules.pop("feature_repo.repo", None)
    repo = importlib.import_module("feature_repo.repo")
    assert repo.symbol.name == "symbol" and repo.model_inputs.name == SERVICE
    assert repo.bar_tech.batch_source.path == str(tmp_path.resolve() / "feast" / "offline" / "bar_tech.parquet")
