"""The trader store's write transaction: :class:`StoreTx`, the batch :meth:`trader.store.TraderStore.transaction` yields.

Writes are collected in memory and flushed with one multi-row statement per table when the
transaction ends (the last state of an order or position wins); the audit head is read once
and the chain extended in memory, each record signed while an audit key is set
(:mod:`trader.audit_hmac`). What the transaction wrote goes to the store's in-memory book
once it has committed (:mod:`trader.store_cache`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trader.audit import GENESIS, AuditRecord
from trader.audit_hmac import record_hmac
from trader.domain import Fill, Order, OrderStatus, Position, Symbol, TradingState, to_utc
from trader.errors import AuditConflictError, StoreError
from trader.store_bulk import Write, failed_table, pipelined, write_pipelined, write_rows
from trader.store_cache import BOOK, COUNT_SQL, BookCache, change_count, prefetched
from trader.store_schema import (
    audit,
    audit_hmac,
    corporate_actions,
    equity_marks,
    fills,
    orders,
    parent_orders,
    positions,
    risk_state,
)

# Statements built once: SQLAlchemy caches their compiled form, the values travel as parameters.
_AUDIT_HEAD = sa.select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
_FILL_BY_ID = sa.select(fills).where(fills.c.fill_id == sa.bindparam("b_fill_id"))
_FILL_EXISTS = sa.select(fills.c.fill_id).where(fills.c.fill_id == sa.bindparam("b_fill_id"))  # nearly always: no
#: Alpaca fills stored before fill ids were execution ids: ``"<time>::<execution id>"`` (the activity id).
_ALPACA_LEGACY_FILL = sa.select(fills.c.fill_id).where(fills.c.order_id == sa.bindparam("b_order_id"),
                                                       fills.c.fill_id.like(sa.bindparam("b_pattern")))
_KNOWN_FILLS = sa.select(fills.c.fill_id).where(fills.c.fill_id.in_(sa.bindparam("b_ids", expanding=True)))
_KNOWN_ORDERS = sa.select(orders.c.client_order_id).where(orders.c.client_order_id.in_(sa.bindparam("b_ids", expanding=True)))
_KNOWN_POSITIONS = sa.select(positions.c.symbol).where(positions.c.symbol.in_(sa.bindparam("b_ids", expanding=True)))
_UPDATE_ORDER = sa.update(orders).where(orders.c.client_order_id == sa.bindparam("b_key"))
_UPDATE_POSITION = sa.update(positions).where(positions.c.symbol == sa.bindparam("b_key"))
#: Every order by creation time (also :meth:`trader.store.TraderStore.list_orders`).
ORDERS_IN_TIME = sa.select(orders).order_by(orders.c.created_at, orders.c.client_order_id)
_WORKING_ORDERS = ORDERS_IN_TIME.where(orders.c.status.in_([s.value for s in OrderStatus if not s.is_terminal]))
_ORDER_BY_ID = sa.select(orders).where(orders.c.client_order_id == sa.bindparam("b_cid"))


def read_working_orders(conn: Connection, book: BookCache | None) -> list[Order]:
    """The stored working orders by creation time, read on ``conn`` (in its transaction): from the in-memory
    ``book`` while it is valid (:mod:`trader.store_cache`)."""
    def load() -> list[Order]:
        return [Order.from_stored(row._mapping) for row in conn.execute(_WORKING_ORDERS)]

    return load() if book is None else book.working_orders(conn.connection.dbapi_connection, load)


def read_order(conn: Connection, client_order_id: str) -> Order | None:
    """The stored order, or ``None``, read on ``conn``."""
    row = conn.execute(_ORDER_BY_ID, {"b_cid": client_order_id}).first()
    return Order(**row._asdict()) if row else None
#: The last high-water mark (also :meth:`trader.store.TraderStore.peak_equity`).
LAST_PEAK = sa.select(equity_marks.c.peak).order_by(equity_marks.c.ts.desc()).limit(1)
#: PostgreSQL: :data:`_AUDIT_HEAD` and :data:`LAST_PEAK` as sent with a write transaction's BEGIN, after its lock
#: (:data:`trader.store_engine.PREFETCH`); the transaction takes each row once, before it writes that table.
_HEAD_SQL = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
PEAK_SQL = "SELECT peak FROM equity_marks ORDER BY ts DESC LIMIT 1"
WRITE_PREFETCH = (_HEAD_SQL, PEAK_SQL)


@dataclass(frozen=True)
class TradingStateRecord:
    """The kill switch as stored: the state, why, who set it and when."""

    state: TradingState
    reason: str
    changed_by: str
    changed_at: dt.datetime | None


class StoreTx:
    """The write operations, inside one transaction opened by :meth:`trader.store.TraderStore.transaction`.

    Writes are collected and flushed in one statement per table when the transaction ends
    (:meth:`flush`); the audit head is read once and the chain extended in memory.
    """

    def __init__(self, conn: Connection, audit_key: bytes | None = None, book: BookCache | None = None):
        self._conn = conn
        self._book = book
        self._book_orders: dict[str, Order] = {}  # what this transaction wrote, for the book once committed
        self._book_positions: dict[str, Position] = {}
        self._book_versions: tuple[int, int] | None = None
        self._head: tuple[int, str] | None = None
        self._audit: list[dict[str, Any]] = []
        self._audit_key = audit_key
        self._macs: list[dict[str, Any]] = []  # trader.audit_hmac: one HMAC per record while a key is set
        self._orders: dict[str, dict[str, Any]] = {}
        self._fills: dict[str, Fill] = {}
        self._absent_fills: set[str] = set()  # looked up by expect_fills: not stored
        self._positions: dict[str, Position] = {}
        self._positions_read = False
        self._moved: dict[str, dt.datetime] = {}
        self._prefetch = conn.dialect.name == "postgresql"
        self._marks: list[dict[str, Any]] = []  # PostgreSQL: equity marks, written with the flush's pipeline

    def append_audit(self, kind: str, payload: dict[str, Any], *, ts: dt.datetime) -> tuple[int, str]:
        """Chain a record to the head (``seq`` = head + 1, ``prev_hash`` = head's hash); appended at :meth:`flush`.

        Returns the new head, ``(seq, hash)``. The payload is encoded once, to the canonical text that is
        stored and hashed (:func:`trader.audit.canonical_payload`), and never decoded here.
        """
        if self._head is None:
            row = self._take(_HEAD_SQL, _AUDIT_HEAD)
            self._head = (row[0], row[1]) if row else (0, GENESIS)
        seq, prev = self._head[0] + 1, self._head[1]
        stamp, body, digest = AuditRecord.link(seq=seq, ts=ts, kind=kind, payload=payload, prev_hash=prev)
        self._audit.append({"seq": seq, "ts": stamp, "kind": kind, "payload": body.decode(), "prev_hash": prev, "hash": digest})
        self._head = (seq, digest)
        if self._audit_key is not None:
            self._macs.append({"seq": seq, "hmac": record_hmac(self._audit_key, seq, digest)})
        return self._head

    def _take(self, sql: str, query: sa.Select) -> Any:
        """The first row of ``query``: prefetched with the BEGIN (PostgreSQL: ``sql``, its text; taken once, this
        transaction then writes the table) or read now."""
        values = prefetched(self._conn.connection.dbapi_connection) if self._prefetch else None
        if values and sql in values:
            return values.pop(sql)
        return self._conn.execute(query).first()

    def save_order(self, order: Order) -> None:
        """Insert or update the order (keyed by ``client_order_id``)."""
        self._orders[order.client_order_id] = order.to_record()
        self._book_orders[order.client_order_id] = order

    def working_orders(self) -> list[Order]:
        """The stored working orders by creation time, read on this transaction's connection (its own writes are not
        in the table before :meth:`flush`): from the store's in-memory book while it is valid (:mod:`trader.store_cache`).

        The same connection as the writes: a second one, checked out for a read in the middle of a write, would
        alternate with this one, and a connection finding the file written by another drops its page cache."""
        return read_working_orders(self._conn, self._book)

    def get_order(self, client_order_id: str) -> Order | None:
        """The stored order (as committed, on this transaction's connection), or ``None``."""
        return read_order(self._conn, client_order_id)

    def expect_fills(self, fill_ids: Iterable[str]) -> None:
        """Look these fill ids up in one query, so that :meth:`record_fill` of a new one needs none (a batch of events)."""
        ids = list(dict.fromkeys(fill_ids))
        if ids:
            stored = set(self._conn.execute(_KNOWN_FILLS, {"b_ids": ids}).scalars())
            self._absent_fills.update(i for i in ids if i not in stored)

    def record_fill(self, fill: Fill) -> bool:
        """Record a fill once and move its position; ``False`` (nothing changes) if the ``fill_id`` is known.

        A known ``fill_id`` with different content is a :class:`StoreError`: fills never change.
        """
        known = self._fills.get(fill.fill_id)
        if known is None and fill.fill_id not in self._absent_fills and self._conn.execute(
                _FILL_EXISTS, {"b_fill_id": fill.fill_id}).first() is not None:
            known = Fill(**self._conn.execute(_FILL_BY_ID, {"b_fill_id": fill.fill_id}).one()._asdict())
        if known is not None:
            if known != fill:
                raise StoreError(f"fill {fill.fill_id}: already stored with different content")
            return False
        if fill.venue.startswith("alpaca") and "::" not in fill.fill_id and self._conn.execute(
                _ALPACA_LEGACY_FILL, {"b_order_id": fill.order_id, "b_pattern": f"%::{fill.fill_id}"}).first() is not None:
            return False  # the same execution, stored under its activity id by an earlier version
        self._fills[fill.fill_id] = fill
        self.save_position(self._position(fill.symbol).apply_fill(fill), at=fill.ts)
        return True

    def _position(self, symbol: str) -> Position:
        if not self._positions_read:  # one read for the book: a batch of fills touches most of it
            def load() -> dict[Symbol, Position]:
                return {row.symbol: Position.from_stored(row._mapping) for row in self._conn.execute(sa.select(positions))}

            # Before flush() nothing of this transaction is in the table: the book's committed state
            stored = load() if self._book is None else self._book.positions(self._conn.connection.dbapi_connection, load)
            self._positions = stored | self._positions
            self._positions_read = True
        return self._positions.get(symbol) or Position(symbol=Symbol(symbol))

    def position(self, symbol: str) -> Position:
        """The symbol's position as this transaction sees it (flat if never traded)."""
        return self._position(symbol)

    def corporate_action_applied(self, action_id: str) -> bool:
        query = sa.select(corporate_actions.c.action_id).where(corporate_actions.c.action_id == action_id)
        return self._conn.execute(query).first() is not None

    def record_corporate_action(self, row: dict[str, Any], *, position: Position | None, at: dt.datetime) -> None:
        """Record an applied split or dividend (:mod:`trader.corporate_actions`) and the position it moved."""
        self._conn.execute(sa.insert(corporate_actions), row)
        if position is not None:
            self.save_position(position, at=at)

    def save_position(self, position: Position, *, at: dt.datetime) -> None:
        """Insert or update a position (reconciliation uses this to adopt the broker's view)."""
        self._moved[position.symbol] = to_utc(at, "updated_at")
        self._positions[position.symbol] = position

    def set_trading_state(self, state: TradingState, *, reason: str, changed_by: str, at: dt.datetime) -> TradingStateRecord:
        """Record a trading-state change and its audit record together."""
        record = TradingStateRecord(TradingState(state), reason, changed_by, to_utc(at, "at"))
        self._conn.execute(sa.insert(risk_state).values(state=record.state.value, reason=reason, changed_by=changed_by,
                                                        changed_at=record.changed_at))
        self.append_audit("trading_state", {"state": record.state.value, "reason": reason, "changed_by": changed_by}, ts=at)
        return record

    def save_parent_order(self, row: Mapping[str, Any]) -> None:
        """Insert or update a parent order's row (:mod:`trader.execution`), keyed by ``client_order_id``; written now."""
        key = row["client_order_id"]
        if self._conn.execute(sa.select(parent_orders.c.client_order_id).where(parent_orders.c.client_order_id == key)).first():
            self._conn.execute(sa.update(parent_orders).where(parent_orders.c.client_order_id == key).values(**row))
        else:
            self._conn.execute(sa.insert(parent_orders).values(**row))

    def record_equity(self, *, ts: dt.datetime, equity: Decimal, cash: Decimal) -> Decimal:
        """Mark equity at ``ts``; returns the high-water mark including this mark (on PostgreSQL written at :meth:`flush`)."""
        if self._marks:  # a second mark in one transaction: the first is stored before the last peak is read
            self._conn.execute(sa.insert(equity_marks), self._marks)
            self._marks.clear()
        row = self._take(PEAK_SQL, LAST_PEAK)
        last = None if row is None else Decimal(row[0])
        peak = equity if last is None else max(last, equity)
        mark = {"ts": to_utc(ts, "ts"), "equity": equity, "cash": cash, "peak": peak}
        if self._prefetch and pipelined(self._conn):
            self._marks.append(mark)
        else:
            self._conn.execute(sa.insert(equity_marks), mark)
        return peak

    def flush(self) -> None:
        """Write what this transaction collected: one statement per table (on PostgreSQL all in one round trip)."""
        book_writes = self._book is not None and bool(self._orders or self._moved)
        if pipelined(self._conn):
            self._flush_pipelined(book_writes)
            return
        dbapi_conn = self._conn.connection.dbapi_connection
        before = change_count(dbapi_conn, lock=self._conn.dialect.name == "postgresql") if book_writes else 0
        if self._fills:
            self._insert(fills, [f.to_record() for f in self._fills.values()])
            self._fills.clear()
        if self._moved:
            rows = {s: self._positions[s].to_record() | {"updated_at": at} for s, at in self._moved.items()}
            self._upsert(positions, _KNOWN_POSITIONS, _UPDATE_POSITION, rows)
            self._book_positions.update((s, self._positions[s]) for s in self._moved)
            self._moved.clear()
        if self._orders:
            self._upsert(orders, _KNOWN_ORDERS, _UPDATE_ORDER, self._orders)
            self._orders.clear()
        if self._audit:
            try:
                self._insert(audit, self._audit)
            except sa.exc.IntegrityError:
                raise AuditConflictError(f"audit: another writer appended seq {self._audit[0]['seq']} first; "
                                         "retry the transaction") from None
            self._audit.clear()
        if self._macs:
            self._insert(audit_hmac, self._macs)
            self._macs.clear()
        if book_writes:  # the write lock is held: only this transaction moved the count in between
            self._book_versions = (before, change_count(dbapi_conn))

    def _flush_pipelined(self, book_writes: bool) -> None:
        """:meth:`flush` on PostgreSQL: the count before (locked: until the commit no other writer, not even one past the
        advisory lock, moves it), every table's statement and the count after, in one pipeline."""
        prefetched(self._conn.connection.dbapi_connection).clear()  # the counts move now
        moved = [self._positions[s].to_record() | {"updated_at": at} for s, at in self._moved.items()]
        writes: list[Write] = [(fills, [f.to_record() for f in self._fills.values()], False), (positions, moved, True),
                               (orders, list(self._orders.values()), True), (audit, self._audit, False),
                               (audit_hmac, self._macs, False), (equity_marks, self._marks, False)]
        count = COUNT_SQL[BOOK] if book_writes else None
        try:
            before, after = write_pipelined(self._conn, writes, first=count and count + " FOR UPDATE", last=count)
        except sa.exc.IntegrityError as exc:
            if failed_table(exc) == audit.name:
                raise AuditConflictError(f"audit: another writer appended seq {self._audit[0]['seq']} first; "
                                         "retry the transaction") from None
            raise
        self._book_positions.update((s, self._positions[s]) for s in self._moved)
        if book_writes:
            self._book_versions = (before, after)
        for pending in (self._fills, self._moved, self._orders):
            pending.clear()
        for rows in (self._audit, self._macs, self._marks):
            rows.clear()

    def committed(self) -> None:
        """The transaction committed: its orders and positions go to the in-memory book (:mod:`trader.store_cache`)."""
        if self._book is not None and self._book_versions is not None:
            self._book.committed(*self._book_versions, self._book_orders, self._book_positions)

    def _insert(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if not write_rows(self._conn, table, rows):
            self._conn.execute(sa.insert(table), rows)

    def _upsert(self, table: sa.Table, known: sa.Select, update: sa.Update, rows: dict[str, dict[str, Any]]) -> None:
        if write_rows(self._conn, table, list(rows.values()), upsert=True):
            return
        existing = set(self._conn.execute(known, {"b_ids": list(rows)}).scalars())
        if existing:
            self._conn.execute(update, [rows[k] | {"b_key": k} for k in rows if k in existing])
        if len(existing) < len(rows):
            self._conn.execute(sa.insert(table), [row for k, row in rows.items() if k not in existing])
