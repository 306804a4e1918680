"""Signal quality: information coefficients per timestamp (cross-sectional), then averaged.

IC is Pearson's correlation between scores and realised forward returns across the
symbols of one timestamp; rank IC is Spearman's (Pearson on ranks). ICIR is the mean
IC over its standard deviation (per timestamp, not annualised). Hit rate is the share
of (symbol, time) rows whose score sign matches the return sign (zeros excluded).

Example:
    >>> import polars as pl
    >>> df = pl.DataFrame({"ts": [1, 1, 1, 2, 2, 2], "score": [1.0, 2, 3, 3, 2, 1], "ret": [0.1, 0.2, 0.3, 0.1, 0.2, 0.3]})
    >>> ic_summary(df, score="score", label="ret")["ic"]
    0.0
"""

from __future__ import annotations

import math

import polars as pl

MIN_NAMES = 3  # a cross-section needs at least this many symbols for a correlation to mean anything


def ic_by_time(frame: pl.DataFrame, *, score: str, label: str, time: str = "ts") -> pl.DataFrame:
    """Per timestamp: ``n``, ``ic`` (Pearson), ``rank_ic`` (Spearman) of ``score`` vs ``label``, and ``degenerate``.

    A timestamp where the scores are constant or not all finite is *degenerate*: it
    ranks nothing, so it counts as IC 0 instead of dropping out of the average (a
    model that goes flat on a fold must not look better for it). Rows without a
    finite label (the end of the data) or without a score are not scored.
    """
    clean = frame.select(time, score, label).drop_nulls().filter(pl.col(label).is_finite())
    finite = pl.col(score).is_finite()
    per_time = (
        clean.group_by(time)
        .agg(
            pl.len().alias("n"),
            (~finite.all() | (pl.col(score).n_unique() <= 1)).alias("degenerate"),
            pl.corr(score, label).alias("ic"),
            pl.corr(pl.col(score).rank(), pl.col(label).rank()).alias("rank_ic"),
        )
        .filter(pl.col("n") >= MIN_NAMES)
    )
    zero_if_degenerate = [pl.when(pl.col("degenerate")).then(0.0).otherwise(pl.col(c).fill_nan(None)).alias(c) for c in ("ic", "rank_ic")]
    return per_time.with_columns(zero_if_degenerate).select(time, "n", "ic", "rank_ic", "degenerate").sort(time)


def degenerate_share(frame: pl.DataFrame, *, score: str, time: str = "ts") -> float:
    """Share of timestamps (with at least :data:`MIN_NAMES` scores) whose scores are constant or not all finite.

    Needs no label, so it may be computed on predictions before their outcomes are known.

    Example:
        >>> df = pl.DataFrame({"ts": [1, 1, 1, 2, 2, 2], "s": [1.0, 1.0, 1.0, 0.1, 0.2, 0.3]})
        >>> degenerate_share(df, score="s")
        0.5
    """
    per_time = (
        frame.select(time, score).drop_nulls().group_by(time)
        .agg(pl.len().alias("n"), (~pl.col(score).is_finite().all() | (pl.col(score).n_unique() <= 1)).alias("bad"))
        .filter(pl.col("n") >= MIN_NAMES)
    )
    return float(per_time["bad"].mean()) if per_time.height else 0.0


def ic_summary(frame: pl.DataFrame, *, score: str, label: str, time: str = "ts") -> dict[str, float]:
    """Mean IC, mean rank IC, ICIR, rank ICIR, t-stat of the mean IC, hit rate, the number of timestamps/rows,
    and how many of those timestamps were degenerate (counted as IC 0, see :func:`ic_by_time`)."""
    per_time = ic_by_time(frame, score=score, label=label, time=time).drop_nulls("ic")
    ics = per_time["ic"]
    ranks = per_time["rank_ic"].drop_nulls()
    n = ics.len()
    mean = float(ics.mean()) if n else math.nan
    sd = float(ics.std()) if n > 1 else math.nan
    signed = frame.select(pl.col(score).sign().alias("s"), pl.col(label).sign().alias("l")).drop_nulls()
    signed = signed.filter((pl.col("s") != 0) & (pl.col("l") != 0))
    return {
        "ic": round(mean, 12) if n else math.nan,
        "rank_ic": float(ranks.mean()) if ranks.len() else math.nan,
        "icir": mean / sd if n > 1 and sd > 0 else math.nan,
        "rank_icir": float(ranks.mean() / ranks.std()) if ranks.len() > 1 and (ranks.std() or 0) > 0 else math.nan,
        "ic_tstat": mean / sd * math.sqrt(n) if n > 1 and sd > 0 else math.nan,
        "hit_rate": float((signed["s"] == signed["l"]).mean()) if signed.height else math.nan,
        "timestamps": float(n),
        "degenerate_timestamps": float(per_time["degenerate"].sum()),
        "rows": float(frame.select(score, label).drop_nulls().height),
    }


def ic_decay(frame: pl.DataFrame, *, score: str, labels: dict[int, str], time: str = "ts") -> dict[int, float]:
    """Mean IC of ``score`` against each horizon's label (``{horizon: label column}``)."""
    return {h: ic_summary(frame, score=score, label=col, time=time)["ic"] for h, col in sorted(labels.items())}


def oracle_fraction(model_ic: float, oracle_ic: float) -> float:
    """The model's IC as a fraction of the oracle's (the best IC any model can reach on the synthetic market)."""
    return model_ic / oracle_ic if oracle_ic and not math.isnan(oracle_ic) else math.nan
