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

A transaction is a batch (:mod:`trader.store_tx`): the audit head is read once and the chain is
extended in memory, and orders, fills, positions and audit records are written with one multi-row
statement each when the block ends (the last state of an order or position wins). The engines and
their locking are :mod:`trader.store_engine`'s.

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
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trader.audit import GENESIS, AuditRecord, ChainVerification, canonical, verify_chain
from trader.audit_hmac import audit_key
from trader.domain import ClientOrderId, Fill, Order, OrderStatus, Position, Symbol, TradingState, to_utc
from trader.errors import StoreError
from trader.store_cache import BOOK, COUNT_SQL, KILL_SWITCH, BookCache, change_count, change_counts_ddl, prefetched
from trader.store_engine import DURABLE, PREFETCH, SNAPSHOT, WRITE, default_store_url, make_engine, sqlite_file, stream_rows
from trader.store_schema import (
    add_missing_order_columns,
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
from trader.store_tx import (
    LAST_PEAK,
    ORDERS_IN_TIME,
    PEAK_SQL,
    WRITE_PREFETCH,
    StoreTx,
    TradingStateRecord,
    read_order,
    read_working_orders,
)
from trader.store_wal import WalCheckpointer

# What other modules import from here, wherever it is defined.
__all__ = ["StoreTx", "TraderStore", "TradingStateRecord", "default_store_url", "sqlite_file"]

_LATEST_STATE = sa.select(risk_state).order_by(risk_state.c.id.desc()).limit(1)
_SINCE = sa.bindparam("b_since", type_=orders.c.created_at.type)
_IDS_SINCE = sa.select(orders.c.client_order_id, orders.c.created_at).where(orders.c.created_at >= _SINCE)
_TIMES_SINCE = sa.select(orders.c.created_at).where(orders.c.created_at >= _SINCE).order_by(orders.c.created_at)
_FIRST_EQUITY_SINCE = sa.select(equity_marks.c.equity).where(equity_marks.c.ts >= _SINCE).order_by(equity_marks.c.ts).limit(1)


def _audit_from_row(row: Any) -> AuditRecord:
    return AuditRecord(row.seq, row.ts, row.kind, json.loads(row.payload), row.prev_hash, row.hash)


class TraderStore:
    """Opens (and creates) the store at ``url``; see the module docstring."""

    def __init__(self, url: str | None = None):
        self.url = url or default_store_url()
        try:
            self._audit_key = audit_key()  # read once: every record this store writes is signed alike
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        self._engine = make_engine(self.url)
        file = sqlite_file(self.url)
        #: Background WAL checkpoints of a SQLite file (:mod:`trader.store_wal`); ``None`` on another database.
        self.wal = WalCheckpointer(file) if file is not None else None
        self._state_lock = threading.Lock()
        self._reading = threading.local()  # the connection of the thread's open snapshot()
        self._state_probe: Any = None  # a driver connection (sqlite3 or psycopg) that only reads the kill switch's count
        self._state_cache: tuple[int, TradingStateRecord] | None = None
        counters = change_counts_ddl(self._engine.dialect.name)
        self._book = BookCache() if counters else None
        #: PostgreSQL: what a write transaction reads first, sent with its BEGIN (:data:`trader.store_engine.PREFETCH`).
        self._write_prefetch = (*WRITE_PREFETCH, *((COUNT_SQL[BOOK],) if counters else ()))
        self._read_prefetch = (PEAK_SQL, *((COUNT_SQL[BOOK],) if counters else ()))  # and of a snapshot (the cycle's)
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{WRITE: True})  # one process at a time (DDL of two at once can collide)
                with conn.begin():
                    metadata.create_all(conn)
                    add_missing_order_columns(conn)
                    for ddl in append_only_ddl(self._engine.dialect.name) + counters:
                        conn.exec_driver_sql(ddl)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"{self._safe_url}: cannot open the store ({exc.__class__.__name__}: {exc.orig or exc})") from None
        if self._engine.dialect.name == "postgresql":
            self._state_version()  # the probe's server session now, not in the first cycle (a connection is a few ms)

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
                conn.execution_options(**{WRITE: True, DURABLE: durable, PREFETCH: self._write_prefetch})
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
            with self._engine.connect() as conn:
                if conn.dialect.name == "postgresql":  # one view for every statement of the block, as on SQLite
                    conn.execution_options(**{SNAPSHOT: True, PREFETCH: self._read_prefetch})
                with conn.begin():
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

    def _cached(self, part: str) -> Any:
        """PostgreSQL, outside a snapshot: the book's ``part`` (:meth:`BookCache.cached`) if the book count, read alone on
        the probe connection (autocommit: one round trip, no transaction), says the cache holds it; else ``None``."""
        if self._book is None or self._engine.dialect.name != "postgresql" or getattr(self._reading, "conn", None) is not None:
            return None
        with self._state_lock:
            version = self._state_version(BOOK)
        return None if version is None else self._book.cached(version, part)

    def _state_version(self, counter: int = KILL_SWITCH) -> int | None:
        """A write count (the ``risk_state`` one by default), read on the probe connection; ``None`` without counters
        (in-memory SQLite, others)."""
        if self._state_probe is None:
            self._state_probe = self._open_state_probe()
            if self._state_probe is None:
                return None
        try:
            return change_count(self._state_probe, counter)
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
            return read_order(conn, client_order_id)

    def list_orders(self, *, statuses: set[OrderStatus] | None = None, symbol: str | None = None,
                    since: dt.datetime | None = None) -> list[Order]:
        """Orders by creation time, optionally filtered by status, symbol and creation time (≥ ``since``)."""
        query = ORDERS_IN_TIME
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
        if (cached := self._cached("working")) is not None:
            return cached  # type: ignore[return-value]
        with self._read() as conn:
            return read_working_orders(conn, self._book)

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
        if (cached := self._cached("positions")) is not None:
            return cached  # type: ignore[return-value]
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
            values = prefetched(conn.connection.dbapi_connection) if conn.dialect.name == "postgresql" else None
            if values and PEAK_SQL in values:  # read with the snapshot's BEGIN (PostgreSQL)
                row = values[PEAK_SQL]
                return None if row is None else Decimal(row[0])
            return conn.execute(LAST_PEAK).scalar()

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
            yield from stream_rows(conn, query, chunk=chunk)

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
