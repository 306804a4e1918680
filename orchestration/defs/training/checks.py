"""The validation gates as blocking checks on ``model_evaluation`` (thresholds from the ``models`` resource).

One check per gate (see :mod:`models.gates`): ``min_oos_ic``, ``min_oos_icir``,
``max_overfit_ratio``, ``leakage_sentinel``, ``min_backtest_sharpe``, ``max_drawdown``,
``min_oos_timestamps``. A failed gate stops the run before a candidate is registered.
"""


import json

import dagster as dg

from models.gates import GateConfig, evaluate_gates
from orchestration.defs.training.assets import GATE_INPUTS, _path, model_evaluation
from orchestration.resources import ModelsResource

GATES = tuple(f for f in GateConfig.model_fields if f != "sentinel_max_abs_t")  # the t bound belongs to the sentinel gate
DESCRIPTIONS = {
    "min_oos_ic": "Ensemble out-of-sample IC at least the threshold.",
    "min_oos_icir": "Ensemble out-of-sample ICIR at least the threshold.",
    "max_overfit_ratio": "Members' in-sample IC / out-of-sample IC at most the threshold (overfitting).",
    "sentinel_max_abs_ic": "Leakage sentinel: the same pipeline on labels shuffled within each timestamp scores |IC| near zero.",
    "min_backtest_sharpe": "Backtest Sharpe after costs at least the threshold.",
    "max_drawdown": "Backtest max drawdown no deeper than the threshold.",
    "min_oos_timestamps": "Enough out-of-sample timestamps to judge the model.",
}
#: The gate each threshold field drives (the sentinel's field name differs from its gate's).
GATE_OF = {field: ("leakage_sentinel" if field == "sentinel_max_abs_ic" else field) for field in GATES}


def _gate_check(field: str) -> dg.AssetChecksDefinition:
    gate = GATE_OF[field]

    @dg.asset_check(asset=model_evaluation, name=gate, blocking=True, description=DESCRIPTIONS[field])
    def _check(models: ModelsResource) -> dg.AssetCheckResult:
        evaluation = json.loads(_path(models, GATE_INPUTS).read_text())
        config = models.config(1).gates  # periods_per_year is irrelevant to the gates
        result = next(r for r in evaluate_gates(evaluation, config) if r.name == gate)
        verdict = "passed" if result.passed else "FAILED"
        return dg.AssetCheckResult(
            passed=result.passed,
            description=f"{verdict}: {result.description} (value {result.value:.4g})",
            metadata={"value": float(f"{result.value:.4g}"), "threshold": result.threshold, "rule": result.description},
        )

    return _check


TRAINING_CHECKS = [_gate_check(field) for field in GATES]
