"""Training assets: Feast training frame → walk-forward OOF → evaluation (gated) → candidate → production.

Working files of the latest run live under ``$ALPHALINE_HOME/models/latest/``; the
tear sheet goes to ``reports/<date>/backtest/``; models go to the BentoML store.
The gates are blocking checks on ``model_evaluation`` (``checks.py``): when one
fails, no candidate is registered and production is untouched.
"""


import datetime as dt
import json
import pickle
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl

from models import data as training_data
from models.cpcv import CPCVConfig, run_cpcv
from models.evaluation import book_size_walk_forward, factor_report, research_inputs
from models.explain import importance_table
from models.performance import periods_per_year
from models.registry import PromotionRefused
from models.search import read_rigour
from models.tearsheet import equal_weight_returns, write_tearsheet
from models.training import (
    CrossValidation,
    Evaluation,
    candidate_metadata,
    cross_validate,
    evaluate_run,
    fit_candidate,
    register_candidate,
    shap_importance,
)
from orchestration.defs.training.metadata import cpcv_metadata, evaluation_metadata, learner_table, rounded
from orchestration.resources import DataQualityResource, FeatureStoreResource, ModelsResource
from orchestration.warehouse.resource import WarehouseResource

GROUP = "training"
FEATURE_ASSETS = [dg.AssetKey("bar_features"), dg.AssetKey("bar_labels"), dg.AssetKey("feast_registry")]
FRAME, CV, EVALUATION, CANDIDATE = "frame.parquet", "cv.pkl", "evaluation.pkl", "candidate.json"
GATE_INPUTS = "gate_inputs.json"  # the few numbers the gate checks read (they need not unpickle the OOF frame)


def _path(models: ModelsResource, name: str) -> Path:
    models.workdir.mkdir(parents=True, exist_ok=True)
    return models.workdir / name


def _load(models: ModelsResource, name: str):
    path = _path(models, name)
    if not path.exists():
        raise training_data.TrainingDataError(f"{path}: missing (materialize the upstream training assets first)")
    return pickle.loads(path.read_bytes())


def _save(models: ModelsResource, name: str, obj: object) -> None:
    tmp = _path(models, name + ".tmp")
    tmp.write_bytes(pickle.dumps(obj))
    tmp.replace(_path(models, name))


def _config(models: ModelsResource, features: FeatureStoreResource):
    from trader.market_hours import active_profile

    return models.config(periods_per_year(features.timeframe, active_profile().calendar))  # crypto: 96 bars × 365 days


@dg.asset(group_name=GROUP, deps=FEATURE_ASSETS, kinds={"feast", "polars"})
def training_frame(context: dg.AssetExecutionContext, features: FeatureStoreResource, models: ModelsResource) -> dg.MaterializeResult:
    """Features as of each bar's close from Feast's point-in-time join, plus labels; built once per retrain."""
    start, end = _window(features, models)
    frame = training_data.build_training_frame(features.store(), features.offline, label=models.label, start=start, end=end)
    if models.holdout_sessions:
        # The last rows' labels look `horizon` bars ahead, into the held-out session: purge them too.
        times = frame["event_timestamp"].unique().sort()
        frame = frame.filter(pl.col("event_timestamp") < times[-training_data.label_horizon(models.label)])
    training_data.save_frame(frame, _path(models, FRAME))
    times = frame["event_timestamp"]
    return dg.MaterializeResult(metadata={
        "rows": frame.height, "symbols": frame["symbol"].n_unique(), "timestamps": times.n_unique(),
        "start": times.min().isoformat(), "end": times.max().isoformat(), "label": models.label,
        "fingerprint": training_data.fingerprint(frame), "path": dg.MetadataValue.path(str(_path(models, FRAME))),
    })


def _zone() -> str:
    """Where a session's date is read: New York, or UTC for crypto (the 24/7 calendar's days)."""
    from trader.market_hours import active_profile

    return active_profile().zone


def _window(features: FeatureStoreResource, models: ModelsResource) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``[start, end)`` of the sessions to train on: the last ``train_sessions`` before the ``holdout_sessions``."""
    if not models.train_sessions and not models.holdout_sessions:
        return None, None
    spine = pl.scan_parquet(features.offline / "bars.parquet").select(
        pl.col("event_timestamp").dt.convert_time_zone(_zone()).dt.date().alias("d"))
    days = spine.unique().sort("d").collect()["d"].to_list()
    kept = days[: len(days) - models.holdout_sessions] if models.holdout_sessions else days
    if not kept:
        raise training_data.TrainingDataError(f"holdout_sessions={models.holdout_sessions}: leaves no session to train on")
    first = kept[-models.train_sessions] if models.train_sessions and len(kept) > models.train_sessions else kept[0]
    zone = ZoneInfo(_zone())
    start = dt.datetime.combine(first, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(kept[-1] + dt.timedelta(days=1), dt.time(), tzinfo=zone).astimezone(dt.UTC) if models.holdout_sessions else None
    return start, end


@dg.asset(group_name=GROUP, deps=[training_frame], kinds={"xgboost", "scikitlearn", "pytorch"})
def walk_forward_predictions(context: dg.AssetExecutionContext, features: FeatureStoreResource, models: ModelsResource) -> dg.MaterializeResult:
    """Purged walk-forward CV of every learner (out-of-fold predictions) and the shuffled-label sentinel."""
    config = _config(models, features)
    frame = training_data.load_frame(_path(models, FRAME))
    cv = cross_validate(frame, config, log=context.log.info)
    _save(models, CV, cv)
    meta: dict[str, object] = {"folds": len(cv.walk_forward.folds), "sentinel_ic": rounded(cv.sentinel_ic)}
    for family in config.walk_forward.families:
        meta[f"oos_ic/{family}"] = rounded(cv.walk_forward.summary(family)["ic"])
        meta[f"seconds/{family}"] = round(cv.walk_forward.seconds[family], 1)
    meta["fold_boundaries"] = dg.MetadataValue.json([f.record() for f in cv.walk_forward.folds])
    return dg.MaterializeResult(metadata=meta)


@dg.asset(group_name=GROUP, deps=[walk_forward_predictions], kinds={"polars"})
def model_evaluation(context: dg.AssetExecutionContext, features: FeatureStoreResource, models: ModelsResource,
                     warehouse: WarehouseResource, quality: DataQualityResource) -> dg.MaterializeResult:
    """Stacked ensemble's OOF metrics (vs the oracle on synthetic data), costed backtest, tear sheet, gate values."""
    config = _config(models, features)
    cv: CrossValidation = _load(models, CV)
    bars, oracle = _bars_and_oracle(warehouse, features, cv)
    weigh = None
    if models.backtest_optimizer != "none":
        from orchestration.portfolio import trader_weigh

        weigh = trader_weigh(models.backtest_optimizer, score_horizon_bars=config.walk_forward.horizon)
    ev = evaluate_run(cv, config, bars=bars, oracle=oracle, weigh=weigh)
    for line in ev.report["warnings"]:
        context.log.warning(line)
    # Filed under the last session the evaluation saw (not today's date): the same data gives the same path.
    last_day = dt.datetime.fromisoformat(ev.report["window"]["end"]).astimezone(ZoneInfo(_zone())).date()
    folder = Path(quality.reports_dir) / last_day.isoformat() / "backtest"
    benchmark = equal_weight_returns(bars, ev.backtest.equity["ts"])
    # Every model the run tried, traded like the ensemble: the deflated Sharpe and PBO judge the pick among them.
    scored = ev.oof if ev.scored is None else ev.scored
    trials, ic_series = research_inputs(scored, bars, families=config.walk_forward.families,
                                        label=config.walk_forward.label, horizon=config.walk_forward.horizon, config=config.backtest,
                                        chosen=ev.backtest)
    factor = factor_report(scored, labels={int(c.rsplit("_", 1)[1]): c for c in scored.columns if c.startswith("label_fwd_ret_")},
                           horizon=config.walk_forward.horizon)
    search = read_rigour(models.search_dir / "best_params.json") or None
    cpcv = _cpcv(context, models, config) if models.cpcv else None
    sheet = write_tearsheet(ev.backtest, folder, periods_per_year=config.periods_per_year, benchmark=benchmark,
                            ic_by_horizon={int(h): v for h, v in ev.report["ic_decay"].items()}, title="Ensemble (out-of-fold) backtest",
                            ic_series=ic_series, trials=trials, factor=factor,
                            parameter_walk_forward=("k, names per side", book_size_walk_forward(
                                scored, bars, horizon=config.walk_forward.horizon, config=config.backtest,
                                periods_per_year=config.periods_per_year)), search=search, cpcv=cpcv)
    ev.report["tearsheet"] = str(sheet["summary"])
    if cpcv:
        ev.report["cpcv"] = cpcv
    if search:
        ev.report["search_rigour"] = search
    (folder / "evaluation.json").write_text(json.dumps(ev.report, indent=2, default=str))
    _save(models, EVALUATION, ev)
    _path(models, GATE_INPUTS).write_text(json.dumps(ev.evaluation, default=str))
    meta = evaluation_metadata(ev.report, passed=ev.passed, sheet=sheet)
    if cpcv:
        meta |= cpcv_metadata(cpcv)
    return dg.MaterializeResult(metadata=meta)


def _cpcv(context: dg.AssetExecutionContext, models: ModelsResource, config) -> dict:
    """Combinatorial purged CV of the learners on the training frame (``ModelsResource.cpcv``): the tear sheet's table."""
    began = time.perf_counter()
    frame = training_data.load_frame(_path(models, FRAME))
    cpcv_config = CPCVConfig(n_groups=models.cpcv_groups, n_test_groups=models.cpcv_test_groups, k=config.backtest.k,
                             periods_per_year=config.periods_per_year)
    result = run_cpcv(frame, config.walk_forward, cpcv_config, families=models.cpcv_families, log=context.log.info)
    summary = result.summary()
    summary["seconds"] = round(time.perf_counter() - began, 1)
    context.log.info(f"cpcv: {summary['splits']} splits, {summary['paths']} paths, {summary['seconds']} s; "
                     f"PBO across learners {summary.get('pbo', float('nan')):.2f}")
    return summary


def _bars_and_oracle(warehouse: WarehouseResource, features: FeatureStoreResource, cv: CrossValidation):
    oof = cv.walk_forward.oof
    lo, hi = oof["event_timestamp"].min(), oof["event_timestamp"].max()
    length = features.bar_length
    with warehouse.get_connection() as con:
        bars = con.read(
            # Adjusted for splits and dividends, like the features and labels: the backtest holds adjusted shares.
            "select symbol, ts, adj_open as open, adj_close as close, adj_volume as volume from marts.bars "
            "where timeframe = ? and ts between ? and ? order by ts, symbol",
            [features.timeframe, lo - length, hi],
        )
        oracle = None
        if con.table_exists("raw", "synthetic_oracle"):
            oracle = con.read(
                "select symbol, ts, expected_log_return as expected from raw.synthetic_oracle "
                "where horizon = ? and ts between ? and ?",
                [int(oof["label"].item(0).rsplit("_", 1)[1]), lo - length, hi],
            )
    bars = bars.with_columns(pl.col("ts").dt.convert_time_zone("UTC"))
    bars = bars.select("symbol", (pl.col("ts") + length).alias("ts"), "open", "close", pl.col("volume").cast(pl.Float64))
    if oracle is not None:
        oracle = oracle.select("symbol", (pl.col("ts").dt.convert_time_zone("UTC") + length).alias("event_timestamp"), "expected")
        oracle = oracle.with_columns(pl.col("event_timestamp").cast(oof["event_timestamp"].dtype))
    return bars.with_columns(pl.col("ts").cast(oof["event_timestamp"].dtype)), oracle


@dg.asset(group_name=GROUP, deps=[model_evaluation], kinds={"bentoml"})
def ensemble_candidate(context: dg.AssetExecutionContext, features: FeatureStoreResource, models: ModelsResource) -> dg.MaterializeResult:
    """Every learner refitted on the latest window, stacked, and registered as a candidate in the BentoML store."""
    config = _config(models, features)
    frame = training_data.load_frame(_path(models, FRAME))
    cv: CrossValidation = _load(models, CV)
    ev: Evaluation = _load(models, EVALUATION)
    ensemble, seconds, warnings, choice = fit_candidate(frame, ev.oof, config, log=context.log.info)
    meta = candidate_metadata(frame, cv, ev, config, fingerprint=training_data.fingerprint(frame))
    meta["final_fit_seconds"] = seconds
    meta["warnings"] += warnings
    meta["ensemble_choice"] = choice
    meta["shap_importance"] = shap_importance(ensemble, frame)
    tag = register_candidate(models.registry(), ensemble, meta, ev.oof if ev.scored is None else ev.scored)
    _path(models, CANDIDATE).write_text(json.dumps({"tag": tag}))
    return dg.MaterializeResult(metadata={"tag": tag, "weights": dg.MetadataValue.json({k: rounded(w) for k, w in ensemble.weights.items()}),
                                          "learners": dg.MetadataValue.md(learner_table(ev.report["models"], ensemble.weights)),
                                          "warnings": dg.MetadataValue.json(meta["warnings"]), "ensemble_choice": choice,
                                          "shap_importance": dg.MetadataValue.md(importance_table(meta["shap_importance"])),
                                          **{f"final_fit_seconds/{k}": round(v, 1) for k, v in seconds.items()}})


@dg.asset(group_name=GROUP, deps=[ensemble_candidate], kinds={"bentoml"})
def production_model(context: dg.AssetExecutionContext, models: ModelsResource) -> dg.MaterializeResult:
    """Champion/challenger: the gated candidate becomes production only if it beats the champion out of sample."""
    registry = models.registry()
    tag = json.loads(_path(models, CANDIDATE).read_text())["tag"]
    champion = registry.production()
    try:
        comparison = registry.promote(tag, by="dagster")
    except PromotionRefused as refused:
        context.log.warning(str(refused))
        return dg.MaterializeResult(metadata={"production": champion or "none", "candidate": tag, "promoted": False,
                                              "reason": str(refused)})
    meta: dict[str, object] = {"production": tag, "candidate": tag, "promoted": True, "previous": champion or "none"}
    if comparison is not None:
        meta |= {"challenger_ic": rounded(comparison.challenger_ic), "champion_ic": rounded(comparison.champion_ic),
                 "common_timestamps": comparison.timestamps}
    return dg.MaterializeResult(metadata=meta)
