"""Checks on the feature assets (all blocking unless noted).

* ``coverage_per_symbol``: every clean bar of every symbol has a feature row;
  symbols still in warm-up are named (warning);
* ``nan_share_after_warmup``: no feature is null/NaN/inf on more than 1% of warm rows;
* ``value_ranges``: bounded indicators stay in their textbook range (RSI in [0, 100], ...);
* ``no_lookahead``: features recomputed on bars truncated at random cut points equal the stored ones;
* ``feature_label_leakage``: no feature predicts the next bar's return suspiciously well;
* ``labels_null_only_past_the_end``: each label is null exactly on the last ``h`` bars of a symbol;
* ``online_store_fresh``: the online store holds each symbol's latest bar, with the offline values.
"""


import math
import random
from functools import lru_cache
from pathlib import Path

import dagster as dg
import polars as pl

from feature_repo import FEATURE_NAMES, HORIZONS, compute_features
from feature_repo import store as feast_store
from orchestration.defs.features.assets import bar_features, bar_labels, load_bars, online_features
from orchestration.resources import FeatureStoreResource
from orchestration.warehouse.resource import WarehouseResource

MAX_NULL_SHARE = 0.01
MAX_ABS_IC = 0.3  # the planted alpha's best IC is ~0.1; a leaked label shows up as ~1
RANGES: dict[str, tuple[float, float]] = {
    "tech_rsi_14": (0, 100), "tech_stochk_14": (0, 100), "tech_stochd_3": (0, 100), "tech_williamsr_14": (-100, 0),
    "trend_adx_14": (0, 100), "volu_mfi_14": (0, 100), "xs_rank_ret_4": (0, 1), "xs_rank_ret_26": (0, 1),
    "xs_rank_vol_26": (0, 1), "vol_realized_26": (0, float("inf")), "vol_realized_78": (0, float("inf")),
    "vol_parkinson_26": (0, float("inf")), "vol_garmanklass_26": (0, float("inf")), "vol_natr_14": (0, float("inf")),
    "band_width_20": (0, float("inf")), "volu_relvol_20": (0, float("inf")), "sess_dow_1": (1, 7),
    "sess_minsopen_1": (0, 24 * 60), "sess_barsclose_1": (0, float("inf")), "sess_gapdays_1": (0, float("inf")),
}
CUT_POINTS = 2


def _stored(features: FeatureStoreResource) -> pl.DataFrame:
    """The offline features, read once for all the checks of a run (the spine is rewritten on every update)."""
    spine = feast_store.spine_path(features.offline)
    return _read_stored(str(features.offline), spine.stat().st_mtime_ns if spine.exists() else 0)


@lru_cache(maxsize=1)
def _read_stored(offline: str, _version: int) -> pl.DataFrame:
    return feast_store.read_features(Path(offline))


def _result(passed: bool, message: str, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, description=message, severity=severity, metadata={"message": dg.MetadataValue.text(message), **metadata})


@dg.asset_check(asset=bar_features, blocking=True, description="Every clean bar of every symbol has a feature row.")
def coverage_per_symbol(warehouse: WarehouseResource, features: FeatureStoreResource) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        bars = con.read("select symbol, count(*) as bars from marts.bars where timeframe = ? group by symbol", [features.timeframe])
    rows = _stored(features).group_by("symbol").agg(pl.len().alias("rows"), pl.col("warmup").all().alias("all_warmup"))
    cov = bars.join(rows, on="symbol", how="left").with_columns(coverage=pl.col("rows").fill_null(0) / pl.col("bars"))
    short = cov.filter(pl.col("coverage") < 1.0).sort("coverage")
    young = cov.filter(pl.col("all_warmup").fill_null(False))["symbol"].to_list()
    meta = {"symbols": cov.height, "min_coverage": float(cov["coverage"].min() or 0.0), "symbols_in_warmup": dg.MetadataValue.json(young)}
    if short.height:
        names = ", ".join(f"{r['symbol']} {r['coverage']:.1%}" for r in short.head(5).iter_rows(named=True))
        return _result(False, f"{short.height} symbol(s) with bars but missing feature rows: {names}", **meta)
    note = f"; {len(young)} symbol(s) still in warm-up: {', '.join(young[:5])}" if young else ""
    return _result(True, f"{cov.height} symbols, every bar has features{note}", **meta)


@dg.asset_check(asset=bar_features, blocking=True, description=f"No feature is null/NaN/inf on more than {MAX_NULL_SHARE:.0%} of rows after warm-up.")
def nan_share_after_warmup(features: FeatureStoreResource) -> dg.AssetCheckResult:
    warm = _stored(features).filter(~pl.col("warmup"))
    if warm.is_empty():
        return _result(True, "every row is still in warm-up", dg.AssetCheckSeverity.WARN)
    shares = dict(zip(FEATURE_NAMES, warm.select([pl.col(n).is_null().mean() for n in FEATURE_NAMES]).row(0), strict=True))
    bad = {k: round(v, 4) for k, v in shares.items() if v > MAX_NULL_SHARE}
    worst = max(shares.values())
    meta = {"worst_share": worst, "over_limit": dg.MetadataValue.json(bad)}
    if bad:
        return _result(False, f"null share above {MAX_NULL_SHARE:.0%} after warm-up: {bad}", **meta)
    return _result(True, f"worst null share after warm-up {worst:.3%} ({warm.height} rows)", **meta)


@dg.asset_check(asset=bar_features, blocking=True, description="Bounded indicators stay in their textbook ranges.")
def value_ranges(features: FeatureStoreResource) -> dg.AssetCheckResult:
    stored = _stored(features)
    out = {}
    for name, (lo, hi) in RANGES.items():
        n = stored.filter((pl.col(name) < lo) | (pl.col(name) > hi)).height
        if n:
            out[name] = f"{n} row(s) outside [{lo}, {hi}] (min {stored[name].min()}, max {stored[name].max()})"
    if out:
        return _result(False, "; ".join(f"{k}: {v}" for k, v in out.items()), violations=dg.MetadataValue.json(out))
    return _result(True, f"{len(RANGES)} bounded features within range")


@dg.asset_check(
    asset=bar_features, blocking=True,
    description=f"Features recomputed on bars truncated at {CUT_POINTS} random times equal the stored features up to that time.",
)
def no_lookahead(warehouse: WarehouseResource, features: FeatureStoreResource) -> dg.AssetCheckResult:
    bars, _ = load_bars(warehouse, features.timeframe, incremental=False)
    stored = _stored(features)
    times = bars["close_ts"].unique().sort()
    rng = random.Random(len(times))
    cuts = sorted(times[rng.randrange(len(times) // 4, len(times))] for _ in range(CUT_POINTS)) if len(times) > 8 else []
    worst, failures = 0.0, []
    for cut in cuts:
        truncated = compute_features(bars.filter(pl.col("close_ts") <= cut), bar_length=features.bar_length)
        expected = stored.filter(pl.col("event_timestamp") <= cut)
        diff = _max_rel_diff(truncated, expected)
        worst = max(worst, max(diff.values(), default=0.0))
        failures += [f"{k} differs by {v:.2e} at cut {cut}" for k, v in diff.items() if v > 1e-9]
    meta = {"cuts": dg.MetadataValue.json([str(c) for c in cuts]), "max_rel_diff": worst}
    if failures:
        return _result(False, "look-ahead: " + "; ".join(failures[:5]), **meta)
    return _result(True, f"identical up to {worst:.1e} at {len(cuts)} cut point(s)", **meta)


def _max_rel_diff(a: pl.DataFrame, b: pl.DataFrame) -> dict[str, float]:
    """Largest relative difference per feature between two feature frames on the same (symbol, time) keys."""
    joined = a.join(b, on=["symbol", "event_timestamp"], how="full", suffix="_b", coalesce=True)
    out = {}
    for n in FEATURE_NAMES:
        x, y = pl.col(n).cast(pl.Float64), pl.col(f"{n}_b").cast(pl.Float64)
        mismatch_null = joined.select((x.is_null() != y.is_null()).sum()).item()
        rel = joined.select(((x - y).abs() / (y.abs() + 1e-12).clip(lower_bound=1.0)).max()).item() or 0.0
        out[n] = float("inf") if mismatch_null else rel
    return out


@dg.asset_check(
    asset=bar_features, additional_deps=[bar_labels], blocking=True,
    description=f"No feature's rank IC with the next bar's return exceeds {MAX_ABS_IC} (a leaked label would be ~1).",
)
def feature_label_leakage(features: FeatureStoreResource) -> dg.AssetCheckResult:
    stored = _stored(features).filter(~pl.col("warmup"))
    labels = pl.read_parquet(feast_store.labels_path(features.offline), columns=["symbol", "event_timestamp", "label_fwd_ret_1"])
    joined = stored.join(labels, on=["symbol", "event_timestamp"]).drop_nulls("label_fwd_ret_1")
    if joined.height < 100:
        return _result(True, f"only {joined.height} labelled rows: too few to judge", dg.AssetCheckSeverity.WARN)
    top, ic = strongest_rank_ic(joined)
    meta = {"max_abs_rank_ic": abs(ic), "feature": top}
    if abs(ic) > MAX_ABS_IC:
        return _result(False, f"{top} has rank IC {ic:.3f} with the next bar's return: a leaked future value?", **meta)
    return _result(True, f"strongest feature {top}: rank IC {ic:.3f} with the next bar's return", **meta)


def strongest_rank_ic(frame: pl.DataFrame, label: str = "label_fwd_ret_1") -> tuple[str, float]:
    """The feature whose rank correlation with ``label`` is largest in absolute value, and that correlation."""
    ranked = frame.select([pl.col(n).rank() for n in [*FEATURE_NAMES, label]])
    ics = {n: ranked.select(pl.corr(n, label)).item() for n in FEATURE_NAMES}
    ics = {k: float(v) for k, v in ics.items() if v is not None and not math.isnan(v)}
    top = max(ics, key=lambda k: abs(ics[k]))
    return top, ics[top]


@dg.asset_check(asset=bar_labels, blocking=True, description="Each label is null exactly on a symbol's last h bars (past the data), nowhere else.")
def labels_null_only_past_the_end(features: FeatureStoreResource) -> dg.AssetCheckResult:
    labels = pl.read_parquet(feast_store.labels_path(features.offline)).sort("symbol", "event_timestamp")
    bad = []
    for h in HORIZONS:
        col = f"label_fwd_ret_{h}"
        tail = pl.int_range(pl.len()).over("symbol") >= pl.len().over("symbol") - h
        wrong = labels.filter(pl.col(col).is_null() != tail).height
        if wrong:
            bad.append(f"{col}: {wrong} row(s) null before the end or set past it")
    if bad:
        return _result(False, "; ".join(bad))
    return _result(True, f"labels null only on the last {', '.join(map(str, HORIZONS))} bar(s) of each symbol")


@dg.asset_check(asset=online_features, blocking=True, description="The online store holds each symbol's latest bar with exactly the offline values.")
def online_store_fresh(features: FeatureStoreResource) -> dg.AssetCheckResult:
    stored = _stored(features)
    latest = stored.sort("event_timestamp").group_by("symbol").last()
    online = feast_store.online_features(features.store(), latest["symbol"].to_list())
    stale = online.join(latest.select("symbol", "event_timestamp"), on="symbol").filter(
        pl.any_horizontal([pl.col(c) != pl.col("event_timestamp") for c in online.columns if c.startswith("ts_")])
        | pl.any_horizontal([pl.col(c).is_null() for c in online.columns if c.startswith("ts_")])
    )
    mismatched = _parity(online, latest)
    meta = {"symbols": latest.height, "stale_symbols": dg.MetadataValue.json(stale["symbol"].to_list()[:20])}
    if stale.height or mismatched:
        parts = []
        if stale.height:
            parts.append(f"{stale.height} symbol(s) whose online values are not from their latest bar: {', '.join(stale['symbol'].to_list()[:5])}")
        if mismatched:
            parts.append(f"online differs from offline: {'; '.join(mismatched[:5])}")
        return _result(False, " | ".join(parts), **meta)
    return _result(True, f"{latest.height} symbols online at their latest bar ({latest['event_timestamp'].max()}), values equal offline", **meta)


def _parity(online: pl.DataFrame, offline_latest: pl.DataFrame) -> list[str]:
    joined = online.join(offline_latest, on="symbol", suffix="_off")
    out = []
    for n in FEATURE_NAMES:
        x, y = pl.col(n).cast(pl.Float64), pl.col(f"{n}_off").cast(pl.Float64)
        bad = joined.filter((x.is_null() != y.is_null()) | ((x - y).abs() > 1e-12 * y.abs().clip(lower_bound=1.0)))
        if bad.height:
            out.append(f"{n} on {bad.height} symbol(s)")
    return out


FEATURE_CHECKS = [
    coverage_per_symbol, nan_share_after_warmup, value_ranges, no_lookahead,
    feature_label_leakage, labels_null_only_past_the_end, online_store_fresh,
]
