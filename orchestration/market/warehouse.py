"""The raw layer of the warehouse (DuckDB or PostgreSQL, :mod:`orchestration.warehouse`): append-only bars,
quarantined rejects, batches, sessions.

Tables (schema ``raw``):

* ``bars``: clean rows exactly as received, one ``batch_id`` per ingestion;
* ``bars_rejected``: rows that broke a rule, every original value as text plus ``reason``;
* ``batches``: one row per ingestion (counts, fingerprint, reasons, the Dagster run);
* ``bar_gaps``: per batch, sessions where a symbol has fewer bars than its calendar expects;
* ``symbols``: reference data per symbol (calendar, sector when known);
* ``sessions``: exchange-calendar sessions covering the data (open/close in UTC);
* ``synthetic_oracle``: the synthetic market's expected forward log returns;
* ``corporate_actions`` / ``corporate_actions_rejected`` / ``corporate_action_batches``: splits and cash
  dividends (:mod:`orchestration.market.corporate_actions`), as received, quarantined, and per ingestion.

Re-ingesting identical data is a recorded no-op (same fingerprint): the batch is
logged with ``duplicate_of`` and no rows are appended. Its report (:func:`batch_reports`)
still carries the original's counts, reasons and rejected rows, so the checks judge the
same data the same way: a file blocked once stays blocked when imported again.

Example:
    >>> import tempfile
    >>> from orchestration.warehouse import Warehouse
    >>> with Warehouse(tempfile.mkdtemp() + "/warehouse.duckdb").connect() as session:
    ...     ensure_schema(session)
    ...     session.fetchone("select count(*) from raw.bars")
    (0,)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from orchestration.market.bars import RAW_COLUMNS, SourceBatch
from orchestration.market.calendars import sessions
from orchestration.market.validation import ValidationResult, validate_bars, with_calendar
from orchestration.warehouse import Session

_DDL = """
create schema if not exists raw;
create table if not exists raw.bars (
    symbol varchar not null, timeframe varchar not null, ts timestamptz not null,
    open double precision, high double precision, low double precision, close double precision, volume double precision,
    vwap double precision, trade_count bigint, source varchar not null,
    batch_id varchar not null, ingested_at timestamptz not null
);
create table if not exists raw.bars_rejected (
    batch_id varchar not null, source varchar, source_row bigint, reason varchar not null,
    symbol varchar, timeframe varchar, ts varchar, open varchar, high varchar, low varchar,
    close varchar, volume varchar, vwap varchar, trade_count varchar, rejected_at timestamptz not null
);
create table if not exists raw.batches (
    batch_id varchar primary key, asset varchar, source varchar, run_id varchar,
    started_at timestamptz, finished_at timestamptz,
    rows_received bigint, rows_accepted bigint, rows_rejected bigint,
    reasons json, first_ts timestamptz, last_ts timestamptz, symbols bigint,
    gap_sessions bigint, missing_bars bigint, fingerprint varchar, duplicate_of varchar
);
create table if not exists raw.bar_gaps (
    batch_id varchar, symbol varchar, timeframe varchar, session date, expected integer, present integer
);
create table if not exists raw.symbols (
    symbol varchar primary key, calendar varchar not null, sector varchar, first_batch_id varchar
);
create table if not exists raw.sessions (
    calendar varchar, session date, open_ts timestamptz, close_ts timestamptz, primary key (calendar, session)
);
create table if not exists raw.synthetic_oracle (
    symbol varchar, ts timestamptz, horizon integer, expected_log_return double precision
);
create table if not exists raw.corporate_actions (
    symbol varchar not null, ex_date date not null, kind varchar not null,
    ratio decimal(24, 12), amount decimal(24, 12), source varchar not null,
    batch_id varchar not null, ingested_at timestamptz not null
);
create table if not exists raw.corporate_actions_rejected (
    batch_id varchar not null, source varchar, source_row bigint, reason varchar not null,
    symbol varchar, ex_date varchar, kind varchar, ratio varchar, amount varchar, rejected_at timestamptz not null
);
create table if not exists raw.corporate_action_batches (
    batch_id varchar primary key, asset varchar, source varchar, run_id varchar, started_at timestamptz,
    rows_received bigint, rows_accepted bigint, rows_appended bigint, rows_rejected bigint, reasons json
);
"""


def ensure_schema(con: Session) -> None:
    """Create the raw tables that do not exist yet (dbt's sources must exist before the first ingestion)."""
    con.execute(_DDL)


@dataclass(frozen=True)
class BatchReport:
    """What one ingestion did; rendered into Dagster metadata and check messages."""

    batch_id: str
    asset: str
    source: str
    rows_received: int
    rows_accepted: int
    rows_rejected: int
    reasons: dict[str, int]
    symbols: int
    first_ts: dt.datetime | None
    last_ts: dt.datetime | None
    gap_sessions: int
    missing_bars: int
    duplicate_of: str | None = None
    reject_rows: dict[str, list[int]] = field(default_factory=dict)

    @property
    def reject_share(self) -> float:
        return self.rows_rejected / self.rows_received if self.rows_received else 0.0

    def describe_rejects(self, limit: int = 5) -> str:
        """``reason ×n (rows 3, 9, ...)`` for the most common reasons."""
        parts = []
        for reason, n in list(self.reasons.items())[:limit]:
            rows = ", ".join(str(r) for r in self.reject_rows.get(reason, [])[:5])
            parts.append(f"{reason} ×{n}" + (f" (rows {rows})" if rows else ""))
        return "; ".join(parts)


def merged_reasons(reports: Iterable[BatchReport]) -> dict[str, int]:
    """Reason counts summed over several batches."""
    out: dict[str, int] = {}
    for r in reports:
        for k, v in r.reasons.items():
            out[k] = out.get(k, 0) + v
    return out


def fingerprint(bars: pl.DataFrame) -> str:
    """Content hash of a batch, independent of row order."""
    buf = io.BytesIO()
    bars.drop("source_row").sort("symbol", "timeframe", "ts", nulls_last=True).write_ipc(buf, compression="uncompressed")
    return hashlib.sha256(buf.getvalue()).hexdigest()


def ingest_batch(
    con: Session,
    batch: SourceBatch,
    *,
    asset: str,
    run_id: str | None = None,
    now: dt.datetime | None = None,
) -> BatchReport:
    """Validate a source batch and append it to the raw layer in one transaction."""
    ensure_schema(con)
    now = now or dt.datetime.now(dt.UTC)
    batch_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    fp = fingerprint(batch.bars)
    prior = con.fetchone(
        "select batch_id from raw.batches where fingerprint = ? and duplicate_of is null order by started_at limit 1", [fp]
    )
    result = validate_bars(batch.bars, now=now) if prior is None else None
    report = _report(batch, result, batch_id=batch_id, asset=asset, duplicate_of=prior[0] if prior else None)
    with con.transaction():
        if result is not None:
            _append(con, result, batch, batch_id=batch_id, now=now)
        _record_batch(con, report, run_id=run_id, fp=fp, started=now)
    return report


def _report(batch: SourceBatch, result: ValidationResult | None, *, batch_id: str, asset: str, duplicate_of: str | None) -> BatchReport:
    if result is None:  # identical to an earlier batch: nothing new to validate or store
        return BatchReport(batch_id, asset, batch.label, batch.bars.height, 0, 0, {}, 0, None, None, 0, 0, duplicate_of)
    clean, rej = result.clean, result.rejected
    reject_rows = _rows_by_reason(rej.select("source_row", "reason").iter_rows())
    return BatchReport(
        batch_id=batch_id,
        asset=asset,
        source=batch.label,
        rows_received=batch.bars.height,
        rows_accepted=clean.height,
        rows_rejected=rej.height,
        reasons=result.reason_counts,
        symbols=clean["symbol"].n_unique(),
        first_ts=clean["ts"].min(),
        last_ts=clean["ts"].max(),
        gap_sessions=result.gaps.height,
        missing_bars=int((result.gaps["expected"] - result.gaps["present"]).sum()) if result.gaps.height else 0,
        reject_rows=reject_rows,
    )


def _rows_by_reason(rows: Iterable[tuple[int, str]]) -> dict[str, list[int]]:
    """Source rows per reason code (a row failing several checks counts under each)."""
    out: dict[str, list[int]] = {}
    for row, reason in rows:
        for code in reason.split(";"):
            out.setdefault(code, []).append(row)
    return out


def _append(con: Session, result: ValidationResult, batch: SourceBatch, *, batch_id: str, now: dt.datetime) -> None:
    clean = result.clean.with_columns(pl.lit(batch_id).alias("batch_id"), pl.lit(now).alias("ingested_at")).select(RAW_COLUMNS)
    con.append("raw.bars", clean)
    if result.rejected.height:
        con.append("raw.bars_rejected", result.rejected.with_columns(pl.lit(batch_id).alias("batch_id"), pl.lit(now).alias("rejected_at")))
    if result.gaps.height:
        con.append("raw.bar_gaps", result.gaps.with_columns(pl.lit(batch_id).alias("batch_id")))
    _upsert_symbols(con, result.clean, batch, batch_id)
    _upsert_sessions(con, result.clean)
    if batch.oracle is not None and batch.oracle.height:
        con.insert(
            batch.oracle.select("symbol", "ts", "horizon", "expected_log_return"),
            """insert into raw.synthetic_oracle (symbol, ts, horizon, expected_log_return)
               select o.symbol, o.ts, o.horizon, o.expected_log_return from _frame o
               where not exists (select 1 from raw.synthetic_oracle r
                                 where r.symbol = o.symbol and r.ts = o.ts and r.horizon = o.horizon)""",
        )


def _upsert_symbols(con: Session, clean: pl.DataFrame, batch: SourceBatch, batch_id: str) -> None:
    syms = with_calendar(clean.select("symbol").unique())
    if batch.symbols is not None:
        syms = syms.join(batch.symbols.select("symbol", "sector"), on="symbol", how="left")
    else:
        syms = syms.with_columns(pl.lit(None, dtype=pl.String).alias("sector"))
    con.insert(
        syms.with_columns(pl.lit(batch_id).alias("first_batch_id")).select("symbol", "calendar", "sector", "first_batch_id"),
        """insert into raw.symbols (symbol, calendar, sector, first_batch_id)
           select symbol, calendar, sector, first_batch_id from _frame
           on conflict (symbol) do update set sector = coalesce(excluded.sector, raw.symbols.sector)""",
    )


def _upsert_sessions(con: Session, clean: pl.DataFrame) -> None:
    if clean.is_empty():
        return
    spans = with_calendar(clean.select("symbol", "ts")).group_by("calendar").agg(
        pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")
    )
    for cal, lo, hi in spans.iter_rows():
        sess = sessions(cal, lo.date() - dt.timedelta(days=1), hi.date() + dt.timedelta(days=1))
        con.append("raw.sessions", sess, on_conflict_ignore=True)


def _record_batch(con: Session, r: BatchReport, *, run_id: str | None, fp: str, started: dt.datetime) -> None:
    con.execute(
        "insert into raw.batches values (?, ?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            r.batch_id, r.asset, r.source, run_id, started, r.rows_received, r.rows_accepted, r.rows_rejected,
            json.dumps(r.reasons), r.first_ts, r.last_ts, r.symbols, r.gap_sessions, r.missing_bars, fp, r.duplicate_of,
        ],
    )


#: What a batch's data was found to be; a duplicate takes these from its original.
_JUDGED = ("rows_received", "rows_accepted", "rows_rejected", "reasons", "symbols", "first_ts", "last_ts",
           "gap_sessions", "missing_bars")


def batch_reports(con: Session, *, asset: str, run_id: str | None = None) -> list[BatchReport]:
    """The batches an asset wrote in ``run_id`` (without one: its latest batch), from the raw tables.

    A duplicate batch appended nothing, but its data is its original's: it reports the original's counts,
    reasons and rejected rows (its own ``batch_id`` and ``duplicate_of`` kept), so that re-importing a
    blocked file cannot pass the reject-share check with zero rows.
    """
    where, params = ("b.asset = ? and b.run_id = ?", [asset, run_id]) if run_id else ("b.asset = ?", [asset])
    limit = "" if run_id else "limit 1"
    judged = ", ".join(f"coalesce(o.{c}, b.{c})" for c in _JUDGED)
    rows = con.fetchall(
        f"""select b.batch_id, b.asset, b.source, {judged}, b.duplicate_of, coalesce(o.batch_id, b.batch_id)
            from raw.batches b left join raw.batches o on o.batch_id = b.duplicate_of
            where {where} order by b.started_at desc, b.finished_at desc {limit}""",
        params,
    )
    out = []
    for row in rows:
        rejects = _rows_by_reason(
            con.fetchall("select source_row, reason from raw.bars_rejected where batch_id = ? order by source_row limit 2000", [row[-1]])
        )
        out.append(BatchReport(*row[:6], json.loads(row[6]), *row[7:12], duplicate_of=row[12], reject_rows=rejects))
    return out
