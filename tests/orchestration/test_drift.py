"""Drift checks: a feature shifted in the newest sessions fails ``feature_drift`` (blocking, ERROR) and names it;
the unshifted world does not block; predictions moved by shifted inputs fail ``prediction_drift``."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from feature_repo import store as fs
from orchestration.defs.features.assets import bar_features
from orchestration.defs.ops.checks import build_drift_checks, evaluate_feature_drift, evaluate_prediction_drift
from orchestration.defs.ops.drift import Thresholds, ks, measure, psi
from orchestration.resources import FeatureStoreResource, ModelsResource
from tests.serving.serving_world import build_world

SHIFTED = "vol_realized_26"


@pytest.fixture(scope="module")
def world_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six symbols, 29 sessions, a ridge ensemble in production trained on all of them (the newest 5 included)."""
    home = tmp_path_factory.mktemp("drift_home")
    build_world(home, lag_bars=0)
    return home


def _shift(home: Path, sessions: int, change) -> None:
    """Rewrite the offline store with ``change`` applied to the rows of the newest ``sessions`` sessions."""
    offline = fs.offline_dir(home)
    frame = fs.read_features(offline)
    day = pl.col("event_timestamp").dt.convert_time_zone("America/New_York").dt.date()
    days = frame.select(day.alias("d"))["d"].unique().sort()
    recent = day >= days[-sessions]
    fs.write_features(frame.with_columns([pl.when(recent).then(change(pl.col(c))).otherwise(pl.col(c)).alias(c)
                                          for c in ([SHIFTED] if change.__name__ == "one" else frame.columns[4:])]), offline)


@pytest.fixture
def shifted_home(world_home: Path, tmp_path: Path) -> Path:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(world_home, home)
    return home


def test_psi_and_ks_are_zero_for_the_same_sample_and_large_for_a_shift():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=10_000)
    assert psi(ref, ref) == pytest.approx(0.0) and ks(ref, ref) == 0.0
    assert psi(ref, ref + 2) > 1 and ks(ref, ref + 2) > 0.6
    assert measure("x", ref, ref[:100], Thresholds()) is None  # too few current values to judge


def test_ks_is_the_exact_two_sample_statistic():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(2)
    for a, b in [(rng.normal(size=3000), rng.normal(0.1, size=700)), (rng.integers(0, 5, 2000), rng.integers(0, 6, 500))]:
        assert ks(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)


def test_a_feature_constant_through_each_session_is_judged_against_its_own_training_weeks():
    rng = np.random.default_rng(3)
    per_session = lambda n: np.repeat(rng.normal(size=n), 130)  # noqa: E731 (one value per session, 130 rows each)
    reference, current = per_session(60), per_session(5)
    weeks = [reference[i:i + 650] for i in range(0, len(reference), 650)]
    alone = measure("prev_session_return", reference, current, Thresholds())
    judged = measure("prev_session_return", reference, current, Thresholds(), weeks=weeks)
    assert alone.level == "block"  # five values against sixty always look "shifted"...
    assert judged.level != "block" and judged.natural_psi > 1  # ...and so did every week the model trained on
    shifted = measure("prev_session_return", reference, current + 5, Thresholds(), weeks=weeks)
    assert shifted.level == "block"


def test_feature_drift_on_the_unshifted_world_does_not_block(world_home):
    result = evaluate_feature_drift(fs.offline_dir(world_home), ModelsResource(home=str(world_home)), Thresholds(), 5)
    assert result.passed or result.severity is dg.AssetCheckSeverity.WARN, result.description
    assert "xs_mktregime" not in result.description and "sess_" not in result.description


def test_feature_drift_fails_blocking_on_a_shifted_feature_and_names_it(shifted_home):
    def one(col: pl.Expr) -> pl.Expr:
        return col * 3

    _shift(shifted_home, 5, one)
    result = evaluate_feature_drift(fs.offline_dir(shifted_home), ModelsResource(home=str(shifted_home)), Thresholds(), 5)
    assert not result.passed and result.severity is dg.AssetCheckSeverity.ERROR
    assert "shifted past the blocking threshold" in result.description
    assert result.description.split(": ")[2].startswith(f"{SHIFTED} PSI ")  # the worst first
    # Configured thresholds decide: the same shift only warns when blocking starts higher up.
    lenient = Thresholds(psi_warn=0.1, psi_block=50, ks_warn=0.1, ks_block=1.0)
    warned = evaluate_feature_drift(fs.offline_dir(shifted_home), ModelsResource(home=str(shifted_home)), lenient, 5)
    assert not warned.passed and warned.severity is dg.AssetCheckSeverity.WARN


def test_prediction_drift_fails_when_every_input_moves(shifted_home):
    unshifted = evaluate_prediction_drift(fs.offline_dir(shifted_home), ModelsResource(home=str(shifted_home)), Thresholds(), 5)
    assert unshifted.passed, unshifted.description

    def every(col: pl.Expr) -> pl.Expr:
        return col * 4 + 1

    _shift(shifted_home, 5, every)
    result = evaluate_prediction_drift(fs.offline_dir(shifted_home), ModelsResource(home=str(shifted_home)), Thresholds(), 5)
    assert not result.passed and result.severity is dg.AssetCheckSeverity.ERROR, result.description
    assert result.description.startswith("scores of alphaline_ensemble:")


def test_drift_checks_run_in_dagster_on_bar_features_and_fail_its_run(shifted_home):
    def one(col: pl.Expr) -> pl.Expr:
        return col * 3

    _shift(shifted_home, 5, one)
    checks = build_drift_checks(Thresholds(), 5)
    from orchestration.warehouse.resource import WarehouseResource

    resources = {"features": FeatureStoreResource(home=str(shifted_home)), "models": ModelsResource(home=str(shifted_home)),
                 "warehouse": WarehouseResource(location=str(shifted_home / "warehouse.duckdb"))}  # bar_features' own; not run
    result = dg.materialize([bar_features, *checks], resources=resources, raise_on_error=False,
                            selection=dg.AssetSelection.checks_for_assets(bar_features))
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"feature_drift", "prediction_drift"}
    assert not evaluations["feature_drift"].passed and evaluations["feature_drift"].severity is dg.AssetCheckSeverity.ERROR
    assert not result.success  # blocking + ERROR: downstream assets (feast_registry, online_features) would not run


def test_drift_checks_run_after_every_intraday_materialisation_and_never_in_training(settings):
    from orchestration.definitions import build_definitions
    from orchestration.defs.features.schedules import INTRADAY_JOB
    from orchestration.defs.training.schedules import TRAINING_JOB

    defs = build_definitions(settings)

    def checks_of(name: str) -> set[str]:
        job = defs.resolve_job_def(name)
        return {f"{k.asset_key.to_user_string()}:{k.name}" for k in job.asset_layer.asset_graph.asset_check_keys
                if job.asset_check_selection is None or k in job.asset_check_selection}

    drift = {"bar_features:feature_drift", "bar_features:prediction_drift"}
    assert drift <= checks_of(INTRADAY_JOB)
    assert not drift & checks_of(TRAINING_JOB)  # the remedy for drift is never blocked by it
