"""Drift checks on ``bar_features``: run after every materialisation of the features (the intraday job's among them).

* ``feature_drift`` — each model feature's PSI and KS, newest ``ALPHALINE_DRIFT_WINDOW_SESSIONS`` sessions
  against the production ensemble's training window (:mod:`orchestration.defs.ops.drift`);
* ``prediction_drift`` — the production ensemble's scores on the same newest sessions against its scores on the
  newest :data:`PREDICTION_REFERENCE_SESSIONS` sessions of its training window (the same model on both sides, so
  only the inputs differ).

Each column is judged against the thresholds and against its natural level, the largest drift any run of
``window_sessions`` sessions inside the training window showed (:mod:`orchestration.defs.ops.drift`).
Both are *blocking*: past the blocking level they fail with ERROR severity and the run stops before
``feast_registry`` and ``online_features``, so serving keeps the last features the model can be trusted on
(and marks them stale when they age; the trader then sends nothing). Between the warn and block thresholds they
fail with WARN severity and nothing stops. Retraining — the remedy — runs in its own job and is never blocked.
With no production model there is nothing to compare against: the checks pass and say so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from feature_repo import FEATURE_NAMES
from feature_repo import store as feast_store
from orchestration.defs.features.assets import bar_features
from orchestration.defs.ops.drift import IGNORED_PREFIXES, Drift, Thresholds, measure, summary, worst_level
from orchestration.resources import FeatureStoreResource, ModelsResource

EXCHANGE_TZ = "America/New_York"
#: Sessions at the end of the training window whose scores are the prediction-drift reference.
PREDICTION_REFERENCE_SESSIONS = 20
_SEVERITY = {"warn": dg.AssetCheckSeverity.WARN, "block": dg.AssetCheckSeverity.ERROR}


@lru_cache(maxsize=1)
def _read(offline: str, _version: int) -> pl.DataFrame:
    return feast_store.read_features(Path(offline)).filter(~pl.col("warmup"))


def warm_features(offline: Path) -> pl.DataFrame:
    """Warm offline feature rows with their New York session date (read once per version of the spine)."""
    spine = feast_store.spine_path(offline)
    frame = _read(str(offline), spine.stat().st_mtime_ns if spine.exists() else 0)
    return frame.with_columns(session=pl.col("event_timestamp").dt.convert_time_zone(EXCHANGE_TZ).dt.date())


def newest_sessions(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """The rows of the newest ``n`` sessions of ``frame``."""
    days = frame["session"].unique().sort()
    return frame.filter(pl.col("session") >= days[max(0, days.len() - n)]) if days.len() else frame


def weeks(frame: pl.DataFrame, n: int) -> list[pl.DataFrame]:
    """``frame`` cut into consecutive runs of ``n`` sessions (whole runs only): the windows a natural level is taken on."""
    days = frame["session"].unique().sort()
    return [frame.filter(pl.col("session").is_in(days[i:i + n].implode())) for i in range(0, days.len() - n + 1, n)]


def production(models: ModelsResource) -> tuple[str, dict[str, Any]] | None:
    """The production ensemble's tag and metadata, or ``None``."""
    registry = models.registry()
    tag = registry.production()
    return (tag, registry.info(tag)["metadata"]) if tag else None


def _window(meta: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    w = meta["training_window"]
    return dt.datetime.fromisoformat(w["start"]), dt.datetime.fromisoformat(w["end"])


def _model_features(meta: dict[str, Any]) -> list[str]:
    names = meta.get("features") or list(FEATURE_NAMES)
    return [n for n in names if n in FEATURE_NAMES and not n.startswith(IGNORED_PREFIXES)]


def _result(drifts: Sequence[Drift], what: str, thresholds: Thresholds, **meta: Any) -> dg.AssetCheckResult:
    level = worst_level(list(drifts))
    text = summary(list(drifts), what, thresholds)
    table = [{"column": d.name, "psi": round(d.psi, 4), "ks": round(d.ks, 4), "level": d.level}
             for d in sorted(drifts, key=lambda d: -d.psi)[:15]]
    metadata = {"message": dg.MetadataValue.text(text), "worst": dg.MetadataValue.json(table),
                "max_psi": max((d.psi for d in drifts), default=0.0), "max_ks": max((d.ks for d in drifts), default=0.0),
                **{k: dg.MetadataValue.text(str(v)) for k, v in meta.items()}}
    if level == "ok":
        return dg.AssetCheckResult(passed=True, description=text, metadata=metadata)
    return dg.AssetCheckResult(passed=False, severity=_SEVERITY[level], description=text, metadata=metadata)


def _skip(reason: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, description=reason, metadata={"message": dg.MetadataValue.text(reason)})


def evaluate_feature_drift(offline: Path, models: ModelsResource, thresholds: Thresholds, window_sessions: int) -> dg.AssetCheckResult:
    """The ``feature_drift`` check's result (callable without Dagster for tests and drills)."""
    found = production(models)
    if found is None:
        return _skip("no production model yet: no training window to compare the features with")
    tag, meta = found
    start, end = _window(meta)
    frame = warm_features(offline)
    reference = frame.filter(pl.col("event_timestamp").is_between(start, end))
    current = newest_sessions(frame, window_sessions)
    names = _model_features(meta)
    runs = weeks(reference, window_sessions)
    drifts = [d for n in names if (d := measure(n, reference[n].to_numpy(), current[n].to_numpy(), thresholds,
                                                weeks=[w[n].to_numpy() for w in runs]))]
    if not drifts:
        return _skip(f"too few rows to judge (training window {reference.height}, newest sessions {current.height})")
    return _result(drifts, f"features vs the training window of {tag}", thresholds,
                   reference=f"{start.isoformat()} .. {end.isoformat()} ({reference.height} rows)",
                   current=f"{current['session'].min()} .. {current['session'].max()} ({current.height} rows)")


def _scores(ensemble: Any, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame``'s session and the ensemble's score for each row."""
    from models.data import matrix, symbol_codes

    ordered = frame.sort("symbol", "event_timestamp")  # sequence members read each symbol's rows in time order
    score = ensemble.predict(matrix(ordered, ensemble.feature_names), groups=symbol_codes(ordered))
    return ordered.select("session").with_columns(score=pl.Series(score))


def evaluate_prediction_drift(offline: Path, models: ModelsResource, thresholds: Thresholds, window_sessions: int) -> dg.AssetCheckResult:
    """The ``prediction_drift`` check's result."""
    found = production(models)
    if found is None:
        return _skip("no production model yet: no predictions to compare")
    tag, meta = found
    start, end = _window(meta)
    frame = warm_features(offline)
    reference = newest_sessions(frame.filter(pl.col("event_timestamp").is_between(start, end)), PREDICTION_REFERENCE_SESSIONS)
    current = newest_sessions(frame, window_sessions)
    drift = None
    if reference.height and current.height:
        ensemble = models.registry().load_ensemble(tag)
        ref, cur = _scores(ensemble, reference), _scores(ensemble, current)
        drift = measure("score", ref["score"].to_numpy(), cur["score"].to_numpy(), thresholds,
                        weeks=[w["score"].to_numpy() for w in weeks(ref, window_sessions)])
    if drift is None:
        return _skip(f"too few rows to judge (training window tail {reference.height}, newest sessions {current.height})")
    return _result([drift], f"scores of {tag} vs its training window's last {PREDICTION_REFERENCE_SESSIONS} sessions",
                   thresholds, reference=f"{reference['session'].min()} .. {reference['session'].max()} ({reference.height} rows)",
                   current=f"{current['session'].min()} .. {current['session'].max()} ({current.height} rows)")


def build_drift_checks(thresholds: Thresholds, window_sessions: int) -> list[dg.AssetChecksDefinition]:
    """The two drift checks with the configured thresholds."""
    limits = (f"warn from PSI {thresholds.psi_warn} / KS {thresholds.ks_warn}, "
              f"block from PSI {thresholds.psi_block} / KS {thresholds.ks_block}")

    @dg.asset_check(asset=bar_features, name="feature_drift", blocking=True,
                    description=f"Each model feature, newest {window_sessions} sessions vs the production model's "
                                f"training window: {limits}.")
    def feature_drift(features: FeatureStoreResource, models: ModelsResource) -> dg.AssetCheckResult:
        return evaluate_feature_drift(features.offline, models, thresholds, window_sessions)

    @dg.asset_check(asset=bar_features, name="prediction_drift", blocking=True,
                    description=f"The production ensemble's scores, newest {window_sessions} sessions vs the end of "
                                f"its training window: {limits}.")
    def prediction_drift(features: FeatureStoreResource, models: ModelsResource) -> dg.AssetCheckResult:
        return evaluate_prediction_drift(features.offline, models, thresholds, window_sessions)

    return [feature_drift, prediction_drift]
