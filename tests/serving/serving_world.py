"""A small Alphaline home for the serving tests and benchmark: Feast offline + online, a ridge ensemble in production.

Six synthetic symbols over 29 XNYS sessions of 15-minute bars, written and
materialised the way the ingest job does it (without Dagster or dbt, which the
pipeline tests cover). ``FFF`` stops :data:`LAG_BARS` bars before the others, so its
online features are stale against the rest of the universe (``lag_bars=0``: no laggard).
The production model is one ridge member (``context`` 0), registered and promoted
through the registry.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from feature_repo import FEATURE_NAMES, compute_features, compute_labels
from feature_repo import store as fs
from models.data import matrix
from models.ensemble import Ensemble
from models.learners import RidgeLearner
from models.registry import Registry
from tests.features.synthetic_bars import BAR, feature_bars

LABEL = "label_fwd_ret_4"
LAGGING = "FFF"
LAG_BARS = 6
ADMIN_TOKEN = "test-admin-token"
PASSED = [{"name": "min_oos_ic", "passed": True, "value": 0.05, "threshold": 0.01, "description": ""}]


@dataclass(frozen=True)
class World:
    home: Path
    features: pl.DataFrame  # offline features as written (with warmup flag)
    frame: pl.DataFrame  # training rows: non-warmup features joined with labels
    champion: str  # production ensemble tag

    @property
    def registry(self) -> Registry:
        return Registry(self.home)

    @property
    def symbols(self) -> list[str]:
        return sorted(self.features["symbol"].unique().to_list())

    @property
    def last_ts(self) -> dt.datetime:
        return self.features["event_timestamp"].max()


def build_world(home: Path, *, n_symbols: int = 6, first: dt.date = dt.date(2024, 6, 3),
                last: dt.date = dt.date(2024, 7, 12), lag_bars: int = LAG_BARS, variant: str = "local") -> World:
    """``variant="prod"``: Feast's registry and offline tables on PostgreSQL, online store on Redis (the environment's
    ``ALPHALINE_FEAST_REGISTRY_URL`` / ``ALPHALINE_FEAST_REDIS``)."""
    bars = feature_bars(n_symbols=n_symbols, first=first, last=last)
    if lag_bars:
        cut = bars.filter(pl.col("symbol") == LAGGING)["ts"].sort()[-lag_bars]
        bars = bars.filter((pl.col("symbol") != LAGGING) | (pl.col("ts") < cut))
    features = compute_features(bars, bar_length=BAR)
    labels = compute_labels(bars)
    offline = fs.offline_dir(home)
    store = fs.open_store(home, variant)
    fs.write_features(features, offline, tables=fs.offline_tables(store.config))
    fs.write_labels(labels, offline)
    fs.apply(store, offline, bar_length=BAR)
    fs.materialize(store, end=features["event_timestamp"].max() + dt.timedelta(seconds=1))
    frame = (features.filter(~pl.col("warmup")).join(labels, on=["symbol", "event_timestamp"])
             .drop_nulls(LABEL).sort("event_timestamp", "symbol"))
    registry = Registry(home)
    champion = register_ridge(registry, frame, alpha=10.0, skill=0.0)
    registry.promote(champion)
    return World(home=home, features=features, frame=frame, champion=champion)


def register_ridge(registry: Registry, frame: pl.DataFrame, *, alpha: float, skill: float) -> str:
    """A one-member (ridge) candidate; its OOF scores are its in-sample scores plus ``skill`` × label (for promotion)."""
    x, y = matrix(frame), frame[LABEL].to_numpy()
    member = RidgeLearner(params={"alpha": alpha}).fit(x, y, feature_names=list(FEATURE_NAMES))
    raw = member.predict(x)
    scale = float(np.std(raw)) or 1.0
    ensemble = Ensemble(members={"sklearn_ridge": member}, weights={"sklearn_ridge": 1.0},
                        scales={"sklearn_ridge": scale}, feature_names=list(FEATURE_NAMES))
    scores = raw / scale + skill * y / (np.std(y) or 1.0)
    oof = frame.select("symbol", "event_timestamp", LABEL).with_columns(
        fold=pl.lit(0), pred_ensemble=pl.Series(scores), pred_equal=pl.Series(scores))
    times = frame["event_timestamp"]
    meta = {"label": LABEL, "gates": PASSED, "gates_passed": True, "features": list(FEATURE_NAMES),
            "training_window": {"start": times.min().isoformat(), "end": times.max().isoformat(), "rows": frame.height},
            "oos_metrics": {"ensemble": {"ic": 0.05}}, "code_version": "test"}
    member_tag = registry.save_member(member, metadata={**meta, "family": "sklearn_ridge"})
    return str(registry.save_ensemble(ensemble, {"sklearn_ridge": member_tag}, metadata=meta, oof=oof))


def serving_env(home: Path) -> dict[str, str]:
    """Environment of a service over ``home`` (what ``python -m serving.serve`` sets)."""
    return {"ALPHALINE_HOME": str(home), "BENTOML_HOME": str(home / "bentoml"), "BENTOML_DO_NOT_TRACK": "true",
            "ALPHALINE_SERVING_ADMIN_TOKEN": ADMIN_TOKEN, "FEAST_USAGE": "False", "DO_NOT_TRACK": "1"}


@contextmanager
def in_process(home: Path, **extra: str) -> Iterator[None]:
    """This process's environment (plus ``extra`` variables) and BentoML model store pointed at ``home``; restored on exit."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    env = {**serving_env(home), **extra}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with BentoMLContainer.model_store.patch(ModelStore(str(home / "bentoml" / "models"))):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
