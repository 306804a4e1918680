"""Cross-sectional residual features: what one symbol did *relative to the universe*, and when it matters.

These are textbook short-horizon signal families, each computed from bars only (no
constant of any data generator: expected volume and the volatility regime are
*estimated* from trailing data), point in time:

* **Residual returns** (``xs_resid_1`` and its lags): a bar's log return minus the
  universe's equal-weight mean at the same close. Short-horizon residual reversal is the
  classic liquidity-provision effect (Lehmann 1990; Lo & MacKinlay 1990).
* **Regime-scaled reversal** (``xs_residregime_4``): the last four residuals weighted by the
  market's volatility regime, since reversal is stronger in turbulent markets (Nagel 2012).
  The regime (``xs_mktregime_26``) is the realised volatility of the equal-weight market
  return over 26 bars over its level across 520 bars (20 sessions).
* **Volume-confirmed moves** (``xs_residvol_1``, ``xs_residvol_8``): residuals times abnormal
  volume, ``max(relative volume - 1, 0)``, where relative volume divides the bar's volume by
  its expected level: the symbol's mean volume per bar over the previous 20 sessions times
  the universe's time-of-day profile over up to 60 sessions (``xs_relvolprof_60``).
  Volume-confirmed moves tend to continue (Campbell, Grossman & Wang 1993; Llorente et al. 2002).
* **Demeaned overnight gap** (``xs_relgap_1``) and its decay through the session
  (``xs_relgapdecay_W = gap × max(0, 1 - k / W)`` for the k-th bar since the open): opening
  gaps relative to the market tend to revert over the first hours.
* **Previous session's sector-relative return** (``xs_relsectorprev_1``): industry momentum
  at the shortest horizon (Moskowitz & Grinblatt 1999).

Every input is a bar closed by the row's ``event_timestamp``; the profile and the volume
level use earlier sessions only.
"""

from __future__ import annotations

import polars as pl

from feature_repo import indicators as ind

T = "event_timestamp"
LEVEL_BARS = 520  # 20 sessions of 15-minute bars: the symbol's volume level
PROFILE_SESSIONS = 60
REGIME_SHORT, REGIME_LONG = 26, 520
REGIME_MIN_BARS = 127
GAP_DECAYS = (4, 8, 16)


def residual_features(df: pl.DataFrame) -> pl.DataFrame:
    """Add the residual family to the frame of :func:`feature_repo.library.compute_features` (rows in symbol, time order).

    Needs ``ret_log_1``, ``_mkt_r1``, ``ret_overnight_1``, ``_slot``, ``session``, ``sector``, ``volume``.
    """
    r1, u = pl.col("ret_log_1"), pl.col("_u")
    # shared inputs as columns first: polars evaluates a sub-expression again at every mention
    df = df.with_columns(
        _u=r1 - pl.col("_mkt_r1"), _relvolprof=_relative_volume(df),
        xs_relgap_1=pl.col("ret_overnight_1") - pl.col("ret_overnight_1").mean().over(T),
        **{k: e.over("symbol") for k, e in _regime_means().items()},
    )
    abnormal = (pl.col("_relvolprof") - 1.0).clip(0.0, 3.0)
    gap_rel = pl.col("xs_relgap_1")
    df = df.with_columns(
        xs_resid_1=u,
        xs_residlag1_1=u.shift(1).over("symbol"),
        xs_residlag2_1=u.shift(2).over("symbol"),
        xs_residlag3_1=u.shift(3).over("symbol"),
        xs_mktregime_26=ind._safe_div(pl.col("_regime_short"), pl.col("_regime_long")).sqrt(),
        xs_residvol_1=u * abnormal,
        xs_relvolprof_60=pl.col("_relvolprof"),
        **{f"xs_relgapdecay_{w}": gap_rel * (1.0 - pl.col("_slot") / w).clip(0.0, 1.0) for w in GAP_DECAYS},
    )
    return df.with_columns(
        xs_residregime_4=(u * pl.col("xs_mktregime_26")).rolling_sum(4, min_samples=4).over("symbol"),
        xs_residvol_8=pl.col("xs_residvol_1").rolling_sum(8, min_samples=8).over("symbol"),
    ).with_columns(_sector_key=pl.col("sector").fill_null("")).join(
        _sector_previous_session(df), on=["session", "_sector_key"], how="left", maintain_order="left")


def _regime_means() -> dict[str, pl.Expr]:
    """The market regime's two means of the squared market return (per symbol); the regime is sqrt(short / long)."""
    m2 = pl.col("_mkt_r1").pow(2)
    return {
        "_regime_short": m2.rolling_mean(REGIME_SHORT, min_samples=REGIME_SHORT),
        # at least 127 bars (~5 sessions) of market history, so that the 4-bar regime-scaled sum starts with beta's 130
        "_regime_long": m2.rolling_mean(REGIME_LONG, min_samples=REGIME_MIN_BARS),
    }


def _relative_volume(df: pl.DataFrame) -> pl.Series:
    """Volume over its expected level: the symbol's recent level times the universe's time-of-day profile."""
    v = pl.col("volume")
    level = df.select(v.shift(1).rolling_mean(LEVEL_BARS, min_samples=LEVEL_BARS // 4).over("symbol"))["volume"]
    shape = (
        df.with_columns(_x=ind._safe_div(v, level))
        .group_by("session", "_slot").agg(pl.col("_x").mean())
        .sort("session")
        .with_columns(_prof=pl.col("_x").shift(1).rolling_mean(PROFILE_SESSIONS, min_samples=5).over("_slot"))
    )
    joined = df.select("session", "_slot", "volume").with_columns(_level=level).join(
        shape.select("session", "_slot", "_prof"), on=["session", "_slot"], how="left", maintain_order="left")
    return joined.select(ind._safe_div(pl.col("volume"), pl.col("_level") * pl.col("_prof")))["volume"]


def _sector_previous_session(df: pl.DataFrame) -> pl.DataFrame:
    """Per (session, sector): the previous session's equal-weight sector return minus the universe's."""
    per_symbol = (
        df.group_by("symbol", "session").agg(pl.col("ret_log_1").sum().alias("_sret"), pl.col("sector").first().fill_null("").alias("_sector_key"))
    )
    sector = per_symbol.group_by("session", "_sector_key").agg(pl.col("_sret").mean().alias("_sec"))
    market = per_symbol.group_by("session").agg(pl.col("_sret").mean().alias("_mkt"))
    rel = sector.join(market, on="session").with_columns(_rel=pl.col("_sec") - pl.col("_mkt")).sort("session")
    return rel.select("session", "_sector_key", pl.col("_rel").shift(1).over("_sector_key").alias("xs_relsectorprev_1"))
