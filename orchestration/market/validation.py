"""Validation at the boundary: every rule of DESIGN.md §3.1 as a pandera (polars) check.

:func:`validate_bars` splits a source frame into clean rows and rejected rows.
A rejected row keeps every original value (as text) plus ``reason``: the
failing checks as ``code:field`` joined with ``;`` (e.g.
``price_not_positive:low;ohlc_inconsistent``). Nothing is dropped or "fixed".

Calendar gaps (bars the exchange calendar expects but the batch lacks, between
each symbol's first and last bar) are reported, not rejected.

Example:
    >>> import datetime as dt, polars as pl
    >>> from orchestration.market.bars import conform
    >>> bars = conform(pl.DataFrame({"symbol": ["AAA"], "timeframe": ["15m"],
    ...     "ts": [dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC)], "open": [10.0], "high": [9.0],
    ...     "low": [8.0], "close": [9.5], "volume": [100.0], "source": ["doc"], "source_row": [1]}))
    >>> validate_bars(bars, now=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)).rejected["reason"].to_list()
    ['ohlc_inconsistent']
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl
from pandera.engines import polars_engine
from pandera.errors import SchemaError, SchemaErrors

from orchestration.market.bars import KEY, SOURCE_COLUMNS, TIMEFRAMES, UTC_TS, calendar_for_symbol
from orchestration.market.calendars import bar_grid

SYMBOL_PATTERN = r"^[A-Z0-9.\-/]{1,15}$"
_ROW = "_row"
_TF_US = {k: int(v.total_seconds() * 1_000_000) for k, v in TIMEFRAMES.items()}


def _finite(col: str) -> pl.Expr:
    return pl.col(col).is_finite()


class BarSchema(pa.DataFrameModel):
    """The §3.1 rules. Check names are the reason codes stored with rejected rows."""

    symbol: str = pa.Field(nullable=False)
    timeframe: str = pa.Field(nullable=False)
    ts: polars_engine.DateTime = pa.Field(nullable=False, dtype_kwargs={"time_unit": "us", "time_zone": "UTC"})
    open: float = pa.Field(nullable=False)
    high: float = pa.Field(nullable=False)
    low: float = pa.Field(nullable=False)
    close: float = pa.Field(nullable=False)
    volume: float = pa.Field(nullable=False)
    vwap: float = pa.Field(nullable=True)
    trade_count: int = pa.Field(nullable=True)

    class Config:
        strict = False  # source/source_row and the helper columns ride along

    @pa.check("symbol", name="symbol_invalid")
    def _symbol(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).str.contains(SYMBOL_PATTERN))

    @pa.check("timeframe", name="timeframe_unsupported")
    def _timeframe(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_in(list(TIMEFRAMES)))

    @pa.check("open", "high", "low", "close", name="price_not_finite")
    def _price_finite(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_finite(data.key))

    @pa.check("open", "high", "low", "close", name="price_not_positive")
    def _price_positive(cls, data: pa.PolarsData) -> pl.LazyFrame:
        # NaN compares greater than everything in polars; finiteness is its own check.
        return data.lazyframe.select(pl.col(data.key).is_nan() | (pl.col(data.key) > 0))

    @pa.check("volume", name="volume_not_finite")
    def _volume_finite(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_finite(data.key))

    @pa.check("volume", name="volume_negative")
    def _volume_nonneg(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_nan() | (pl.col(data.key) >= 0))

    @pa.check("trade_count", name="trade_count_negative", ignore_na=True)
    def _trades_nonneg(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key) >= 0)

    @pa.dataframe_check(name="ohlc_inconsistent")
    def _ohlc(cls, data: pa.PolarsData) -> pl.LazyFrame:
        lo, hi = pl.col("low"), pl.col("high")
        ok = (lo <= pl.min_horizontal("open", "close")) & (hi >= pl.max_horizontal("open", "close")) & (lo <= hi)
        return data.lazyframe.select(ok.fill_null(True))

    @pa.dataframe_check(name="vwap_out_of_range")
    def _vwap(cls, data: pa.PolarsData) -> pl.LazyFrame:
        v = pl.col("vwap")
        return data.lazyframe.select((v.is_null() | v.is_between(pl.col("low"), pl.col("high"))).fill_null(True))

    @pa.dataframe_check(name="ts_misaligned")
    def _aligned(cls, data: pa.PolarsData) -> pl.LazyFrame:
        # Intraday bars sit on the timeframe's UTC grid; daily bars on the session open.
        step = pl.col("timeframe").replace_strict(_TF_US, default=None, return_dtype=pl.Int64)
        ok = (pl.col("timeframe") == "1d") | (pl.col("ts").dt.epoch("us") % step == 0)
        return data.lazyframe.select(ok.fill_null(True))

    @pa.dataframe_check(name="ts_in_future")
    def _not_future(cls, data: pa.PolarsData) -> pl.LazyFrame:
        step = pl.duration(microseconds=pl.col("timeframe").replace_strict(_TF_US, default=0, return_dtype=pl.Int64))
        return data.lazyframe.select((pl.col("ts") + step <= pl.col("_now")).fill_null(True))

    @pa.dataframe_check(name="outside_session")
    def _in_session(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("_in_session"))

    @pa.dataframe_check(name="duplicate_key")
    def _unique_key(cls, data: pa.PolarsData) -> pl.LazyFrame:
        # The first occurrence of a key is kept; later ones are rejected, never merged.
        return data.lazyframe.select(pl.struct(*KEY).is_first_distinct())


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of validating one batch.

    Attributes:
        clean: rows that passed every check (source columns).
        rejected: original values as text, plus ``source_row`` and ``reason``.
        gaps: per symbol, timeframe and session: expected and present bar counts, where some are missing.
    """

    clean: pl.DataFrame
    rejected: pl.DataFrame
    gaps: pl.DataFrame

    @property
    def reason_counts(self) -> dict[str, int]:
        if self.rejected.is_empty():
            return {}
        codes = self.rejected["reason"].str.split(";").explode()
        return dict(sorted(codes.value_counts().iter_rows(), key=lambda kv: (-kv[1], kv[0])))


def with_calendar(df: pl.DataFrame) -> pl.DataFrame:
    """Add each symbol's trading calendar as ``calendar`` (computed once per distinct symbol)."""
    names = df["symbol"].unique().drop_nulls()
    cal = pl.DataFrame({"symbol": names, "calendar": [calendar_for_symbol(s) for s in names]})
    return df.join(cal, on="symbol", how="left", maintain_order="left")


def _session_membership(df: pl.DataFrame) -> pl.Series:
    """True where the bar overlaps a session of its symbol's calendar."""
    valid = with_calendar(df.select("symbol", "timeframe", "ts"))
    known = valid.filter(pl.col("ts").is_not_null() & pl.col("timeframe").is_in(list(TIMEFRAMES)))
    grids = []
    for (cal, tf), part in known.group_by("calendar", "timeframe"):
        lo, hi = part["ts"].min(), part["ts"].max()
        grids.append(
            bar_grid(cal, tf, lo.date() - dt.timedelta(days=1), hi.date() + dt.timedelta(days=1))
            .select("ts")
            .with_columns(pl.lit(cal).alias("calendar"), pl.lit(tf).alias("timeframe"), pl.lit(True).alias("_hit"))
        )
    if not grids:
        return pl.Series("_in_session", [True] * df.height)
    grid = pl.concat(grids).unique()
    hit = valid.join(grid, on=["calendar", "timeframe", "ts"], how="left", maintain_order="left")
    # A null ts or unsupported timeframe fails its own check; don't double-report it here.
    ok = hit["_hit"].fill_null(False) | valid["ts"].is_null() | ~valid["timeframe"].is_in(list(TIMEFRAMES))
    return ok.alias("_in_session")


def calendar_gaps(clean: pl.DataFrame) -> pl.DataFrame:
    """Sessions where a symbol has fewer bars than its calendar expects, within its span in the batch."""
    schema = {"symbol": pl.String, "timeframe": pl.String, "session": pl.Date, "expected": pl.UInt32, "present": pl.UInt32}
    if clean.is_empty():
        return pl.DataFrame(schema=schema)
    spans = clean.group_by("symbol", "timeframe").agg(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
    out = []
    for cal_tf, part in with_calendar(spans).group_by("calendar", "timeframe"):
        cal, tf = cal_tf
        grid = bar_grid(cal, tf, part["lo"].min().date() - dt.timedelta(days=1), part["hi"].max().date() + dt.timedelta(days=1))
        expected = part.join(grid, how="cross").filter(pl.col("ts").is_between(pl.col("lo"), pl.col("hi")))
        present = clean.filter(pl.col("timeframe") == tf).select("symbol", "ts", pl.lit(True).alias("_p"))
        counted = (
            expected.join(present, on=["symbol", "ts"], how="left")
            .group_by("symbol", "timeframe", "session")
            .agg(pl.len().alias("expected"), pl.col("_p").count().alias("present"))
        )
        out.append(counted.filter(pl.col("present") < pl.col("expected")))
    return pl.concat(out).select(list(schema)).cast(schema).sort("symbol", "session")


def _as_text(df: pl.DataFrame) -> pl.DataFrame:
    """Original values as text, exactly as received (timestamps in ISO 8601)."""
    cols = [c for c in SOURCE_COLUMNS if c not in ("source", "source_row")]
    exprs = []
    for c in cols:
        e = pl.col(c)
        if df.schema[c] == UTC_TS:
            e = e.dt.to_string("%Y-%m-%dT%H:%M:%S%.f%:z")
        exprs.append(e.cast(pl.String).alias(c))
    return df.select(pl.col("source"), pl.col("source_row"), *exprs)


def validate_bars(bars: pl.DataFrame, *, now: dt.datetime | None = None) -> ValidationResult:
    """Validate a frame of source columns against §3.1 and split it into clean and rejected rows."""
    now = now or dt.datetime.now(dt.UTC)
    df = bars.with_row_index(_ROW).with_columns(
        _session_membership(bars), pl.lit(now).cast(UTC_TS).alias("_now")
    )
    try:
        BarSchema.validate(df, lazy=True)
        failures = pl.DataFrame(schema={"index": pl.Int64, "reason": pl.String})
    except SchemaErrors as err:
        failures = _row_failures(err.failure_cases)
    except SchemaError as err:  # a frame-level error: wrong dtype, missing column
        raise AssertionError(f"source produced a frame outside the contract: {err}") from err
    reasons = failures.group_by("index").agg(pl.col("reason").unique(maintain_order=True).sort().str.join(";"))
    marked = df.join(reasons.rename({"index": _ROW}), on=_ROW, how="left", maintain_order="left")
    clean = marked.filter(pl.col("reason").is_null()).select(SOURCE_COLUMNS)
    bad = marked.filter(pl.col("reason").is_not_null())
    rejected = _as_text(bad).with_columns(bad["reason"])
    return ValidationResult(clean=clean, rejected=rejected, gaps=calendar_gaps(clean))


def _row_failures(cases: pl.DataFrame) -> pl.DataFrame:
    """Map pandera's failure cases to (row index, ``code[:field]``)."""
    rows = cases.filter(pl.col("index").is_not_null())
    frame_level = cases.filter(pl.col("index").is_null() & (pl.col("check") != "not_nullable"))
    if frame_level.height:
        raise AssertionError(f"frame-level validation failure: {frame_level.to_dicts()[:3]}")
    reason = (
        pl.when(pl.col("check") == "not_nullable")
        .then(pl.lit("null:") + pl.col("column"))
        .when(pl.col("schema_context") == "Column")
        .then(pl.col("check") + pl.lit(":") + pl.col("column"))
        .otherwise(pl.col("check"))
    )
    return rows.select(pl.col("index").cast(pl.Int64), reason.alias("reason"))
