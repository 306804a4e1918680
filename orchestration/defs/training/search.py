"""``learner_search``: Optuna hyper-parameter search on the purged walk-forward CV (in the training group, run by its own job).

Run on demand (``learner_search_job`` in the UI, or ``alphaline models search``): it reads the
training frame of the latest retrain, tunes ``search_families`` for ``search_trials`` more
trials each (the studies resume in ``$ALPHALINE_HOME/models/search/optuna.db``), and writes the
best parameters to ``best_params.json``, which the next retrain starts from. How much of the best
trial's edge is selection luck is measured over the trials on the same frame: the deflated Sharpe
ratio of the best and the probability of backtest overfitting across them (``search_rigour.json``,
this asset's metadata, and the next tear sheet's research-rigour table).
"""

import math

import dagster as dg

from models import data as training_data
from models.search import search, write_best
from orchestration.defs.training.assets import FRAME, _config, _path, training_frame
from orchestration.resources import FeatureStoreResource, ModelsResource

SEARCH_JOB = "learner_search_job"


@dg.asset(group_name="training", deps=[training_frame], kinds={"optuna"})
def learner_search(context: dg.AssetExecutionContext, features: FeatureStoreResource, models: ModelsResource) -> dg.MaterializeResult:
    """Best learner parameters by mean out-of-fold IC on the purged walk-forward CV (Optuna, TPE, seeded)."""
    frame_path = _path(models, FRAME)
    if not frame_path.exists():
        raise training_data.TrainingDataError(f"{frame_path}: missing (run training_job once first: the search reuses its frame)")
    frame = training_data.load_frame(frame_path)
    training = _config(models, features)
    config = training.walk_forward
    results = [search(frame, config, family=family, trials=models.search_trials, storage=models.search_dir / "optuna.db",
                      periods_per_year=training.periods_per_year, log=context.log.info) for family in models.search_families]
    write_best(results, models.search_dir / "best_params.json")
    meta: dict[str, object] = {"study": dg.MetadataValue.path(str(models.search_dir / "optuna.db"))}
    for r in results:
        meta[f"best_ic/{r.family}"] = round(r.best_ic, 5)
        meta[f"best_params/{r.family}"] = dg.MetadataValue.json(r.best_params)
        meta[f"trials/{r.family}"] = r.trials
        for name in ("dsr", "pbo", "sharpe", "dsr_benchmark_sharpe"):
            if math.isfinite(float(r.rigour.get(name, math.nan))):
                meta[f"{name}/{r.family}"] = round(float(r.rigour[name]), 4)
        if r.rigour:
            meta[f"rigour_trials/{r.family}"] = int(r.rigour["n_trials"])
    return dg.MaterializeResult(metadata=meta)


learner_search_job = dg.define_asset_job(
    SEARCH_JOB, selection=dg.AssetSelection.assets(learner_search),
    description="Optuna search of learner parameters on the purged walk-forward CV; the next retrain starts from the best ones.",
)
