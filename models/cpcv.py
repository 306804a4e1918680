"""Combinatorial purged cross-validation (CPCV) of the model family: many backtest paths instead of one.

Walk-forward gives each learner one out-of-sample history; a Sharpe ratio from one path says little
about how it would have gone on another. CPCV (López de Prado, *Advances in Financial ML*, ch. 12)
cuts the distinct timestamps into ``n_groups`` contiguous groups, trains each learner on every choice
of ``n_groups − n_test_groups`` of them and predicts the other ``n_test_groups``; the
``C(N−1, k−1)`` *paths* (:func:`models.research.cpcv_paths`) stitch those predictions into complete,
out-of-sample histories. Per learner :func:`run_cpcv` reports the distribution of the path Sharpe
ratios and ICs, and across learners a CPCV-based probability of backtest overfitting.

No look-ahead: a training row at timestamp index ``t`` has a label over ``(t, t + h]``. Training
drops the ``purge`` (≥ ``h``) timestamps before each test group, whose labels reach into it, and the
``embargo`` (≥ ``h`` here) timestamps after it, whose labels overlap the test group's own labels; so
no training label window meets a test label window. Sequence learners read the ``context``
timestamps before each test group as history (features only, no labels), as in walk-forward.

A path's return is gross (no costs): on every ``h``-th timestamp, the ``k`` highest scores long and
the ``k`` lowest short, equally weighted (gross exposure 1), held for the ``h`` bars of the label.
Rebalancing every ``h`` bars keeps the periods from overlapping, as the Sharpe ratio and PBO assume.

Example:
    >>> CPCVConfig().n_splits, CPCVConfig().n_paths
    (15, 5)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from feature_repo import FEATURE_NAMES
from models.data import matrix, symbol_codes, target
from models.learners import LEARNERS
from models.metrics import ic_by_time
from models.research import CPCVSplit, cpcv_paths, cpcv_splits, probability_of_backtest_overfitting
from models.walkforward import WalkForwardConfig, context_of

TIME = "event_timestamp"
#: Learners CPCV fits by default: the row-wise ones (the torch learners cost minutes per fit on two cores).
CHEAP_FAMILIES = ("sklearn_ridge", "sklearn_hgb", "xgboost", "lightgbm")


class CPCVConfig(BaseModel):
    """How the timestamps are cut and how a path is traded. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_groups: int = Field(default=6, ge=3)
    n_test_groups: int = Field(default=2, ge=1)
    k: int = Field(default=6, ge=1, description="Names per side of a path's long-short book.")
    periods_per_year: int = Field(default=6552, ge=1, description="Bars a year (the Sharpe is annualised).")
    pbo_blocks: int = Field(default=16, ge=2, description="CSCV blocks per path (C(16, 8) = 12,870 combinations).")

    @property
    def n_splits(self) -> int:
        return math.comb(self.n_groups, self.n_test_groups)

    @property
    def n_paths(self) -> int:
        return math.comb(self.n_groups - 1, self.n_test_groups - 1)


@dataclass
class CPCVResult:
    """Each learner's stitched path predictions and what they earned.

    ``predictions[family]`` is ``(n_paths, frame rows)``: on path ``p`` every row holds the prediction
    of the split ``path_splits[p, group of the row]``, which held that row's group out of training.
    """

    splits: list[CPCVSplit]  # over the frame's distinct timestamps (indices into them)
    path_splits: np.ndarray  # (n_paths, n_groups): the split that tests each group on each path
    groups: list[np.ndarray]  # the timestamp indices of each group
    predictions: dict[str, np.ndarray]
    returns: dict[str, np.ndarray]  # family → (n_paths, rebalance timestamps): gross long-short returns
    ic: dict[str, np.ndarray]  # family → (n_paths,): mean cross-sectional IC of each path
    seconds: dict[str, float] = field(default_factory=dict)
    config: CPCVConfig = field(default_factory=CPCVConfig)
    horizon: int = 4

    def sharpe(self, family: str) -> np.ndarray:
        """Annualised Sharpe ratio of each path of ``family``."""
        r = self.returns[family]
        sd = r.std(axis=1, ddof=1)
        scale = math.sqrt(self.config.periods_per_year / self.horizon)
        return np.where(sd > 0, r.mean(axis=1) / np.where(sd > 0, sd, 1.0), np.nan) * scale

    def pbo(self) -> dict[str, float | int]:
        """CSCV PBO across the learners on each path, and its mean over the paths (needs two learners or more)."""
        families = list(self.returns)
        if len(families) < 2:
            return {}
        periods = self.returns[families[0]].shape[1]
        blocks = min(self.config.pbo_blocks - self.config.pbo_blocks % 2, periods - periods % 2)
        if blocks < 2:
            return {}
        per_path = [probability_of_backtest_overfitting(np.column_stack([self.returns[f][p] for f in families]),
                                                        n_blocks=blocks).pbo for p in range(self.path_splits.shape[0])]
        return {"pbo": float(np.mean(per_path)), "pbo_min": float(np.min(per_path)), "pbo_max": float(np.max(per_path)),
                "pbo_blocks": blocks}

    def summary(self) -> dict[str, Any]:
        """Per learner: paths, mean / 5th percentile / share > 0 of the path Sharpe, mean and 5th percentile IC; PBO."""
        members = {}
        for family in self.returns:
            sharpe, ic = self.sharpe(family), self.ic[family]
            members[family] = {
                "paths": int(sharpe.size), "sharpe_mean": _nan(np.nanmean, sharpe), "sharpe_p5": _nan(_p5, sharpe),
                "sharpe_positive": float(np.mean(sharpe > 0)), "ic_mean": _nan(np.nanmean, ic), "ic_p5": _nan(_p5, ic),
                "sharpe_paths": [round(float(s), 4) for s in sharpe], "seconds": round(self.seconds.get(family, 0.0), 1),
            }
        return {"n_groups": self.config.n_groups, "n_test_groups": self.config.n_test_groups, "splits": len(self.splits),
                "paths": int(self.path_splits.shape[0]), "k": self.config.k, "horizon": self.horizon,
                "members": members, **self.pbo()}


def _p5(x: np.ndarray) -> float:
    return float(np.nanpercentile(x, 5))


def _nan(fn: Callable[[np.ndarray], Any], x: np.ndarray) -> float:
    return float(fn(x)) if np.isfinite(x).any() else float("nan")


def timestamp_splits(n_timestamps: int, config: CPCVConfig, *, horizon: int, purge: int = 0,
                     embargo: int = 0) -> list[CPCVSplit]:
    """The CPCV splits over ``n_timestamps`` distinct timestamps, purge and embargo at least the label ``horizon``.

    Example:
        >>> s = timestamp_splits(60, CPCVConfig(), horizon=4)[0]  # groups 0 and 1 (timestamps 0..19) tested
        >>> s.test_groups, int(s.train.min())  # the 4 timestamps after the test block are embargoed
        ((0, 1), 24)
    """
    return cpcv_splits(n_timestamps, n_groups=config.n_groups, n_test_groups=config.n_test_groups,
                       purge=max(horizon, purge), embargo=max(horizon, embargo))


def run_cpcv(frame: pl.DataFrame, walk_forward: WalkForwardConfig, config: CPCVConfig | None = None, *,
             families: Sequence[str] | None = None, log: Callable[[str], None] = lambda _: None) -> CPCVResult:
    """Fit ``families`` (default: the walk-forward's row-wise ones) on every CPCV split and stitch the paths.

    ``frame`` is the training frame (sorted by time then symbol); the learners, their parameters,
    the label, its target transform and the purge/embargo come from ``walk_forward``.

    Example:
        >>> import datetime as dt
        >>> from feature_repo import FEATURE_NAMES
        >>> rng = np.random.default_rng(0)
        >>> t = [dt.datetime(2024, 1, 2) + dt.timedelta(minutes=15 * i) for i in range(120) for _ in range(8)]
        >>> x = rng.normal(size=(len(t), len(FEATURE_NAMES)))
        >>> frame = pl.DataFrame({"symbol": list("ABCDEFGH") * 120, "event_timestamp": t}).with_columns(
        ...     *[pl.Series(n, x[:, j]) for j, n in enumerate(FEATURE_NAMES)],
        ...     label_fwd_ret_4=pl.Series(0.01 * x[:, 0] + 0.01 * rng.normal(size=len(t))))
        >>> result = run_cpcv(frame, WalkForwardConfig(families=("sklearn_ridge",)), CPCVConfig(k=2))
        >>> s = result.summary()["members"]["sklearn_ridge"]
        >>> s["paths"], s["ic_mean"] > 0.3, s["sharpe_positive"]
        (5, True, 1.0)
    """
    config = config or CPCVConfig()
    chosen = tuple(families) if families is not None else tuple(f for f in walk_forward.families if f in CHEAP_FAMILIES)
    unknown = [f for f in chosen if f not in LEARNERS]
    if unknown:
        raise ValueError(f"cpcv: unknown learner family {unknown}; known: {', '.join(sorted(LEARNERS))}")
    if not chosen:
        raise ValueError(f"cpcv: no learner to fit (families {list(walk_forward.families)} hold none of {', '.join(CHEAP_FAMILIES)})")
    times = frame[TIME].unique().sort()
    index = times.search_sorted(frame[TIME]).to_numpy()
    cv = walk_forward.cv(n_timestamps=times.len())
    splits = timestamp_splits(times.len(), config, horizon=walk_forward.horizon, purge=cv.purge, embargo=cv.embargo)
    paths = cpcv_paths(config.n_groups, config.n_test_groups)
    groups = np.array_split(np.arange(times.len()), config.n_groups)
    x, y, codes = matrix(frame), target(frame, walk_forward.label, walk_forward.target), symbol_codes(frame)
    preds = {f: np.full((paths.shape[0], frame.height), np.nan) for f in chosen}
    seconds = dict.fromkeys(chosen, 0.0)
    for i, split in enumerate(splits):
        train = np.isin(index, split.train)
        for family in chosen:
            began = time.perf_counter()
            model = walk_forward.learner(family).fit(x[train], y[train], feature_names=list(FEATURE_NAMES), groups=codes[train])
            for g in split.test_groups:
                lo, hi = int(groups[g][0]), int(groups[g][-1]) + 1
                window = (index >= max(0, lo - context_of(model))) & (index < hi)
                rows = (index >= lo) & (index < hi)
                out = np.asarray(model.predict(x[window], groups=codes[window]), dtype=np.float64)[rows[window]]
                for p in np.flatnonzero(paths[:, g] == i):
                    preds[family][p, rows] = out
            seconds[family] += time.perf_counter() - began
        log(f"cpcv split {i + 1}/{len(splits)} (test groups {split.test_groups}): {train.sum()} training rows")
    returns, ic = _path_metrics(frame, preds, label=walk_forward.label, horizon=walk_forward.horizon, k=config.k)
    return CPCVResult(splits=splits, path_splits=paths, groups=groups, predictions=preds, returns=returns, ic=ic,
                      seconds=seconds, config=config, horizon=walk_forward.horizon)


def _path_metrics(frame: pl.DataFrame, preds: dict[str, np.ndarray], *, label: str, horizon: int,
                  k: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    keys = frame.select("symbol", TIME, label)
    returns, ic = {}, {}
    for family, by_path in preds.items():
        rows, ics = [], []
        for p in range(by_path.shape[0]):
            scored = keys.with_columns(score=pl.Series(by_path[p]))
            rows.append(long_short_returns(scored, score="score", label=label, horizon=horizon, k=k)["return"].to_numpy())
            series = ic_by_time(scored, score="score", label=label, time=TIME)["ic"].drop_nulls()
            ics.append(float(series.mean()) if series.len() else float("nan"))
        returns[family], ic[family] = np.vstack(rows), np.array(ics)
    return returns, ic


def long_short_returns(frame: pl.DataFrame, *, score: str, label: str, horizon: int, k: int) -> pl.DataFrame:
    """Gross return of the top-``k`` minus bottom-``k`` book on every ``horizon``-th timestamp, held over the label.

    ``label`` is the forward log return over ``horizon`` bars from the row's timestamp; each side
    is equally weighted at half the book (fewer names when the cross-section is under ``2k``; ties
    broken by symbol). Returns ``event_timestamp, return``, one row per rebalance timestamp.

    Example:
        >>> f = pl.DataFrame({"event_timestamp": [0, 0, 0, 0, 1, 1, 1, 1], "symbol": list("ABCDABCD"),
        ...                   "s": [4.0, 3, 2, 1, 4, 3, 2, 1], "y": [0.02, 0.0, 0.0, -0.02, 0.5, 0.5, 0.5, 0.5]})
        >>> long_short_returns(f, score="s", label="y", horizon=2, k=1)["return"].round(4).to_list()
        [0.02]
    """
    times = frame[TIME].unique().sort()
    rebalance = times.gather(np.arange(0, times.len(), horizon))
    valid = frame.filter(pl.col(TIME).is_in(rebalance.implode()) & pl.col(score).is_finite() & pl.col(label).is_finite())
    ranked = valid.sort(TIME, score, "symbol", descending=[False, True, False]).with_columns(
        pl.int_range(pl.len()).over(TIME).alias("_r"), pl.len().over(TIME).alias("_n"))
    side = pl.min_horizontal(pl.lit(k), pl.col("_n") // 2)
    weight = (pl.when(pl.col("_r") < side).then(0.5).when(pl.col("_r") >= pl.col("_n") - side).then(-0.5).otherwise(0.0)
              / side.cast(pl.Float64))
    per_time = ranked.filter(side > 0).group_by(TIME).agg((weight * (pl.col(label).exp() - 1.0)).sum().alias("return"))
    return pl.DataFrame({TIME: rebalance}).join(per_time, on=TIME, how="left").with_columns(pl.col("return").fill_null(0.0))


def markdown_lines(summary: dict[str, Any]) -> list[str]:
    """The tear sheet's CPCV section (:meth:`CPCVResult.summary`)."""
    lines = ["## Combinatorial purged CV (CPCV)", "",
             f"{summary['splits']} splits of {summary['n_groups']} time groups ({summary['n_test_groups']} tested at a time, "
             f"purged and embargoed by the label horizon) stitched into {summary['paths']} out-of-sample paths per learner. "
             f"Path Sharpe: annualised, gross, top-{summary['k']} long/short rebalanced every {summary['horizon']} bars.", "",
             "| learner | paths | mean Sharpe | 5th pct Sharpe | paths Sharpe > 0 | mean IC | 5th pct IC | fit seconds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for family, m in summary["members"].items():
        lines.append(f"| {family} | {m['paths']} | {m['sharpe_mean']:.2f} | {m['sharpe_p5']:.2f} | {m['sharpe_positive']:.0%} | "
                     f"{m['ic_mean']:.4f} | {m['ic_p5']:.4f} | {m['seconds']:.1f} |")
    if "pbo" in summary:
        lines += ["", f"Probability of backtest overfitting across the learners (CSCV on each path, {summary['pbo_blocks']} blocks): "
                      f"mean {summary['pbo']:.0%} (paths {summary['pbo_min']:.0%} to {summary['pbo_max']:.0%})."]
    return lines
