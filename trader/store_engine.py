"""The trader store's SQLAlchemy engines: one per URL, with the write-transaction discipline of :mod:`trader.store`.

SQLite: WAL mode (checkpoints left to :mod:`trader.store_wal`), ``synchronous=FULL``, a write
transaction that takes the write lock up front (``BEGIN IMMEDIATE``) and a pool that hands out the
connection used last, whose page cache is still warm. PostgreSQL: writers queue on
one advisory lock. A connection is marked a writer (and durable or not) by the execution options
:data:`WRITE` and :data:`DURABLE`, which :meth:`trader.store.TraderStore.transaction` sets.

Also where the store lives by default (:func:`default_store_url`) and the file of a SQLite URL
(:func:`sqlite_file`).

Example:
    >>> default_store_url({"ALPHALINE_HOME": "/srv/alphaline"})
    'sqlite:////srv/alphaline/trader/trader.db'
    >>> sqlite_file("sqlite:///:memory:") is None, sqlite_file("postgresql://db/trader") is None
    (True, True)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from trader.store_cache import prefetched
from trader.store_wal import BACKSTOP_PAGES, KEEP_BYTES

#: Execution option of a write transaction's connection (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: the advisory lock).
WRITE = "alphaline_write"
#: Execution option: ``False`` leaves the commit's sync to the next durable one (see :mod:`trader.store`).
DURABLE = "alphaline_durable"
#: Execution option (PostgreSQL): a read transaction, at REPEATABLE READ.
SNAPSHOT = "alphaline_snapshot"
#: Execution option (PostgreSQL): queries (SQL text) sent with the BEGIN (after a writer's lock), their first rows kept for
#: the transaction (:func:`trader.store_cache.prefetched`): what nearly every transaction of the store reads first.
PREFETCH = "alphaline_prefetch"
#: PostgreSQL: a pooled connection idle this long is pinged before it is handed out.
PING_IDLE_SECONDS = 1.0
#: PostgreSQL advisory lock (per database) that write transactions take first: SQLite's BEGIN IMMEDIATE, on a server.
_PG_WRITE_LOCK = 0x616C_7068_616C_696E  # "alphalin"


def default_store_url(env: Mapping[str, str] | None = None) -> str:
    """``sqlite:///$ALPHALINE_HOME/trader/trader.db`` (``ALPHALINE_HOME`` defaults to ``.alphaline``)."""
    env = os.environ if env is None else env
    home = Path(env.get("ALPHALINE_HOME", ".alphaline")).resolve()
    return f"sqlite:///{home / 'trader' / 'trader.db'}"


def sqlite_file(url: str) -> Path | None:
    """The absolute file of a SQLite URL; ``None`` for another database or an in-memory one."""
    parsed = sa.make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database).resolve()


def make_engine(url: str) -> Engine:
    """The engine of ``url``: SQLite (file or in-memory) and PostgreSQL as the module docstring says, others as they come."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return _make_postgres_engine(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    memory = parsed.database in (None, "", ":memory:")
    if not memory:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # A file: the connection used last goes out first (LIFO). A connection that finds the file written by another
    # drops its page cache, so two alternating (FIFO) made every write transaction start from a cold cache.
    pool: dict[str, Any] = {"poolclass": StaticPool} if memory else {"pool_use_lifo": True}
    engine = sa.create_engine(url, connect_args={"check_same_thread": False}, **pool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_conn.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            # trader.store_wal checkpoints off the cycle; a restarted log keeps its file (rewritten in place, cheaper to sync)
            cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            cursor.execute(f"PRAGMA journal_size_limit={KEEP_BYTES}")
        cursor.execute("PRAGMA synchronous=FULL")  # an order log: a power cut must not lose a commit
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(WRITE):
            # Per transaction (the level cannot change inside one): FULL syncs this commit, NORMAL leaves it to the next FULL one.
            conn.exec_driver_sql("PRAGMA synchronous=FULL" if options.get(DURABLE, True) else "PRAGMA synchronous=NORMAL")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _make_postgres_engine(url: str) -> Engine:
    """Writers queue on one advisory lock, so the audit head a transaction reads cannot move before it appends
    (as with SQLite's ``BEGIN IMMEDIATE``); ``durable=False`` is ``synchronous_commit=off`` for that transaction.

    Round trips are what a transaction costs on a server, so: the driver connection is in autocommit and the begin
    event sends ``BEGIN`` itself (for a :data:`SNAPSHOT` read ``BEGIN ISOLATION LEVEL REPEATABLE READ``), in one psycopg
    pipeline with the transaction's first statements: a writer's advisory lock, then the :data:`PREFETCH` queries; and
    a pooled connection is pinged on checkout only when
    it sat idle for :data:`PING_IDLE_SECONDS` (one used a moment ago is not: a server gone since fails that statement,
    and SQLAlchemy drops the connection).
    """
    from trader.servers import ensure_database

    ensure_database(url)  # as a SQLite file is created on first use
    if sa.make_url(url).get_driver_name() == "psycopg":
        return _pipelined_engine(sa.create_engine(url))
    engine = sa.create_engine(url, pool_pre_ping=True)  # psycopg2 and others: no pipeline, the driver's own BEGIN

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(WRITE):
            conn.exec_driver_sql(_pg_lock_sql(options))

    return engine


def _pipelined_engine(engine: Engine) -> Engine:
    """psycopg 3: BEGIN with the first statements in one pipeline, pings after an idle pause (see above)."""
    error = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.autocommit = True  # BEGIN comes from _on_begin, with the first statement

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, record: Any) -> None:
        record.info["alphaline_idle_since"] = time.monotonic()
        if dbapi_conn is not None:
            prefetched(dbapi_conn).clear()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("alphaline_idle_since")
        if since is not None and time.monotonic() - since >= PING_IDLE_SECONDS:
            try:
                dbapi_conn.execute("SELECT 1")
            except error as exc:  # the server restarted (say): every pooled connection is stale
                raise sa.exc.InvalidatePoolError(str(exc)) from None

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        begin = "BEGIN ISOLATION LEVEL REPEATABLE READ" if options.get(SNAPSHOT) else "BEGIN"
        queries: tuple[str, ...] = options.get(PREFETCH, ())
        dbapi_conn = conn.connection.dbapi_connection
        values = prefetched(dbapi_conn)
        values.clear()  # nothing read before this transaction answers in it
        try:
            with dbapi_conn.pipeline():
                dbapi_conn.execute(begin)
                if options.get(WRITE):
                    dbapi_conn.execute(_pg_lock_sql(options))
                cursors = [dbapi_conn.execute(query) for query in queries]
            values.update((query, cursor.fetchone()) for query, cursor in zip(queries, cursors, strict=True))
        except error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(begin, None, exc, error) from None

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(conn: Connection) -> None:
        if not conn.invalidated:
            prefetched(conn.connection.dbapi_connection).clear()

    return engine


def _pg_lock_sql(options: Mapping[str, Any]) -> str:
    """The advisory lock of a write transaction, and ``synchronous_commit=off`` unless it is durable; one statement
    (``set_config(..., true)`` is SET LOCAL)."""
    durability = "" if options.get(DURABLE, True) else ", set_config('synchronous_commit', 'off', true)"
    return f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK}){durability}"


def stream_rows(conn: Connection, query: sa.Select, *, chunk: int) -> Iterator[tuple[Any, ...]]:
    """``query``'s rows as the driver returns them (plain tuples, no result object around each), ``chunk`` at a time.

    For long scans of plain columns (the audit chain): the statement is compiled for ``conn``'s dialect
    and run on the driver's own cursor, which is closed however the caller stops reading.
    """
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(str(query.compile(dialect=conn.dialect)))
        while batch := cursor.fetchmany(chunk):
            yield from batch
    finally:
        cursor.close()
