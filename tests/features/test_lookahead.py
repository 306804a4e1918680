"""No look-ahead (DESIGN.md §4.1): features at t come only from bars closed by t; labels never leak into features."""

from __future__ import annotations

import datetime as dt
import math
import random

import polars as pl
import pytest

from feature_repo import FEATURE_NAMES, compute_features, compute_labels
from feature_repo.library import INCREMENTAL_LOOKBACK_BARS
from feature_repo.store import merge_features, merge_labels, read_features, write_features, write_labels
from orchestration.defs.features.checks import MAX_ABS_IC, strongest_rank_ic
from tests.features.synthetic_bars import BAR, feature_bars

CREATED = dt.datetime(2024, 9, 1, tzinfo=dt.UTC)


def _features(bars: pl.DataFrame) -> pl.DataFrame:
    return compute_features(bars, bar_length=BAR, created=CREATED)


def _assert_same(actual: pl.DataFrame, expected: pl.DataFrame, *, tol: float = 1e-12) -> None:
    assert actual.select("symbol", "event_timestamp").equals(expected.select("symbol", "event_timestamp"))
    for name in FEATURE_NAMES:
        a, e = actual[name].cast(pl.Float64), expected[name].cast(pl.Float64)
        assert (a.is_null() == e.is_null()).all(), f"{name}: nulls differ"
        diff = ((a - e).abs() / e.abs().clip(lower_bound=1.0)).max()
        assert (diff or 0.0) <= tol, f"{name}: differs by {diff}"


def test_features_on_bars_truncated_at_t_equal_full_history_features_at_t() -> None:
    bars = feature_bars()
    full = _features(bars)
    closes = bars["close_ts"].unique().sort()
    rng = random.Random(20240603)
    for cut in sorted(rng.sample(closes.to_list()[10:], 6)):
        truncated = _features(bars.filter(pl.col("close_ts") <= cut))
        _assert_same(truncated, full.filter(pl.col("event_timestamp") <= cut))


def test_features_when_a_future_bar_changes_do_not_change_before_it() -> None:
    bars = feature_bars()
    cut = bars["close_ts"].unique().sort()[500]
    shocked = bars.with_columns(
        pl.when(pl.col("close_ts") > cut).then(pl.col(c) * 3.0).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close")
    )
    before = pl.col("event_timestamp") <= cut
    _assert_same(_features(shocked).filter(before), _features(bars).filter(before))


def test_labels_are_forward_returns_and_null_past_the_end_never_zero() -> None:
    bars = feature_bars(n_symbols=2)
    labels = compute_labels(bars)
    one = labels.filter(pl.col("symbol") == "AAA")
    closes = bars.filter(pl.col("symbol") == "AAA").sort("ts")["close"].to_list()
    assert one["label_fwd_ret_4"][10] == pytest.approx(math.log(closes[14] / closes[10]), rel=1e-12)
    for h in (1, 4, 26):
        tail = one[f"label_fwd_ret_{h}"].tail(h)
        assert tail.null_count() == h
        assert one[f"label_fwd_ret_{h}"].head(one.height - h).null_count() == 0
        assert one[f"label_fwd_sign_{h}"].tail(h).null_count() == h


def test_incremental_update_on_a_trailing_window_equals_the_full_history(tmp_path) -> None:
    bars = feature_bars(first=dt.date(2024, 1, 2))  # longer than the lookback, so the window is a real tail
    sessions = bars["session"].unique().sort()
    yesterday, today = sessions[-2], sessions[-1]
    write_features(_features(bars.filter(pl.col("session") <= yesterday)), tmp_path)
    write_labels(compute_labels(bars.filter(pl.col("session") <= yesterday)), tmp_path)
    per_session = bars.filter(pl.col("session") == today).height / bars["symbol"].n_unique()
    lookback = max(40, -(-INCREMENTAL_LOOKBACK_BARS // int(per_session)))
    assert lookback < sessions.len()
    window = bars.filter(pl.col("session") >= sessions[-lookback])
    added = merge_features(_features(window), tmp_path)
    merge_labels(compute_labels(window), tmp_path)
    assert added == bars.filter(pl.col("session") == today).height
    merged = read_features(tmp_path)
    _assert_same(merged, _features(bars), tol=1e-9)
    assert merged["warmup"].equals(_features(bars)["warmup"])
    labels = pl.read_parquet(tmp_path / "labels.parquet")
    assert labels.equals(compute_labels(bars))


def test_leakage_sentinel_when_a_feature_is_the_future_return_flags_it() -> None:
    bars = feature_bars()
    frame = _features(bars).join(compute_labels(bars), on=["symbol", "event_timestamp"]).filter(~pl.col("warmup")).drop_nulls("label_fwd_ret_1")
    name, ic = strongest_rank_ic(frame)
    assert abs(ic) < MAX_ABS_IC, f"an honest feature ({name}) should not look leaked"
    leaked = frame.with_columns(tech_cci_20=pl.col("label_fwd_ret_1") + 1e-7 * pl.col("tech_cci_20"))
    assert strongest_rank_ic(leaked)[0] == "tech_cci_20"
    assert strongest_rank_ic(leaked)[1] > MAX_ABS_IC


def test_a_shuffled_label_has_no_information() -> None:
    bars = feature_bars()
    frame = _features(bars).join(compute_labels(bars), on=["symbol", "event_timestamp"]).filter(~pl.col("warmup")).drop_nulls("label_fwd_ret_1")
    shuffled = frame.with_columns(pl.col("label_fwd_ret_1").shuffle(seed=3))
    assert abs(strongest_rank_ic(shuffled)[1]) < 0.05
