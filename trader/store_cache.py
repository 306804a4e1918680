"""The trader store's in-memory book (SQLite and PostgreSQL): working orders, positions and recent order ids, kept while no
writer moved them.

The run loop reads the working orders three times a cycle, the positions twice and a day of
order ids once; rebuilding them from rows cost about a seventh of a cycle. :class:`BookCache`
keeps them in memory and serves a read from memory only when the database says that nothing
changed them since:

* a table of counters, ``change_counts``, counts every row inserted, updated or deleted in
  ``orders`` and ``positions`` (:data:`BOOK`) and in ``risk_state`` (:data:`KILL_SWITCH`, the
  store's trading-state cache); triggers in the database bump them, so *any* writer moves them —
  another process (``trader kill``, ``trader reconcile``, the ops API, an older version of this
  code), another connection, this one;
* the cache is stamped with the count it is valid at. A read compares the stamp with the count
  **in its own read transaction** (a ``snapshot()`` included): equal, the rows are what the
  cache holds; different, it reads the rows and re-stamps the cache in that same transaction;
* a write transaction of this store reads the count before and after its own writes (it holds
  the write lock: nobody else can move it in between) and, once committed, applies its orders
  and positions to the cache if the cache was valid at the first count — otherwise drops it.

So a read never returns a state that differs from what the database holds at that read.

PostgreSQL keeps the same counters, bumped by statement-level triggers. Its reads run at REPEATABLE READ (the
store's read transactions and ``snapshot()``), so a count and the rows loaded after it come from one snapshot, as on
SQLite. Writers hold the store's advisory lock from their first statement, so their before/after counts bracket only
their own writes, as on SQLite.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from typing import Any

from trader.domain import Order, Position, Symbol

BOOK, KILL_SWITCH = 1, 2
_COUNTED = {BOOK: ("orders", "positions"), KILL_SWITCH: ("risk_state",)}
#: SQLite: the counters and their triggers (created with the store, idempotent).
CHANGE_COUNTS_DDL = (
    "CREATE TABLE IF NOT EXISTS change_counts (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
    *(f"INSERT OR IGNORE INTO change_counts (id, n) VALUES ({counter}, 0)" for counter in _COUNTED),
    *(f"CREATE TRIGGER IF NOT EXISTS {table}_count_{op.lower()} AFTER {op} ON {table} "
      f"BEGIN UPDATE change_counts SET n = n + 1 WHERE id = {counter}; END"
      for counter, tables in _COUNTED.items() for table in tables for op in ("INSERT", "UPDATE", "DELETE")),
)
#: PostgreSQL: the same counters, moved once per statement (a 48-row upsert is one bump, TRUNCATE counts too). A
#: statement that changed no row moves them as well: that costs one reload, never a stale read.
CHANGE_COUNTS_DDL_POSTGRES = (
    "CREATE TABLE IF NOT EXISTS change_counts (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)",
    *(f"INSERT INTO change_counts (id, n) VALUES ({counter}, 0) ON CONFLICT DO NOTHING" for counter in _COUNTED),
    "CREATE OR REPLACE FUNCTION alphaline_count_change() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN UPDATE change_counts SET n = n + 1 WHERE id = TG_ARGV[0]::integer; RETURN NULL; END $$",
    *(f"CREATE OR REPLACE TRIGGER {table}_count_changes AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
      f"FOR EACH STATEMENT EXECUTE FUNCTION alphaline_count_change({counter})"
      for counter, tables in _COUNTED.items() for table in tables),
)


def change_counts_ddl(dialect: str) -> tuple[str, ...]:
    """The counters' table and triggers for ``dialect``; none (no cache) for a database other than SQLite and PostgreSQL."""
    return {"sqlite": CHANGE_COUNTS_DDL, "postgresql": CHANGE_COUNTS_DDL_POSTGRES}.get(dialect, ())


#: The statement that reads a counter.
COUNT_SQL = {counter: f"SELECT n FROM change_counts WHERE id = {counter}" for counter in _COUNTED}


_PREFETCHED = "alphaline_prefetched"  # an attribute of the psycopg connection


def prefetched(dbapi_conn: Any) -> dict[str, tuple[Any, ...] | None]:
    """First rows (``None``: no row) of the queries a PostgreSQL transaction sent with its BEGIN
    (:data:`trader.store_engine.PREFETCH`), by query text; the engine empties it when the transaction ends.

    A read transaction (REPEATABLE READ) gets the same answers until then; in a writer, what the writer itself
    changes is its to drop (:meth:`dict.pop` the query when it uses the row).
    """
    values = getattr(dbapi_conn, _PREFETCHED, None)
    if values is None:
        values = {}
        setattr(dbapi_conn, _PREFETCHED, values)
    return values


def change_count(dbapi_conn: Any, counter: int = BOOK, *, lock: bool = False) -> int:
    """The counter as the transaction open on this driver connection sees it (a few µs on SQLite: no SQLAlchemy around
    it; one round trip on PostgreSQL). sqlite3 and psycopg connections both have ``execute``.

    ``lock`` (PostgreSQL, a write transaction): ``FOR UPDATE``, so that until the commit no other writer — not even one
    past the store's advisory lock, whose trigger must bump this row — can move the count between this read and the next.
    """
    if not lock and (values := getattr(dbapi_conn, _PREFETCHED, None)) and (row := values.get(COUNT_SQL[counter])):
        return row[0]  # read with this (PostgreSQL) transaction's BEGIN; see prefetched()
    return dbapi_conn.execute(COUNT_SQL[counter] + (" FOR UPDATE" if lock else "")).fetchone()[0]


def _order_key(order: Order) -> tuple[Any, str]:
    return order.created_at, order.client_order_id  # the stored query's ORDER BY (UTC text sorts as time)


class BookCache:
    """Working orders, positions and order ids as of the :data:`BOOK` count :attr:`_stamp`; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._working: dict[str, Order] | None = None
        self._positions: dict[str, Position] | None = None
        self._ids: dict[str, dt.datetime] | None = None  # client_order_id -> created_at, of orders created >= _ids_since
        self._ids_since: dt.datetime | None = None

    def cached(self, version: int, part: str) -> list[Order] | dict[Symbol, Position] | None:
        """The ``"working"`` orders or the ``"positions"`` when the cache holds them at the count ``version`` (read on its
        own, e.g. in autocommit: then the rows are what the database held at that read); ``None`` when it cannot say."""
        with self._lock:
            if self._stamp != version:
                return None
            if part == "working" and self._working is not None:
                return sorted(self._working.values(), key=_order_key)
            if part == "positions" and self._positions is not None:
                return {Symbol(s): self._positions[s] for s in sorted(self._positions)}
        return None

    def working_orders(self, dbapi_conn: Any, load: Callable[[], list[Order]]) -> list[Order]:
        """The working orders by creation time; ``load`` reads them (in the same transaction) when the cache cannot."""
        version = change_count(dbapi_conn)
        with self._lock:
            if self._stamp == version and self._working is not None:
                return sorted(self._working.values(), key=_order_key)
        orders = load()
        with self._lock:
            self._restamp(version)
            self._working = {o.client_order_id: o for o in orders}
        return orders

    def positions(self, dbapi_conn: Any, load: Callable[[], Mapping[Symbol, Position]]) -> dict[Symbol, Position]:
        """Every stored position by symbol; ``load`` reads them (in the same transaction) when the cache cannot."""
        version = change_count(dbapi_conn)
        with self._lock:
            if self._stamp == version and self._positions is not None:
                return {Symbol(s): self._positions[s] for s in sorted(self._positions)}
        positions = dict(load())
        with self._lock:
            self._restamp(version)
            self._positions = dict(positions)
        return positions

    def client_order_ids(self, dbapi_conn: Any, since: dt.datetime,
                         load: Callable[[dt.datetime], Mapping[str, dt.datetime]]) -> frozenset[str]:
        """Ids of the orders created at or after ``since``; ``load(since)`` reads ``{id: created_at}`` when the cache
        cannot (an older ``since`` than it holds, too). Ids older than the latest ``since`` are let go."""
        version = change_count(dbapi_conn)
        with self._lock:
            if self._stamp == version and self._ids is not None and self._ids_since is not None and since >= self._ids_since:
                self._ids = {cid: at for cid, at in self._ids.items() if at >= since}
                self._ids_since = since
                return frozenset(self._ids)
        ids = dict(load(since))
        with self._lock:
            self._restamp(version)
            self._ids, self._ids_since = ids, since
        return frozenset(ids)

    def committed(self, before: int, after: int, orders: Mapping[str, Order], positions: Mapping[str, Position]) -> None:
        """A write transaction of this store committed these orders and positions, moving the count ``before`` → ``after``."""
        with self._lock:
            if self._stamp != before:  # the cache missed someone's write: forget it, the next read reloads
                self._restamp(None)
                return
            if self._working is not None:
                for cid, order in orders.items():
                    if order.status.is_terminal:
                        self._working.pop(cid, None)
                    else:
                        self._working[cid] = order
            if self._positions is not None:
                self._positions.update(positions)
            if self._ids is not None and self._ids_since is not None:
                self._ids.update((cid, o.created_at) for cid, o in orders.items() if o.created_at >= self._ids_since)
            self._stamp = after

    def _restamp(self, version: int | None) -> None:
        if self._stamp != version or version is None:  # the other parts were valid at another count
            self._stamp, self._working, self._positions, self._ids = version, None, None, None
