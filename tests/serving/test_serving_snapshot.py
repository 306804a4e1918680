"""The online snapshot's cached answers: a lookup answers exactly what the full call answers, and new
online features end it (the service answers lookups on its event loop, everything else in a thread)."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from feature_repo import store as fs
from serving.config import ServingSettings
from serving.predictor import Predictor
from serving.schemas import PredictRequest
from tests.features.synthetic_bars import BAR
from tests.serving.serving_world import LAGGING

FRESH = ["DDD", "AAA", "CCC"]


def test_quick_answer_is_the_full_answer_and_only_for_a_scored_current_snapshot(world):
    predictor = Predictor.from_settings(ServingSettings(home=world.home), world.registry)
    request = PredictRequest(symbols=FRESH)
    assert predictor.quick(request) is None  # nothing read or scored yet: the caller must run predict
    full = predictor.predict(request)
    assert predictor.quick(request) == full
    assert predictor.quick(PredictRequest(symbols=["BBB", "AAA"])) == predictor.predict(PredictRequest(symbols=["BBB", "AAA"]))
    assert predictor.quick(PredictRequest(symbols=FRESH, explain=2)) is None
    assert predictor.quick(PredictRequest(symbols=FRESH, as_of=world.last_ts)) is None


def test_materialising_new_features_ends_the_cached_snapshot_and_the_next_answer_has_them(world, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(world.home, home)
    (home / "feast" / "online.db").unlink()
    store = fs.open_store(home)
    fs.apply(store, fs.offline_dir(home), bar_length=BAR)
    earlier = world.last_ts - 2 * BAR
    fs.materialize(store, start=earlier - dt.timedelta(days=30), end=earlier + dt.timedelta(seconds=1))
    predictor = Predictor.from_settings(ServingSettings(home=home), world.registry)
    request = PredictRequest(symbols=FRESH)
    before = predictor.predict(request)
    assert {p.feature_ts for p in before.predictions} == {earlier} and predictor.quick(request) == before

    fs.materialize(store, end=world.last_ts + dt.timedelta(seconds=1))
    assert predictor.quick(request) is None  # the online store changed: no answer from the old snapshot
    after = predictor.predict(request)
    assert {p.feature_ts for p in after.predictions} == {world.last_ts}
    assert [p.score for p in after.predictions] != [p.score for p in before.predictions]
    assert predictor.quick(request) == after


def test_cached_online_answers_equal_the_answers_computed_for_the_same_features_fresh_and_stale(world):
    predictor = Predictor.from_settings(ServingSettings(home=world.home), world.registry)
    symbols = [*FRESH, LAGGING]
    online = predictor.predict(PredictRequest(symbols=symbols, allow_stale=True)).model_dump()
    replay = predictor.predict(PredictRequest(symbols=symbols, allow_stale=True, as_of=world.last_ts)).model_dump()
    assert [p["stale"] for p in online["predictions"]] == [False, False, False, True]
    for cached, computed in zip(online["predictions"], replay["predictions"], strict=True):
        assert cached.pop("score") == pytest.approx(computed.pop("score"), rel=1e-12) and cached == computed
