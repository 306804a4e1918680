"""Bulk writes of the trader's store: one multi-row INSERT, or upsert, per table and transaction.

Used by :class:`trader.store_tx.StoreTx` when a transaction ends. On SQLite the rows go straight to the
driver's ``executemany``; on PostgreSQL (psycopg 3) the columns go as binary arrays to one ``INSERT ... SELECT * FROM unnest(...)``
(one statement whatever the row count: one round trip, one parse, and the statement-level triggers of
:mod:`trader.store_cache` fire once, where psycopg's ``executemany`` runs one statement per row);
:func:`write_rows` says ``False`` elsewhere, and the store falls back to SQLAlchemy's own statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


class _Bulk:
    """A multi-row INSERT (``upsert``: ``ON CONFLICT (key) DO UPDATE`` every column) straight through the driver's
    ``executemany``, each value converted by its column's own type (exact Decimal text, UTC timestamps).

    SQLite (3.24+) and PostgreSQL share the ON CONFLICT syntax; on PostgreSQL the rows travel as one array per
    column (``unnest``, each cast to its column's type), in one execution. Why not SQLAlchemy's insert: per row it builds the
    parameters in general-purpose code, a cost that dominated the trader's cycle (a hundred rows each);
    and it cannot cache its ON CONFLICT constructs at all (compiled again on every execution).
    """

    def __init__(self, table: sa.Table, dialect: sa.Dialect, *, upsert: bool):
        columns = list(table.columns)
        self.names = [c.name for c in columns]
        self.values = itemgetter(*self.names) if len(columns) > 1 else lambda row: (row[self.names[0]],)
        self.convert = [(i, f) for i, c in enumerate(columns) if (f := c.type.bind_processor(dialect)) is not None]
        names = ", ".join(f'"{n}"' for n in self.names)
        self.table = table.name
        self.arrays = dialect.name == "postgresql" and dialect.driver == "psycopg"
        if self.arrays:  # %b: binary arrays (as text, a JSON payload's quotes are escaped, then parsed: 10× slower)
            arrays = ", ".join(f"%b::{c.type.compile(dialect)}[]" for c in columns)
            sql = f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({arrays})'
        else:
            marker = "?" if dialect.paramstyle == "qmark" else "%s"
            sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join([marker] * len(columns))})'
        if upsert:
            keys = ", ".join(f'"{c.name}"' for c in table.primary_key)
            sets = ", ".join(f'"{c.name}" = excluded."{c.name}"' for c in columns if not c.primary_key)
            sql += f" ON CONFLICT ({keys}) DO UPDATE SET {sets}"
        self.sql = sql

    def run(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        conn.exec_driver_sql(self.sql, self.params(rows))

    def params(self, rows: Iterable[Mapping[str, Any]]) -> Any:
        """The driver's parameters: a list of row tuples (``executemany``), or on PostgreSQL a tuple of one list per column."""
        values = [self._row(row) for row in rows]
        return tuple(list(column) for column in zip(*values, strict=True)) if self.arrays else values

    def _row(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        values = list(self.values(row))  # every column, in order, in one C call; then only the typed ones converted
        for i, convert in self.convert:
            values[i] = convert(values[i])
        return tuple(values)


_DIALECTS = ("sqlite", "postgresql")
_BULK: dict[tuple[str, str, bool], _Bulk] = {}  # (dialect+driver, table, upsert)


def _bulk(dialect: sa.Dialect, table: sa.Table, upsert: bool) -> _Bulk:
    key = (f"{dialect.name}+{dialect.driver}", table.name, upsert)
    if key not in _BULK:
        _BULK[key] = _Bulk(table, dialect, upsert=upsert)
    return _BULK[key]


def write_rows(conn: Connection, table: sa.Table, rows: list[dict[str, Any]], *, upsert: bool = False) -> bool:
    """Insert (or upsert) ``rows`` in one statement; ``False`` (nothing done) on a dialect without :class:`_Bulk`."""
    if conn.dialect.name not in _DIALECTS:
        return False
    if rows:
        _bulk(conn.dialect, table, upsert).run(conn, rows)
    return True


def pipelined(conn: Connection) -> bool:
    """Whether :func:`write_pipelined` can run on ``conn``: PostgreSQL through psycopg 3."""
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


#: A write of :func:`write_pipelined`: the table, its rows, upsert or insert.
Write = tuple[sa.Table, list[dict[str, Any]], bool]


def write_pipelined(conn: Connection, writes: Sequence[Write], *, first: str | None = None,
                    last: str | None = None) -> tuple[Any, Any]:
    """PostgreSQL (psycopg 3): the query ``first``, every write and the query ``last`` in one pipeline (one round trip);
    returns the first value of ``first``'s and of ``last``'s row (``None`` for a query not given).

    A failure is SQLAlchemy's error for the driver's (an :class:`sqlalchemy.exc.IntegrityError` too), its statement
    the failing write's (see :func:`failed_table`); the transaction is then aborted, as after any failed statement.
    """
    dbapi_conn = conn.connection.dbapi_connection
    statements = [(_bulk(conn.dialect, table, upsert), rows) for table, rows, upsert in writes if rows]
    try:
        with dbapi_conn.pipeline():
            head = dbapi_conn.execute(first) if first else None
            for bulk, rows in statements:
                dbapi_conn.execute(bulk.sql, bulk.params(rows))
            tail = dbapi_conn.execute(last) if last else None
        return (head.fetchone()[0] if head else None), (tail.fetchone()[0] if tail else None)
    except conn.dialect.loaded_dbapi.Error as exc:
        table = _diag_table(exc)
        statement = next((bulk.sql for bulk, _ in statements if bulk.table == table), first or "")
        raise sa.exc.DBAPIError.instance(statement, None, exc, conn.dialect.loaded_dbapi.Error) from None


def failed_table(exc: sa.exc.DBAPIError) -> str | None:
    """The table of the row that failed a statement, when the database names it (PostgreSQL does)."""
    return _diag_table(exc.orig)


def _diag_table(driver_error: BaseException | None) -> str | None:
    return getattr(getattr(driver_error, "diag", None), "table_name", None)
