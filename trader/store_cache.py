"""The trader store's in-memory book on SQLite: working orders and positions, kept while no other writer moved them.

The run loop reads the working orders three times a cycle and the positions twice; rebuilding
them from rows cost about a tenth of a cycle. :class:`BookCache` keeps them in memory and
serves a read from memory only when the database says that nothing changed them since:

* a one-row table, ``book_version``, counts every row inserted, updated or deleted in
  ``orders`` and ``positions``; triggers in the database bump it, so *any* writer moves it —
  another process (``trader reconcile``, the ops API, an older version of this code), another
  connection, this one;
* the cache is stamped with the count it is valid at. A read compares the stamp with the count
  **in its own read transaction** (a ``snapshot()`` included): equal, the rows are what the
  cache holds; different, it reads the rows and re-stamps the cache in that same transaction;
* a write transaction of this store reads the count before and after its own writes (it holds
  the write lock: nobody else can move it in between) and, once committed, applies its orders
  and positions to the cache if the cache was valid at the first count — otherwise drops it.

So a read never returns a state that differs from what the database holds at that read; the
kill switch is not cached here (``TraderStore.trading_state`` has its own check, SQLite's
``data_version``). PostgreSQL stores have no cache: every read goes to the server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from trader.domain import Order, Position, Symbol

_TABLES = ("orders", "positions")
#: SQLite only: the counter and its triggers (created with the store, idempotent).
BOOK_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS book_version (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO book_version (id, n) VALUES (1, 0)",
    *(f"CREATE TRIGGER IF NOT EXISTS {table}_book_{op.lower()} AFTER {op} ON {table} "
      "BEGIN UPDATE book_version SET n = n + 1 WHERE id = 1; END"
      for table in _TABLES for op in ("INSERT", "UPDATE", "DELETE")),
)
_VERSION = "SELECT n FROM book_version WHERE id = 1"


def book_version(dbapi_conn: Any) -> int:
    """The count in the transaction open on this driver connection (a few µs: no SQLAlchemy around it)."""
    return dbapi_conn.execute(_VERSION).fetchone()[0]


def _order_key(order: Order) -> tuple[Any, str]:
    return order.created_at, order.client_order_id  # the stored query's ORDER BY (UTC text sorts as time)


class BookCache:
    """Working orders and positions as of ``book_version`` = :attr:`_stamp`; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._working: dict[str, Order] | None = None
        self._positions: dict[str, Position] | None = None

    def working_orders(self, dbapi_conn: Any, load: Callable[[], list[Order]]) -> list[Order]:
        """The working orders by creation time; ``load`` reads them (in the same transaction) when the cache cannot."""
        version = book_version(dbapi_conn)
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
        version = book_version(dbapi_conn)
        with self._lock:
            if self._stamp == version and self._positions is not None:
                return {Symbol(s): self._positions[s] for s in sorted(self._positions)}
        positions = dict(load())
        with self._lock:
            self._restamp(version)
            self._positions = dict(positions)
        return positions

    def committed(self, before: int, after: int, orders: Mapping[str, Order], positions: Mapping[str, Position]) -> None:
        """A write transaction of this store committed these orders and positions, moving the count ``before`` → ``after``."""
        with self._lock:
            if self._stamp != before:  # the cache missed someone's write: forget it, the next read reloads
                self._stamp, self._working, self._positions = None, None, None
                return
            if self._working is not None:
                for cid, order in orders.items():
                    if order.status.is_terminal:
                        self._working.pop(cid, None)
                    else:
                        self._working[cid] = order
            if self._positions is not None:
                self._positions.update(positions)
            self._stamp = after

    def _restamp(self, version: int) -> None:
        if self._stamp != version:  # the other half was valid at another count
            self._stamp, self._working, self._positions = version, None, None
