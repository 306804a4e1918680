"""Corporate actions: the contract, validation at the boundary, and the CSV/Parquet reader.

A corporate action is one row:

=========  ========  ==============================================================
column     type      rule
=========  ========  ==============================================================
symbol     VARCHAR   the §3.1 symbol pattern
ex_date    DATE      the first session in which the shares trade without the action
kind       VARCHAR   ``split`` or ``cash_dividend``
ratio      DECIMAL   split only: new shares per old share (2-for-1: ``2``; 1-for-10: ``0.1``); > 0, ≠ 1
amount     DECIMAL   cash dividend only: cash per share (``0.24``); > 0
source     VARCHAR   ``synthetic``, ``csv:<file>``, ``alpaca``, …
=========  ========  ==============================================================

Key: (symbol, ex_date, kind); its text ``SYMBOL:YYYY-MM-DD:kind`` is the action's id
(:func:`action_id`), which the trader uses to apply each action once.

An action is *known* at its ex-date: the marts restate history before it (backward
adjustment, ``dbt/models/marts/adjustment_factors.sql``) and the trader applies it to its
positions at the first cycle of that session. Ratios and amounts stay exact (``Decimal``
text here, ``DECIMAL`` in the warehouse).

Like bars, a row that breaks a rule is never dropped or fixed: :func:`validate_actions`
puts it in the rejected frame with every original value as text and ``reason`` (codes
joined with ``;``).

A file of corporate actions sits beside the bar files and is recognised by its name
(:func:`is_actions_file`: the stem ends in ``corporate_actions``, e.g.
``imports/corporate_actions.csv``); the bar import skips it. Headers are matched
case-insensitively; ``type`` is accepted for ``kind``, ``date`` for ``ex_date``, and
Alpaca's ``forward_split``/``reverse_split`` for ``split``.

Example:
    >>> import polars as pl
    >>> raw = pl.DataFrame({"symbol": ["AAA", "BBB"], "ex_date": ["2024-03-04", "2024-03-05"],
    ...                     "kind": ["split", "cash_dividend"], "ratio": ["2", None], "amount": [None, "-1"]})
    >>> result = validate_actions(conform_actions(raw, source="doc"))
    >>> result.clean["ratio"].to_list(), result.rejected["reason"].to_list()
    (['2'], ['amount_not_positive'])
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import polars as pl

from orchestration.errors import SourceFileError
from orchestration.market.validation import SYMBOL_PATTERN

if TYPE_CHECKING:
    from orchestration.warehouse import Session

KINDS = ("split", "cash_dividend")
KEY = ("symbol", "ex_date", "kind")
#: Columns a source hands to ingestion: everything as text except ``source_row`` (exact decimals, raw dates).
ACTION_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ex_date": pl.String(),
    "kind": pl.String(),
    "ratio": pl.String(),
    "amount": pl.String(),
    "source": pl.String(),
    "source_row": pl.Int64(),
}
ACTION_COLUMNS = tuple(ACTION_SCHEMA)
_ALIASES = {
    "symbol": ("symbol", "ticker", "sym"),
    "ex_date": ("exdate", "date", "exdividenddate"),
    "kind": ("kind", "type", "action", "corporateactiontype"),
    "ratio": ("ratio", "splitratio", "factor"),
    "amount": ("amount", "dividend", "rate", "cashamount"),
}
_KIND_ALIASES = {"forward_split": "split", "reverse_split": "split", "split": "split",
                 "cash_dividend": "cash_dividend", "dividend": "cash_dividend"}
_SUFFIXES = (".csv", ".csv.gz", ".txt", ".parquet", ".pq")
_SYMBOL = re.compile(SYMBOL_PATTERN)


def action_id(symbol: str, ex_date: dt.date | str, kind: str) -> str:
    """The id of an action: ``AAA:2024-03-04:split``.

    Example:
        >>> action_id("AAA", dt.date(2024, 3, 4), "split")
        'AAA:2024-03-04:split'
    """
    day = ex_date.isoformat() if isinstance(ex_date, dt.date) else ex_date
    return f"{symbol}:{day}:{kind}"


def is_actions_file(path: Path | str) -> bool:
    """Whether ``path`` is a corporate-actions file (its stem ends in ``corporate_actions``), not bars."""
    name = Path(path).name.lower()
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)].endswith("corporate_actions")
    return False


def empty_actions() -> pl.DataFrame:
    return pl.DataFrame(schema=ACTION_SCHEMA)


def conform_actions(df: pl.DataFrame, *, source: str) -> pl.DataFrame:
    """Text columns in contract order (missing optional ones as nulls), ``source`` and a ``source_row`` if absent."""
    if "source_row" not in df.columns:
        df = df.with_row_index("source_row", offset=1)
    exprs = []
    for col, dtype in ACTION_SCHEMA.items():
        if col == "source":
            exprs.append(pl.lit(source).alias(col))
        elif col in df.columns:
            exprs.append(pl.col(col).cast(dtype))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(col))
    return df.select(exprs)


@dataclass(frozen=True)
class ActionValidation:
    """Clean actions (contract columns, ``ex_date`` as a date) and rejected rows (original text plus ``reason``)."""

    clean: pl.DataFrame
    rejected: pl.DataFrame

    @property
    def reason_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for reason in self.rejected["reason"].to_list():
            for code in reason.split(";"):
                counts[code] = counts.get(code, 0) + 1
        return counts


def _decimal(text: str | None) -> Decimal | None:
    if text is None or not text.strip():
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return Decimal("NaN")
    return value


def _row_reasons(row: dict, seen: set[tuple]) -> list[str]:
    """Reason codes of one row (empty: the row is clean)."""
    reasons = []
    symbol, kind = row["symbol"], row["kind"]
    if symbol is None:
        reasons.append("null:symbol")
    elif not _SYMBOL.match(symbol):
        reasons.append("symbol_invalid")
    text = (row["ex_date"] or "").strip()
    day = None
    if not text:
        reasons.append("null:ex_date")
    else:
        try:  # ISO dates only (fromisoformat alone would also take 20240304)
            day = dt.date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else None
        except ValueError:
            pass
        if day is None:
            reasons.append("ex_date_invalid")
    if kind not in KINDS:
        reasons.append("null:kind" if kind is None else "kind_unsupported")
    ratio, amount = _decimal(row["ratio"]), _decimal(row["amount"])
    if kind == "split":
        if ratio is None or not ratio.is_finite():
            reasons.append("null:ratio" if ratio is None else "ratio_not_a_number")
        elif ratio <= 0 or ratio == 1:
            reasons.append("ratio_not_positive" if ratio <= 0 else "ratio_is_one")
        if amount is not None:
            reasons.append("amount_on_split")
    if kind == "cash_dividend":
        if amount is None or not amount.is_finite():
            reasons.append("null:amount" if amount is None else "amount_not_a_number")
        elif amount <= 0:
            reasons.append("amount_not_positive")
        if ratio is not None:
            reasons.append("ratio_on_dividend")
    key = (symbol, day, kind)
    if not reasons:
        if key in seen:
            reasons.append("duplicate_key")
        seen.add(key)
    return reasons


def validate_actions(actions: pl.DataFrame) -> ActionValidation:
    """Split a frame of :data:`ACTION_COLUMNS` into clean and rejected rows (see the module docstring).

    Kinds are normalised first (``forward_split`` → ``split``); a clean row's ratio or amount
    is its exact decimal text, normalised (``2.0`` → ``2``).
    """
    norm = actions.with_columns(
        pl.col("symbol").str.strip_chars(),
        pl.col("kind").str.strip_chars().str.to_lowercase().replace(_KIND_ALIASES),
    )
    seen: set[tuple] = set()
    reasons = [";".join(_row_reasons(row, seen)) for row in norm.iter_rows(named=True)]
    marked = norm.with_columns(pl.Series("reason", reasons, dtype=pl.String))
    clean = marked.filter(pl.col("reason") == "").drop("reason").with_columns(
        pl.col("ex_date").str.strip_chars().str.to_date("%Y-%m-%d"),
        pl.col("ratio").map_elements(_normal, return_dtype=pl.String),
        pl.col("amount").map_elements(_normal, return_dtype=pl.String),
    )
    bad = actions.with_columns(pl.Series("reason", reasons, dtype=pl.String)).filter(pl.col("reason") != "")
    return ActionValidation(clean=clean, rejected=bad)


def _normal(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    value = Decimal(text.strip())
    return format(value.normalize(), "f") if value == value.to_integral_value() else str(value.normalize())


def read_actions_file(path: Path | str) -> pl.DataFrame:
    """A CSV/Parquet file of corporate actions as :data:`ACTION_COLUMNS` (not validated yet).

    Raises:
        SourceFileError: the file cannot be read, or lacks the ``symbol``, ``ex_date`` or ``kind`` column.
    """
    p = Path(path)
    kind = "parquet" if p.name.lower().endswith((".parquet", ".pq")) else "csv"
    try:
        raw = pl.read_parquet(p) if kind == "parquet" else pl.read_csv(p, infer_schema=False, null_values=["", "NA", "null"])
    except (pl.exceptions.PolarsError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SourceFileError(str(p), f"cannot read as {kind} corporate actions: {first}") from None
    normalised = {re.sub(r"[^a-z0-9]", "", c.lower()): c for c in raw.columns}
    picked = {}
    for ours, aliases in _ALIASES.items():
        found = next((normalised[a] for a in aliases if a in normalised), None)
        if found is not None:
            picked[ours] = found
    missing = [c for c in ("symbol", "ex_date", "kind") if c not in picked]
    if missing:
        raise SourceFileError(str(p), f"missing column {missing[0]!r} (found: {', '.join(raw.columns)})", line=1, column=missing[0])
    df = raw.select(pl.col(src).cast(pl.String).alias(dst) for dst, src in picked.items())
    df = df.with_row_index("source_row", offset=2 if kind == "csv" else 1).with_columns(pl.col("source_row").cast(pl.Int64))
    return conform_actions(df, source=f"{kind}:{p.name}")


def actions_files(folder: Path | str) -> list[Path]:
    """The corporate-actions files in ``folder`` (none if it does not exist)."""
    p = Path(folder)
    if p.is_file():
        return [p] if is_actions_file(p) else []
    return sorted(f for f in p.iterdir() if f.is_file() and is_actions_file(f)) if p.is_dir() else []


_INSERT_NEW = """
insert into raw.corporate_actions (symbol, ex_date, kind, ratio, amount, source, batch_id, ingested_at)
select symbol, ex_date, kind, cast(ratio as decimal(24, 12)), cast(amount as decimal(24, 12)), source, ?, ?
from _frame f
where not exists (
    select 1 from raw.corporate_actions r
    where r.symbol = f.symbol and r.ex_date = f.ex_date and r.kind = f.kind
      and r.ratio is not distinct from cast(f.ratio as decimal(24, 12))
      and r.amount is not distinct from cast(f.amount as decimal(24, 12))
)
"""


@dataclass(frozen=True)
class ActionsReport:
    """What one corporate-actions ingestion did."""

    batch_id: str
    received: int
    accepted: int
    appended: int
    rejected: int
    reasons: dict[str, int]


def ingest_actions(con: Session, actions: pl.DataFrame, *, asset: str, label: str, run_id: str | None = None,
                   now: dt.datetime | None = None) -> ActionsReport:
    """Validate ``actions`` and append them to ``raw.corporate_actions`` (rejects to ``raw.corporate_actions_rejected``).

    An action already stored with the same ratio or amount is not appended again (sources are
    asked for overlapping windows); a changed one is appended, and the latest batch wins in dbt.
    The batch is recorded in ``raw.corporate_action_batches`` under ``asset`` (the reject-share check reads it).
    """
    import json
    import uuid

    from orchestration.market.warehouse import ensure_schema

    ensure_schema(con)
    now = now or dt.datetime.now(dt.UTC)
    batch_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    result = validate_actions(actions)
    before = con.scalar("select count(*) from raw.corporate_actions")
    with con.transaction():
        if result.clean.height:
            con.insert(result.clean, _INSERT_NEW, [batch_id, now])
        if result.rejected.height:
            con.append("raw.corporate_actions_rejected",
                       result.rejected.with_columns(pl.lit(batch_id).alias("batch_id"), pl.lit(now).alias("rejected_at")))
        appended = con.scalar("select count(*) from raw.corporate_actions") - before
        reasons = result.reason_counts
        con.execute(
            "insert into raw.corporate_action_batches values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [batch_id, asset, label, run_id, now, actions.height, result.clean.height, appended, result.rejected.height,
             json.dumps(reasons)],
        )
    return ActionsReport(batch_id, actions.height, result.clean.height, appended, result.rejected.height, reasons)


class ActionSource(Protocol):
    """Anything that can list corporate actions by ex-date (the synthetic market, Alpaca)."""

    name: str

    def corporate_actions(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Actions with ex-date in ``[start, end]`` as :data:`ACTION_COLUMNS` (not validated yet)."""
        ...


def latest_action_batches(con: Session, *, asset: str, run_id: str | None) -> list[ActionsReport]:
    """The corporate-action batches ``asset`` wrote in ``run_id`` (without one, or none in it: its latest batch)."""
    query = ("select batch_id, rows_received, rows_accepted, rows_appended, rows_rejected, reasons "
             "from raw.corporate_action_batches where asset = ? {} order by started_at desc {}")
    rows = con.fetchall(query.format("and run_id = ?", ""), [asset, run_id]) if run_id else []
    rows = rows or con.fetchall(query.format("", "limit 1"), [asset])
    import json

    return [ActionsReport(b, n, ok, new, bad, json.loads(reasons)) for b, n, ok, new, bad, reasons in rows]
