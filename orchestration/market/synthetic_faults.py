"""Bad rows of every class the validation must catch, injected into the synthetic market's bars on request.

``SyntheticConfig(faults={"null_price": 3, ...})`` makes each fetch carry that many bad rows of each class;
:data:`FAULT_REASONS` names the reason code validation must give each (``tests/market/test_validation.py``).

Example:
    >>> sorted(FAULT_REASONS)[:3]
    ['bad_symbol', 'duplicate_key', 'future_ts']
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import polars as pl

from orchestration.market.bars import UTC_TS, timeframe_delta

#: Injectable bad-row classes and the reason code validation must give each.
FAULT_REASONS: dict[str, str] = {
    "nonpositive_price": "price_not_positive",
    "nonfinite_price": "price_not_finite",
    "ohlc_inconsistent": "ohlc_inconsistent",
    "vwap_out_of_range": "vwap_out_of_range",
    "negative_volume": "volume_negative",
    "negative_trade_count": "trade_count_negative",
    "null_price": "null",
    "bad_symbol": "symbol_invalid",
    "misaligned_ts": "ts_misaligned",
    "future_ts": "ts_in_future",
    "duplicate_key": "duplicate_key",
    "outside_session": "outside_session",
}
_IN_PLACE = ("nonpositive_price", "nonfinite_price", "ohlc_inconsistent", "vwap_out_of_range",
             "negative_volume", "negative_trade_count", "null_price", "bad_symbol")


def inject_faults(bars: pl.DataFrame, faults: Mapping[str, int], *, seed: int, now: dt.datetime) -> pl.DataFrame:
    """Return ``bars`` with ``faults[class]`` bad rows of each class.

    Value faults corrupt existing rows in place (the clean data then has a gap that
    validation reports); key and time faults append corrupted copies, so the
    original bar still flows on.
    """
    if bars.is_empty():
        return bars
    rng = np.random.default_rng([seed, 99])
    in_place = [(c, k) for c, k in faults.items() if c in _IN_PLACE for _ in range(k)]
    rows = rng.choice(bars.height, size=min(len(in_place), bars.height), replace=False)
    df = bars.with_row_index("_i")
    edits: dict[str, dict[int, object]] = {}
    for (cls, _), row in zip(in_place, rows, strict=False):
        r = df.row(int(row), named=True)
        col, value = _corrupt(cls, r)
        edits.setdefault(col, {})[int(row)] = value
    for col, by_row in edits.items():
        idx = pl.Series(list(by_row), dtype=pl.UInt32)
        vals = pl.Series(list(by_row.values()), dtype=df.schema[col])
        df = df.with_columns(df[col].scatter(idx, vals))
    extra = []
    tf = timeframe_delta(str(bars["timeframe"][0]))
    for cls, count in faults.items():
        if cls in _IN_PLACE or count <= 0:
            continue
        copies = df.sample(n=count, with_replacement=count > df.height, seed=int(rng.integers(1 << 31)))
        k = pl.int_range(pl.len())  # distinct offsets: each bad copy has a key of its own
        shift = {
            "misaligned_ts": pl.col("ts") + dt.timedelta(minutes=7),
            "future_ts": pl.lit(now + 5 * tf).dt.truncate(f"{int(tf.total_seconds())}s") + k * tf,
            "duplicate_key": pl.col("ts"),
            # 22:00-23:45 New York: after the close, still on the timeframe grid
            "outside_session": pl.col("ts").dt.truncate("1d") + dt.timedelta(hours=3) + (k % 8) * tf,
        }[cls]
        copy = copies.with_columns(shift.cast(UTC_TS).alias("ts"))
        if cls == "duplicate_key":
            copy = copy.with_columns(pl.col("close").clip(pl.col("low"), pl.col("high")) * 1.0)
        extra.append(copy)
    return pl.concat([df, *extra]).drop("_i")


def _corrupt(cls: str, r: dict) -> tuple[str, object]:
    match cls:
        case "nonpositive_price":
            return "low", -abs(r["low"])
        case "nonfinite_price":
            return "close", float("nan")
        case "ohlc_inconsistent":
            return "high", r["low"] * 0.9
        case "vwap_out_of_range":
            return "vwap", r["high"] * 1.5
        case "negative_volume":
            return "volume", -100.0
        case "negative_trade_count":
            return "trade_count", -1
        case "null_price":
            return "open", None
        case "bad_symbol":
            return "symbol", r["symbol"].lower() + "$"
    raise AssertionError(cls)
