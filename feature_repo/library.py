"""The feature library: every feature's name, family, window and definition, and how to compute them.

Input is a polars frame of clean bars (one timeframe) with :data:`BAR_COLUMNS`;
output has one row per bar: ``symbol``, ``event_timestamp`` (the bar's close, when
its values became knowable), ``created``, ``warmup`` and one column per feature
named ``{family}_{indicator}_{window}``. Windows count bars of the timeframe unless
the definition says sessions. Only bars closed by ``event_timestamp`` are used.

Example:
    >>> from feature_repo.library import FEATURES
    >>> FEATURES["tech_rsi_14"].family
    'tech'
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from feature_repo import indicators as ind
from feature_repo.errors import FeatureInputError
from feature_repo.residual import residual_features

#: Columns the feature code reads (``marts.bars`` joined to its session's open and close).
BAR_COLUMNS: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "sector": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "close_ts": pl.Datetime("us", "UTC"),
    "session": pl.Date(),
    "session_open": pl.Datetime("us", "UTC"),
    "session_close": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "vwap": pl.Float64(),
}
RELVOL_SESSIONS = 20
#: The time-of-day volume profile's first value: 5 sessions for the symbol's level, 5 more for the profile.
PROFILE_WARMUP_SESSIONS = 10
#: Bars an incremental update recomputes before the new ones: beyond every window (the volume profile reads
#: 60 sessions of 520-bar levels: ~2,100 bars), and long enough that the seed of a Wilder/EMA smoothing has
#: decayed below 1e-30 ((13/14)^1000).
INCREMENTAL_LOOKBACK_BARS = 2400


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its column name, family, window (in bars unless ``unit`` says otherwise) and definition."""

    name: str
    family: str
    window: int
    definition: str
    warmup: int  # bars before the first value exists (sessions for unit="sessions")
    unit: str = "bars"
    extra_bars: int = 0  # unit="sessions": bars after those sessions (a bar window over a session-counted input)

    def leading_rows(self, bars_per_session: int) -> int:
        """Rows without a value at the start of a symbol's history, for sessions of ``bars_per_session`` bars."""
        return self.warmup * bars_per_session + self.extra_bars if self.unit == "sessions" else self.warmup


def _spec(name: str, window: int, definition: str, warmup: int | None = None, unit: str = "bars", extra_bars: int = 0) -> FeatureSpec:
    return FeatureSpec(name, name.split("_", 1)[0], window, definition, window if warmup is None else warmup, unit, extra_bars)


_SPECS = [
    _spec("ret_log_1", 1, "ln(C_t / C_{t-1})"),
    _spec("ret_log_4", 4, "ln(C_t / C_{t-4})"),
    _spec("ret_log_26", 26, "ln(C_t / C_{t-26})"),
    _spec("ret_overnight_1", 1, "overnight gap ln(first open of the session / last close of the previous session)", unit="sessions"),
    _spec("ret_intraday_1", 1, "ln(C_t / first open of the session): return since the open", 0, unit="sessions"),
    _spec("vol_realized_26", 26, "sqrt(sum of r_1^2 over 26 bars)", 26),
    _spec("vol_realized_78", 78, "sqrt(sum of r_1^2 over 78 bars)", 78),
    _spec("vol_parkinson_26", 26, "sqrt(sum ln(H/L)^2 / (4 n ln 2)) over 26 bars", 25),
    _spec("vol_garmanklass_26", 26, "sqrt(mean of 0.5 ln(H/L)^2 - (2 ln2 - 1) ln(C/O)^2) over 26 bars", 25),
    _spec("vol_natr_14", 14, "100 * ATR_14 / C, ATR = Wilder-smoothed true range", 14),
    _spec("tech_rsi_14", 14, "Wilder RSI: 100 - 100 / (1 + avg gain / avg loss), Wilder smoothing", 14),
    _spec("tech_macd_26", 26, "(EMA_12(C) - EMA_26(C)) / C", 25),
    _spec("tech_macdsignal_9", 9, "EMA_9(MACD line) / C", 33),
    _spec("tech_macdhist_9", 9, "(MACD line - signal) / C", 33),
    _spec("tech_stochk_14", 14, "100 (C - LL_14) / (HH_14 - LL_14)", 13),
    _spec("tech_stochd_3", 3, "SMA_3 of %K_14", 15),
    _spec("tech_williamsr_14", 14, "-100 (HH_14 - C) / (HH_14 - LL_14)", 13),
    _spec("tech_cci_20", 20, "(TP - SMA_20(TP)) / (0.015 * mean abs deviation), TP = (H+L+C)/3", 19),
    _spec("tech_roc_12", 12, "100 (C_t / C_{t-12} - 1)", 12),
    _spec("trend_sma_20", 20, "C / SMA_20(C) - 1", 19),
    _spec("trend_sma_50", 50, "C / SMA_50(C) - 1", 49),
    _spec("trend_ema_12", 12, "C / EMA_12(C) - 1", 11),
    _spec("trend_ema_26", 26, "C / EMA_26(C) - 1", 25),
    _spec("trend_adx_14", 14, "Wilder ADX over 14 bars (DI from Wilder-smoothed DM and TR, ADX = Wilder(DX))", 27),
    _spec("band_pctb_20", 20, "Bollinger %B: (C - lower) / (upper - lower), bands SMA_20 ± 2 population sd", 19),
    _spec("band_width_20", 20, "Bollinger bandwidth: (upper - lower) / SMA_20", 19),
    _spec("volu_relvol_20", RELVOL_SESSIONS, "V / mean V of the same bar of the session over the previous 20 sessions",
          RELVOL_SESSIONS, unit="sessions"),
    _spec("volu_obvslope_26", 26, "least-squares slope of OBV over 26 bars / mean V over 26 bars", 25),
    _spec("volu_mfi_14", 14, "money flow index: 100 PMF_14 / (PMF_14 + NMF_14)", 14),
    _spec("volu_vwapdist_1", 1, "C / session VWAP - 1 (VWAP of the session's bars so far)", 0, unit="sessions"),
    _spec("sess_minsopen_1", 1, "minutes from the session open to the bar's close", 0),
    _spec("sess_barsclose_1", 1, "bars left until the session close (early closes included)", 0),
    _spec("sess_dow_1", 1, "day of week of the session, Monday = 1", 0),
    _spec("sess_gapdays_1", 1, "calendar days since the previous bar's session: 0 within a session, >1 across "
          "weekends and holidays, so windows spanning a gap show it", 1),
    _spec("xs_rank_ret_4", 4, "percentile rank in [0,1] of ret_log_4 across the universe at the same time", 4),
    _spec("xs_rank_ret_26", 26, "percentile rank in [0,1] of ret_log_26 across the universe", 26),
    _spec("xs_rank_vol_26", 26, "percentile rank in [0,1] of vol_realized_26 across the universe", 26),
    _spec("xs_relmkt_ret_4", 4, "ret_log_4 minus its equal-weight universe mean", 4),
    _spec("xs_relsector_ret_4", 4, "ret_log_4 minus its equal-weight sector mean", 4),
    _spec("xs_beta_130", 130, "rolling beta of r_1 to the equal-weight market r_1 over 130 bars: cov / var", 130),
    # The residual family (feature_repo/residual.py): the universe's mean taken out, conditioned on volume and regime.
    _spec("xs_resid_1", 1, "residual return: r_1 minus the equal-weight universe mean r_1 at the same close", 1),
    _spec("xs_residlag1_1", 1, "xs_resid_1 one bar earlier", 2),
    _spec("xs_residlag2_1", 1, "xs_resid_1 two bars earlier", 3),
    _spec("xs_residlag3_1", 1, "xs_resid_1 three bars earlier", 4),
    _spec("xs_residregime_4", 4, "sum over 4 bars of xs_resid_1 × xs_mktregime_26 (regime-scaled reversal)", 130),
    _spec("xs_residvol_1", 1, "xs_resid_1 × min(max(xs_relvolprof_60 - 1, 0), 3): volume-confirmed residual move",
          PROFILE_WARMUP_SESSIONS, unit="sessions"),
    _spec("xs_residvol_8", 8, "sum over 8 bars of xs_resid_1 × min(max(xs_relvolprof_60 - 1, 0), 3)",
          PROFILE_WARMUP_SESSIONS, unit="sessions", extra_bars=7),
    _spec("xs_relgap_1", 1, "overnight gap minus the universe's mean gap (held through the session)", 1, unit="sessions"),
    *[_spec(f"xs_relgapdecay_{w}", w, f"xs_relgap_1 × max(0, 1 - k / {w}), k = bars since the session open", 1, unit="sessions")
      for w in (4, 8, 16)],
    _spec("xs_relsectorprev_1", 1, "previous session's equal-weight sector return minus the universe's (close to close)",
          1, unit="sessions"),
    _spec("xs_mktregime_26", 26, "market volatility regime: sqrt(mean m^2 over 26 bars / mean m^2 over 520 bars), "
          "m = equal-weight universe r_1", 127),
    _spec("xs_relvolprof_60", 60, "V / (mean V per bar of the symbol over the previous 520 bars × the universe's mean "
          "V/level of the same bar of the session over the previous ≤ 60 sessions)", PROFILE_WARMUP_SESSIONS, unit="sessions"),
]
FEATURES: dict[str, FeatureSpec] = {s.name: s for s in _SPECS}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(s.family for s in _SPECS))
#: Bars of history a symbol needs before every bar-counted feature has a value.
WARMUP_BARS = max(s.warmup for s in _SPECS if s.unit == "bars")
#: Sessions of history a symbol needs before every session-counted feature has a value.
WARMUP_SESSIONS = max(s.warmup for s in _SPECS if s.unit == "sessions")
INTEGER_FEATURES = frozenset({"sess_minsopen_1", "sess_barsclose_1", "sess_dow_1", "sess_gapdays_1"})


def _check_input(bars: pl.DataFrame) -> None:
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise FeatureInputError(f"bars: missing column(s) {', '.join(missing)}")
    if bars.is_empty():
        raise FeatureInputError("bars: the universe is empty (no bars for this timeframe); ingest bars first")


def _stages(o: pl.Expr, h: pl.Expr, lo: pl.Expr, c: pl.Expr, v: pl.Expr) -> list[dict[str, pl.Expr]]:
    """Every per-symbol feature and the inputs several of them read, as column stages computed once each.

    polars re-evaluates a sub-expression every time an expression mentions it (CCI's
    deviation sum reads ``SMA_20(TP)`` twenty times, DX each smoothing four times), so
    shared parts become columns first. Expressions that read other rows of the symbol run
    ``.over("symbol")``; element-wise ones read the row only and run on the whole frame.
    """
    col, per = pl.col, _per_symbol_window
    _, second, third, fourth = ind.adx_stages(h, lo, c, 14)
    pdm, mdm = ind.directional_movement_from(h - col("_prev_h"), -(lo - col("_prev_l")))
    gain, loss = ind.rsi_averages(col("_chg"), 14)
    pos, neg = ind.money_flows(col("_tp"), v, 14)
    pctb, width = ind.bollinger_from(c, col("_sma20"), col("_sd20"))
    macd_line, macd_signal, macd_hist = ind.macd_ratios(col("_macd"), col("_macdsig"), c)
    return [
        {**per(_window_inputs(o, h, lo, c, v)), "_tp": ind.typical_price(h, lo, c)},
        {
            **per({"_pos": pos, "_neg": neg, "_tp_sma20": ind.sma(col("_tp"), 20)}),
            # the previous bar's values are columns (null on a symbol's first bar): these read the row only
            "_pdm": pdm, "_mdm": mdm, "_tr": ind.true_range_from(h, lo, col("_prev_c")),
            "_r1": (c / col("_prev_c")).log(), "_chg": c - col("_prev_c"),  # ln(C_t / C_{t-1}) and C_t - C_{t-1}
            "_macd": col("_ema12") - col("_ema26"), "_stochk": ind.stochastic_k(c, col("_hh14"), col("_ll14")),
            "tech_williamsr_14": ind.williams_r_from(c, col("_hh14"), col("_ll14")),
            "trend_sma_20": c / col("_sma20") - 1.0, "trend_ema_12": c / col("_ema12") - 1.0, "trend_ema_26": c / col("_ema26") - 1.0,
            "band_pctb_20": pctb, "band_width_20": width,
        },
        {
            **per({**second,  # _wpdm, _wmdm, _wtr
                   "_gain": gain, "_loss": loss, "_macdsig": ind.ema(col("_macd"), 9), "tech_stochd_3": ind.sma(col("_stochk"), 3),
                   "vol_realized_26": ind.realized_vol(col("_r1"), 26), "vol_realized_78": ind.realized_vol(col("_r1"), 78)}),
            # sums over the last bars, on the whole frame (one shift per bar, not one per bar and symbol): they
            # read no other symbol's rows, as CCI's SMA_20 is null before a symbol's 20th bar and the slope is
            # masked before its 26th
            "tech_cci_20": ind.cci_from(col("_tp"), col("_tp_sma20"), 20),
            "volu_obvslope_26": pl.when(col("_bar_index") >= 25).then(ind.slope(col("_obv"), 26)) / col("_vsma26"),
            "ret_log_1": col("_r1"), "tech_stochk_14": col("_stochk"),
            "volu_mfi_14": ind.mfi_from(col("_pos"), col("_neg")).clip(0.0, 100.0),  # rolling sums leave ~1e-14 residue
        },
        {
            **third,  # _dx
            "vol_natr_14": 100.0 * col("_wtr") / c,  # ATR_14 = Wilder(TR)
            "tech_rsi_14": ind.rsi_from(col("_gain"), col("_loss")),
            "tech_macd_26": macd_line, "tech_macdsignal_9": macd_signal, "tech_macdhist_9": macd_hist,
        },
        per(fourth),  # adx
    ]


def _window_inputs(o: pl.Expr, h: pl.Expr, lo: pl.Expr, c: pl.Expr, v: pl.Expr) -> dict[str, pl.Expr]:
    """The first stage: windows over one symbol's bars that read the bars only."""
    session = pl.col("session")
    return {
        "_bar_index": pl.int_range(pl.len(), dtype=pl.Int64),
        "_session_index": session.rank("dense").cast(pl.Int64) - 1,
        "sess_gapdays_1": (session - session.shift(1)).dt.total_days(),
        "_prev_c": c.shift(1), "_prev_h": h.shift(1), "_prev_l": lo.shift(1), "_obv": ind.obv(c, v),
        "_hh14": h.rolling_max(14, min_samples=14), "_ll14": lo.rolling_min(14, min_samples=14),
        "_sma20": ind.sma(c, 20), "_sd20": c.rolling_std(20, min_samples=20, ddof=0),
        "_ema12": ind.ema(c, 12), "_ema26": ind.ema(c, 26), "_vsma26": ind.sma(v, 26),
        "ret_log_4": ind.log_return(c, 4),
        "ret_log_26": ind.log_return(c, 26),
        "vol_parkinson_26": ind.parkinson_vol(h, lo, 26),
        "vol_garmanklass_26": ind.garman_klass_vol(o, h, lo, c, 26),
        "tech_roc_12": ind.roc(c, 12),
        "trend_sma_50": c / ind.sma(c, 50) - 1.0,
    }


def _per_symbol_window(stage: dict[str, pl.Expr]) -> dict[str, pl.Expr]:
    """The stage's expressions evaluated per symbol (they read earlier rows of the symbol)."""
    return {k: e.over("symbol") for k, e in stage.items()}


def _session_stages(o: pl.Expr, h: pl.Expr, lo: pl.Expr, c: pl.Expr, v: pl.Expr, bar_length: dt.timedelta) -> list[dict[str, pl.Expr]]:
    """The session features, as column stages (after :func:`_stages`: they read ``_bar_index``).

    Rows are in time order per symbol, so each (symbol, session) is a run of rows: its first
    row's values are gathered by index and its running sums are keyed by a sorted run number,
    instead of windows over ``(symbol, session)``.
    """
    col = pl.col
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    first = (col("_bar_index") == 0) | col("session").ne_missing(col("session").shift(1))
    start, run = col("_start"), col("_run").set_sorted()
    left = (col("session_close") - col("close_ts")).dt.total_seconds() / bar_length.total_seconds()
    price = pl.coalesce(col("vwap"), (h + lo + c) / 3.0)
    return [
        {
            "_start": pl.when(first).then(row).forward_fill(),  # the row of the session's first bar
            "_run": first.cum_sum(),
            # the row before a session's first bar is the previous session's last (none on the symbol's first bar)
            "_gap": pl.when(first & (col("_bar_index") > 0)).then((o / c.shift(1)).log()).otherwise(None),
            "sess_minsopen_1": (col("close_ts") - col("session_open")).dt.total_minutes(),
            "sess_barsclose_1": left.ceil().cast(pl.Int64),
            "sess_dow_1": col("session").dt.weekday().cast(pl.Int64),
        },
        {
            "_slot": row - start,
            "ret_intraday_1": (c / o.gather(start)).log(),
            "ret_overnight_1": col("_gap").gather(start),
            "_session_vwap": (price * v).cum_sum().over(run) / v.cum_sum().over(run),
        },
        {
            "volu_vwapdist_1": ind._safe_div(c, col("_session_vwap")) - 1.0,
            "_relvol_base": v.shift(1).rolling_mean(RELVOL_SESSIONS, min_samples=RELVOL_SESSIONS).over(["symbol", "_slot"]),
        },
        {"volu_relvol_20": ind._safe_div(v, col("_relvol_base"))},
    ]


def _per_symbol(bars: pl.DataFrame, bar_length: dt.timedelta) -> pl.DataFrame:
    o, h, lo, c, v = (pl.col(x) for x in ("open", "high", "low", "close", "volume"))
    df = bars.sort("symbol", "ts")
    for stage in [*_stages(o, h, lo, c, v), *_session_stages(o, h, lo, c, v, bar_length)]:
        df = df.with_columns(**stage)
    return df.rename({"adx": "trend_adx_14"})


def _cross_sectional(df: pl.DataFrame) -> pl.DataFrame:
    t = "event_timestamp"
    ranked = {"xs_rank_ret_4": "ret_log_4", "xs_rank_ret_26": "ret_log_26", "xs_rank_vol_26": "vol_realized_26"}
    # each column's count and rank at the same time, once each (the percentile reads the count twice)
    df = df.with_columns(
        **{f"_n_{k}": pl.col(c).count().over(t) for k, c in ranked.items()},
        **{f"_rank_{k}": pl.col(c).rank("average").over(t) for k, c in ranked.items()},
        xs_relmkt_ret_4=pl.col("ret_log_4") - pl.col("ret_log_4").mean().over(t),
        xs_relsector_ret_4=pl.col("ret_log_4") - pl.col("ret_log_4").mean().over([t, "sector"]),
        _mkt_r1=pl.col("ret_log_1").mean().over(t),
    )

    def pct_rank(k: str) -> pl.Expr:
        n, rank = pl.col(f"_n_{k}"), pl.col(f"_rank_{k}")
        return pl.when(n > 1).then((rank - 1.0) / (n - 1.0)).otherwise(None)

    df = df.with_columns(**{k: pct_rank(k) for k in ranked})
    n = 130
    r, m = pl.col("ret_log_1"), pl.col("_mkt_r1")
    # still in (symbol, time) order from _per_symbol: window expressions do not reorder rows. The four means
    # are columns: cov / var reads var twice (the zero check) and the market's mean in both.
    means = {"_mean_rm": r * m, "_mean_r": r, "_mean_m": m, "_mean_mm": m * m}
    df = df.with_columns(**{k: e.rolling_mean(n, min_samples=n).over("symbol") for k, e in means.items()})
    cov = pl.col("_mean_rm") - pl.col("_mean_r") * pl.col("_mean_m")
    var = pl.col("_mean_mm") - pl.col("_mean_m").pow(2)
    return df.with_columns(xs_beta_130=ind._safe_div(cov, var))


def compute_features(bars: pl.DataFrame, *, bar_length: dt.timedelta, created: dt.datetime | None = None) -> pl.DataFrame:
    """Every feature of :data:`FEATURES` for every bar of ``bars`` (one timeframe, any number of symbols).

    Args:
        bars: clean bars with :data:`BAR_COLUMNS` (extra columns are ignored).
        bar_length: the timeframe's bar length (``bars to close`` counts these).
        created: the ``created`` timestamp written beside the values (default: now, UTC).

    Returns:
        ``symbol, event_timestamp, created, warmup`` and the feature columns, sorted by
        symbol and time. ``warmup`` is true while a symbol has fewer bars (or sessions)
        than the longest window needs; NaN and infinities (e.g. from a bad price) are null.

    Raises:
        FeatureInputError: missing columns or an empty universe.
    """
    _check_input(bars)
    bars = bars.select([pl.col(c).cast(t) for c, t in BAR_COLUMNS.items()])
    df = _per_symbol(bars, bar_length).rename({"close_ts": "event_timestamp"})
    # a bad price makes its symbol's inputs NaN/inf: as nulls they drop out of the universe's means and ranks
    xs_inputs = ("ret_log_1", "ret_log_4", "ret_log_26", "vol_realized_26")
    df = _cross_sectional(df.with_columns(pl.when(pl.col(n).is_finite()).then(pl.col(n)).otherwise(None) for n in xs_inputs))
    df = residual_features(df)
    floats = [n for n in FEATURE_NAMES if n not in INTEGER_FEATURES]
    warm = (pl.col("_bar_index") < WARMUP_BARS) | (pl.col("_session_index") < WARMUP_SESSIONS)
    return df.select(
        "symbol",
        "event_timestamp",
        pl.lit(created or dt.datetime.now(dt.UTC), dtype=pl.Datetime("us", "UTC")).alias("created"),
        warm.alias("warmup"),
        *[pl.when(pl.col(n).is_finite()).then(pl.col(n)).otherwise(None).cast(pl.Float64).alias(n) for n in floats],
        *[pl.col(n).cast(pl.Int64) for n in INTEGER_FEATURES],
    ).select("symbol", "event_timestamp", "created", "warmup", *FEATURE_NAMES)  # (symbol, ts) order = (symbol, close) order


def describe() -> pl.DataFrame:
    """The feature catalogue: name, family, window, unit, warm-up and definition."""
    return pl.DataFrame(
        [{"name": s.name, "family": s.family, "window": s.window, "unit": s.unit, "warmup": s.warmup, "definition": s.definition} for s in _SPECS]
    )
