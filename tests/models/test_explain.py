"""SHAP attributions: every member's and the ensemble's add up to the score, and they point at the signal."""

import datetime as dt
import doctest

import numpy as np
import polars as pl
import pytest

import models.explain
from feature_repo import FEATURE_NAMES, compute_features, compute_labels
from models.ensemble import Ensemble
from models.explain import ExplainError, background, explain, member_shap
from models.learners import LEARNERS, RidgeLearner
from tests.features.synthetic_bars import BAR, feature_bars

LABEL = "label_fwd_ret_4"
QUICK = {
    "torch_mlp": {"max_rows": 6000, "max_epochs": 2},
    "torch_tcn": {"max_rows": 6000, "max_epochs": 2, "channels": 8},
    "sklearn_hgb": {"max_iter": 60},
    "xgboost": {"n_estimators": 60},
    "lightgbm": {"n_estimators": 60},
}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bars = feature_bars(n_symbols=8, first=dt.date(2024, 3, 1), last=dt.date(2024, 4, 19))
    frame = (
        compute_features(bars, bar_length=BAR).join(compute_labels(bars), on=["symbol", "event_timestamp"])
        .filter(~pl.col("warmup")).drop_nulls(LABEL).sort("event_timestamp", "symbol")
    )
    x = frame.select(FEATURE_NAMES).cast(pl.Float64).fill_null(np.nan).to_numpy()
    groups = frame["symbol"].rank("dense").cast(pl.Int64).to_numpy() - 1
    return x, frame[LABEL].to_numpy(), groups


@pytest.fixture(scope="module")
def members(data) -> dict[str, object]:
    x, y, groups = data
    return {f: LEARNERS[f](params=dict(QUICK.get(f, {}))).fit(x, y, feature_names=list(FEATURE_NAMES), groups=groups)
            for f in sorted(LEARNERS)}


@pytest.mark.parametrize("family", sorted(LEARNERS))
def test_each_members_attribution_adds_up_to_its_prediction(family, members, data, tmp_path):
    x, _, groups = data
    member = members[family]
    bg = background(x, groups, context=int(getattr(member, "context", 0) or 0))
    rows = np.arange(len(x) - 40, len(x))  # the newest rows, whose history (for the TCN) precedes them in x
    phi, base = member_shap(member, x, groups=groups, rows=rows, background=bg)
    assert phi.shape == (len(rows), len(FEATURE_NAMES))
    pred = member.predict(x, groups=groups)[rows]
    np.testing.assert_allclose(base + phi.sum(axis=1), pred, rtol=1e-4, atol=1e-6 * np.abs(pred).max())
    assert np.abs(phi).sum() > 0
    # Explaining leaves the member as it was: it saves and loads to the same predictions (SHAP hooks its layers).
    path = tmp_path / "member.bin"
    member.save(path)
    np.testing.assert_array_equal(type(member).load(path).predict(x[rows], groups=groups[rows]), member.predict(x[rows], groups=groups[rows]))


def test_the_ensembles_attribution_is_the_weighted_sum_of_its_members_and_adds_up(members, data):
    x, _, groups = data
    weights = {f: 1 / len(members) for f in members}
    scales = {f: float(np.std(m.predict(x, groups=groups))) or 1.0 for f, m in members.items()}
    ens = Ensemble(members=dict(members), weights=weights, scales=scales, feature_names=list(FEATURE_NAMES))
    ens.background = background(x, groups, context=ens.context)
    rows = np.arange(len(x) - 24, len(x))
    att = explain(ens, x, groups=groups, rows=rows)
    np.testing.assert_allclose(att.base + att.values.sum(axis=1), ens.predict(x, groups=groups)[rows], rtol=1e-4, atol=1e-7)
    families = att.by_group(0, lambda name: name.split("_", 1)[0])
    assert sum(families.values()) == pytest.approx(att.values[0].sum()) and "xs" in families
    share = att.importance()
    assert list(share) == sorted(share, key=lambda k: -share[k]) and abs(sum(share.values()) - 1) < 1e-9


def test_a_ridge_on_one_informative_feature_attributes_the_score_to_it():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 4))
    y = 0.5 * x[:, 2] + rng.normal(size=3000) * 0.1
    ens = Ensemble({"sklearn_ridge": RidgeLearner().fit(x, y, feature_names=list("abcd"))}, {"sklearn_ridge": 1.0},
                   {"sklearn_ridge": 1.0}, feature_names=list("abcd"))
    att = explain(ens, x[:50])
    assert next(iter(att.importance())) == "c" and att.importance()["c"] > 0.9
    # The exact linear form: the contribution of c is its coefficient times its standardised distance from the mean.
    assert att.top(0, 1)[0][0] == "c"


def test_a_network_without_a_background_is_refused_by_name(members, data):
    x, _, _ = data
    ens = Ensemble({"torch_mlp": members["torch_mlp"]}, {"torch_mlp": 1.0}, {"torch_mlp": 1.0}, feature_names=list(FEATURE_NAMES))
    with pytest.raises(ExplainError, match="torch_mlp: the ensemble stores no background"):
        explain(ens, x[:5])


def test_an_attribution_that_does_not_add_up_is_refused():
    with pytest.raises(ExplainError, match="differ from the score"):
        models.explain._check_additivity(np.array([1.0, 2.0]), np.array([1.0, 2.5]), "probe")


def test_background_keeps_the_last_rows_of_the_newest_symbols():
    groups = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    bg = background(np.arange(9.0)[:, None], groups, context=1, symbols=2)
    assert bg.x[:, 0].tolist() == [4.0, 5.0, 7.0, 8.0] and bg.groups.tolist() == [1, 2, 1, 2]
    assert bg.anchors().tolist() == [2, 3]


def test_explain_docstring_examples_run():
    assert doctest.testmod(models.explain, optionflags=doctest.ELLIPSIS).failed == 0
