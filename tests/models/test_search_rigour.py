"""Selection bias of a parameter sweep: the deflated Sharpe ratio of its best trial and PBO across its trials."""

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from models.research import probabilistic_sharpe_ratio, sweep_rigour
from models.search import read_best, read_rigour, search, write_best
from models.walkforward import WalkForwardConfig
from tests.models.test_training import frame  # noqa: F401  (the module-scoped training frame fixture)

N, T = 30, 500  # trials, periods


def _noise(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"t{i}": rng.normal(0.0, 0.01, T) for i in range(N)}


def _best(trials: dict[str, np.ndarray]) -> str:
    return max(trials, key=lambda name: trials[name].mean())


def test_sweep_rigour_when_every_trial_is_noise_the_best_is_not_significant_and_pbo_is_a_coin_flip():
    sweeps = [_noise(seed) for seed in range(20)]
    results = [sweep_rigour(t, best=_best(t), periods_per_year=252, n_blocks=10) for t in sweeps]
    dsr, pbo = np.array([r["dsr"] for r in results]), np.array([r["pbo"] for r in results])
    psr = np.array([probabilistic_sharpe_ratio(t[_best(t)]) for t in sweeps])
    assert np.mean(psr > 0.95) >= 0.8, psr  # undeflated, the best of 30 noise trials mostly looks significant ...
    assert np.median(dsr) < 0.6 and np.mean(dsr > 0.95) <= 0.1, dsr  # ... deflated, it is what luck gives (≈ 0.5)
    assert 0.35 < pbo.mean() < 0.65, pbo


def test_sweep_rigour_when_one_trial_carries_a_true_signal_it_stays_significant_and_pbo_is_near_zero():
    trials = _noise(0)
    trials["signal"] = np.random.default_rng(99).normal(0.003, 0.01, T)  # annualised Sharpe ≈ 4.8
    r = sweep_rigour(trials, best=_best(trials), periods_per_year=252)
    assert r["best"] == "signal" and r["n_trials"] == N + 1
    assert r["dsr"] > 0.95 and r["pbo"] < 0.05, r


def test_sweep_rigour_refuses_a_best_trial_that_is_not_in_the_sweep():
    with pytest.raises(ValueError, match="best trial 'nope'"):
        sweep_rigour(_noise(0), best="nope", periods_per_year=252)


def test_search_result_and_its_json_carry_the_deflated_sharpe_and_pbo_of_its_trials(frame, tmp_path):  # noqa: F811
    small = frame.filter(pl.col("event_timestamp") < frame["event_timestamp"].min() + dt.timedelta(days=45))
    config = WalkForwardConfig(families=("sklearn_ridge",), n_folds=2)
    result = search(small, config, family="sklearn_ridge", trials=4, storage=tmp_path / "optuna.db")
    r = result.rigour
    assert r["n_trials"] == 4 and 0.0 <= r["dsr"] <= 1.0 and 0.0 <= r["pbo"] <= 1.0 and r["best_ic"] == pytest.approx(result.best_ic)
    again = search(small.head(small.height - 24 * 26), config, family="sklearn_ridge", trials=2, storage=tmp_path / "optuna.db")
    assert again.trials == 6 and again.rigour["n_trials"] == 2  # other data: earlier trials cover other periods, left out

    best = tmp_path / "best_params.json"
    write_best([result], best)
    assert read_best(best) == {"sklearn_ridge": result.best_params}  # what training reads is unchanged
    stored = read_rigour(best)["sklearn_ridge"]
    assert json.loads((tmp_path / "search_rigour.json").read_text())["sklearn_ridge"]["dsr"] == pytest.approx(r["dsr"])
    assert stored["pbo"] == pytest.approx(r["pbo"]) and stored["trials_in_study"] == 4 and stored["best_params"] == result.best_params
