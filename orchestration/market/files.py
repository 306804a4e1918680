"""CSV and Parquet import: vendor files to bars in the §3.1 contract.

What it understands, so that typical vendor files import with no manual editing:

* headers in any case and spacing: ``Date``/``Datetime``/``Timestamp``/``Time``,
  ``Open``/``High``/``Low``/``Close`` (or ``o h l c``), ``Volume``, ``VWAP``,
  ``Trades``, ``Symbol``/``Ticker``; ``Adj Close`` is recognised and ignored (the
  raw close is the bar's close); a separate ``Date`` + ``Time`` pair is combined;
* date formats ``YYYY-MM-DD``, ``M/D/YYYY``, ``YYYYMMDD``, ``D.M.YYYY``, with or
  without a time, ISO 8601 with an offset or ``Z``;
* naive times with a stated zone (``tz``, e.g. ``America/New_York``); naive
  intraday times without one are refused rather than guessed;
* the symbol from a column, the ``symbol`` option, or the file name (the stem up
  to the first ``_``: ``sp500_daily.csv`` is ``SP500``);
* the timeframe stated or inferred (dates only: ``1d``; otherwise the most
  common spacing between a symbol's bars).

Date-only rows are daily bars stamped at the session open of that date in the
symbol's calendar (a non-session date keeps 09:30 local time and is then
rejected by validation as ``outside_session``, never moved).

A file that cannot be read as bars (missing column, unparseable date, text in a
price) raises :class:`~orchestration.errors.SourceFileError` naming the file,
the line and the column. Rows that parse but break a rule are left to validation.

Example:
    >>> src = FileSource("tests/data/sp500_daily.csv.gz")   # doctest: +SKIP
    >>> src.read().bars.select("symbol", "timeframe").unique().rows()  # doctest: +SKIP
    [('SP500', '1d')]
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from orchestration.errors import ConfigError, SourceFileError
from orchestration.market.bars import TIMEFRAMES, UTC_TS, SourceBatch, conform, timeframe_delta
from orchestration.market.calendars import sessions
from orchestration.market.corporate_actions import is_actions_file
from orchestration.market.validation import with_calendar

SUFFIXES = (".csv", ".csv.gz", ".txt", ".parquet", ".pq")

_ALIASES = {
    "ts": ("datetime", "timestamp", "date", "time", "ts", "t", "dt", "bartime", "timestampt"),
    "open": ("open", "o", "openprice"),
    "high": ("high", "h", "highprice"),
    "low": ("low", "l", "lowprice"),
    "close": ("close", "c", "closeprice", "last"),
    "volume": ("volume", "vol", "v"),
    "vwap": ("vwap", "vw"),
    "trade_count": ("tradecount", "trades", "numberoftrades", "n", "count"),
    "symbol": ("symbol", "ticker", "sym", "instrument"),
}
_IGNORED = {"adjclose", "adjustedclose", "openint", "openinterest", "dividends", "stocksplits"}
_REQUIRED = ("ts", "open", "high", "low", "close", "volume")

# Tried in order on the first values of the time column; the first that parses them all wins.
_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%Y%m%d", "%d.%m.%Y")
_DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M%z", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%Y%m%d %H:%M:%S", "%Y%m%d %H%M%S", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M",
)


def _norm(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def symbol_from_filename(path: Path) -> str:
    """``sp500_daily.csv`` → ``SP500``; ``BRK.B.csv`` → ``BRK.B``."""
    stem = path.name
    for suffix in SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return re.split(r"[_\s]", stem, maxsplit=1)[0].upper()


@dataclass(frozen=True)
class FileSource:
    """Bars from a CSV/Parquet file or a folder of them.

    Args:
        path: a file, or a folder whose files ending in one of :data:`SUFFIXES` are read.
        symbol: the symbol for files without a symbol column (default: from the file name).
        timeframe: stated timeframe (default: inferred).
        tz: zone of naive timestamps, e.g. ``America/New_York``.
    """

    path: str | Path
    symbol: str | None = None
    timeframe: str | None = None
    tz: str | None = None
    name: str = "file"

    def __post_init__(self) -> None:
        if self.timeframe is not None:
            timeframe_delta(self.timeframe)
        if self.tz is not None:
            try:
                ZoneInfo(self.tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"tz {self.tz!r}: not a known IANA time zone (e.g. America/New_York)") from None

    def files(self) -> list[Path]:
        p = Path(self.path)
        if p.is_dir():
            # Corporate-actions files sit beside the bars (read by corporate_actions.read_actions_file).
            found = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(SUFFIXES) and not is_actions_file(f))
            if not found:
                raise SourceFileError(str(p), f"no {', '.join(SUFFIXES)} files in this folder")
            return found
        if not p.exists():
            raise SourceFileError(str(p), "no such file or folder")
        return [p]

    def read(self) -> SourceBatch:
        frames = [self._read_one(f) for f in self.files()]
        label = frames[0]["source"][0] if len(frames) == 1 else f"files:{Path(self.path).name}"
        return SourceBatch(bars=pl.concat(frames), label=label)

    def fetch(self, start: dt.datetime, end: dt.datetime) -> SourceBatch:
        batch = self.read()
        return SourceBatch(bars=batch.bars.filter(pl.col("ts").is_between(start, end, closed="left")), label=batch.label)

    # -- one file ---------------------------------------------------------

    def _read_one(self, path: Path) -> pl.DataFrame:
        kind = "parquet" if path.name.lower().endswith((".parquet", ".pq")) else "csv"
        raw = _load(path, kind)
        cols = _map_columns(raw, str(path))
        df = raw.select(pl.col(src).alias(dst) for dst, src in cols.items())
        # Line in the file: the header is line 1 (Parquet: row number from 1).
        df = df.with_row_index("source_row", offset=2 if kind == "csv" else 1).with_columns(pl.col("source_row").cast(pl.Int64))
        symbol = self.symbol or symbol_from_filename(path)
        if "symbol" in df.columns:
            df = df.with_columns(pl.col("symbol").cast(pl.String).str.strip_chars())
        else:
            df = df.with_columns(pl.lit(symbol.upper()).alias("symbol"))
        for col in ("open", "high", "low", "close", "volume", "vwap"):
            if col in df.columns:
                df = df.with_columns(_to_number(df, col, str(path), pl.Float64, cols[col]))
        if "trade_count" in df.columns:
            df = df.with_columns(_to_number(df, "trade_count", str(path), pl.Int64, cols["trade_count"]))
        df, date_only = self._parse_time(df, str(path), cols["ts"])
        timeframe = self.timeframe or ("1d" if date_only else _infer_timeframe(df, str(path)))
        if date_only:
            df = _stamp_session_open(df)
        return conform(df.with_columns(pl.lit(timeframe).alias("timeframe"), pl.lit(f"{kind}:{path.name}").alias("source")))

    def _parse_time(self, df: pl.DataFrame, path: str, header: str) -> tuple[pl.DataFrame, bool]:
        # chrono's %z does not accept the ISO 8601 "Z" suffix: spell it as an offset.
        text = df["ts"].cast(pl.String).str.strip_chars().str.replace(r"Z$", "+00:00")
        if df.schema["ts"] in (pl.Date,) or isinstance(df.schema["ts"], pl.Datetime):
            parsed, date_only = df["ts"], df.schema["ts"] == pl.Date
        else:
            sample = text.drop_nulls().head(50)
            if sample.is_empty():
                raise SourceFileError(path, "no timestamps (the time column is empty)", line=2, column=header)
            fmt, date_only = _detect_format(sample, path, header)
            parsed = text.str.to_date(fmt, strict=False) if date_only else text.str.to_datetime(fmt, strict=False, time_unit="us")
            bad = df.filter(parsed.is_null() & text.is_not_null())
            if bad.height:
                line, value = bad["source_row"][0], text.filter(parsed.is_null() & text.is_not_null())[0]
                raise SourceFileError(path, f"unparseable date {value!r} (expected format {fmt})", line=line, column=header)
        if date_only:
            return df.with_columns(parsed.cast(pl.Date).alias("ts")), True
        if parsed.dtype.time_zone is None:
            if self.tz is None:
                raise SourceFileError(
                    path, "timestamps have no zone: state it with --tz (e.g. America/New_York or UTC)", line=2, column=header
                )
            parsed = parsed.dt.replace_time_zone(self.tz, ambiguous="raise", non_existent="raise")
        return df.with_columns(parsed.dt.convert_time_zone("UTC").cast(UTC_TS).alias("ts")), False


def _load(path: Path, kind: str) -> pl.DataFrame:
    try:
        if kind == "parquet":
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema=False, null_values=["", "NA", "N/A", "null", "NULL", "NaN"])
    except pl.exceptions.PolarsError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SourceFileError(str(path), f"cannot read as {kind}: {first}") from None
    except OSError as err:
        raise SourceFileError(str(path), f"cannot open: {err.strerror}") from None


def _map_columns(raw: pl.DataFrame, path: str) -> dict[str, str]:
    """Our column name → the file's header for it."""
    normalised = {_norm(c): c for c in raw.columns}
    out: dict[str, str] = {}
    for ours, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in normalised and normalised[alias] not in out.values():
                out[ours] = normalised[alias]
                break
    if "ts" in out and _norm(out["ts"]) == "date" and "time" in normalised:
        raise SourceFileError(path, "separate Date and Time columns: join them into one Datetime column", line=1, column="Time")
    missing = [c for c in _REQUIRED if c not in out]
    if missing:
        found = ", ".join(raw.columns)
        name = "date/time" if missing[0] == "ts" else missing[0]
        raise SourceFileError(path, f"missing column {name!r} (found: {found})", line=1, column=name)
    return out


def _to_number(df: pl.DataFrame, col: str, path: str, dtype: pl.DataType, header: str) -> pl.Series:
    s = df[col]
    if s.dtype.is_numeric():
        return s.cast(dtype)
    text = s.cast(pl.String).str.strip_chars()
    num = text.cast(pl.Float64, strict=False)
    bad = num.is_null() & text.is_not_null()
    if bad.any():
        i = bad.arg_true()[0]
        raise SourceFileError(path, f"not a number: {text[i]!r}", line=int(df["source_row"][i]), column=header)
    if dtype == pl.Int64:
        frac = num.is_not_null() & (num != num.round(0))
        if frac.any():
            i = frac.arg_true()[0]
            raise SourceFileError(path, f"not a whole number: {text[i]!r}", line=int(df["source_row"][i]), column=header)
    return num.cast(dtype).alias(col)


def _detect_format(sample: pl.Series, path: str, header: str) -> tuple[str, bool]:
    """The format that parses most of the sample (a stray bad value is then reported at its own line)."""
    scores = []
    for fmt in _DATE_FORMATS:
        ok = sample.filter(sample.str.len_chars() <= 10).str.to_date(fmt, strict=False).drop_nulls().len()
        scores.append((ok, 1, fmt, True))
    for fmt in _DATETIME_FORMATS:
        scores.append((sample.str.to_datetime(fmt, strict=False).drop_nulls().len(), 0, fmt, False))
    ok, _, fmt, date_only = max(scores, key=lambda s: (s[0], s[1]))
    if ok * 2 < sample.len():
        raise SourceFileError(path, f"unparseable date {sample[0]!r} (no known date format)", line=2, column=header)
    return fmt, date_only


def _infer_timeframe(df: pl.DataFrame, path: str) -> str:
    steps = (
        df.sort("symbol", "ts")
        .select((pl.col("ts").diff().over("symbol")).dt.total_seconds().alias("s"))
        .filter(pl.col("s") > 0)["s"]
    )
    if steps.is_empty():
        raise SourceFileError(path, "cannot infer the timeframe from a single bar: pass --timeframe")
    common = int(steps.mode().min())
    for name, delta in TIMEFRAMES.items():
        if int(delta.total_seconds()) == common and name != "1d":
            return name
    raise SourceFileError(path, f"cannot infer the timeframe (most common spacing {common}s): pass --timeframe")


def _stamp_session_open(df: pl.DataFrame) -> pl.DataFrame:
    """Date-only rows: ts = the session open of that date in the symbol's calendar."""
    df = with_calendar(df)
    parts = []
    for (name,), part in df.group_by("calendar"):
        lo, hi = part["ts"].min(), part["ts"].max()
        opens = sessions(name, lo, hi).select(pl.col("session").alias("ts"), "open_ts")
        local = "UTC" if name == "24/7" else "America/New_York"
        fallback = (pl.col("ts").cast(pl.Datetime("us")) + pl.duration(hours=9, minutes=30)).dt.replace_time_zone(local)
        parts.append(
            part.join(opens, on="ts", how="left", maintain_order="left").with_columns(
                pl.coalesce(pl.col("open_ts"), fallback.dt.convert_time_zone("UTC")).cast(UTC_TS).alias("ts")
            ).drop("open_ts")
        )
    return pl.concat(parts).sort("source_row").drop("calendar")
