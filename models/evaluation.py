"""Out-of-sample evaluation of a training run: signal metrics, the oracle, and a costed backtest.

Everything here reads the **out-of-fold** frame only (``pred_<family>``,
``pred_ensemble``, ``pred_equal`` and the ``label_fwd_ret_*`` columns), so every
number is out of sample. On the synthetic market the oracle's expected returns for the
same rows give the best IC any model could have reached; each model's IC is also
reported as a fraction of it.

The backtest trades the ensemble's OOF scores through :func:`models.backtest.run_backtest`
(next-bar-open fills, commission, half-spread and square-root impact), rebalancing every
``horizon`` bars, the horizon the models were trained for.

Example:
    >>> BacktestConfig().costs().commission_bps
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from models.backtest import BacktestResult, Costs, run_backtest
from models.metrics import ic_by_time, ic_decay, ic_summary, oracle_fraction

TIME = "event_timestamp"


class BacktestConfig(BaseModel):
    """The book the OOF scores are traded with, and its costs (bps of notional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(default=6, ge=1)
    long_only: bool = False
    gross_exposure: float = Field(default=1.0, gt=0)
    initial_cash: float = Field(default=1_000_000.0, gt=0)
    commission_bps: float = Field(default=0.5, ge=0)
    half_spread_bps: float = Field(default=1.0, ge=0)
    impact_coef: float = Field(default=0.1, ge=0)
    financing_rate: float = Field(default=0.06, ge=0, description="Annual rate on borrowed (negative) cash.")
    borrow_fee: float = Field(default=0.0025, ge=0, description="Annual fee on the short book's market value (easy to borrow).")
    cash_constrained: bool = Field(default=True, description="Buys never spend cash the book does not have.")
    periods_per_year: int = Field(default=6552, ge=1, description="Bars a year, for the annual rates.")

    def costs(self) -> Costs:
        return Costs(commission_bps=self.commission_bps, half_spread_bps=self.half_spread_bps, impact_coef=self.impact_coef,
                     financing_rate=self.financing_rate, borrow_fee=self.borrow_fee, periods_per_year=self.periods_per_year)


def signal_report(oof: pl.DataFrame, *, families: Sequence[str], label: str,
                  oracle: pl.DataFrame | None = None, in_sample_ic: dict[str, float] | None = None) -> dict[str, Any]:
    """IC, rank IC, ICIR, hit rate per member, the stacked and the equal-weight ensemble; IC decay; oracle."""
    horizons = {int(c.rsplit("_", 1)[1]): c for c in oof.columns if c.startswith("label_fwd_ret_")}
    scored = {f: f"pred_{f}" for f in families} | {"ensemble": "pred_ensemble", "equal_weight": "pred_equal"}
    report: dict[str, Any] = {"label": label, "models": {}}
    oracle_ic = float("nan")
    if oracle is not None and not oracle.is_empty():
        joined = oof.join(oracle.select("symbol", TIME, pl.col("expected").alias("pred_oracle")), on=["symbol", TIME], how="inner")
        oracle_ic = ic_summary(joined, score="pred_oracle", label=label, time=TIME)["ic"]
    for name, column in scored.items():
        if column not in oof.columns:
            continue
        summary = ic_summary(oof, score=column, label=label, time=TIME)
        summary["oracle_fraction"] = oracle_fraction(summary["ic"], oracle_ic)
        if in_sample_ic and name in in_sample_ic:
            summary["is_ic"] = in_sample_ic[name]
        report["models"][name] = summary
    report["ic_decay"] = {str(h): v for h, v in ic_decay(oof, score="pred_ensemble", labels=horizons, time=TIME).items()}
    report["oracle_ic"] = oracle_ic
    times = oof[TIME]
    report["window"] = {"start": times.min().isoformat(), "end": times.max().isoformat(),
                        "timestamps": times.n_unique(), "rows": oof.height}
    return report


def backtest_oof(oof: pl.DataFrame, bars: pl.DataFrame, *, horizon: int, config: BacktestConfig,
                 score: str = "pred_ensemble", weigh: Any = None) -> BacktestResult:
    """Trade ``score`` over the OOF window; ``bars`` has ``symbol, ts`` (bar close) ``, open, close, volume``."""
    start, end = oof[TIME].min(), oof[TIME].max()
    window = bars.filter(pl.col("ts").is_between(start, end))
    scores = oof.select("symbol", pl.col(TIME).alias("ts"), pl.col(score).alias("score")).drop_nulls()
    return run_backtest(
        scores, window, k=config.k, long_only=config.long_only, gross_exposure=config.gross_exposure,
        initial_cash=config.initial_cash, costs=config.costs(), rebalance_every=horizon, cash_constrained=config.cash_constrained,
        weigh=weigh,
    )



def research_inputs(oof: pl.DataFrame, bars: pl.DataFrame, *, families: Sequence[str], label: str, horizon: int,
                    config: BacktestConfig, chosen: BacktestResult | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """What the tear sheet's research-rigour table needs beyond the chosen backtest (:func:`models.tearsheet.write_tearsheet`).

    Returns ``trials`` — the per-bar net returns of every model the run tried (each member, the
    stacked and the equal-weight ensemble), traded exactly like the ensemble on the same bars, for the
    deflated Sharpe ratio and PBO — and ``ic_series``, the ensemble's IC per timestamp, for its interval.
    ``chosen`` is the ensemble's backtest when it is already run (it is not run again, and a book weighted
    by an optimiser stays the one judged).
    """
    columns = {f: f"pred_{f}" for f in families} | {"ensemble": "pred_ensemble", "equal_weight": "pred_equal"}
    frames = []
    for name, column in columns.items():
        if column in oof.columns:
            result = chosen if name == "ensemble" and chosen is not None else backtest_oof(oof, bars, horizon=horizon,
                                                                                            config=config, score=column)
            frames.append(result.equity.select("ts").with_columns(pl.Series(name, result.returns)))
    trials: dict[str, np.ndarray] = {}
    if frames:
        joined = frames[0]
        for frame in frames[1:]:
            joined = joined.join(frame, on="ts", how="full", coalesce=True)
        joined = joined.sort("ts").fill_null(0.0)
        trials = {c: joined[c].to_numpy() for c in joined.columns if c != "ts"}
    ic = ic_by_time(oof, score="pred_ensemble", label=label, time=TIME).drop_nulls("ic")["ic"].to_numpy()
    return trials, ic


def factor_report(oof: pl.DataFrame, *, labels: dict[int, str], score: str = "pred_ensemble", quantiles: int = 5,
                  horizon: int | None = None) -> dict[str, Any]:
    """Alphalens-style view of a score as a factor, out of sample: IC by horizon with 95% confidence bands,
    mean forward return by score quantile, and the turnover of the top and bottom quantiles.

    Each timestamp's symbols are cut into ``quantiles`` buckets by score (1 = lowest); a bucket's
    return is the mean of its symbols' forward log returns, averaged over timestamps, in basis
    points. The band is ±1.96 standard errors of the per-timestamp IC. Turnover is the share of a
    quantile's names at one timestamp that were not in it at the previous one. ``horizon`` (the model's
    label horizon) is the one the tear sheet charts by quantile.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> t, s = np.repeat(np.arange(200), 20), rng.normal(size=4000)
        >>> oof = pl.DataFrame({"event_timestamp": t, "symbol": np.tile(np.arange(20), 200), "pred_ensemble": s,
        ...                     "label_fwd_ret_1": 1e-3 * s + 1e-3 * rng.normal(size=4000)})
        >>> r = factor_report(oof, labels={1: "label_fwd_ret_1"})
        >>> bool(r["quantile_bps"][1][0] < 0 < r["quantile_bps"][1][-1] and r["ic"][1]["low"] > 0)
        True
    """
    frame = oof.filter(pl.col(score).is_finite()).with_columns(
        ((pl.col(score).rank("ordinal").over(TIME) - 1) * quantiles // pl.len().over(TIME) + 1).cast(pl.Int32).alias("_q"))
    out: dict[str, Any] = {"quantiles": quantiles, "ic": {}, "quantile_bps": {}, "spread_bps": {}, "horizon": horizon}
    for h, column in sorted(labels.items()):
        series = ic_by_time(frame, score=score, label=column, time=TIME)["ic"].drop_nulls().to_numpy()
        mean = float(series.mean()) if series.size else float("nan")
        half = 1.96 * float(series.std(ddof=1)) / np.sqrt(series.size) if series.size > 1 else float("nan")
        out["ic"][h] = {"ic": mean, "low": mean - half, "high": mean + half, "timestamps": int(series.size)}
        by_q = (frame.filter(pl.col(column).is_finite()).group_by(TIME, "_q").agg(pl.col(column).mean())
                .group_by("_q").agg(pl.col(column).mean()).sort("_q"))
        bps = (by_q[column] * 1e4).to_list()
        out["quantile_bps"][h] = bps
        out["spread_bps"][h] = bps[-1] - bps[0] if bps else float("nan")
    ordered = frame.sort("symbol", TIME)
    for name, bucket in (("top", quantiles), ("bottom", 1)):
        inside = pl.col("_q") == bucket
        moved = ordered.with_columns(inside.alias("_in"), inside.shift(1).over("symbol").alias("_was")).filter(pl.col("_was").is_not_null())
        per_time = moved.group_by(TIME).agg((pl.col("_in") & ~pl.col("_was")).sum().alias("new"), pl.col("_in").sum().alias("n"))
        per_time = per_time.filter(pl.col("n") > 0)
        out[f"turnover_{name}"] = float((per_time["new"] / per_time["n"]).mean()) if per_time.height else float("nan")
    return out


def book_size_walk_forward(oof: pl.DataFrame, bars: pl.DataFrame, *, horizon: int, config: BacktestConfig,
                           sizes: Sequence[int] = (3, 6, 12), blocks: int = 6, periods_per_year: int = 6552) -> Any:
    """Walk-forward optimisation of the book's names per side (``k``): each size traded over the whole OOF window
    like the ensemble, then chosen block by block on the earlier blocks (:func:`models.research.walk_forward_choice`)."""
    from models.research import walk_forward_choice

    returns = {}
    for k in sizes:
        result = backtest_oof(oof, bars, horizon=horizon, config=config.model_copy(update={"k": k}))
        returns[k] = result.returns
    return walk_forward_choice(returns, blocks=blocks, periods_per_year=periods_per_year)
