"""Stacking ensemble over the learner family, fitted on out-of-fold predictions only.

Each member's prediction is divided by a **scale** (the standard deviation of its
out-of-fold predictions) so members speak in comparable units, then combined with
non-negative weights: ``score = Σ w_f · pred_f / scale_f`` with ``Σ w_f = 1``. The
weights come from a non-negative least-squares fit (scikit-learn
``LinearRegression(positive=True)``) of the label on the OOF predictions, both
standardised across symbols within each timestamp (the cross-section IC measures), over the
members whose OOF IC is significantly positive, then shrunk halfway toward equal weights; the
equal-weight ensemble is the baseline it is reported against. Scoring is row-wise, so one symbol
scores the same alone or within its cross-section (serving parity).

The ensemble's own out-of-sample series is walk-forward too (:func:`stacked_oof`): the
weights used on fold *k* are fitted on the OOF predictions of folds before *k* only, so
reported ensemble metrics contain no fitted weight that has seen its test block. The first
fold is the stack's **burn-in**: nothing precedes it to fit weights on, so it gets equal
weights and is left out of the evaluation (:meth:`Stacked.evaluated`); the ensemble and every
member are compared on the folds where the stack existed.

No single member can bring the ensemble down: a member whose predictions are constant
or not finite on more than :data:`MAX_DEGENERATE_SHARE` of a block's timestamps (a tree
model early-stopped at one tree, a network that diverged) gets weight 0 on that block,
with a warning; elsewhere its non-finite values contribute 0 and a timestamp without
spread standardises to 0, so the meta-learner never sees an infinity.

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

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from models.metrics import degenerate_share, ic_by_time, ic_summary

#: A member whose predictions are constant or not finite on more than this share of the timestamps it scores
#: (e.g. a tree model early-stopped at one tree) ranks nothing there: it gets weight 0, with a warning.
MAX_DEGENERATE_SHARE = 0.2
#: A member joins the stack only if its out-of-fold IC is significantly positive (t-stat of the mean IC).
MIN_MEMBER_TSTAT = 2.0
#: How far the fitted stacking weights are pulled toward equal weights (0: not at all, 1: equal weights).
SHRINKAGE = 0.5
#: Contiguous time blocks of the earlier OOF predictions over which stacking is judged against its best member.
INNER_BLOCKS = 3
#: The stack replaces its best member only if its per-timestamp IC gain over it has at least this t-stat.
MIN_STACK_GAIN_TSTAT = 2.0


class EnsembleError(ValueError):
    """No member is fit to stack: every one is constant or non-finite on most timestamps."""


def member_scales(oof: pl.DataFrame, families: Sequence[str]) -> dict[str, float]:
    """Standard deviation of each member's finite OOF predictions (1.0 when undefined)."""
    out = {}
    for f in families:
        sd = oof[f"pred_{f}"].filter(oof[f"pred_{f}"].is_finite()).std()
        out[f] = float(sd) if sd is not None and np.isfinite(sd) and sd > 0 else 1.0
    return out


def degenerate_members(preds: pl.DataFrame, families: Sequence[str]) -> dict[str, float]:
    """``{family: share}`` of the members whose predictions are constant or non-finite on too many timestamps.

    Reads predictions only, never labels, so it may judge the very block it weights.
    """
    shares = {f: degenerate_share(preds, score=f"pred_{f}", time="event_timestamp") for f in families}
    return {f: share for f, share in shares.items() if share > MAX_DEGENERATE_SHARE}


def stack_weights(oof: pl.DataFrame, families: Sequence[str], *, label: str, scales: Mapping[str, float] | None = None,
                  exclude: Collection[str] = ()) -> tuple[dict[str, float], dict[str, float]]:
    """Non-negative stacking weights (summing to 1) and the scales they apply to.

    Members in ``exclude`` or degenerate in ``oof`` (:func:`degenerate_members`) get weight 0, and so do
    members whose OOF IC t-stat is below :data:`MIN_MEMBER_TSTAT` (if none passes, the best member alone).
    Falls back to equal weights over the others when every fitted weight is zero (no member helps).
    Whether the stack beats its best member is judged out of sample by :func:`stack_or_best`.

    Raises:
        EnsembleError: every member is excluded.
    """
    from sklearn.linear_model import LinearRegression

    scales = dict(scales) if scales is not None else member_scales(oof, families)
    healthy = _usable(families, exclude={*exclude, *degenerate_members(oof, families)})
    ics = {f: ic_summary(oof, score=f"pred_{f}", label=label, time="event_timestamp") for f in healthy}
    # Only members whose out-of-fold IC is significantly positive; if none is, the best one alone.
    usable = [f for f in healthy if ics[f]["ic_tstat"] >= MIN_MEMBER_TSTAT] or [max(healthy, key=lambda f: _finite(ics[f]["ic"]))]
    cols = [f"pred_{f}" for f in usable]
    data = oof.select("event_timestamp", *cols, label).filter(pl.col(label).is_finite())
    if len(usable) == 1 or data.height < 10 * len(usable):
        return equal_weights(families, usable=usable), scales
    # The models are judged by cross-sectional IC, so the meta-learner fits what IC measures: members'
    # scores and the label standardised across symbols within each timestamp (market moves drop out).
    zscored = data.select(_xs_z(c) for c in (*cols, label))
    meta = LinearRegression(positive=True, fit_intercept=False).fit(zscored.select(cols).to_numpy(), zscored[label].to_numpy())
    coef = np.clip(meta.coef_, 0.0, None)
    if coef.sum() <= 0:
        return equal_weights(families, usable=usable), scales
    # Shrunk halfway to equal weights: fitted combination weights are noisy, and equal weights are famously
    # hard to beat out of sample (the "forecast combination puzzle", Smith & Wallis 2009).
    fitted = {f: SHRINKAGE / len(usable) + (1 - SHRINKAGE) * float(c / coef.sum()) for f, c in zip(usable, coef, strict=True)}
    return {f: fitted.get(f, 0.0) for f in families}, scales


def _finite(x: float) -> float:
    return x if np.isfinite(x) else -np.inf


def _usable(families: Sequence[str], *, exclude: Collection[str]) -> list[str]:
    usable = [f for f in families if f not in exclude]
    if not usable:
        raise EnsembleError(f"no member to stack: every one of {', '.join(families)} predicts a constant or non-finite "
                            f"values on more than {MAX_DEGENERATE_SHARE:.0%} of the timestamps")
    return usable


def _xs_z(column: str) -> pl.Expr:
    """Standardised across symbols within each timestamp; 0 where a timestamp has no spread or a value is not finite."""
    col = pl.when(pl.col(column).is_finite()).then(pl.col(column))
    sd = col.std().over("event_timestamp")
    z = pl.when(sd > 0).then((col - col.mean().over("event_timestamp")) / sd)
    return z.fill_null(0.0).alias(column)


def equal_weights(families: Sequence[str], *, usable: Collection[str] | None = None) -> dict[str, float]:
    """``1/n`` for each of the ``usable`` members (default: all), 0 for the rest."""
    usable = list(families) if usable is None else [f for f in families if f in usable]
    return {f: (1.0 / len(usable) if f in usable else 0.0) for f in families}


def combine(preds: Mapping[str, np.ndarray], weights: Mapping[str, float], scales: Mapping[str, float]) -> np.ndarray:
    """``Σ w_f · pred_f / scale_f`` over the members with a weight; a non-finite member value contributes 0."""
    total = None
    for family, w in weights.items():
        if w == 0:
            continue
        pred = np.asarray(preds[family], dtype=np.float64)
        part = w * np.where(np.isfinite(pred), pred, 0.0) / scales[family]
        total = part if total is None else total + part
    if total is None:
        raise EnsembleError("ensemble: no member has a weight")
    return total


@dataclass
class Stacked:
    """The OOF frame with ``pred_ensemble`` and ``pred_equal``, the weights used on each fold, why any were 0,
    and what each fold's ensemble was (the stack, or its best member when the stack had not beaten it)."""

    oof: pl.DataFrame
    fold_weights: dict[int, dict[str, float]]
    warnings: list[str]
    choices: list[str] = field(default_factory=list)

    @property
    def burn_in(self) -> int | None:
        """The first fold (equal weights: no earlier OOF predictions to stack on), or None with a single fold."""
        folds = sorted(self.fold_weights)
        return folds[0] if len(folds) > 1 else None

    def evaluated(self) -> pl.DataFrame:
        """The ensemble's out-of-sample series: every fold after the burn-in (all of them with a single fold)."""
        return self.oof if self.burn_in is None else self.oof.filter(pl.col("fold") != self.burn_in)


def stacked_oof(oof: pl.DataFrame, families: Sequence[str], *, label: str,
                first_scales: Mapping[str, float]) -> Stacked:
    """Walk-forward stacking of the OOF frame (see the module docstring).

    ``first_scales`` scale fold 0, which has no earlier OOF predictions (e.g. the spread
    of the members' in-sample predictions on fold 0's training window). A member that is
    degenerate on a fold's own predictions gets weight 0 on that fold, in both ensembles.
    """
    parts, fold_weights, warnings, choices = [], {}, [], []
    for fold in sorted(oof["fold"].unique().to_list()):
        past = oof.filter(pl.col("fold") < fold)
        here = oof.filter(pl.col("fold") == fold)
        flat = degenerate_members(here, families)
        warnings += [f"{f}: constant or non-finite predictions on {share:.0%} of fold {fold}'s timestamps; weight 0 there"
                     for f, share in flat.items()]
        if past.is_empty():
            weights, scales = equal_weights(families, usable=_usable(families, exclude=flat)), dict(first_scales)
        else:
            weights, scales = stack_weights(past, families, label=label, exclude=flat)
            weights, choice = stack_or_best(past, weights, families, label=label, exclude=flat)
            choices.append(f"fold {fold}: {choice}")
        usable = [f for f in families if f not in flat]
        preds = {f: here[f"pred_{f}"].to_numpy() for f in families}
        fold_weights[fold] = weights
        parts.append(here.with_columns(
            pred_ensemble=pl.Series(combine(preds, weights, scales)),
            pred_equal=pl.Series(combine(preds, equal_weights(families, usable=usable), scales)),
        ))
    return Stacked(pl.concat(parts).sort("event_timestamp", "symbol"), fold_weights, warnings, choices)


def stack_or_best(past: pl.DataFrame | None, weights: dict[str, float], families: Sequence[str], *, label: str,
                  exclude: Collection[str] = (), blocks: int = INNER_BLOCKS) -> tuple[dict[str, float], str]:
    """``weights``, or the best member alone unless stacking beats it significantly *out of sample* on ``past``.

    ``past`` holds the members' OOF predictions that ``weights`` were fitted on (earlier folds only). It is
    cut into ``blocks`` contiguous time blocks; each block is scored with weights fitted on the others
    (:func:`stack_weights`), and that inner out-of-sample stack is compared with the best member on the same
    rows, timestamp by timestamp. The stack survives only if its IC gain has a t-stat of at least
    :data:`MIN_STACK_GAIN_TSTAT`: a combination of members that mostly repeat each other rarely beats the
    best of them, and a tie goes to the simpler model — the best member alone.
    """
    usable = [f for f in families if f not in exclude]
    if past is None or past.is_empty() or past["event_timestamp"].n_unique() < 10 * blocks or len(usable) < 2:
        return weights, "stacked (too little out-of-fold history to judge it against its best member)"
    times = past["event_timestamp"].unique().sort()
    edges = [times[int(times.len() * i / blocks)] for i in range(blocks)]
    parts = []
    for i, lo in enumerate(edges):
        inside = pl.col("event_timestamp") >= lo
        if i + 1 < blocks:
            inside &= pl.col("event_timestamp") < edges[i + 1]
        test, train = past.filter(inside), past.filter(~inside)
        w, scales = stack_weights(train, families, label=label, exclude=exclude)
        parts.append(test.with_columns(pred_inner=pl.Series(combine({f: test[f"pred_{f}"].to_numpy() for f in families}, w, scales))))
    inner = pl.concat(parts)
    series = {name: ic_by_time(inner, score=f"pred_{name}", label=label, time="event_timestamp")["ic"].to_numpy()
              for name in ("inner", *usable)}
    ic = {name: float(np.mean(v)) if len(v) else math.nan for name, v in series.items()}
    best = max(usable, key=lambda f: _finite(ic[f]))
    gain = series["inner"] - series[best]  # per timestamp, on the same rows
    t = float(gain.mean() / (gain.std(ddof=1) / math.sqrt(len(gain)))) if len(gain) > 1 and gain.std(ddof=1) > 0 else 0.0
    said = f"inner out-of-sample IC {ic['inner']:.4f} vs best member {best} {ic[best]:.4f}, t {t:+.1f}"
    if t >= MIN_STACK_GAIN_TSTAT:
        return weights, f"stacked ({said})"
    return equal_weights(families, usable=[best]), f"{best} alone (the stack does not beat it significantly: {said})"


@dataclass
class Ensemble:
    """Fitted members plus stacking weights; ``predict`` takes the feature matrix the members take."""

    members: dict[str, Any]
    weights: dict[str, float]
    scales: dict[str, float]
    feature_names: list[str] = field(default_factory=list)
    #: Reference rows for the SHAP explainers of the networks (``models.explain.Background``); None before 0.2 pickles.
    background: Any = None

    @property
    def context(self) -> int:
        """History rows per symbol the ensemble's sequence members read (0 if none)."""
        return max((int(getattr(m, "context", 0) or 0) for f, m in self.members.items() if self.weights.get(f)), default=0)

    def member_predictions(self, x: np.ndarray, *, groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return {f: np.asarray(m.predict(x, groups=groups), dtype=np.float64) for f, m in self.members.items() if self.weights.get(f)}

    def predict(self, x: np.ndarray, *, groups: np.ndarray | None = None) -> np.ndarray:
        return combine(self.member_predictions(x, groups=groups), self.weights, self.scales)
