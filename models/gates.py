"""Validation gates: the checks a trained ensemble must pass before it may become production.

Each gate reads the run's evaluation (:func:`build_evaluation`) and compares one
number with a threshold from :class:`GateConfig`:

=========================  ==================================================================
``min_oos_ic``             ensemble OOS IC at least this
``min_oos_icir``           ensemble OOS ICIR (mean IC / its std, per timestamp) at least this
``max_overfit_ratio``      mean in-sample IC / OOS IC of the members at most this
``leakage_sentinel``       the same pipeline on labels shuffled within each timestamp scores
                           |IC| at most ``sentinel_max_abs_ic``, or an IC statistically
                           indistinguishable from zero (|t| < ``sentinel_max_abs_t``) on small
                           panels; anything more means the pipeline, not the data, makes the signal
``min_backtest_sharpe``    annualised Sharpe after costs at least this
``max_drawdown``           backtest max drawdown (a negative fraction) no deeper than this
``min_oos_timestamps``     out-of-sample timestamps at least this
=========================  ==================================================================

Example:
    >>> ev = {"ensemble": {"ic": 0.05, "icir": 0.3, "timestamps": 900}, "overfit_ratio": 1.4,
    ...       "sentinel_ic": 0.001, "backtest": {"sharpe_ratio": 1.2, "max_drawdown": -0.08}}
    >>> [g.name for g in evaluate_gates(ev, GateConfig()) if not g.passed]
    []
    >>> evaluate_gates({**ev, "sentinel_ic": 0.05}, GateConfig())[3].passed
    False
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class GateConfig(BaseModel):
    """Gate thresholds. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_oos_ic: float = 0.01
    min_oos_icir: float = 0.05
    max_overfit_ratio: float = Field(default=4.0, gt=0)
    sentinel_max_abs_ic: float = Field(default=0.01, ge=0)
    sentinel_max_abs_t: float = Field(default=3.0, gt=0)
    min_backtest_sharpe: float = 0.0
    max_drawdown: float = Field(default=-0.30, le=0, description="Deepest acceptable drawdown, e.g. -0.3 = 30%.")
    min_oos_timestamps: int = Field(default=200, ge=1)


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    value: float
    threshold: float
    description: str

    def record(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def evaluate_gates(evaluation: dict[str, Any], config: GateConfig) -> list[GateResult]:
    """Every gate's verdict; a missing or NaN value fails its gate (fail closed)."""
    ens = evaluation.get("ensemble", {})
    bt = evaluation.get("backtest", {})
    specs = [
        ("min_oos_ic", _finite(ens.get("ic")), config.min_oos_ic, ">=", "ensemble out-of-sample IC"),
        ("min_oos_icir", _finite(ens.get("icir")), config.min_oos_icir, ">=", "ensemble out-of-sample ICIR"),
        ("max_overfit_ratio", _finite(evaluation.get("overfit_ratio")), config.max_overfit_ratio, "<=",
         "members' in-sample IC over out-of-sample IC"),
        ("leakage_sentinel", abs(_finite(evaluation.get("sentinel_ic"))), config.sentinel_max_abs_ic, "<=",
         "|OOS IC| of the same pipeline trained on labels shuffled within each timestamp"),
        ("min_backtest_sharpe", _finite(bt.get("sharpe_ratio")), config.min_backtest_sharpe, ">=", "annualised Sharpe after costs"),
        ("max_drawdown", _finite(bt.get("max_drawdown")), config.max_drawdown, ">=", "backtest max drawdown"),
        ("min_oos_timestamps", _finite(ens.get("timestamps")), float(config.min_oos_timestamps), ">=", "out-of-sample timestamps"),
    ]
    out = []
    for name, value, threshold, op, text in specs:
        ok = not math.isnan(value) and (value >= threshold if op == ">=" else value <= threshold)
        if name == "leakage_sentinel" and not ok:
            # A small panel's shuffled-label IC is noisy: it passes if it cannot be told apart from zero.
            t = abs(_finite(evaluation.get("sentinel_tstat")))
            ok = not math.isnan(t) and t < config.sentinel_max_abs_t
            text += f" (or |t| < {config.sentinel_max_abs_t:g}; t = {t:.2f})"
        out.append(GateResult(name, ok, value, threshold, f"{text} {op} {threshold:g}"))
    return out


def overfit_ratio(in_sample_ic: dict[str, float], oos_ic: dict[str, float]) -> float:
    """Mean in-sample IC over mean OOS IC across members (∞ when the OOS IC is not positive)."""
    ins = [v for v in in_sample_ic.values() if not math.isnan(v)]
    oos = [v for v in oos_ic.values() if not math.isnan(v)]
    if not ins or not oos:
        return math.nan
    mean_oos = sum(oos) / len(oos)
    return (sum(ins) / len(ins)) / mean_oos if mean_oos > 0 else math.inf


def build_evaluation(report: dict[str, Any], *, families: list[str], sentinel_ic: float,
                     backtest: dict[str, float], sentinel_tstat: float = math.nan) -> dict[str, Any]:
    """The flat evaluation the gates read, from a :func:`models.evaluation.signal_report`."""
    models = report["models"]
    ins = {f: models[f].get("is_ic", math.nan) for f in families}
    oos = {f: models[f]["ic"] for f in families}
    return {
        "ensemble": models["ensemble"], "equal_weight": models.get("equal_weight", {}),
        "overfit_ratio": overfit_ratio(ins, oos), "sentinel_ic": sentinel_ic,
        "sentinel_tstat": sentinel_tstat, "backtest": backtest,
    }

