"""Walk-forward training: out-of-fold predictions for every learner, then the final fits.

:func:`run_walk_forward` splits the frame's distinct timestamps with
:class:`~models.cv.PurgedWalkForward` (purge and embargo default to the label's
horizon), fits each learner family on each fold's training rows and predicts the
fold's test rows. Those **out-of-fold** (OOF) predictions are the only thing the
stacking ensemble and every reported out-of-sample metric see. Each fold also scores
the last stretch of its own training window (as long as its test block) to give the
in-sample IC that the overfitting gate compares with.

Sequence learners (``context > 0``) get the rows of the ``context`` timestamps before
the test block as history when they predict it: those features were known before the
test block began and carry no labels, so nothing leaks.

Example:
    >>> cfg = WalkForwardConfig(families=("sklearn_ridge",), n_folds=3)
    >>> cfg.cv(n_timestamps=1_000).purge, cfg.cv(n_timestamps=1_000).min_train
    (4, 400)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from feature_repo import FEATURE_NAMES
from models.cv import Fold, PurgedWalkForward
from models.data import DEFAULT_LABEL, label_horizon, matrix, symbol_codes, target
from models.ensemble import degenerate_members
from models.learners import LEARNERS
from models.metrics import ic_summary

DEFAULT_FAMILIES = ("sklearn_ridge", "sklearn_hgb", "xgboost", "lightgbm", "torch_mlp", "torch_tcn")


class WalkForwardConfig(BaseModel):
    """What to train and how to split. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = DEFAULT_LABEL
    target: Literal["raw", "demeaned", "rank"] = Field(
        default="demeaned", description="What learners fit (models.data.target); metrics always use the raw label.")
    families: tuple[str, ...] = DEFAULT_FAMILIES
    n_folds: int = Field(default=4, ge=2)
    min_train_share: float = Field(default=0.4, gt=0.0, lt=1.0, description="Share of timestamps before the first test block.")
    max_train: int | None = Field(default=None, ge=1, description="Rolling window of at most this many timestamps (None: expanding).")
    purge: int | None = Field(default=None, ge=0, description="Default: the label's horizon.")
    embargo: int | None = Field(default=None, ge=0, description="Default: the label's horizon.")
    params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Learner parameters by family.")

    @field_validator("families")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in v if f not in LEARNERS]
        if unknown or not v:
            raise ValueError(f"unknown learner family {unknown or '(none given)'}; known: {', '.join(sorted(LEARNERS))}")
        return v

    @field_validator("label")
    @classmethod
    def _label(cls, v: str) -> str:
        label_horizon(v)
        return v

    @property
    def horizon(self) -> int:
        return label_horizon(self.label)

    def cv(self, *, n_timestamps: int) -> PurgedWalkForward:
        h = self.horizon
        purge = max(h, self.purge if self.purge is not None else h)  # never shorter than the label's reach
        embargo = self.embargo if self.embargo is not None else h
        return PurgedWalkForward(
            n_folds=self.n_folds, purge=purge, embargo=embargo,
            min_train=max(1, int(n_timestamps * self.min_train_share)), max_train=self.max_train,
        )

    def learner(self, family: str) -> Any:
        return LEARNERS[family](params=dict(self.params.get(family, {})))


@dataclass
class WalkForwardResult:
    """OOF predictions (``pred_<family>`` columns), per-fold metrics, fold boundaries and timings."""

    oof: pl.DataFrame
    folds: list[Fold]
    fold_metrics: list[dict[str, Any]]
    in_sample_scale: dict[str, list[float]]  # per family, per fold: std of in-sample predictions
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self, family: str) -> dict[str, float]:
        return ic_summary(self.oof, score=f"pred_{family}", label=self.label, time="event_timestamp")

    @property
    def label(self) -> str:
        return str(self.oof["label"].item(0)) if "label" in self.oof.columns else ""

    def in_sample_ic(self, family: str) -> float:
        values = [m["is_ic"] for m in self.fold_metrics if m["family"] == family and np.isfinite(m["is_ic"])]
        return float(np.mean(values)) if values else float("nan")


def context_of(model: Any) -> int:
    """Rows of history per symbol a learner reads before the row it predicts (0 for row-wise learners)."""
    return int(getattr(model, "context", 0) or 0)


def run_walk_forward(
    frame: pl.DataFrame, config: WalkForwardConfig, *, log: Callable[[str], None] = lambda _: None,
) -> WalkForwardResult:
    """Fit and predict every (fold, family); the frame must be sorted by time then symbol."""
    times = frame["event_timestamp"].unique().sort()
    folds = config.cv(n_timestamps=times.len()).split(times.to_list())
    index = times.search_sorted(frame["event_timestamp"]).to_numpy()
    x, y, groups = matrix(frame), target(frame, config.label, config.target), symbol_codes(frame)
    preds = {f: np.full(frame.height, np.nan) for f in config.families}
    fold_col = np.full(frame.height, -1, dtype=np.int64)
    metrics: list[dict[str, Any]] = []
    scales: dict[str, list[float]] = {f: [] for f in config.families}
    seconds = dict.fromkeys(config.families, 0.0)
    for fold in folds:
        train = fold.train_mask(times.len())[index]
        test = (index >= fold.test_start_index) & (index < fold.test_end_index)
        fold_col[test] = fold.number
        width = fold.test_end_index - fold.test_start_index
        probe = train & (index >= fold.train_end_index - width)
        for family in config.families:
            began = time.perf_counter()
            model = config.learner(family).fit(x[train], y[train], feature_names=list(FEATURE_NAMES), groups=groups[train])
            lo = max(0, fold.test_start_index - context_of(model))
            window = (index >= lo) & (index < fold.test_end_index)
            out = model.predict(x[window], groups=groups[window])
            preds[family][test] = out[test[window]]
            is_lo = max(0, fold.train_end_index - width - context_of(model))
            is_window = train & (index >= is_lo)
            is_pred = model.predict(x[is_window], groups=groups[is_window])[probe[is_window]]
            seconds[family] += time.perf_counter() - began
            finite = is_pred[np.isfinite(is_pred)]
            scales[family].append(float(finite.std()) if finite.size else float("nan"))
            metrics.append(_fold_metrics(frame, family, fold, test, preds[family], probe, is_pred, config.label))
            log(f"fold {fold.number} {family}: oos ic {metrics[-1]['ic']:.4f}, is ic {metrics[-1]['is_ic']:.4f}")
    oof = frame.select("symbol", "event_timestamp", *[c for c in frame.columns if c.startswith("label_")]).with_columns(
        fold=pl.Series(fold_col), label=pl.lit(config.label), **{f"pred_{f}": pl.Series(p) for f, p in preds.items()},
    ).filter(pl.col("fold") >= 0)
    return WalkForwardResult(oof=oof, folds=folds, fold_metrics=metrics, in_sample_scale=scales, seconds=seconds)


def _fold_metrics(frame: pl.DataFrame, family: str, fold: Fold, test: np.ndarray, pred: np.ndarray,
                  probe: np.ndarray, is_pred: np.ndarray, label: str) -> dict[str, Any]:
    keys = frame.select("event_timestamp", label)
    oos = ic_summary(keys.filter(pl.Series(test)).with_columns(p=pl.Series(pred[test])), score="p", label=label, time="event_timestamp")
    ins = ic_summary(keys.filter(pl.Series(probe)).with_columns(p=pl.Series(is_pred)), score="p", label=label, time="event_timestamp")
    return {
        "family": family, "fold": fold.number, "ic": oos["ic"], "rank_ic": oos["rank_ic"], "icir": oos["icir"],
        "hit_rate": oos["hit_rate"], "timestamps": oos["timestamps"], "is_ic": ins["ic"],
    }


def fit_final(frame: pl.DataFrame, config: WalkForwardConfig, *, log: Callable[[str], None] = lambda _: None) -> tuple[dict[str, Any], dict[str, float]]:
    """Each family fitted on the most recent training window (all rows, or the last ``max_train`` timestamps)."""
    times = frame["event_timestamp"].unique().sort()
    if config.max_train is not None and times.len() > config.max_train:
        frame = frame.filter(pl.col("event_timestamp") >= times[-config.max_train])
    x, y, groups = matrix(frame), target(frame, config.label, config.target), symbol_codes(frame)
    members, seconds = {}, {}
    for family in config.families:
        began = time.perf_counter()
        members[family] = config.learner(family).fit(x, y, feature_names=list(FEATURE_NAMES), groups=groups)
        seconds[family] = time.perf_counter() - began
        log(f"final fit {family}: {seconds[family]:.1f} s")
    return members, seconds


def final_fit_health(members: dict[str, Any], frame: pl.DataFrame, config: WalkForwardConfig, *,
                     share: float = 0.1) -> dict[str, float]:
    """The final fits that are degenerate (:func:`models.ensemble.degenerate_members`) on the newest ``share`` of
    the frame's timestamps: what they would serve tomorrow. Reads no label."""
    times = frame["event_timestamp"].unique().sort()
    first = max(0, int(times.len() * (1 - share)))
    index = times.search_sorted(frame["event_timestamp"]).to_numpy()
    probe = index >= first
    preds = frame.select("event_timestamp").filter(pl.Series(probe))
    x, groups = matrix(frame), symbol_codes(frame)
    for family, model in members.items():
        window = index >= max(0, first - context_of(model))  # sequence learners read their history first
        out = np.asarray(model.predict(x[window], groups=groups[window]), dtype=np.float64)
        preds = preds.with_columns(pl.Series(f"pred_{family}", out[probe[window]]))
    return degenerate_members(preds, list(members))


def shuffle_labels(frame: pl.DataFrame, label: str, *, seed: int = 11) -> pl.DataFrame:
    """The label permuted across symbols within each timestamp: no cross-sectional information is left."""
    rng = np.random.default_rng(seed)
    keys = rng.random(frame.height)
    shuffled = (
        frame.select("event_timestamp", label).with_row_index("_row").with_columns(_k=pl.Series(keys))
        .with_columns(pl.col(label).sort_by("_k").over("event_timestamp").alias("_shuffled"))
        .sort("_row")["_shuffled"]
    )
    return frame.with_columns(shuffled.alias(label))
