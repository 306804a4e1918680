"""The trader's state store: orders, fills, positions, the kill switch, equity marks and the audit chain.

SQLAlchemy 2 Core on any URL; by default SQLite in WAL mode at
``$ALPHALINE_HOME/trader/trader.db`` (:func:`default_store_url`). Money and quantities are
stored as exact decimal TEXT, timestamps as fixed-width ISO 8601 UTC TEXT (so they sort).

Writes go through :meth:`TraderStore.transaction`, which yields a :class:`StoreTx`: an order
update, its fill, the position it moves and their audit records commit together or not
at all. On SQLite a write transaction takes the write lock up front (``BEGIN IMMEDIATE``),
so the audit head it reads cannot move before it appends; elsewhere a concurrent append
fails on the ``seq`` key with :class:`~trader.errors.AuditConflictError` (retry). The
audit and fills tables are append-only: the API has no update or delete for them, and on
SQLite triggers refuse both.

A transaction is a batch: the audit head is read once and the chain is extended in memory,
and orders, fills, positions and audit records are written with one multi-row statement
each when the block ends (the last state of an order or position wins).

On SQLite and PostgreSQL the working orders, the positions, a day of order ids and the kill switch are
answered from memory while database counters that triggers move on every write — by any
connection or process — say nothing changed them (:mod:`trader.store_cache`).

Durability (SQLite, WAL): a transaction is durable when ``transaction()`` returns — its
commit is synced to disk (``synchronous=FULL``) — unless it is opened with
``durable=False``. Such a commit reaches the operating system (a crash of the process
loses nothing) but is synced only by the next durable commit: the WAL is one file, so
syncing it syncs every commit before. A power cut or OS crash can therefore lose only
``durable=False`` commits that no durable commit has followed yet — nothing a caller has
acknowledged, if it acknowledges only after a durable commit.

Example:
    >>> import datetime as dt, tempfile
    >>> from trader.domain import TradingState
    >>> store = TraderStore(f"sqlite:///{tempfile.mkdtemp()}/trader.db")
    >>> ts = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
    >>> store.set_trading_state(TradingState.HALTED, reason="test", changed_by="ops", at=ts).state
    <TradingState.HALTED: 'halted'>
    >>> store.trading_state().reason, store.verify_audit().ok
    ('test', True)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from trader.audit import GENESIS, AuditRecord, ChainVerification, canonical, verify_chain
from trader.audit_hmac import audit_key, record_hmac
from trader.domain import ClientOrderId, Fill, Order, OrderStatus, Position, Symbol, TradingState, to_utc
from trader.errors import AuditConflictError, StoreError
from trader.store_bulk import write_rows
from trader.store_cache import KILL_SWITCH, BookCache, change_count, change_counts_ddl
from trader.store_schema import (
    ADDED_ORDER_COLUMNS,
    append_only_ddl,
    audit,
    audit_hmac,
    corporate_actions,
    equity_marks,
    fills,
    metadata,
    orders,
    parent_orders,
    positions,
    risk_state,
)
from trader.store_wal import BACKSTOP_PAGES, WalCheckpointer

_WRITE = "alphaline_write"
_DURABLE = "alphaline_durable"
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


_LATEST_STATE = sa.select(risk_state).order_by(risk_state.c.id.desc()).limit(1)
_ORDERS_IN_TIME = sa.select(orders).order_by(orders.c.created_at, orders.c.client_order_id)
_WORKING_ORDERS = _ORDERS_IN_TIME.where(orders.c.status.in_([s.value for s in OrderStatus if not s.is_terminal]))
_SINCE = sa.bindparam("b_since", type_=orders.c.created_at.type)
_IDS_SINCE = sa.select(orders.c.client_order_id, orders.c.created_at).where(orders.c.created_at >= _SINCE)
_TIMES_SINCE = sa.select(orders.c.created_at).where(orders.c.created_at >= _SINCE).order_by(orders.c.created_at)
_FIRST_EQUITY_SINCE = sa.select(equity_marks.c.equity).where(equity_marks.c.ts >= _SINCE).order_by(equity_marks.c.ts).limit(1)
_LAST_PEAK = sa.select(equity_marks.c.peak).order_by(equity_marks.c.ts.desc()).limit(1)
#: PostgreSQL advisory lock (per database) that write transactions take first: SQLite's BEGIN IMMEDIATE, on a server.
_PG_WRITE_LOCK = 0x616C_7068_616C_696E  # "alphalin"


def default_store_url(env: Mapping[str, str] | None = None) -> str:
    """``sqlite:///$ALPHALINE_HOME/trader/trader.db`` (``ALPHALINE_HOME`` defaults to ``.alphaline``)."""
    env = os.environ if env is None else env
    home = Path(env.get("ALPHALINE_HOME", ".alphaline")).resolve()
    return f"sqlite:///{home / 'trader' / 'trader.db'}"


@dataclass(frozen=True)
class TradingStateRecord:
    """The kill switch as stored: the state, why, who set it and when."""

    state: TradingState
    reason: str
    changed_by: str
    changed_at: dt.datetime | None


def sqlite_file(url: str) -> Path | None:
    """The absolute file of a SQLite URL; ``None`` for another database or an in-memory one."""
    parsed = sa.make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database).resolve()


def _make_engine(url: str) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return _make_postgres_engine(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    memory = parsed.database in (None, "", ":memory:")
    if not memory:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, poolclass=StaticPool if memory else None, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_conn.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            # trader.store_wal checkpoints off the cycle; a restarted log is truncated, so its size is what it holds
            cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            cursor.execute("PRAGMA journal_size_limit=0")
        cursor.execute("PRAGMA synchronous=FULL")  # an order log: a power cut must not lose a commit
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(_WRITE):
            # Per transaction (the level cannot change inside one): FULL syncs this commit, NORMAL leaves it to the next FULL one.
            conn.exec_driver_sql("PRAGMA synchronous=FULL" if options.get(_DURABLE, True) else "PRAGMA synchronous=NORMAL")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _make_postgres_engine(url: str) -> Engine:
    """Writers queue on one advisory lock, so the audit head a transaction reads cannot move before it appends
    (as with SQLite's ``BEGIN IMMEDIATE``); ``durable=False`` is ``synchronous_commit=off`` for that transaction."""
    from trader.servers import ensure_database

    ensure_database(url)  # as a SQLite file is created on first use
    engine = sa.create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(_WRITE):  # one round trip: set_config(..., true) is SET LOCAL
            durability = "" if options.get(_DURABLE, True) else ", set_config('synchronous_commit', 'off', true)"
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK}){durability}")

    return engine


def _audit_from_row(row: Any) -> AuditRecord:
    return AuditRecord(row.seq, row.ts, row.kind, json.loads(row.payload), row.prev_hash, row.hash)


class StoreTx:
    """The write operations, inside one transaction opened by :meth:`TraderStore.transaction`.

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

    def append_audit(self, kind: str, payload: dict[str, Any], *, ts: dt.datetime) -> tuple[int, str]:
        """Chain a record to the head (``seq`` = head + 1, ``prev_hash`` = head's hash); appended at :meth:`flush`.

        Returns the new head, ``(seq, hash)``. The payload is encoded once, to the canonical text that is
        stored and hashed (:func:`trader.audit.canonical_payload`), and never decoded here.
        """
        if self._head is None:
            row = self._conn.execute(_AUDIT_HEAD).first()
            self._head = (row.seq, row.hash) if row else (0, GENESIS)
        seq, prev = self._head[0] + 1, self._head[1]
        stamp, body, digest = AuditRecord.link(seq=seq, ts=ts, kind=kind, payload=payload, prev_hash=prev)
        self._audit.append({"seq": seq, "ts": stamp, "kind": kind, "payload": body.decode(), "prev_hash": prev, "hash": digest})
        self._head = (seq, digest)
        if self._audit_key is not None:
            self._macs.append({"seq": seq, "hmac": record_hmac(self._audit_key, seq, digest)})
        return self._head

    def save_order(self, order: Order) -> None:
        """Insert or update the order (keyed by ``client_order_id``)."""
        self._orders[order.client_order_id] = order.to_record()
        self._book_orders[order.client_order_id] = order

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
        """Mark equity at ``ts``; returns the high-water mark including this mark."""
        last = self._conn.execute(_LAST_PEAK).scalar()
        peak = equity if last is None else max(last, equity)
        self._conn.execute(sa.insert(equity_marks), {"ts": to_utc(ts, "ts"), "equity": equity, "cash": cash, "peak": peak})
        return peak

    def flush(self) -> None:
        """Write what this transaction collected: one statement per table."""
        book_writes = self._book is not None and bool(self._orders or self._moved)
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


def _add_missing_order_columns(conn: Connection) -> None:
    """A store created before stop and linked orders gets their (nullable or defaulted) columns."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("orders")}
    for name in ADDED_ORDER_COLUMNS:
        if name not in present:
            column = orders.c[name]
            default = f" NOT NULL DEFAULT '{column.server_default.arg}'" if column.server_default is not None else ""  # type: ignore[attr-defined]
            conn.exec_driver_sql(f"ALTER TABLE orders ADD COLUMN {name} {column.type.compile(conn.dialect)}{default}")


class TraderStore:
    """Opens (and creates) the store at ``url``; see the module docstring."""

    def __init__(self, url: str | None = None):
        self.url = url or default_store_url()
        try:
            self._audit_key = audit_key()  # read once: every record this store writes is signed alike
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        self._engine = _make_engine(self.url)
        file = sqlite_file(self.url)
        #: Background WAL checkpoints of a SQLite file (:mod:`trader.store_wal`); ``None`` on another database.
        self.wal = WalCheckpointer(file) if file is not None else None
        self._state_lock = threading.Lock()
        self._reading = threading.local()  # the connection of the thread's open snapshot()
        self._state_probe: Any = None  # a driver connection (sqlite3 or psycopg) that only reads the kill switch's count
        self._state_cache: tuple[int, TradingStateRecord] | None = None
        counters = change_counts_ddl(self._engine.dialect.name)
        self._book = BookCache() if counters else None
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{_WRITE: True})  # one process at a time (DDL of two at once can collide)
                with conn.begin():
                    metadata.create_all(conn)
                    _add_missing_order_columns(conn)
                    for ddl in append_only_ddl(self._engine.dialect.name) + counters:
                        conn.exec_driver_sql(ddl)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"{self._safe_url}: cannot open the store ({exc.__class__.__name__}: {exc.orig or exc})") from None

    @property
    def _safe_url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        with self._state_lock:
            if self._state_probe is not None:
                self._state_probe.close()
                self._state_probe, self._state_cache = None, None
        if self.wal is not None:
            self.wal.wait()
        self._engine.dispose()

    def __enter__(self) -> TraderStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[StoreTx]:
        """One write transaction: everything done on the yielded :class:`StoreTx` commits together.

        ``durable=False``: the commit is not synced to disk by itself, only by the next durable
        one (see the module docstring); for writes nothing is acknowledged on before that.
        """
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{_WRITE: True, _DURABLE: durable})
                with conn.begin():
                    tx = StoreTx(conn, self._audit_key, self._book)
                    yield tx
                    tx.flush()
                tx.committed()
            if self.wal is not None:
                self.wal.poke()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"{self._safe_url}: {exc.orig}") from None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads on this thread inside the block share one read transaction: one consistent view of the store, one
        connection. Only for reads: a write in the block is not seen by the block's reads.

        Example:
            >>> with store.snapshot():  # doctest: +SKIP
            ...     working, peak = store.working_orders(), store.peak_equity()
        """
        with self._read():
            yield

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        held: Connection | None = getattr(self._reading, "conn", None)
        if held is not None:  # inside snapshot()
            yield held
            return
        try:
            with self._engine.connect() as conn, conn.begin():
                self._reading.conn = conn
                try:
                    yield conn
                finally:
                    self._reading.conn = None
        except sa.exc.OperationalError as exc:
            raise StoreError(f"{self._safe_url}: {exc.orig}") from None

    # -- single-operation writes ------------------------------------------------------------
    def append_audit(self, kind: str, payload: dict[str, Any], *, ts: dt.datetime) -> AuditRecord:
        """Append one record in its own transaction; returns it as stored (its payload decoded)."""
        with self.transaction() as tx:
            tx.append_audit(kind, payload, ts=ts)
            row = tx._audit[-1]
        return AuditRecord(row["seq"], row["ts"], kind, json.loads(row["payload"]), row["prev_hash"], row["hash"])

    def save_order(self, order: Order) -> None:
        with self.transaction() as tx:
            tx.save_order(order)

    def record_fill(self, fill: Fill) -> bool:
        with self.transaction() as tx:
            return tx.record_fill(fill)

    def set_trading_state(self, state: TradingState, *, reason: str, changed_by: str, at: dt.datetime) -> TradingStateRecord:
        """Set the kill switch (persisted, audited). ``HALTED`` survives restarts until someone resumes."""
        with self.transaction() as tx:
            return tx.set_trading_state(state, reason=reason, changed_by=changed_by, at=at)

    def record_equity(self, *, ts: dt.datetime, equity: Decimal, cash: Decimal) -> Decimal:
        with self.transaction() as tx:
            return tx.record_equity(ts=ts, equity=equity, cash=cash)

    # -- reads ------------------------------------------------------------------------------
    def trading_state(self) -> TradingStateRecord:
        """The latest trading state; ``ACTIVE`` on a fresh store.

        Read before every order, so on a SQLite file or PostgreSQL it is answered from a cache while the
        database's count of ``risk_state`` writes (:mod:`trader.store_cache`: triggers move it on a write by
        any connection or process) is the one the cached read saw; otherwise it is read again. The count is
        one statement on a connection of its own that never writes (on PostgreSQL in autocommit: one round trip).
        """
        with self._state_lock:
            version = self._state_version()
            if version is not None and self._state_cache is not None and self._state_cache[0] == version:
                return self._state_cache[1]
            with self._read() as conn:
                row = conn.execute(_LATEST_STATE).first()
            if row is None:
                record = TradingStateRecord(TradingState.ACTIVE, "no state recorded yet", "", None)
            else:
                record = TradingStateRecord(TradingState(row.state), row.reason, row.changed_by, row.changed_at)
            # Stamped with the version read *before* the query: a commit in between only forces one more read.
            self._state_cache = None if version is None else (version, record)
            return record

    def _state_version(self) -> int | None:
        """The ``risk_state`` write count, read on the probe connection; ``None`` without counters (in-memory SQLite, others)."""
        if self._state_probe is None:
            self._state_probe = self._open_state_probe()
            if self._state_probe is None:
                return None
        try:
            return change_count(self._state_probe, KILL_SWITCH)
        except (sqlite3.Error, self._engine.dialect.loaded_dbapi.Error) as exc:
            self._state_probe.close()  # e.g. the server restarted: the next read connects again
            self._state_probe, self._state_cache = None, None
            raise StoreError(f"{self._safe_url}: {exc}") from None

    def _open_state_probe(self) -> Any:
        if self._engine.dialect.name == "postgresql":
            try:
                pooled = self._engine.raw_connection()
            except sa.exc.OperationalError as exc:
                raise StoreError(f"{self._safe_url}: {exc.orig}") from None
            pooled.detach()  # ours for good, and never in a transaction: nothing to commit after a read
            pooled.dbapi_connection.autocommit = True
            return pooled.dbapi_connection
        path = sqlite_file(self.url)
        return None if path is None else sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def get_order(self, client_order_id: ClientOrderId | str) -> Order | None:
        with self._read() as conn:
            row = conn.execute(sa.select(orders).where(orders.c.client_order_id == client_order_id)).first()
        return Order(**row._asdict()) if row else None

    def list_orders(self, *, statuses: set[OrderStatus] | None = None, symbol: str | None = None,
                    since: dt.datetime | None = None) -> list[Order]:
        """Orders by creation time, optionally filtered by status, symbol and creation time (≥ ``since``)."""
        query = _ORDERS_IN_TIME
        if statuses is not None:
            query = query.where(orders.c.status.in_([s.value for s in statuses]))
        if symbol is not None:
            query = query.where(orders.c.symbol == symbol)
        if since is not None:
            query = query.where(orders.c.created_at >= to_utc(since, "since"))
        with self._read() as conn:
            return [Order.from_stored(row._mapping) for row in conn.execute(query)]

    def working_orders(self) -> list[Order]:
        """Orders not in a terminal status, by creation time (on SQLite from memory while no writer moved them)."""
        with self._read() as conn:
            def load() -> list[Order]:
                return [Order.from_stored(row._mapping) for row in conn.execute(_WORKING_ORDERS)]

            return load() if self._book is None else self._book.working_orders(conn.connection.dbapi_connection, load)

    def client_order_ids(self, *, since: dt.datetime | None = None) -> frozenset[ClientOrderId]:
        """Every ``client_order_id`` (of orders created at or after ``since``)."""
        with self._read() as conn:
            if since is None:
                return frozenset(conn.execute(sa.select(orders.c.client_order_id)).scalars())
            since = to_utc(since, "since")

            def load(since: dt.datetime) -> dict[str, dt.datetime]:
                return {cid: at for cid, at in conn.execute(_IDS_SINCE, {"b_since": since})}

            if self._book is None:
                return frozenset(load(since))
            return self._book.client_order_ids(conn.connection.dbapi_connection, since, load)

    def order_times_since(self, since: dt.datetime) -> tuple[dt.datetime, ...]:
        """Creation times of orders created at or after ``since`` (the order-rate throttle's input)."""
        with self._read() as conn:
            return tuple(conn.execute(_TIMES_SINCE, {"b_since": to_utc(since, "since")}).scalars())

    def list_fills(self, *, client_order_id: str | None = None, since: dt.datetime | None = None) -> list[Fill]:
        query = sa.select(fills).order_by(fills.c.ts, fills.c.fill_id)
        if client_order_id is not None:
            query = query.where(fills.c.client_order_id == client_order_id)
        if since is not None:
            query = query.where(fills.c.ts >= to_utc(since, "since"))
        with self._read() as conn:
            return [Fill(**row._asdict()) for row in conn.execute(query)]

    def parent_orders(self, *, status: str | None = None, since: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Parent orders of the execution algorithms as stored rows, by creation time (``status``, created ≥ ``since``)."""
        query = sa.select(parent_orders).order_by(parent_orders.c.created_at, parent_orders.c.client_order_id)
        if status is not None:
            query = query.where(parent_orders.c.status == status)
        if since is not None:
            query = query.where(parent_orders.c.created_at >= to_utc(since, "since"))
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(query)]

    def positions(self) -> dict[Symbol, Position]:
        """Every symbol ever traded (flat ones too: they carry realised P&L)."""
        with self._read() as conn:
            def load() -> dict[Symbol, Position]:
                rows = conn.execute(sa.select(positions).order_by(positions.c.symbol))
                return {Symbol(r.symbol): Position.from_stored(r._mapping) for r in rows}

            return load() if self._book is None else self._book.positions(conn.connection.dbapi_connection, load)

    def corporate_action_rows(self) -> list[dict[str, Any]]:
        """Applied corporate actions (:mod:`trader.corporate_actions`), in the order applied."""
        query = sa.select(corporate_actions).order_by(corporate_actions.c.applied_at, corporate_actions.c.action_id)
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(query)]

    def corporate_action_ids(self) -> frozenset[str]:
        with self._read() as conn:
            return frozenset(conn.execute(sa.select(corporate_actions.c.action_id)).scalars())

    def peak_equity(self) -> Decimal | None:
        with self._read() as conn:
            return conn.execute(_LAST_PEAK).scalar()

    def first_equity_since(self, since: dt.datetime) -> Decimal | None:
        """The first equity mark at or after ``since`` (e.g. the session open: the daily loss baseline)."""
        with self._read() as conn:
            return conn.execute(_FIRST_EQUITY_SINCE, {"b_since": to_utc(since, "since")}).scalar()

    def audit_records(self, *, start_seq: int = 1) -> Iterator[AuditRecord]:
        """The chain in ``seq`` order, from ``start_seq``."""
        with self._read() as conn:
            rows = conn.execute(sa.select(audit).where(audit.c.seq >= start_seq).order_by(audit.c.seq)).all()
        return iter([_audit_from_row(r) for r in rows])

    def audit_rows(self, *, chunk: int = 20_000) -> Iterator[tuple[int, str, str, str, str, str]]:
        """The chain as stored, ``(seq, ts, kind, payload, prev_hash, hash)`` with the payload's canonical JSON text,
        in ``seq`` order, read ``chunk`` rows at a time from one snapshot (for verifiers that hash what is stored)."""
        query = sa.select(audit.c.seq, audit.c.ts, audit.c.kind, audit.c.payload, audit.c.prev_hash, audit.c.hash).order_by(audit.c.seq)
        with self._read() as conn:
            # Plain text columns: the driver's own cursor, without a result object around every row.
            cursor = conn.connection.dbapi_connection.cursor()
            try:
                cursor.execute(str(query.compile(dialect=conn.dialect)))
                while batch := cursor.fetchmany(chunk):
                    yield from batch
            finally:
                cursor.close()

    def audit_hmacs(self) -> Iterator[tuple[int, str]]:
        """``(seq, hmac)`` of every signed audit record, in ``seq`` order (:mod:`trader.audit_hmac`)."""
        with self._read() as conn:
            yield from conn.execute(sa.select(audit_hmac.c.seq, audit_hmac.c.hmac).order_by(audit_hmac.c.seq)).tuples()

    def latest_audit(self, kind: str) -> AuditRecord | None:
        """The last record of ``kind`` (e.g. the run loop's latest ``cycle`` summary), or ``None``."""
        query = sa.select(audit).where(audit.c.kind == kind).order_by(audit.c.seq.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(query).first()
        return _audit_from_row(row) if row else None

    def audit_for_order(self, client_order_id: str) -> list[AuditRecord]:
        """Records whose payload names ``client_order_id`` (the decision lineage of one order), in ``seq`` order."""
        # The payload is canonical JSON (no whitespace), so the key/value pair has exactly one spelling.
        needle = canonical({"client_order_id": client_order_id}).decode()[1:-1]
        query = sa.select(audit).where(audit.c.payload.contains(needle, autoescape=True)).order_by(audit.c.seq)
        with self._read() as conn:
            return [_audit_from_row(r) for r in conn.execute(query)]

    def audit_head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last record; ``(0, GENESIS)`` when the chain is empty."""
        with self._read() as conn:
            row = conn.execute(sa.select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)).first()
        return (row.seq, row.hash) if row else (0, GENESIS)

    def verify_audit(self, *, expected_head: str | None = None, expected_count: int | None = None) -> ChainVerification:
        """:func:`trader.audit.verify_chain` over the stored chain (optionally against a published head)."""
        return verify_chain(self.audit_records(), expected_head=expected_head, expected_count=expected_count)
