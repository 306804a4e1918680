"""Offline/online parity: the service scores the features Feast gives training exactly as the ensemble does in-process."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from feature_repo import FEATURE_NAMES
from feature_repo import store as fs
from feature_repo.definitions import SERVICE
from models.data import matrix
from serving.features import FeatureSource
from serving.scoring import LoadedModel, score
from tests.features.synthetic_bars import BAR
from tests.serving.serving_world import LAGGING


@pytest.fixture(scope="module")
def offline(world) -> pl.DataFrame:
    """Feast's point-in-time training set (what the models were trained and validated on)."""
    return fs.training_set(fs.open_store(world.home), fs.offline_dir(world.home))


@pytest.fixture(scope="module")
def ensemble(world):
    return world.registry.load_ensemble(world.champion)


def _complete_timestamp(offline: pl.DataFrame, symbols: list[str]) -> dt.datetime:
    """A late timestamp where every symbol has every feature (``/predict_rows`` takes finite numbers only)."""
    complete = offline.filter(pl.col("symbol").is_in(symbols)).drop_nulls(FEATURE_NAMES)
    counts = complete.group_by("event_timestamp").len().filter(pl.col("len") == len(symbols))
    return counts["event_timestamp"].sort()[-10]


def test_predict_rows_with_offline_features_equals_the_in_process_ensemble(client, world, offline, ensemble):
    symbols = [s for s in world.symbols if s != LAGGING]
    ts = _complete_timestamp(offline, symbols)
    rows = offline.filter(pl.col("event_timestamp") == ts, pl.col("symbol").is_in(symbols)).sort("symbol")
    expected = ensemble.predict(matrix(rows))
    body = {"rows": [{"symbol": r["symbol"], "features": {n: float(r[n]) for n in FEATURE_NAMES},
                      "feature_ts": ts.isoformat()} for r in rows.iter_rows(named=True)]}
    got = client.post("/predict_rows", json=body).json()["predictions"]
    assert [p["symbol"] for p in got] == rows["symbol"].to_list()
    np.testing.assert_allclose([p["score"] for p in got], expected, rtol=1e-12, atol=0)
    assert all(dt.datetime.fromisoformat(p["feature_ts"]) == ts and not p["stale"] for p in got)


def test_predict_as_of_a_bar_close_equals_the_offline_prediction_of_that_bar(client, world, offline, ensemble):
    ts = offline["event_timestamp"].sort()[-30]
    rows = offline.filter(pl.col("event_timestamp") == ts).sort("symbol")
    expected = dict(zip(rows["symbol"], ensemble.predict(matrix(rows)), strict=True))
    for as_of in (ts, ts + dt.timedelta(minutes=7)):  # at the close, and between two closes: the same bar
        got = client.post("/predict", json={"symbols": rows["symbol"].to_list(), "as_of": as_of.isoformat()}).json()
        assert {p["symbol"]: p["score"] for p in got["predictions"]} == pytest.approx(expected, rel=1e-12)
        assert {dt.datetime.fromisoformat(p["feature_ts"]) for p in got["predictions"]} == {ts}


def test_online_predict_equals_the_offline_prediction_of_the_latest_bar(client, world, ensemble):
    features = world.features.filter(pl.col("event_timestamp") == world.last_ts).sort("symbol")
    expected = dict(zip(features["symbol"], ensemble.predict(matrix(features)), strict=True))
    got = client.post("/predict", json={"symbols": list(expected)}).json()["predictions"]
    assert {p["symbol"]: p["score"] for p in got} == pytest.approx(expected, rel=1e-12)


def test_as_of_lookup_matches_feast_get_historical_features(world):
    source = FeatureSource(world.home)
    store = fs.open_store(world.home)
    last = world.last_ts
    for at in (last - 40 * BAR, last - 40 * BAR - dt.timedelta(microseconds=1), last + 4 * BAR, last + 4 * BAR + dt.timedelta(seconds=1)):
        entities = pl.DataFrame({"symbol": world.symbols, "event_timestamp": [at] * len(world.symbols)})
        feast = pl.from_pandas(store.get_historical_features(entity_df=entities.to_pandas(),
                                                             features=store.get_feature_service(SERVICE)).to_df())
        feast = feast.sort("symbol")
        ours = source.as_of(world.symbols, at)
        ours = pl.DataFrame({"symbol": world.symbols}).join(ours, on="symbol", how="left")
        within_ttl = (at - ours["event_timestamp"]) <= source.ttl  # beyond the TTL Feast answers null; the service says stale
        for name in ("ret_log_1", "tech_rsi_14", "xs_rank_ret_26", "vol_natr_14"):
            theirs = feast[name].cast(pl.Float64).to_list()
            mine = ours[name].cast(pl.Float64).to_list()
            for ok, a, b in zip(within_ttl.to_list(), mine, theirs, strict=True):
                assert (a == pytest.approx(b, rel=1e-12)) if ok else b is None, (at, name)


def test_history_gives_each_anchor_its_symbols_previous_rows_oldest_first(world):
    source = FeatureSource(world.home)
    anchors = pl.DataFrame({"anchor": [0, 1], "symbol": ["AAA", "BBB"], "event_timestamp": [world.last_ts, world.last_ts - 3 * BAR]})
    hist = source.history(anchors, 3)
    offline = world.features.sort("event_timestamp")
    for anchor, symbol, until in anchors.iter_rows():
        want = offline.filter(pl.col("symbol") == symbol, pl.col("event_timestamp") < until).tail(3)
        got = hist.filter(pl.col("anchor") == anchor)
        assert got["event_timestamp"].to_list() == want["event_timestamp"].to_list()
        assert got["ret_log_1"].to_list() == want["ret_log_1"].to_list()


class _PreviousRow:
    """A sequence 'ensemble': each row's score is the first feature of the row before it in its group (NaN if none)."""

    context = 2

    def predict(self, x, *, groups=None):
        out = np.full(len(x), np.nan)
        for i in range(1, len(x)):
            if groups[i] == groups[i - 1]:
                out[i] = x[i - 1, 0]
        return out


def test_sequence_model_sees_each_rows_own_history_just_before_it():
    model = LoadedModel(tag="t", ensemble=_PreviousRow(), features=list(FEATURE_NAMES), oof_abs=np.array([1.0]), info={})
    width = len(FEATURE_NAMES)
    x = np.full((2, width), 9.0)
    histories = [np.vstack([np.full(width, 1.0), np.full(width, 2.0), np.full(width, 3.0)]), np.empty((0, width))]
    out = score(model, x, histories)
    assert out[0] == 3.0 and np.isnan(out[1])  # the latest history row, trimmed to context; no history → none
