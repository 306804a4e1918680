"""Training through Dagster: training_job registers a gated ensemble and promotes it; a failing gate blocks both;
the `alphaline models` commands read and move the registry."""

from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from models.registry import Registry
from orchestration.cli import main
from orchestration.definitions import build_definitions
from orchestration.defs.market.schedules import INGEST_JOB
from orchestration.defs.training.schedules import TRAINING_JOB
from orchestration.defs.training.search import SEARCH_JOB

pytestmark = pytest.mark.slow
MARKET = {"n_symbols": 12, "n_sectors": 3}
RANGE = {ASSET_PARTITION_RANGE_START_TAG: "2024-01-03", ASSET_PARTITION_RANGE_END_TAG: "2024-04-30"}
FAST = {"families": ["sklearn_ridge", "xgboost"], "n_folds": 2, "min_oos_timestamps": 100}


def _run(settings, job: str, instance, *, tags=None, models: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
    resources: dict[str, Any] = {"market": {"config": MARKET}}
    if models is not None:
        resources["models"] = {"config": {"home": str(settings.home), **models}}
    return build_definitions(settings).resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags, run_config={"resources": resources}, raise_on_error=False
    )


def _checks(result) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def test_training_job_gates_registers_and_promotes_then_a_failing_gate_blocks_the_candidate(settings):
    with dg.instance_for_test() as instance:
        ingest = _run(settings, INGEST_JOB, instance, tags=RANGE)
        assert ingest.success
        ingested = {e.asset_key.to_user_string() for e in ingest.get_asset_materialization_events()}
        assert "bar_features" in ingested and "training_frame" not in ingested  # retraining is its own job

        trained = _run(settings, TRAINING_JOB, instance, models=FAST)
        assert trained.success, _checks(trained)
        checks = _checks(trained)
        assert set(checks) == {"min_oos_ic", "min_oos_icir", "max_overfit_ratio", "leakage_sentinel",
                               "min_backtest_sharpe", "max_drawdown", "min_oos_timestamps"}
        assert all(checks.values()), checks
        evaluation = trained.asset_materializations_for_node("model_evaluation")[0].metadata
        assert evaluation["ic"].value > 0 and 0 < evaluation["oracle_fraction"].value < 1
        assert evaluation["tearsheet"].value.endswith("summary.md")
        assert evaluation["summary"].value.count("](data:image/png;base64,") == 5  # the charts render in the UI
        # Research rigour over every model the run tried: the pick's deflated Sharpe and the chance it is overfit.
        assert "deflated Sharpe ratio (" in evaluation["summary"].value and "probability of backtest overfitting" in evaluation["summary"].value
        assert "mean IC, 95% CI" in evaluation["summary"].value
        # The score as a factor: IC by horizon with its band, returns by score quantile, quantile turnover.
        assert "| horizon (bars) | mean IC | 95% band | Q1 (bps) |" in evaluation["summary"].value
        assert "Quantile turnover between consecutive timestamps" in evaluation["summary"].value
        assert "## Parameter walk-forward" in evaluation["summary"].value and "| walk-forward choice | fixed 3 | fixed 6 | fixed 12 |" in evaluation["summary"].value
        assert "| sklearn_ridge |" in evaluation["learners"].value and "| xgboost |" in evaluation["learners"].value
        candidate = trained.asset_materializations_for_node("ensemble_candidate")[0].metadata
        assert candidate["shap_importance"].value.startswith("| feature | share of mean abs(SHAP) |")
        promoted = trained.asset_materializations_for_node("production_model")[0].metadata
        assert promoted["promoted"].value is True

        registry = Registry(settings.home)
        production = registry.production()
        assert production == promoted["production"].value
        meta = registry.info(production)["metadata"]
        for key in ("features", "label", "training_window", "data_fingerprint", "cv_metrics", "gates", "code_version", "folds",
                    "shap_importance"):
            assert key in meta, key

        searched = _run(settings, SEARCH_JOB, instance, models={**FAST, "search_families": ["sklearn_ridge"], "search_trials": 2})
        assert searched.success
        found = searched.asset_materializations_for_node("learner_search")[0].metadata
        assert found["trials/sklearn_ridge"].value == 2 and "alpha" in found["best_params/sklearn_ridge"].value
        assert (settings.home / "models" / "search" / "optuna.db").exists()
        assert 0 <= found["dsr/sklearn_ridge"].value <= 1 and found["rigour_trials/sklearn_ridge"].value == 2  # selection bias

        # Opt-in CPCV of the learners; the search's pick judged in the tear sheet's rigour table.
        blocked = _run(settings, TRAINING_JOB, instance, models={**FAST, "min_oos_ic": 0.9, "cpcv": True,
                                                                  "cpcv_families": ["sklearn_ridge"]})
        assert not blocked.success
        assert _checks(blocked)["min_oos_ic"] is False
        judged = blocked.asset_materializations_for_node("model_evaluation")[0].metadata
        assert "## Combinatorial purged CV (CPCV)" in judged["summary"].value and "| sklearn_ridge | 5 |" in judged["summary"].value
        assert judged["cpcv_paths"].value == 5 and "cpcv_sharpe_mean/sklearn_ridge" in judged
        assert "sklearn_ridge parameter search: deflated Sharpe ratio of the best of 2 trials" in judged["summary"].value
        assert not blocked.asset_materializations_for_node("ensemble_candidate")
        assert len(registry.list(role="ensemble")) == 1 and registry.production() == production

    runner = CliRunner()
    listed = runner.invoke(main, ["models", "list"])
    assert listed.exit_code == 0 and production in listed.output and "production" in listed.output
    shown = runner.invoke(main, ["models", "show", production])
    assert shown.exit_code == 0 and "gate min_oos_ic" in shown.output and "member sklearn_ridge" in shown.output
    again = runner.invoke(main, ["models", "promote", production])
    assert again.exit_code != 0 and "already production" in str(again.exception)
    rollback = runner.invoke(main, ["models", "rollback"])
    assert rollback.exit_code != 0 and "no earlier production model" in str(rollback.exception)
