"""One retrain, end to end, as plain functions (Dagster's training assets call these in turn).

1. :func:`cross_validate` — walk-forward OOF predictions for every learner, plus the
   leakage sentinel: the same walk-forward on labels shuffled within each timestamp.
2. :func:`evaluate_run` — the walk-forward stacked ensemble's OOF series, signal
   metrics (against the oracle when there is one), a costed backtest, and the gates.
3. :func:`fit_candidate` — every learner refitted on the latest window, stacked with
   weights fitted on all OOF predictions.
4. :func:`register_candidate` — members and ensemble into the BentoML model store as
   ``candidate`` with the metadata of DESIGN.md §3.3.

Example:
    >>> TrainingConfig().walk_forward.label, TrainingConfig().sentinel_family
    ('label_fwd_ret_4', 'xgboost')
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from feature_repo import FEATURE_NAMES
from models.data import matrix, symbol_codes
from models.ensemble import Ensemble, degenerate_members, stack_or_best, stack_weights, stacked_oof
from models.evaluation import BacktestConfig, backtest_oof, signal_report
from models.explain import background, explain
from models.gates import GateConfig, GateResult, build_evaluation, evaluate_gates
from models.walkforward import (
    WalkForwardConfig,
    WalkForwardResult,
    final_fit_health,
    fit_final,
    run_walk_forward,
    shuffle_labels,
)

Log = Callable[[str], None]


class TrainingConfig(BaseModel):
    """Everything a retrain is configured by. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    walk_forward: WalkForwardConfig = Field(default_factory=WalkForwardConfig)
    gates: GateConfig = Field(default_factory=GateConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    sentinel_family: str = "xgboost"
    periods_per_year: int = Field(default=6552, ge=1, description="Bars per year of the timeframe (15m XNYS: 26 × 252).")


@dataclass
class CrossValidation:
    walk_forward: WalkForwardResult
    sentinel: WalkForwardResult
    sentinel_ic: float
    sentinel_tstat: float


def cross_validate(frame: pl.DataFrame, config: TrainingConfig, *, log: Log = lambda _: None) -> CrossValidation:
    wf = run_walk_forward(frame, config.walk_forward, log=log)
    sentinel_cfg = config.walk_forward.model_copy(update={"families": (config.sentinel_family,)})
    shuffled = shuffle_labels(frame, config.walk_forward.label)
    sentinel = run_walk_forward(shuffled, sentinel_cfg, log=lambda m: log(f"sentinel {m}"))
    summary = sentinel.summary(config.sentinel_family)
    log(f"leakage sentinel ({config.sentinel_family} on shuffled labels): oos ic {summary['ic']:.4f}, t {summary['ic_tstat']:.2f}")
    return CrossValidation(wf, sentinel, summary["ic"], summary["ic_tstat"])


@dataclass
class Evaluation:
    oof: pl.DataFrame  # OOF frame with pred_ensemble and pred_equal, every fold (the first is the stack's burn-in)
    report: dict[str, Any]
    evaluation: dict[str, Any]
    gates: list[GateResult]
    backtest: Any  # models.backtest.BacktestResult
    scored: pl.DataFrame | None = None  # the folds after the burn-in: what the report, backtest and registry use

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


def evaluate_run(cv: CrossValidation, config: TrainingConfig, *, bars: pl.DataFrame,
                 oracle: pl.DataFrame | None = None, weigh: Any = None) -> Evaluation:
    """The stacked OOF series, its signal report and costed backtest (its book weighted by ``weigh`` when given:
    ``orchestration.portfolio.trader_weigh``, the trader's optimiser), and the gates."""
    families = list(config.walk_forward.families)
    label = config.walk_forward.label
    first_scales = {f: _scale(cv.walk_forward.in_sample_scale[f][0]) for f in families}
    stacked = stacked_oof(cv.walk_forward.oof, families, label=label, first_scales=first_scales)
    scored = stacked.evaluated()  # after the stack's burn-in fold: the ensemble and its members on the same rows
    in_sample = {f: cv.walk_forward.in_sample_ic(f) for f in families}
    report = signal_report(scored, families=families, label=label, oracle=oracle, in_sample_ic=in_sample)
    report["window"]["burn_in_fold"] = stacked.burn_in
    result = backtest_oof(scored, bars, horizon=config.walk_forward.horizon, config=config.backtest, weigh=weigh)
    bt = result.metrics(config.periods_per_year)
    report["backtest"] = bt
    report["warnings"] = stacked.warnings
    report["ensemble_choices"] = stacked.choices
    report["fold_weights"] = {str(k): w for k, w in stacked.fold_weights.items()}
    evaluation = build_evaluation(report, families=families, sentinel_ic=cv.sentinel_ic, backtest=bt,
                                  sentinel_tstat=cv.sentinel_tstat)
    return Evaluation(stacked.oof, report, evaluation, evaluate_gates(evaluation, config.gates), result, scored)


def _scale(sd: float) -> float:
    return sd if math.isfinite(sd) and sd > 0 else 1.0


def fit_candidate(frame: pl.DataFrame, oof: pl.DataFrame, config: TrainingConfig, *,
                  log: Log = lambda _: None) -> tuple[Ensemble, dict[str, float], list[str], str]:
    """Every learner refitted on the latest window and stacked; also the warnings of members given weight 0,
    and the choice between the stack and its best member (judged on the OOF stack, out of sample).

    Weights come from all OOF predictions; a member whose *final* fit is degenerate on the
    newest stretch of its own window (:func:`~models.walkforward.final_fit_health`) is
    left out too, whatever its OOF record.
    """
    families = list(config.walk_forward.families)
    members, seconds = fit_final(frame, config.walk_forward, log=log)
    flat = final_fit_health(members, frame, config.walk_forward)
    warnings = [f"{f}: the final fit predicts a constant or non-finite values on {share:.0%} of the newest timestamps; weight 0"
                for f, share in flat.items()]
    weights, scales = stack_weights(oof, families, label=config.walk_forward.label, exclude=flat)
    weights, choice = stack_or_best(oof, weights, families, label=config.walk_forward.label, exclude=flat)
    log(f"production ensemble: {choice}")
    warnings += [f"{f}: weight 0 in the production stack (degenerate out-of-fold predictions)"
                 for f in degenerate_members(oof, families) if f not in flat]
    for line in warnings:
        log(f"warning: {line}")
    log("stacking weights: " + ", ".join(f"{f} {w:.2f}" for f, w in weights.items()))
    ensemble = Ensemble(members=members, weights=weights, scales=scales, feature_names=list(FEATURE_NAMES))
    ensemble.background = background(matrix(frame), symbol_codes(frame), context=ensemble.context)
    return ensemble, seconds, warnings, choice


#: Global SHAP importance is the mean |attribution| over the newest this-many timestamps of the training window.
SHAP_TIMESTAMPS = 20


def shap_importance(ensemble: Ensemble, frame: pl.DataFrame, *, timestamps: int = SHAP_TIMESTAMPS, top: int = 15) -> dict[str, float]:
    """The ensemble's global feature importance: each feature's share of the mean |SHAP value| (``models.explain``)
    over the newest ``timestamps`` of ``frame`` (with the history the sequence members read before them)."""
    times = frame["event_timestamp"].unique().sort()
    first = times[max(0, times.len() - timestamps)]
    window = frame.filter(pl.col("event_timestamp") >= times[max(0, times.len() - timestamps - ensemble.context)])
    rows = np.flatnonzero((window["event_timestamp"] >= first).to_numpy())
    att = explain(ensemble, matrix(window), groups=symbol_codes(window), rows=rows)
    return dict(list(att.importance().items())[:top])


def code_version() -> str:
    """``alphaline <version>`` plus the git commit when run from a checkout."""
    try:
        version = importlib_metadata.version("alphaline")
    except importlib_metadata.PackageNotFoundError:
        version = "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"alphaline {version}" + (f" (git {sha})" if sha else "")


def candidate_metadata(frame: pl.DataFrame, cv: CrossValidation, ev: Evaluation, config: TrainingConfig, *,
                       fingerprint: str) -> dict[str, Any]:
    """The DESIGN.md §3.3 metadata shared by the ensemble entry and its members."""
    times = frame["event_timestamp"]
    return {
        "features": list(FEATURE_NAMES), "label": config.walk_forward.label,
        "training_window": {"start": times.min().isoformat(), "end": times.max().isoformat(), "rows": frame.height,
                            "symbols": frame["symbol"].n_unique()},
        "oos_window": ev.report["window"], "data_fingerprint": fingerprint,
        "folds": [f.record() for f in cv.walk_forward.folds],
        "cv_metrics": cv.walk_forward.fold_metrics,
        "oos_metrics": ev.report["models"], "oracle_ic": ev.report["oracle_ic"], "ic_decay": ev.report["ic_decay"],
        "backtest": ev.report["backtest"], "sentinel_ic": cv.sentinel_ic, "sentinel_tstat": cv.sentinel_tstat,
        "gates": [g.record() for g in ev.gates], "gates_passed": ev.passed, "warnings": list(ev.report.get("warnings", [])),
        "ensemble_choices": list(ev.report.get("ensemble_choices", [])),
        "tearsheet": ev.report.get("tearsheet"),
        "config": config.model_dump(mode="json"), "code_version": code_version(),
    }


def register_candidate(registry: Any, ensemble: Ensemble, metadata: dict[str, Any], oof: pl.DataFrame) -> str:
    """Save members then the ensemble as ``candidate``; returns the ensemble's tag."""
    member_tags = {}
    for family, learner in ensemble.members.items():
        member_meta = {**metadata, "family": family, "importance": _top(learner.feature_importance())}
        member_tags[family] = registry.save_member(learner, metadata=member_meta)
    keep = oof.select("symbol", "event_timestamp", "fold", metadata["label"], "pred_ensemble", "pred_equal")
    return str(registry.save_ensemble(ensemble, member_tags, metadata=metadata, oof=keep))


def _top(importance: dict[str, float], n: int = 10) -> dict[str, float]:
    ranked = sorted(((k, v) for k, v in importance.items() if not math.isnan(v)), key=lambda kv: -kv[1])
    return dict(ranked[:n])
