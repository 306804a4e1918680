"""Optuna search on the purged walk-forward CV: the study is stored and resumed, the best parameters reach training."""

import datetime as dt
import json

import polars as pl
import pytest

from models.search import SPACES, read_best, search, write_best
from models.walkforward import WalkForwardConfig
from orchestration.resources import ModelsResource
from tests.models.test_training import frame  # noqa: F401  (the module-scoped training frame fixture)


@pytest.fixture(scope="module")
def small(frame):  # noqa: F811
    return frame.filter(pl.col("event_timestamp") < frame["event_timestamp"].min() + dt.timedelta(days=45))


def test_search_stores_its_study_resumes_it_and_returns_the_best_parameters(small, tmp_path):
    config = WalkForwardConfig(families=("sklearn_ridge",), n_folds=2)
    storage = tmp_path / "search" / "optuna.db"
    first = search(small, config, family="sklearn_ridge", trials=3, storage=storage)
    assert storage.exists() and first.trials == 3
    assert 0.1 <= first.best_params["alpha"] <= 1000.0 and -1 < first.best_ic < 1
    again = search(small, config, family="sklearn_ridge", trials=2, storage=storage)
    assert again.trials == 5 and again.best_ic >= first.best_ic  # resumed: the best can only get better

    best = tmp_path / "search" / "best_params.json"
    write_best([again], best)
    assert read_best(best) == {"sklearn_ridge": again.best_params}


def test_search_refuses_a_family_without_a_search_space(small, tmp_path):
    assert "torch_tcn" not in SPACES
    with pytest.raises(ValueError, match="no search space for 'torch_tcn'"):
        search(small, WalkForwardConfig(), family="torch_tcn", trials=1, storage=tmp_path / "s.db")


def test_training_starts_from_searched_parameters_and_explicit_ones_win(tmp_path):
    resource = ModelsResource(home=str(tmp_path), learner_params={"xgboost": {"max_depth": 3}})
    (tmp_path / "models" / "search").mkdir(parents=True)
    (tmp_path / "models" / "search" / "best_params.json").write_text(
        json.dumps({"xgboost": {"max_depth": 6, "learning_rate": 0.02}, "sklearn_ridge": {"alpha": 3.0}}))
    params = resource.config(6552).walk_forward.params
    assert params["xgboost"] == {"max_depth": 3, "learning_rate": 0.02} and params["sklearn_ridge"] == {"alpha": 3.0}
    off = ModelsResource(home=str(tmp_path), use_searched_params=False).config(6552).walk_forward.params
    assert off == {}
