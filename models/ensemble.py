"""Stacking ensemble over the learner family, fitted on out-of-fold predictions only.

Each member's prediction is divided by a **scale** (the standard deviation of its
out-of-fold predictions) so members speak in comparable units, then combined with
non-negative weights: ``score = Σ w_f · pred_f / scale_f`` with ``Σ w_f = 1``. The
weights come from a non-negative least-squares fit (scikit-learn
``LinearRegression(positive=True)``) of the label on the OOF predictions, both
standardised across symbols within each timestamp (the cross-section IC measures); the equal-weight
ensemble is the baseline it is reported against. Scoring is row-wise, so one symbol
scores the same alone or within its cross-section (serving parity).

The ensemble's own out-of-sample series is walk-forward too (:func:`stacked_oof`): the
weights used on fold *k* are fitted on the OOF predictions of folds before *k* only
(fold 0 uses equal weights), so reported ensemble metrics contain no fitted weight
that has seen its test block.

Example:
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=2000)
    >>> oof = pl.DataFrame({"event_timestamp": np.arange(2000) // 20, "label_fwd_ret_4": y,
    ...                     "pred_good": y + rng.normal(size=2000), "pred_noise": rng.normal(size=2000)})
    >>> w, _ = stack_weights(oof, ["good", "noise"], label="label_fwd_ret_4")
    >>> w["good"] > 0.9 and w["noise"] < 0.1
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl


def member_scales(oof: pl.DataFrame, families: Sequence[str]) -> dict[str, float]:
    """Standard deviation of each member's OOF predictions (1.0 when undefined)."""
    out = {}
    for f in families:
        sd = oof[f"pred_{f}"].drop_nulls().drop_nans().std()
        out[f] = float(sd) if sd is not None and np.isfinite(sd) and sd > 0 else 1.0
    return out


def stack_weights(oof: pl.DataFrame, families: Sequence[str], *, label: str,
                  scales: Mapping[str, float] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """Non-negative stacking weights (summing to 1) and the scales they apply to.

    Falls back to equal weights when every fitted weight is zero (no member helps).
    """
    from sklearn.linear_model import LinearRegression

    scales = dict(scales) if scales is not None else member_scales(oof, families)
    cols = [f"pred_{f}" for f in families]
    data = oof.select("event_timestamp", *cols, label).drop_nulls().drop_nans()
    if data.height < 10 * len(families):
        return equal_weights(families), scales
    # The models are judged by cross-sectional IC, so the meta-learner fits what IC measures: members'
    # scores and the label standardised across symbols within each timestamp (market moves drop out).
    zscored = data.select(_xs_z(c) for c in (*cols, label)).drop_nulls().drop_nans()
    x = zscored.select(cols).to_numpy()
    y = zscored[label].to_numpy()
    meta = LinearRegression(positive=True, fit_intercept=False).fit(x, y)
    coef = np.clip(meta.coef_, 0.0, None)
    if coef.sum() <= 0:
        return equal_weights(families), scales
    return {f: float(c / coef.sum()) for f, c in zip(families, coef, strict=True)}, scales


def _xs_z(column: str) -> pl.Expr:
    col = pl.col(column)
    return ((col - col.mean().over("event_timestamp")) / col.std().over("event_timestamp")).alias(column)


def equal_weights(families: Sequence[str]) -> dict[str, float]:
    return dict.fromkeys(families, 1.0 / len(families))


def combine(preds: Mapping[str, np.ndarray], weights: Mapping[str, float], scales: Mapping[str, float]) -> np.ndarray:
    """``Σ w_f · pred_f / scale_f`` over the members with a weight."""
    total = None
    for family, w in weights.items():
        if w == 0:
            continue
        part = w * np.asarray(preds[family], dtype=np.float64) / scales[family]
        total = part if total is None else total + part
    if total is None:
        raise ValueError("ensemble: no member has a weight")
    return total


def stacked_oof(oof: pl.DataFrame, families: Sequence[str], *, label: str,
                first_scales: Mapping[str, float]) -> pl.DataFrame:
    """Add ``pred_ensemble`` (walk-forward stacking) and ``pred_equal`` (equal weights) to the OOF frame.

    ``first_scales`` scale fold 0, which has no earlier OOF predictions (e.g. the spread
    of the members' in-sample predictions on fold 0's training window).
    """
    parts = []
    for fold in sorted(oof["fold"].unique().to_list()):
        past = oof.filter(pl.col("fold") < fold)
        here = oof.filter(pl.col("fold") == fold)
        if past.is_empty():
            weights, scales = equal_weights(families), dict(first_scales)
        else:
            weights, scales = stack_weights(past, families, label=label)
        preds = {f: here[f"pred_{f}"].to_numpy() for f in families}
        parts.append(here.with_columns(
            pred_ensemble=pl.Series(combine(preds, weights, scales)),
            pred_equal=pl.Series(combine(preds, equal_weights(families), scales)),
        ))
    return pl.concat(parts).sort("event_timestamp", "symbol")


@dataclass
class Ensemble:
    """Fitted members plus stacking weights; ``predict`` takes the feature matrix the members take."""

    members: dict[str, Any]
    weights: dict[str, float]
    scales: dict[str, float]
    feature_names: list[str] = field(default_factory=list)

    @property
    def context(self) -> int:
        """History rows per symbol the ensemble's sequence members read (0 if none)."""
        return max((int(getattr(m, "context", 0) or 0) for f, m in self.members.items() if self.weights.get(f)), default=0)

    def member_predictions(self, x: np.ndarray, *, groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return {f: np.asarray(m.predict(x, groups=groups), dtype=np.float64) for f, m in self.members.items() if self.weights.get(f)}

    def predict(self, x: np.ndarray, *, groups: np.ndarray | None = None) -> np.ndarray:
        return combine(self.member_predictions(x, groups=groups), self.weights, self.scales)
