"""Hyper-parameter search on the purged walk-forward CV, with Optuna; the study is kept on disk.

Each trial fits one learner family with the trial's parameters through the same purged
walk-forward CV as training (:func:`models.walkforward.run_walk_forward`) and scores its
mean out-of-fold IC. The study lives in a SQLite file, so a later search resumes it (more
trials on the same question) and ``optuna-dashboard sqlite:///...`` can show it. The best
parameters are written to a JSON file that training reads (``ModelsResource.use_searched_params``).

Picking parameters on the same folds that evaluate them flatters the winner a little
(selection bias): keep the budget small, and let the gates and champion/challenger judge.
Each trial also keeps its out-of-fold long-short returns (gross, top-k against bottom-k on
every ``h``-th timestamp: :func:`models.cpcv.long_short_returns`), so the search measures its
own selection bias: the deflated Sharpe ratio of the best trial given every trial on the same
frame and CV, and the probability of backtest overfitting (CSCV) across them
(:func:`models.research.sweep_rigour`). They go to ``search_rigour.json`` beside the best
parameters (:func:`write_best`, :func:`read_rigour`) and into the next tear sheet.

Example:
    >>> sorted(SPACES)
    ['lightgbm', 'sklearn_hgb', 'sklearn_ridge', 'xgboost']
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from models.cpcv import long_short_returns
from models.data import fingerprint
from models.research import sweep_rigour
from models.walkforward import WalkForwardConfig, run_walk_forward

Log = Callable[[str], None]
SEED = 7


def _ridge(trial: Any) -> dict[str, float]:
    return {"alpha": trial.suggest_float("alpha", 0.1, 1000.0, log=True)}


def _hgb(trial: Any) -> dict[str, float]:
    return {"learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 7, 63)}


def _xgb(trial: Any) -> dict[str, float]:
    return {"learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "max_depth": trial.suggest_int("max_depth", 2, 7)}


def _lgbm(trial: Any) -> dict[str, float]:
    return {"learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 63),
            "min_child_samples": trial.suggest_int("min_child_samples", 20, 400, log=True)}


#: The search space of each family that has one (the torch learners are too slow to search on two cores).
SPACES: dict[str, Callable[[Any], dict[str, float]]] = {
    "sklearn_ridge": _ridge, "sklearn_hgb": _hgb, "xgboost": _xgb, "lightgbm": _lgbm,
}


@dataclass(frozen=True)
class SearchResult:
    family: str
    best_params: dict[str, float]
    best_ic: float
    trials: int  # in the study so far, earlier searches included
    rigour: dict[str, Any] = field(default_factory=dict)  # sweep_rigour over the trials on this frame and CV


#: Names per side of the long-short book each trial's out-of-fold returns are measured with.
SWEEP_K = 6


def search(frame: pl.DataFrame, config: WalkForwardConfig, *, family: str, trials: int, storage: Path,
           periods_per_year: int = 6552, log: Log = lambda _: None) -> SearchResult:
    """Run ``trials`` more trials of ``family``'s study in ``storage`` (created or resumed); the best so far.

    ``rigour`` of the result judges the pick among the study's trials on this same frame and CV
    (earlier searches on other data are left out: their returns cover other periods): deflated
    Sharpe ratio of the best of them by IC, PBO across them, Sharpes annualised with ``periods_per_year``.

    Raises:
        ValueError: ``family`` has no search space.
    """
    import optuna

    if family not in SPACES:
        raise ValueError(f"search: no search space for {family!r}; searchable: {', '.join(sorted(SPACES))}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=f"{family}:{config.label}:{config.target}", storage=f"sqlite:///{storage}",
                                direction="maximize", load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=SEED))

    key = sweep_key(frame, config, family)

    def objective(trial: Any) -> float:
        params = SPACES[family](trial)
        trial_config = config.model_copy(update={"families": (family,), "params": {family: params}})
        wf = run_walk_forward(frame, trial_config)
        ic = wf.summary(family)["ic"]
        returns = long_short_returns(wf.oof, score=f"pred_{family}", label=config.label, horizon=config.horizon, k=SWEEP_K)
        trial.set_user_attr("sweep", key)
        trial.set_user_attr("returns", [round(float(r), 8) for r in returns["return"]])
        log(f"trial {trial.number} {family} {params}: oos ic {ic:.4f}")
        return ic if math.isfinite(ic) else -1.0

    study.optimize(objective, n_trials=trials)
    rigour = trial_rigour(study, key, periods_per_year=periods_per_year / config.horizon)
    if rigour:
        log(f"{family} search: best of {rigour['n_trials']} trials, Sharpe {rigour['sharpe']:.2f}, deflated Sharpe ratio "
            f"{rigour['dsr']:.2f}, PBO {rigour.get('pbo', float('nan')):.2f}")
    return SearchResult(family, dict(study.best_params), float(study.best_value), len(study.trials), rigour)


def sweep_key(frame: pl.DataFrame, config: WalkForwardConfig, family: str) -> str:
    """Which trials are comparable: the same frame (fingerprint), label, target and CV, whatever the parameters."""
    cv = config.model_copy(update={"families": (family,), "params": {}}).model_dump_json()
    return hashlib.sha256(f"{fingerprint(frame)}|{cv}".encode()).hexdigest()[:16]


def trial_rigour(study: Any, key: str, *, periods_per_year: float) -> dict[str, Any]:
    """:func:`models.research.sweep_rigour` over the study's finished trials with sweep ``key`` (empty under two)."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("sweep") == key
            and t.user_attrs.get("returns")]
    if len(done) < 2:
        return {}
    best = max(done, key=lambda t: t.value)
    returns = {f"trial {t.number}": np.asarray(t.user_attrs["returns"], dtype=float) for t in done}
    out = sweep_rigour(returns, best=f"trial {best.number}", periods_per_year=periods_per_year)
    return out | {"best_ic": float(best.value), "sweep": key}


def write_best(results: list[SearchResult], path: Path) -> None:
    """``{family: params}`` of every result, merged into what ``path`` already holds (what training reads), and
    each result's rigour (DSR, PBO, trials) merged into ``search_rigour.json`` beside it (:func:`read_rigour`)."""
    best = read_best(path)
    best.update({r.family: r.best_params for r in results})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(best, indent=2, sort_keys=True) + "\n")
    rigour = read_rigour(path)
    rigour.update({r.family: {**r.rigour, "best_params": r.best_params, "trials_in_study": r.trials} for r in results})
    rigour_path(path).write_text(json.dumps(rigour, indent=2, sort_keys=True, default=float) + "\n")


def read_best(path: Path) -> dict[str, dict[str, float]]:
    """The searched parameters by family (empty when nothing was searched)."""
    return json.loads(path.read_text()) if path.exists() else {}


def rigour_path(best_path: Path) -> Path:
    """Where :func:`write_best` keeps the searches' rigour: ``search_rigour.json`` beside ``best_params.json``."""
    return best_path.with_name("search_rigour.json")


def read_rigour(best_path: Path) -> dict[str, dict[str, Any]]:
    """Per family: the last search's deflated Sharpe ratio, PBO and trials (empty when nothing was searched)."""
    path = rigour_path(best_path)
    return json.loads(path.read_text()) if path.exists() else {}
