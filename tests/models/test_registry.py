"""The BentoML-store registry: labels and metadata, gated champion/challenger promotion, rollback, save → load."""

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from models.ensemble import Ensemble
from models.explain import background
from models.learners import RidgeLearner
from models.registry import PromotionRefused, Registry, RegistryError

LABEL = "label_fwd_ret_4"
PASSED = [{"name": "min_oos_ic", "passed": True, "value": 0.05, "threshold": 0.01, "description": ""}]
FAILED = [{"name": "min_oos_ic", "passed": False, "value": 0.001, "threshold": 0.01, "description": ""},
          {"name": "leakage_sentinel", "passed": True, "value": 0.0, "threshold": 0.01, "description": ""}]


def _oof(skill: float, *, seed: int = 0, start: int = 0, n_times: int = 300) -> pl.DataFrame:
    """OOF predictions whose IC against the label grows with ``skill``."""
    rng = np.random.default_rng(seed)
    t0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    times = [t0 + dt.timedelta(minutes=15 * (start + i)) for i in range(n_times) for _ in range(10)]
    y = np.random.default_rng(99).normal(size=len(times))  # same labels for every model on the same rows
    return pl.DataFrame({
        "symbol": [f"S{j}" for _ in range(n_times) for j in range(10)], "event_timestamp": times, "fold": 0,
        LABEL: y, "pred_ensemble": skill * y + rng.normal(size=len(times)), "pred_equal": rng.normal(size=len(times)),
    })


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    return x, x @ np.array([0.5, -0.2, 0.0]) + rng.normal(size=400) * 0.1


def _candidate(registry: Registry, data, *, gates=PASSED, skill: float = 0.3, seed: int = 0) -> str:
    x, y = data
    member = RidgeLearner().fit(x, y, feature_names=["a", "b", "c"])
    member_tag = registry.save_member(member, metadata={"label": LABEL})
    ensemble = Ensemble(members={"sklearn_ridge": member}, weights={"sklearn_ridge": 1.0}, scales={"sklearn_ridge": 0.5},
                        feature_names=["a", "b", "c"])
    ensemble.background = background(x, np.arange(len(x)) % 4, context=0)
    meta = {"label": LABEL, "gates": gates, "gates_passed": all(g["passed"] for g in gates), "features": ["a", "b", "c"]}
    return str(registry.save_ensemble(ensemble, {"sklearn_ridge": member_tag}, metadata=meta, oof=_oof(skill, seed=seed)))


def test_saved_model_carries_the_design_labels_and_loads_to_identical_predictions(registry, data):
    tag = _candidate(registry, data)
    info = registry.info(tag)
    assert info["labels"] == {"stage": "candidate", "family": "ensemble", "role": "ensemble"}
    assert info["metadata"]["members"]["sklearn_ridge"].startswith("alphaline_sklearn_ridge:")
    x, _ = data
    loaded = registry.load_ensemble(tag)
    again = Registry(registry.root.parent).load_ensemble(tag)  # a fresh process's view of the same store
    assert np.array_equal(loaded.predict(x), again.predict(x))
    # The explainers' reference rows travel with the model (a network is explained against them in serving).
    assert np.array_equal(loaded.background.x, x[-4:]) and loaded.background.groups.tolist() == [0, 1, 2, 3]
    member = registry.load_member(info["metadata"]["members"]["sklearn_ridge"])
    assert np.array_equal(loaded.predict(x), member.predict(x) / 0.5)


def test_model_failing_a_gate_cannot_be_promoted(registry, data):
    tag = _candidate(registry, data, gates=FAILED)
    with pytest.raises(PromotionRefused, match="gates failed \\(min_oos_ic\\)"):
        registry.promote(tag)
    assert registry.info(tag)["labels"]["stage"] == "candidate"
    assert registry.production() is None


def test_first_gated_candidate_becomes_production_and_its_members_follow(registry, data):
    tag = _candidate(registry, data)
    assert registry.promote(tag) is None
    assert registry.production() == tag
    member = registry.info(tag)["metadata"]["members"]["sklearn_ridge"]
    assert registry.info(member)["labels"]["stage"] == "production"
    doc = yaml.safe_load(Path(registry.get(tag).path_of("model.yaml")).read_text())
    assert doc["labels"]["stage"] == "production"  # BentoML's own model file carries the stage


def test_challenger_must_beat_the_champion_on_their_common_oos_window(registry, data):
    champion = _candidate(registry, data, skill=0.5)
    registry.promote(champion)
    weaker = _candidate(registry, data, skill=0.1, seed=1)
    with pytest.raises(PromotionRefused, match="does not beat champion"):
        registry.promote(weaker)
    assert registry.production() == champion
    stronger = _candidate(registry, data, skill=1.0, seed=2)
    comparison = registry.promote(stronger)
    assert comparison.challenger_ic > comparison.champion_ic and comparison.timestamps == 300
    assert registry.production() == stronger
    assert registry.info(champion)["labels"]["stage"] == "archived"


def test_rollback_restores_the_previous_production_model(registry, data):
    first = _candidate(registry, data, skill=0.5)
    registry.promote(first)
    second = _candidate(registry, data, skill=1.0, seed=2)
    registry.promote(second)
    assert registry.rollback() == first
    assert registry.production() == first
    assert registry.info(second)["labels"]["stage"] == "archived"
    with pytest.raises(RegistryError, match="no earlier production model"):
        registry.rollback()
    assert [e["action"] for e in registry.history()] == ["promote", "promote", "rollback"]


def test_promotion_without_a_common_window_is_refused(registry, data):
    champion = _candidate(registry, data, skill=0.5)
    registry.promote(champion)
    x, y = data
    member = RidgeLearner().fit(x, y, feature_names=["a", "b", "c"])
    ensemble = Ensemble(members={"sklearn_ridge": member}, weights={"sklearn_ridge": 1.0}, scales={"sklearn_ridge": 1.0})
    tag = str(registry.save_ensemble(ensemble, {"sklearn_ridge": registry.save_member(member, metadata={})},
                                     metadata={"label": LABEL, "gates": PASSED}, oof=_oof(1.0, start=10_000)))
    with pytest.raises(PromotionRefused, match="shares only 0 out-of-sample timestamps"):
        registry.promote(tag)


def test_unknown_tag_is_a_one_line_registry_error(registry):
    with pytest.raises(RegistryError, match="alphaline_ensemble:nope: not in the model store"):
        registry.info("alphaline_ensemble:nope")
