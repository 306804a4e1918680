"""What the EOD compliance run reads: XNYS sessions, the trader's fills and audit log, closing prices.

* Fills are read straight from the ``fills`` table with SQLAlchemy Core and the shared
  :mod:`trader.store_schema` (the module exists for such readers): the run needs a *range* of
  trade dates and a *count* up to a day, neither of which :meth:`TraderStore.list_fills` offers,
  and a count in SQL is what lets a checkpoint be trusted without reading a year of fills.
* The audit log comes through :meth:`TraderStore.audit_records`, the chain format's owner.
* Splits and dividends the trader applied come from its ``corporate_actions`` table, so that the
  tax lots follow the same splits as its positions.
* Closing prices come from ``marts.bars`` in the warehouse (DuckDB, or PostgreSQL in the servers profile),
  opened read-only (the trader and compliance never write the warehouse; DESIGN.md §6).

A fill's *trade date* is its New York date (as in :mod:`trader.compliance.fills`), so the day
``D`` is the UTC interval ``[midnight D New York, midnight D+1 New York)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from trader.audit import AuditRecord
from trader.compliance import ComplianceError, ComplianceFill, load_fills
from trader.compliance.audit_check import StoredRecord
from trader.compliance.corporate_actions import LedgerAction
from trader.compliance.fills import COLUMNS as FILL_COLUMNS
from trader.store import TraderStore
from trader.store_engine import stream_rows
from trader.store_schema import audit as audit_table
from trader.store_schema import corporate_actions as actions_table
from trader.store_schema import fills as fills_table


def _calendar() -> str:
    """The market profile's calendar: XNYS, or 24/7 for crypto (``ALPHALINE_MARKET``)."""
    from trader.market_hours import active_profile

    return active_profile().calendar


def is_session(day: dt.date) -> bool:
    """True if the market trades on ``day`` (XNYS: weekends and exchange holidays are not sessions; crypto: every day)."""
    # Imported here, as the warehouse below: `alphaline compliance verify` uses this module but never
    # needs the calendar (polars, exchange_calendars) or the warehouse.
    from orchestration.market.calendars import sessions

    return sessions(_calendar(), day, day).height == 1


def previous_session(day: dt.date) -> dt.date:
    """The XNYS session before ``day`` (the longest closure on record is well under three weeks)."""
    from orchestration.market.calendars import sessions

    earlier = sessions(_calendar(), day - dt.timedelta(days=21), day - dt.timedelta(days=1))["session"]
    return earlier[-1]


def day_start(day: dt.date) -> dt.datetime:
    """Midnight of ``day`` in New York (crypto: the EOD cut, midnight UTC by default), in UTC: where that trade date's fills begin."""
    from trader.market_hours import active_profile

    return active_profile().day_start(day)


def sqlite_store_missing(url: str) -> bool:
    """True for a SQLite store whose file does not exist (opening it would create an empty one)."""
    parsed = sa.make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") and \
        not Path(parsed.database).exists()


def _require_store(url: str) -> None:
    if sqlite_store_missing(url):
        raise ComplianceError(f"trader store {sa.make_url(url).database}: missing (no fills yet: run the trader first)")


@contextmanager
def _connection(url: str) -> Iterator[sa.Connection]:
    _require_store(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    except sa.exc.OperationalError as exc:
        raise ComplianceError(f"trader store {engine.url.render_as_string(hide_password=True)}: {exc.orig}") from None
    finally:
        engine.dispose()


def count_fills(url: str, *, through: dt.date) -> int:
    """How many fills have a trade date up to and including ``through``."""
    query = sa.select(sa.func.count()).select_from(fills_table).where(fills_table.c.ts < day_start(through + dt.timedelta(days=1)))
    with _connection(url) as conn:
        return int(conn.execute(query).scalar_one())


def read_fills(url: str, *, through: dt.date, after: dt.date | None = None) -> list[ComplianceFill]:
    """Fills with a trade date in ``(after, through]`` (all history when ``after`` is None), validated, in FIFO order.

    Raises:
        FillError: a stored fill breaks the compliance rules (the message names the fill and field).
    """
    # The columns as the stored text (type_coerce: no Decimal or datetime made here only to be
    # checked and converted again): ComplianceFill parses text exactly as the store's types do.
    text = [sa.type_coerce(fills_table.c[name], sa.String).label(name) for name in FILL_COLUMNS]
    query = sa.select(*text).where(fills_table.c.ts < day_start(through + dt.timedelta(days=1)))
    if after is not None:
        query = query.where(fills_table.c.ts >= day_start(after + dt.timedelta(days=1)))
    with _connection(url) as conn:
        rows = [dict(zip(FILL_COLUMNS, row, strict=True))
                for row in conn.execute(query.order_by(fills_table.c.ts, fills_table.c.fill_id)).tuples()]
    return load_fills(rows)


def read_corporate_actions(url: str, *, through: dt.date, after: dt.date | None = None) -> list[LedgerAction]:
    """Splits and dividends the trader applied, with ex-date in ``(after, through]`` (a checkpoint holds the earlier ones)."""
    query = sa.select(actions_table).where(actions_table.c.ex_date <= through.isoformat())
    if after is not None:
        query = query.where(actions_table.c.ex_date > after.isoformat())
    with _connection(url) as conn:
        if not sa.inspect(conn).has_table(actions_table.name):  # a store from before corporate actions: none
            return []
        rows = conn.execute(query.order_by(actions_table.c.ex_date, actions_table.c.symbol, actions_table.c.kind)).all()
    return [LedgerAction(symbol=r.symbol, ex_date=dt.date.fromisoformat(r.ex_date), kind=r.kind, ratio=r.ratio, amount=r.amount)
            for r in rows]


def read_audit_records(url: str) -> list[AuditRecord]:
    """The trader's whole audit chain, oldest first."""
    _require_store(url)
    with TraderStore(url) as store:
        return list(store.audit_records())


def read_audit_rows(url: str) -> Iterator[StoredRecord]:
    """The trader's whole audit chain as stored (payload as canonical JSON text), oldest first, read in chunks."""
    _require_store(url)
    with TraderStore(url) as store:
        yield from store.audit_rows()


def count_audit_records(url: str) -> int:
    """How many records the audit chain has."""
    with _connection(url) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(audit_table)).scalar_one())


def read_audit_hashes(url: str, *, chunk: int = 20_000) -> Iterator[tuple[int, str]]:
    """``(seq, hash)`` of the whole audit chain, oldest first, read in chunks: what the HMAC check needs.

    Two columns, not the stored rows of :func:`read_audit_rows`: the EOD run has already
    hashed every payload once, and leaving them out of a second pass halves its cost.
    """
    query = sa.select(audit_table.c.seq, audit_table.c.hash).order_by(audit_table.c.seq)
    with _connection(url) as conn:
        yield from stream_rows(conn, query, chunk=chunk)


def closing_marks(location: str, day: dt.date) -> dict[str, Decimal]:
    """Symbol → the session's last close in ``marts.bars`` (the latest bar close of that session).

    ``location``: the warehouse (a DuckDB file or the servers profile's PostgreSQL URL, :mod:`orchestration.warehouse`).
    Prices are DOUBLE in the warehouse; each becomes the Decimal of its shortest repr, so
    ``101.23`` is ``Decimal("101.23")``, not the binary float's 50-digit expansion.

    Raises:
        ComplianceError: the warehouse or ``marts.bars`` does not exist yet.
    """
    from orchestration.warehouse import Warehouse, WarehouseError

    warehouse = Warehouse(location)
    if warehouse.kind == "duckdb" and not warehouse.exists():
        raise ComplianceError(f"warehouse {location}: missing (closing prices come from marts.bars: ingest bars first)")
    try:
        with warehouse.connect(read_only=True) as con:
            if not con.table_exists("marts", "bars"):
                raise ComplianceError(f"warehouse {warehouse.describe()}: marts.bars does not exist yet (ingest bars first)")
            rows = con.fetchall(
                "select symbol, close from (select symbol, close, row_number() over (partition by symbol "
                "order by close_ts desc, ts desc) as n from marts.bars where session = ?) last_bar where n = 1",
                [day],
            )
    except WarehouseError as err:
        raise ComplianceError(str(err)) from None
    return {symbol: Decimal(repr(float(close))) for symbol, close in rows}
