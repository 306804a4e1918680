"""Where the warehouse is, and a read-only connection to it: a DuckDB file or a PostgreSQL database.

The warehouse (``raw.*``, ``marts.*``) is DuckDB by default, ``$ALPHALINE_HOME/warehouse.duckdb``; with
``ALPHALINE_POSTGRES_URL`` set (the servers profile, :mod:`trader.servers`) it is the database
``<prefix>_warehouse`` on that server. A *location* names it: a file path, or a ``postgresql://`` URL
(which may hold a password: show :func:`describe`, never the location itself).

The trader only reads the warehouse, one short connection per query, so it never stands in the way of the
writer (DuckDB allows one writer process per file). The SQL it sends uses ``?`` placeholders on both engines
(:func:`pyformat` translates them for psycopg). Drivers are imported on first use: the trader stays lean.
The orchestration side builds its read-write warehouse (:mod:`orchestration.warehouse`) on the same functions.

Example:
    >>> warehouse_location({"ALPHALINE_HOME": "/tmp/h"})
    '/tmp/h/warehouse.duckdb'
    >>> warehouse_location({"ALPHALINE_POSTGRES_URL": "postgresql://u:pw@db:5432/acme"})
    'postgresql://u:pw@db:5432/acme_warehouse'
    >>> describe("postgresql://u:pw@db:5432/acme_warehouse")
    'postgresql://u:***@db:5432/acme_warehouse'
    >>> pyformat("select * from t where a = ? and b like 'x%'")
    "select * from t where a = %s and b like 'x%%'"
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trader.errors import TraderError

#: The servers profile's database for the warehouse: ``<prefix>_warehouse`` (:func:`trader.servers.database_url`).
PURPOSE = "warehouse"


class WarehouseError(TraderError):
    """The warehouse cannot be reached or read (missing file or database, engine error); one line, no secret."""


class WarehouseBusy(WarehouseError):
    """Another process holds the DuckDB file for writing (try again later)."""


def is_postgres(location: str | Path) -> bool:
    return str(location).startswith(("postgresql://", "postgresql+", "postgres://"))


def warehouse_location(env: Mapping[str, str] | None = None) -> str:
    """The DuckDB file under ``ALPHALINE_HOME``, or ``<prefix>_warehouse`` on ``ALPHALINE_POSTGRES_URL`` when set."""
    from trader.servers import database_url, postgres_server

    env = os.environ if env is None else env
    server = postgres_server(env)
    if server is not None:
        return database_url(server, PURPOSE, driver="")
    return str(Path(env.get("ALPHALINE_HOME", ".alphaline")).resolve() / "warehouse.duckdb")


def describe(location: str | Path) -> str:
    """The location as it may be printed: a PostgreSQL URL's password masked."""
    if not is_postgres(location):
        return str(location)
    import sqlalchemy as sa

    return sa.make_url(str(location)).render_as_string(hide_password=True)


def conninfo(location: str) -> str:
    """libpq's form of a PostgreSQL location (a SQLAlchemy ``postgresql+psycopg://`` URL is accepted too)."""
    import sqlalchemy as sa

    return sa.make_url(location).set(drivername="postgresql").render_as_string(hide_password=False)


def pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@contextmanager
def connect(location: str | Path, *, read_only: bool = True) -> Iterator[Any]:
    """A DB-API connection (``duckdb`` or ``psycopg``, autocommit) with the session time zone UTC; closed after.

    Raises:
        WarehouseError: no such file (read-only) or database, the server cannot be reached, or a statement in the
            block failed in the engine (a table not built yet, a lock held by another process): one line.
    """
    if is_postgres(location):
        import psycopg

        try:
            conn = psycopg.connect(conninfo(str(location)), autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise WarehouseError(f"warehouse {describe(location)}: cannot connect ({_first_line(exc)})") from None
        conn.read_only = read_only
        conn.execute("SET TimeZone = 'UTC'")
    else:
        import duckdb

        if read_only and not Path(location).is_file():
            raise WarehouseError(f"{location}: no warehouse here; build marts.bars first (or set ALPHALINE_HOME)")
        try:
            conn = duckdb.connect(str(location), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise WarehouseError(f"warehouse {location}: cannot open ({_first_line(exc)})") from None
            raise WarehouseBusy(f"warehouse {location}: busy, another process writes it ({_first_line(exc)})") from None
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse {location}: cannot open ({_first_line(exc)})") from None
        conn.execute("SET TimeZone = 'UTC'")
    try:
        yield conn
    except Exception as exc:
        if not _engine_error(exc):
            raise
        raise WarehouseError(f"warehouse {describe(location)}: {type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        conn.close()


def fetch(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (``?`` placeholders) on a connection from :func:`connect`."""
    if type(conn).__module__.startswith("psycopg"):
        with conn.cursor() as cur:
            cur.execute(pyformat(sql) if params else sql, list(params) or None)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
    return conn.execute(sql, list(params)).fetchall()


def table_exists(conn: Any, schema: str, table: str) -> bool:
    sql = "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?"
    return fetch(conn, sql, [schema, table])[0][0] > 0


def query(location: str | Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of one read-only query on the warehouse at ``location``.

    Raises:
        WarehouseError: the warehouse is missing or unreachable, or the query failed (e.g. a table not built yet).
    """
    with connect(location) as conn:
        return fetch(conn, sql, params)


def _engine_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb", "psycopg")
