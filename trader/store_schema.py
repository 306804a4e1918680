"""Tables of the trader's state store (SQLAlchemy Core), shared by the store and by readers such as compliance.

Column types are chosen to be exact and portable: :class:`DecimalText` keeps a
``Decimal`` as its exact string (``"0.10"`` stays ``"0.10"``), :class:`UTCText` a timestamp
as fixed-width ISO 8601 UTC (``2024-03-05T15:00:00.000000+00:00``), which sorts as text.
The ``fills`` columns are DESIGN.md §3.5's.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeDecorator


class DecimalText(TypeDecorator[Decimal]):
    """A ``Decimal`` stored as its exact text; binding a float is refused (it is not exact)."""

    impl = sa.String(64)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, float) or isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise TypeError(f"store: {value!r} ({type(value).__name__}) is not a Decimal")
        return str(value)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(value)

    def bind_processor(self, dialect: Any) -> Any:
        """:meth:`process_bind_param` in one call per value (the trader binds thousands per cycle): a ``Decimal``
        straight to its text, anything else through the checks."""
        if self.impl_instance.bind_processor(dialect) is not None:
            return super().bind_processor(dialect)
        checked = self.process_bind_param

        def process(value: Any) -> str | None:
            return str(value) if type(value) is Decimal else checked(value, dialect)

        return process


class UTCText(TypeDecorator[dt.datetime]):
    """An aware datetime stored as fixed-width ISO 8601 in UTC; a naive datetime is refused."""

    impl = sa.String(32)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime) or value.utcoffset() is None:
            raise TypeError(f"store: {value!r} is not a timezone-aware datetime")
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")

    def process_result_value(self, value: Any, dialect: Any) -> dt.datetime | None:
        return None if value is None else dt.datetime.fromisoformat(value)

    def bind_processor(self, dialect: Any) -> Any:
        """:meth:`process_bind_param` in one call per value: a datetime already in UTC straight to its text
        (``astimezone(UTC)`` of it is itself), anything else through the checks."""
        if self.impl_instance.bind_processor(dialect) is not None:
            return super().bind_processor(dialect)
        checked, utc = self.process_bind_param, dt.UTC

        def process(value: Any) -> str | None:
            if type(value) is dt.datetime and value.tzinfo is utc:
                return value.isoformat(timespec="microseconds")
            return checked(value, dialect)

        return process


metadata = sa.MetaData()

orders = sa.Table(
    "orders", metadata,
    sa.Column("client_order_id", sa.String(128), primary_key=True),
    sa.Column("order_id", sa.String(128), index=True),
    sa.Column("symbol", sa.String(15), nullable=False, index=True),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("order_type", sa.String(16), nullable=False),
    sa.Column("time_in_force", sa.String(8), nullable=False),
    sa.Column("qty", DecimalText, nullable=False),
    sa.Column("limit_price", DecimalText),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("filled_qty", DecimalText, nullable=False),
    sa.Column("avg_fill_price", DecimalText),
    sa.Column("fees", DecimalText, nullable=False),
    sa.Column("status_reason", sa.Text, nullable=False),
    sa.Column("created_at", UTCText, nullable=False, index=True),
    sa.Column("updated_at", UTCText, nullable=False),
    # stop, trailing and linked (bracket/OCO) orders; added to an older store on open (:data:`ADDED_ORDER_COLUMNS`)
    sa.Column("stop_price", DecimalText),
    sa.Column("trail_percent", DecimalText),
    sa.Column("trail_price", DecimalText),
    sa.Column("order_class", sa.String(8), nullable=False, server_default="simple"),
    sa.Column("parent_id", sa.String(128)),
)

#: Columns of ``orders`` newer than the first store files: ``ALTER TABLE ... ADD COLUMN`` when missing.
ADDED_ORDER_COLUMNS = ("stop_price", "trail_percent", "trail_price", "order_class", "parent_id")

fills = sa.Table(
    "fills", metadata,
    sa.Column("fill_id", sa.String(128), primary_key=True),
    sa.Column("order_id", sa.String(128), nullable=False),
    sa.Column("client_order_id", sa.String(128), nullable=False, index=True),
    sa.Column("symbol", sa.String(15), nullable=False, index=True),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("qty", DecimalText, nullable=False),
    sa.Column("price", DecimalText, nullable=False),
    sa.Column("fee", DecimalText, nullable=False),
    sa.Column("ts", UTCText, nullable=False, index=True),
    sa.Column("venue", sa.String(32), nullable=False),
    sa.Column("account", sa.String(64), nullable=False),
)

positions = sa.Table(
    "positions", metadata,
    sa.Column("symbol", sa.String(15), primary_key=True),
    sa.Column("qty", DecimalText, nullable=False),
    sa.Column("avg_cost", DecimalText, nullable=False),
    sa.Column("realized_pnl", DecimalText, nullable=False),
    sa.Column("fees", DecimalText, nullable=False),
    sa.Column("updated_at", UTCText, nullable=False),
)

#: One row per change: the latest row is the trading state; the rest is its history.
risk_state = sa.Table(
    "risk_state", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("changed_by", sa.String(128), nullable=False),
    sa.Column("changed_at", UTCText, nullable=False),
)

#: :class:`trader.audit.AuditRecord` rows; ``payload`` is the canonical JSON that was hashed.
#:
#: ``hash`` has no unique index (stores created before issue 20 keep theirs: SQLite drops a table's inline
#: UNIQUE only by rebuilding it). ``seq`` is the key that refuses a second record at a place in the chain
#: (:class:`~trader.errors.AuditConflictError`), every hash covers its ``seq``, and nothing looks a record up
#: by hash; an index over random hashes cost a random page per record, ~40 % of a cycle's WAL bytes.
audit = sa.Table(
    "audit", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False, index=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

#: The HMAC of each audit record written while ``ALPHALINE_AUDIT_KEY`` was set (:mod:`trader.audit_hmac`).
audit_hmac = sa.Table(
    "audit_hmac", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hmac", sa.String(64), nullable=False),
)

#: Equity marks with the running high-water mark (drawdown tiers and the daily loss limit survive restarts).
equity_marks = sa.Table(
    "equity_marks", metadata,
    sa.Column("ts", UTCText, primary_key=True),
    sa.Column("equity", DecimalText, nullable=False),
    sa.Column("cash", DecimalText, nullable=False),
    sa.Column("peak", DecimalText, nullable=False),
)

#: Parent orders of the execution algorithms (:mod:`trader.execution`): the child schedule, kept so that a restart
#: resumes it. A child's ``client_order_id`` is the parent's plus ``-s<slice>``; whether a slice went out is read
#: from ``orders`` (one row per child, like any order).
parent_orders = sa.Table(
    "parent_orders", metadata,
    sa.Column("client_order_id", sa.String(128), primary_key=True),
    sa.Column("symbol", sa.String(15), nullable=False, index=True),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("qty", DecimalText, nullable=False),
    sa.Column("algo", sa.String(8), nullable=False),
    sa.Column("arrival", DecimalText),
    sa.Column("slices", sa.Text, nullable=False),  # JSON: [[due (ISO 8601 UTC), qty (exact text)], ...]
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("status_reason", sa.Text, nullable=False),
    #: The trading state (kill switch) record in force when it was scheduled: any change since stops it.
    sa.Column("state_seen", sa.Text, nullable=False),
    sa.Column("created_at", UTCText, nullable=False, index=True),
    sa.Column("updated_at", UTCText, nullable=False),
)

#: Splits and cash dividends applied to the book, once each (:mod:`trader.corporate_actions`): the shares a split
#: adds without a fill, and the cash a dividend moves.
corporate_actions = sa.Table(
    "corporate_actions", metadata,
    sa.Column("action_id", sa.String(64), primary_key=True),
    sa.Column("symbol", sa.String(15), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ex_date", sa.String(10), nullable=False),
    sa.Column("ratio", DecimalText),
    sa.Column("amount", DecimalText),
    sa.Column("qty_before", DecimalText, nullable=False),
    sa.Column("qty_after", DecimalText, nullable=False),
    sa.Column("avg_cost_before", DecimalText, nullable=False),
    sa.Column("avg_cost_after", DecimalText, nullable=False),
    sa.Column("cash", DecimalText, nullable=False),
    sa.Column("applied_at", UTCText, nullable=False),
)

_APPEND_ONLY = ("audit", "fills", "audit_hmac", "corporate_actions")

#: SQLite: the database itself refuses to rewrite history.
APPEND_ONLY_TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
    for table in _APPEND_ONLY for op in ("UPDATE", "DELETE")
)

#: PostgreSQL: the same refusal (row and TRUNCATE statements alike), one trigger function for both tables.
APPEND_ONLY_TRIGGERS_POSTGRES = (
    "CREATE OR REPLACE FUNCTION alphaline_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only', ERRCODE = 'integrity_constraint_violation'; END $$",
    *(
        f"CREATE OR REPLACE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION alphaline_append_only()"
        for table in _APPEND_ONLY for op in ("UPDATE", "DELETE", "TRUNCATE")
    ),
)


def append_only_ddl(dialect: str) -> tuple[str, ...]:
    """The statements that make ``audit``, ``audit_hmac`` and ``fills`` append-only in the database (none for other dialects:
    there the store's API, which has no update or delete for them, is the only guard)."""
    return {"sqlite": APPEND_ONLY_TRIGGERS, "postgresql": APPEND_ONLY_TRIGGERS_POSTGRES}.get(dialect, ())


def add_missing_order_columns(conn: Connection) -> None:
    """A store created before stop and linked orders gets their (nullable or defaulted) columns."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("orders")}
    for name in ADDED_ORDER_COLUMNS:
        if name not in present:
            column = orders.c[name]
            default = f" NOT NULL DEFAULT '{column.server_default.arg}'" if column.server_default is not None else ""  # type: ignore[attr-defined]
            conn.exec_driver_sql(f"ALTER TABLE orders ADD COLUMN {name} {column.type.compile(conn.dialect)}{default}")
