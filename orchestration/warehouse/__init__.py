"""The warehouse (``raw.*``, ``staging.*``, ``marts.*``) behind one interface: DuckDB or PostgreSQL.

Embedded (default): the DuckDB file ``$ALPHALINE_HOME/warehouse.duckdb``. Servers profile
(``ALPHALINE_POSTGRES_URL``, :mod:`orchestration.deployment`): the database ``<prefix>_warehouse`` on that
server, and dbt builds the marts there (its ``postgres`` target). Every writer and reader goes through
:class:`Warehouse`: ingest, the dbt sources, the checks and Great Expectations, features, training, the
trader assets, compliance's closing marks and the CLI; the trader reads through :mod:`trader.warehouse`,
which this builds on.

A :class:`Session` runs the SQL both engines share (``?`` placeholders, ``on conflict``, ``not exists``,
window functions in a subquery, ``double precision``); what only one engine can do sits behind the session
(a frame written: DuckDB scans it in place, PostgreSQL receives it by ``COPY``).

Example:
    >>> import polars as pl, tempfile
    >>> wh = Warehouse(tempfile.mkdtemp() + "/warehouse.duckdb")
    >>> with wh.connect() as s:
    ...     s.execute("create schema raw; create table raw.t (symbol varchar primary key, n bigint)")
    ...     with s.transaction():
    ...         s.append("raw.t", pl.DataFrame({"symbol": ["AAA"], "n": [1]}))
    >>> wh.read("select symbol, n from raw.t where n > ?", [0]).rows()
    [('AAA', 1)]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orchestration.warehouse.sessions import DuckDBSession, PostgresSession, Session
from trader.warehouse import PURPOSE, WarehouseBusy, WarehouseError, connect, describe, is_postgres

if TYPE_CHECKING:
    import polars as pl

    from orchestration.settings import Settings

__all__ = ["Session", "Warehouse", "WarehouseBusy", "WarehouseError", "warehouse_location"]


class Warehouse:
    """The warehouse at ``location``: a DuckDB file path, or a ``postgresql://`` URL (may hold a password)."""

    def __init__(self, location: str | Path) -> None:
        self.location = str(location)

    @classmethod
    def for_settings(cls, settings: Settings) -> Warehouse:
        return cls(warehouse_location(settings))

    @property
    def kind(self) -> Literal["duckdb", "postgres"]:
        return "postgres" if is_postgres(self.location) else "duckdb"

    def describe(self) -> str:
        """Where it is, safe to print (a password masked)."""
        return describe(self.location)

    def __repr__(self) -> str:
        return f"Warehouse({self.describe()!r})"

    def exists(self) -> bool:
        """Whether there is a warehouse to read (the file, or the database on the server)."""
        if self.kind == "duckdb":
            return Path(self.location).is_file()
        from trader.servers import database_exists

        return database_exists(self.location)

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[Session]:
        """A session, closed after the block; DuckDB keeps the file locked for writing while a read-write one is open.

        Raises:
            WarehouseError: missing (read-only) or unreachable, or a statement failed in the engine; one line.
            WarehouseBusy: another process writes the DuckDB file.
        """
        with connect(self.location, read_only=read_only) as raw:
            yield (PostgresSession if self.kind == "postgres" else DuckDBSession)(raw)

    def read(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """One read-only query as a polars frame."""
        with self.connect(read_only=True) as session:
            return session.read(sql, params)


def warehouse_location(settings: Settings) -> str:
    """``<prefix>_warehouse`` on ``ALPHALINE_POSTGRES_URL`` in the servers profile, else the DuckDB file."""
    from orchestration.deployment import servers

    found = servers(settings)
    if found is None:
        return str(settings.warehouse_path)
    from trader.servers import database_url

    return database_url(found.postgres, PURPOSE, driver="")
