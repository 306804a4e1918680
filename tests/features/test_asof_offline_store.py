"""The ASOF offline store answers get_historical_features exactly as Feast's own DuckDB store does.

Both stores read one registry and the same Parquet files through a :class:`feast.FeatureStore` each;
the frames must be equal value for value, on randomized data built to hit every rule of the join.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.infra.offline_stores.ibis import IbisRetrievalJob
from feast.types import Float64, Int64

from feature_repo.asof_offline_store import AsofRetrievalJob
from feature_repo.store import load_config, open_store

UTC = dt.UTC
T0 = dt.datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
TTL = dt.timedelta(hours=1)
SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
SPARSE = "FFF"  # three feature rows, 3 TTLs apart
STOCK = "duckdb"
ASOF = "feature_repo.asof_offline_store.AsofDuckDBOfflineStore"


def _stamps(rng: np.random.Generator, n: int, minutes: int) -> pd.Series:
    """Irregular UTC timestamps within ``minutes`` after T0, to the microsecond."""
    offsets = rng.integers(0, minutes * 60_000_000, n)
    return pd.Series(pd.to_datetime(T0) + pd.to_timedelta(offsets, unit="us"))


def _features(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Feature rows with duplicate event timestamps (distinct created) and nulls in the values."""
    frame = pd.DataFrame({"symbol": rng.choice(SYMBOLS[:4], n), "event_timestamp": _stamps(rng, n, 600)})
    lone = pd.DataFrame({"symbol": SPARSE, "event_timestamp": pd.to_datetime(T0) + 3 * TTL * np.arange(1, 4)})
    frame = pd.concat([frame, lone], ignore_index=True)  # rows far apart: the TTL edge decides alone
    dup = frame.sample(n // 5, random_state=int(rng.integers(1 << 31)))  # same (symbol, ts), another created
    frame = pd.concat([frame, dup], ignore_index=True)
    frame["created"] = pd.to_datetime(T0) + pd.to_timedelta(rng.permutation(len(frame)), unit="s")
    # Feast ranks a null created last (at most one null per tie: two would leave the pick to chance in Feast too).
    frame.loc[(frame.index >= len(frame) - len(dup)) & (rng.random(len(frame)) < 0.5), "created"] = pd.NaT
    frame["raw_price"] = rng.normal(size=len(frame))  # field_mapping: raw_price -> price
    frame.loc[rng.random(len(frame)) < 0.15, "raw_price"] = np.nan
    frame["qty"] = pd.array(rng.integers(-50, 50, len(frame)), dtype="Int64")
    frame.loc[rng.random(len(frame)) < 0.15, "qty"] = pd.NA
    frame["flow"] = rng.normal(size=len(frame))
    return frame


def _entities(rng: np.random.Generator, features: pd.DataFrame, n: int) -> pd.DataFrame:
    """Random entity rows plus the edge cases: at the TTL edge, 1 µs past it, exact hits, before any row, unknown symbol."""
    edge = features.sample(30, random_state=int(rng.integers(1 << 31)))[["symbol", "event_timestamp"]]
    edge = pd.concat([edge, features.loc[features.symbol == SPARSE, ["symbol", "event_timestamp"]]])
    one_us = pd.Timedelta(microseconds=1)
    frame = pd.concat([
        pd.DataFrame({"symbol": rng.choice(SYMBOLS, n), "event_timestamp": _stamps(rng, n, 720)}),
        edge.assign(event_timestamp=edge.event_timestamp + TTL),
        edge.assign(event_timestamp=edge.event_timestamp + TTL + one_us),
        edge,
        edge.assign(event_timestamp=edge.event_timestamp - one_us),
        pd.DataFrame({"symbol": SYMBOLS[:3], "event_timestamp": [pd.Timestamp(T0) - one_us] * 3}),
    ], ignore_index=True)
    frame = frame.sample(frac=1.0, random_state=int(rng.integers(1 << 31)), ignore_index=True)
    frame["ticker"] = rng.choice(SYMBOLS, len(frame))  # the join key of the aliased, key-mapped projection
    frame["row"] = np.arange(len(frame))  # an entity column of the caller's, carried through
    return frame


def _objects(offline: Path) -> list:
    symbol = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING)
    quotes = FileSource(name="quotes_src", path=str(offline / "quotes.parquet"), timestamp_field="event_timestamp",
                        created_timestamp_column="created", field_mapping={"raw_price": "price"})
    flows = FileSource(name="flows_src", path=str(offline / "flows.parquet"), timestamp_field="event_timestamp")
    quote_view = FeatureView(name="quotes", entities=[symbol], ttl=TTL, source=quotes,
                             schema=[Field(name="price", dtype=Float64), Field(name="qty", dtype=Int64)])
    flow_view = FeatureView(name="flows", entities=[symbol], ttl=dt.timedelta(0), source=flows,  # 0: no TTL
                            schema=[Field(name="flow", dtype=Float64)])
    service = FeatureService(name="everything", features=[
        quote_view, flow_view.with_name("f2").with_join_key_map({"symbol": "ticker"}),  # (one alias per view:
    ])  # Feast cannot sort a service's projections whose names tie and only one has an alias)
    return [symbol, quotes, flows, quote_view, flow_view, service]


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda s: f"seed{s}")
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(request.param)
    home = tmp_path_factory.mktemp("asof_home")
    offline = home / "feast" / "offline"
    offline.mkdir(parents=True)
    features = _features(rng, 400)
    features.drop(columns="flow").to_parquet(offline / "quotes.parquet")
    flows = features.drop_duplicates(["symbol", "event_timestamp"])  # no created column: one row per time
    flows[["symbol", "event_timestamp", "flow"]].to_parquet(offline / "flows.parquet")
    stock = open_store(home, offline_store=STOCK)
    stock.apply(_objects(offline))
    return stock, open_store(home), _entities(rng, features, 300)


def _both(world, features, *, entities: pd.DataFrame | None = None, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    stock, asof, all_entities = world
    entities = all_entities if entities is None else entities
    want_job = stock.get_historical_features(entity_df=entities, features=features, **kwargs)
    got_job = asof.get_historical_features(entity_df=entities, features=features, **kwargs)
    assert isinstance(got_job, AsofRetrievalJob) and isinstance(want_job, IbisRetrievalJob)
    assert got_job.to_arrow().schema == want_job.to_arrow().schema
    want = want_job.to_df().sort_values("row", ignore_index=True)  # Feast's own store keeps no row order
    return got_job.to_df(), want


@pytest.mark.parametrize("full_names", [False, True], ids=["short_names", "full_names"])
def test_asof_store_equals_feasts_duckdb_store_value_for_value(world, full_names: bool) -> None:
    stock, _, entities = world
    got, want = _both(world, stock.get_feature_service("everything"), full_feature_names=full_names)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got["row"].tolist() == entities["row"].tolist()  # the entity frame's order, its columns first
    assert list(got.columns[: entities.shape[1]]) == list(entities.columns)
    price = "quotes__price" if full_names else "price"
    assert got[price].notna().any() and got[price].isna().any()  # the data reach both outcomes
    assert list(got.columns[entities.shape[1]:]) == (["quotes__price", "quotes__qty", "f2__flow"] if full_names
                                                     else ["price", "qty", "flow"])


def test_asof_store_takes_feature_refs_in_the_order_asked(world) -> None:
    got, want = _both(world, ["flows:flow", "quotes:qty", "quotes:price"])
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert list(got.columns[-3:]) == ["flow", "qty", "price"]


def test_asof_store_on_a_later_time_chunk_still_finds_rows_from_before_it(world) -> None:
    _, _, entities = world  # training_set sends time-ordered chunks; the store prunes rows by the chunk's span
    late = entities[entities.event_timestamp >= pd.Timestamp(T0) + 5 * TTL]
    got, want = _both(world, ["quotes:price", "flows:flow"], entities=late)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_asof_store_hands_a_created_timestamp_cutoff_to_feasts_own_join(world) -> None:
    stock, asof, entities = world
    want = stock.get_historical_features(entity_df=entities, features=["quotes:price"], filter_by_created_timestamp=True)
    got = asof.get_historical_features(entity_df=entities, features=["quotes:price"], filter_by_created_timestamp=True)
    assert isinstance(got, IbisRetrievalJob)  # the parent's plan, not the ASOF one
    pd.testing.assert_frame_equal(got.to_df().sort_values("row", ignore_index=True),
                                  want.to_df().sort_values("row", ignore_index=True), check_exact=True)


def test_the_embedded_profile_uses_the_asof_store(tmp_path: Path) -> None:
    assert load_config(tmp_path).offline_store.type == ASOF
