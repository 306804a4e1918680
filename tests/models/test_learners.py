"""Learners on the synthetic market: out-of-sample IC is positive, below the oracle; save → load predicts identically."""

import datetime as dt
import doctest
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import models.torch_learners
from feature_repo import FEATURE_NAMES, compute_features, compute_labels
from models.learners import LEARNERS
from models.metrics import ic_summary
from tests.features.synthetic_bars import BAR, feature_bars

LABEL = "label_fwd_ret_4"
SMALL = {  # quick settings for tests that check a property, not the model's quality
    "torch_mlp": {"max_rows": 8000, "max_epochs": 2},
    "torch_tcn": {"max_rows": 8000, "max_epochs": 2, "channels": 8},
}


@pytest.fixture(scope="module")
def split() -> tuple[pl.DataFrame, pl.DataFrame]:
    bars = feature_bars(n_symbols=24, first=dt.date(2024, 3, 1), last=dt.date(2024, 8, 30))
    frame = (
        compute_features(bars, bar_length=BAR)
        .join(compute_labels(bars), on=["symbol", "event_timestamp"])
        .filter(~pl.col("warmup"))
        .drop_nulls(LABEL)
        .sort("event_timestamp", "symbol")
    )
    times = frame["event_timestamp"].unique().sort()
    cut = times[int(len(times) * 0.7)]
    return frame.filter(pl.col("event_timestamp") < cut - 4 * BAR), frame.filter(pl.col("event_timestamp") >= cut)


def _xy(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame.select(FEATURE_NAMES).cast(pl.Float64).to_numpy(), frame[LABEL].to_numpy()


def _groups(frame: pl.DataFrame) -> np.ndarray:
    return frame["symbol"].rank("dense").cast(pl.Int64).to_numpy() - 1


def _fit(family: str, frame: pl.DataFrame, **params) -> object:
    return LEARNERS[family](params=params).fit(*_xy(frame), feature_names=list(FEATURE_NAMES), groups=_groups(frame))


@pytest.mark.parametrize("family", sorted(LEARNERS))
def test_learner_out_of_sample_ic_is_positive_and_save_load_predicts_identically(family, split, tmp_path: Path):
    train, test = split
    model = _fit(family, train)
    x_test, _ = _xy(test)
    pred = model.predict(x_test, groups=_groups(test))
    summary = ic_summary(test.with_columns(pred=pl.Series(pred)), score="pred", label=LABEL, time="event_timestamp")
    assert 0.02 < summary["ic"] < 0.25, summary  # the oracle's IC at 4 bars is ~0.12; nothing honest beats it by much
    importance = model.feature_importance()
    assert set(importance) == set(FEATURE_NAMES) and abs(sum(importance.values()) - 1) < 1e-9
    assert min(importance.values()) >= 0
    model.save(tmp_path / "model.pkl")
    again = type(model).load(tmp_path / "model.pkl")
    assert np.array_equal(again.predict(x_test, groups=_groups(test)), pred)


def test_learner_given_the_wrong_number_of_columns_names_the_problem(split):
    train, _ = split
    model = _fit("sklearn_ridge", train)
    with pytest.raises(ValueError, match=f"features: expected {len(FEATURE_NAMES)} columns, got 3"):
        model.predict(np.zeros((2, 3)))


@pytest.mark.parametrize("family", sorted(SMALL))
def test_torch_learner_fitted_twice_on_the_same_data_predicts_identically(family, split):
    train, test = split
    first, second = (_fit(family, train, **SMALL[family]) for _ in range(2))
    x_test, _ = _xy(test)
    assert np.array_equal(first.predict(x_test, groups=_groups(test)), second.predict(x_test, groups=_groups(test)))


def test_tcn_prediction_for_a_row_ignores_later_rows_but_reads_its_symbols_history(split):
    train, test = split
    model = _fit("torch_tcn", train, **SMALL["torch_tcn"])
    x, groups = _xy(test)[0], _groups(test)
    pred = model.predict(x, groups=groups)
    assert model.context == 15  # the default window of 16 rows: 15 before the row, then the row
    i = len(x) // 2
    later = x.copy()
    later[i + 1 :] = np.random.default_rng(0).normal(size=later[i + 1 :].shape) * 10
    assert np.array_equal(model.predict(later, groups=groups)[: i + 1], pred[: i + 1])
    # The same symbol's previous row is in row i's window, so changing it must move the prediction.
    previous = np.flatnonzero(groups[:i] == groups[i])[-1]
    earlier = x.copy()
    earlier[previous] += 1.0
    assert model.predict(earlier, groups=groups)[i] != pred[i]


def test_tcn_without_symbol_codes_names_the_problem(split):
    train, _ = split
    x, y = _xy(train)
    with pytest.raises(ValueError, match="groups: torch_tcn needs one symbol code per row"):
        LEARNERS["torch_tcn"]().fit(x, y, feature_names=list(FEATURE_NAMES))


def test_torch_learner_with_an_unknown_param_names_it(split):
    train, _ = split
    with pytest.raises(ValueError, match=r"params: unknown key\(s\) \['hiden'\] for torch_mlp"):
        _fit("torch_mlp", train, hiden=(8,))


def test_torch_learners_docstring_examples_run():
    assert doctest.testmod(models.torch_learners).failed == 0


def test_importing_the_learners_does_not_import_torch():
    code = "import sys, models.learners, models.torch_learners; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2]).returncode == 0


@pytest.mark.parametrize("family", ["sklearn_hgb", "xgboost", "lightgbm"])
def test_boosted_trees_on_pure_noise_keep_at_least_the_minimum_trees_and_never_predict_a_constant(family):
    from models.learners import MIN_TREES

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3000, 5)), rng.normal(size=3000)  # early stopping would pick a tree or two
    model = LEARNERS[family](params={}).fit(x, y, feature_names=list("abcde"))
    assert model.params["best_iteration"] >= MIN_TREES - (family == "xgboost")  # xgboost counts from 0
    assert np.unique(model.predict(x[:500])).size > 10
