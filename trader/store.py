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
from collections.abc import Iterator, Mapping
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
from trader.domain import ClientOrderId, Fill, Order, OrderStatus, Position, Symbol, TradingState, to_utc
from trader.errors import AuditConflictError, StoreError
from trader.store_schema import APPEND_ONLY_TRIGGERS, audit, equity_marks, fills, metadata, orders, positions, risk_state

_WRITE = "alphaline_write"


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
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url)
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
        cursor.execute("PRAGMA synchronous=FULL")  # an order log: a power cut must not lose a commit
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


def _audit_from_row(row: Any) -> AuditRecord:
    return AuditRecord(row.seq, row.ts, row.kind, json.loads(row.payload), row.prev_hash, row.hash)


class StoreTx:
    """The write operations, inside one transaction opened by :meth:`TraderStore.transaction`."""

    def __init__(self, conn: Connection):
        self._conn = conn

    def append_audit(self, kind: str, payload: dict[str, Any], *, ts: dt.datetime) -> AuditRecord:
        """Chain a record to the stored head (``seq`` = head + 1, ``prev_hash`` = head's hash) and append it."""
        head = self._conn.execute(sa.select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)).first()
        seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
        record = AuditRecord.create(seq=seq, ts=ts, kind=kind, payload=payload, prev_hash=prev)
        try:
            self._conn.execute(sa.insert(audit).values(seq=record.seq, ts=record.ts, kind=record.kind,
                                                       payload=canonical(record.payload).decode(),
                                                       prev_hash=record.prev_hash, hash=record.hash))
        except sa.exc.IntegrityError:
            raise AuditConflictError(f"audit: another writer appended seq {seq} first; retry the transaction") from None
        return record

    def save_order(self, order: Order) -> None:
        """Insert or update the order (keyed by ``client_order_id``)."""
        row = order.to_record()
        key = orders.c.client_order_id == order.client_order_id
        if self._conn.execute(sa.update(orders).where(key).values(row)).rowcount == 0:
            self._conn.execute(sa.insert(orders).values(row))

    def record_fill(self, fill: Fill) -> bool:
        """Record a fill once and move its position; ``False`` (nothing changes) if the ``fill_id`` is known.

        A known ``fill_id`` with different content is a :class:`StoreError`: fills never change.
        """
        known = self._conn.execute(sa.select(fills).where(fills.c.fill_id == fill.fill_id)).first()
        if known is not None:
            if Fill(**known._asdict()) != fill:
                raise StoreError(f"fill {fill.fill_id}: already stored with different content")
            return False
        self._conn.execute(sa.insert(fills).values(fill.to_record()))
        row = self._conn.execute(sa.select(positions).where(positions.c.symbol == fill.symbol)).first()
        held = Position(**{k: v for k, v in row._asdict().items() if k != "updated_at"}) if row else Position(symbol=fill.symbol)
        self.save_position(held.apply_fill(fill), at=fill.ts)
        return True

    def save_position(self, position: Position, *, at: dt.datetime) -> None:
        """Insert or update a position (reconciliation uses this to adopt the broker's view)."""
        row = position.to_record() | {"updated_at": to_utc(at, "updated_at")}
        key = positions.c.symbol == position.symbol
        if self._conn.execute(sa.update(positions).where(key).values(row)).rowcount == 0:
            self._conn.execute(sa.insert(positions).values(row))

    def set_trading_state(self, state: TradingState, *, reason: str, changed_by: str, at: dt.datetime) -> TradingStateRecord:
        """Record a trading-state change and its audit record together."""
        record = TradingStateRecord(TradingState(state), reason, changed_by, to_utc(at, "at"))
        self._conn.execute(sa.insert(risk_state).values(state=record.state.value, reason=reason, changed_by=changed_by,
                                                        changed_at=record.changed_at))
        self.append_audit("trading_state", {"state": record.state.value, "reason": reason, "changed_by": changed_by}, ts=at)
        return record

    def record_equity(self, *, ts: dt.datetime, equity: Decimal, cash: Decimal) -> Decimal:
        """Mark equity at ``ts``; returns the high-water mark including this mark."""
        last = self._conn.execute(sa.select(equity_marks.c.peak).order_by(equity_marks.c.ts.desc()).limit(1)).scalar()
        peak = equity if last is None else max(last, equity)
        self._conn.execute(sa.insert(equity_marks).values(ts=to_utc(ts, "ts"), equity=equity, cash=cash, peak=peak))
        return peak


class TraderStore:
    """Opens (and creates) the store at ``url``; see the module docstring."""

    def __init__(self, url: str | None = None):
        self.url = url or default_store_url()
        self._engine = _make_engine(self.url)
        try:
            metadata.create_all(self._engine)
            if self._engine.dialect.name == "sqlite":
                with self._engine.begin() as conn:
                    for ddl in APPEND_ONLY_TRIGGERS:
                        conn.exec_driver_sql(ddl)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"{self._safe_url}: cannot open the store ({exc.__class__.__name__}: {exc.orig or exc})") from None

    @property
    def _safe_url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> TraderStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[StoreTx]:
        """One write transaction: everything done on the yielded :class:`StoreTx` commits together."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    yield StoreTx(conn)
        except sa.exc.OperationalError as exc:
            raise StoreError(f"{self._safe_url}: {exc.orig}") from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.OperationalError as exc:
            raise StoreError(f"{self._safe_url}: {exc.orig}") from None

    # -- single-operation writes ------------------------------------------------------------
    def append_audit(self, kind: str, payload: dict[str, Any], *, ts: dt.datetime) -> AuditRecord:
        with self.transaction() as tx:
            return tx.append_audit(kind, payload, ts=ts)

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
        """The latest trading state; ``ACTIVE`` on a fresh store."""
        with self._read() as conn:
            row = conn.execute(sa.select(risk_state).order_by(risk_state.c.id.desc()).limit(1)).first()
        if row is None:
            return TradingStateRecord(TradingState.ACTIVE, "no state recorded yet", "", None)
        return TradingStateRecord(TradingState(row.state), row.reason, row.changed_by, row.changed_at)

    def get_order(self, client_order_id: ClientOrderId | str) -> Order | None:
        with self._read() as conn:
            row = conn.execute(sa.select(orders).where(orders.c.client_order_id == client_order_id)).first()
        return Order(**row._asdict()) if row else None

    def list_orders(self, *, statuses: set[OrderStatus] | None = None, symbol: str | None = None,
                    since: dt.datetime | None = None) -> list[Order]:
        """Orders by creation time, optionally filtered by status, symbol and creation time (≥ ``since``)."""
        query = sa.select(orders).order_by(orders.c.created_at, orders.c.client_order_id)
        if statuses is not None:
            query = query.where(orders.c.status.in_([s.value for s in statuses]))
        if symbol is not None:
            query = query.where(orders.c.symbol == symbol)
        if since is not None:
            query = query.where(orders.c.created_at >= to_utc(since, "since"))
        with self._read() as conn:
            return [Order(**row._asdict()) for row in conn.execute(query)]

    def working_orders(self) -> list[Order]:
        return self.list_orders(statuses={s for s in OrderStatus if not s.is_terminal})

    def client_order_ids(self) -> frozenset[ClientOrderId]:
        with self._read() as conn:
            return frozenset(ClientOrderId(v) for v in conn.execute(sa.select(orders.c.client_order_id)).scalars())

    def order_times_since(self, since: dt.datetime) -> tuple[dt.datetime, ...]:
        """Creation times of orders created at or after ``since`` (the order-rate throttle's input)."""
        query = sa.select(orders.c.created_at).where(orders.c.created_at >= to_utc(since, "since")).order_by(orders.c.created_at)
        with self._read() as conn:
            return tuple(conn.execute(query).scalars())

    def list_fills(self, *, client_order_id: str | None = None, since: dt.datetime | None = None) -> list[Fill]:
        query = sa.select(fills).order_by(fills.c.ts, fills.c.fill_id)
        if client_order_id is not None:
            query = query.where(fills.c.client_order_id == client_order_id)
        if since is not None:
            query = query.where(fills.c.ts >= to_utc(since, "since"))
        with self._read() as conn:
            return [Fill(**row._asdict()) for row in conn.execute(query)]

    def positions(self) -> dict[Symbol, Position]:
        """Every symbol ever traded (flat ones too: they carry realised P&L)."""
        with self._read() as conn:
            rows = conn.execute(sa.select(positions).order_by(positions.c.symbol)).all()
        return {Symbol(r.symbol): Position(**{k: v for k, v in r._asdict().items() if k != "updated_at"}) for r in rows}

    def peak_equity(self) -> Decimal | None:
        with self._read() as conn:
            return conn.execute(sa.select(equity_marks.c.peak).order_by(equity_marks.c.ts.desc()).limit(1)).scalar()

    def first_equity_since(self, since: dt.datetime) -> Decimal | None:
        """The first equity mark at or after ``since`` (e.g. the session open: the daily loss baseline)."""
        query = sa.select(equity_marks.c.equity).where(equity_marks.c.ts >= to_utc(since, "since"))
        with self._read() as conn:
            return conn.execute(query.order_by(equity_marks.c.ts).limit(1)).scalar()

    def audit_records(self, *, start_seq: int = 1) -> Iterator[AuditRecord]:
        """The chain in ``seq`` order, from ``start_seq``."""
        with self._read() as conn:
            rows = conn.execute(sa.select(audit).where(audit.c.seq >= start_seq).order_by(audit.c.seq)).all()
        return iter([_audit_from_row(r) for r in rows])

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
