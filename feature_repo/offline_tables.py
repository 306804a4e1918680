"""Feast's offline store on PostgreSQL (the prod config): the feature frames as tables, one per feature view.

In the embedded profile Feast's DuckDB offline store reads the Parquet files under
``$ALPHALINE_HOME/feast/offline/``. In the prod config (``feature_store.prod.yaml``,
``offline_store: type: postgres``) the same frames are also loaded into tables named like
the views (``feast_offline.bar_ret``, ...) and Feast's PostgreSQL offline store runs the
point-in-time joins (``get_historical_features``) and ``materialize`` in the server.

Where the tables live: the connection keys of ``offline_store`` in the yaml when given; otherwise
the database of the SQL registry (``ALPHALINE_FEAST_REGISTRY_URL``, i.e. ``<prefix>_feast`` in the
servers profile), schema ``db_schema``, created on first write.

Feast's point-in-time SQL joins common table expressions whose sizes PostgreSQL cannot estimate (it
guesses one row), so it picks nested loops that grow with the square of the rows: 4.1 s instead of
0.22 s for 500 entity rows here, and hours for a month of 48 symbols. The first write therefore sets
``enable_nestloop = off`` as the offline database's default (``ALTER DATABASE``, needs its owner; otherwise a
warning asks the DBA); Feast's registry in the same database only reads rows by key.

A write replaces a table in one transaction (``DROP``, ``CREATE``, ``COPY``, index): a reader
sees the old rows or the new ones, never half. ``COPY`` takes the frame as CSV, which polars
writes with the shortest exact float form, so the server holds the same doubles as the Parquet.

Example:
    >>> connection_from_url("postgresql+psycopg://feast:p%40ss@db:5433/acme_feast?sslmode=require")
    {'host': 'db', 'port': 5433, 'database': 'acme_feast', 'user': 'feast', 'password': 'p@ss', 'sslmode': 'require'}
"""

from __future__ import annotations

import io
import logging
from typing import Any

import polars as pl
from feast import RepoConfig

from feature_repo.errors import FeatureStoreError

_PG_TYPES = {pl.String: "text", pl.Float64: "double precision", pl.Float32: "real", pl.Int64: "bigint",
             pl.Int32: "integer", pl.Int16: "smallint", pl.Int8: "smallint", pl.UInt32: "bigint",
             pl.UInt8: "smallint", pl.UInt16: "integer", pl.Boolean: "boolean"}
_CONNECTION_KEYS = ("host", "port", "database", "user", "password", "sslmode")
_log = logging.getLogger(__name__)


def connection_from_url(url: str) -> dict[str, Any]:
    """Feast's PostgreSQL connection keys from a ``postgresql[+driver]://`` URL (``sslmode`` from the query, else ``prefer``)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise FeatureStoreError("ALPHALINE_FEAST_REGISTRY_URL: not a database URL "
                                "(the offline store on PostgreSQL reads its connection from it)") from None
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        raise FeatureStoreError("ALPHALINE_FEAST_REGISTRY_URL: the offline store on PostgreSQL needs a "
                                "postgresql://user:password@host:5432/database registry URL (or host, database, ... "
                                "under offline_store in the yaml)")
    return {"host": parsed.host or "127.0.0.1", "port": parsed.port or 5432, "database": parsed.database,
            "user": parsed.username or "postgres", "password": parsed.password or "",
            "sslmode": str(parsed.query.get("sslmode", "prefer"))}


def complete_offline_store(raw: dict[str, Any]) -> dict[str, Any]:
    """The yaml's ``offline_store`` with the registry's connection filled in when ``type: postgres`` names no host."""
    offline = dict(raw.get("offline_store") or {})
    if offline.get("type") != "postgres" or "host" in offline:
        return raw
    registry = raw.get("registry") or {}
    url = registry.get("path") if isinstance(registry, dict) else registry
    found = connection_from_url(str(url or ""))
    return {**raw, "offline_store": {**{k: found[k] for k in _CONNECTION_KEYS}, **offline}}


class OfflineTables:
    """The offline store's tables on PostgreSQL (one per feature view) for a prod :class:`RepoConfig`."""

    def __init__(self, config: RepoConfig) -> None:
        self.config = config.offline_store
        self.schema: str = self.config.db_schema

    def qualified(self, name: str) -> str:
        """``schema.name``: what a :class:`PostgreSQLSource` names as its table."""
        return f"{self.schema}.{name}"

    def _connect(self):
        from feast.infra.utils.postgres.connection_utils import _get_conn
        from psycopg import OperationalError

        try:
            return _get_conn(self.config)
        except OperationalError as exc:
            where = f"{self.config.host}:{self.config.port}/{self.config.database}"
            raise FeatureStoreError(f"Feast offline store {where}: cannot connect ({str(exc).strip().splitlines()[0]})") from None

    def replace(self, name: str, frame: pl.DataFrame) -> None:
        """Replace table ``name`` with ``frame`` (one transaction), indexed on ``symbol, event_timestamp``."""
        from psycopg import sql

        columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_pg_type(c, t)))
                                    for c, t in frame.schema.items())
        table = sql.Identifier(self.schema, name)
        data = frame.write_csv(include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%.6f%:z").encode()
        self._tune_database()
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            cur.execute(sql.SQL("CREATE TABLE {} ({})").format(table, columns))
            with cur.copy(sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(table)) as copy:
                for start in range(0, len(data), 1 << 20):
                    copy.write(data[start:start + (1 << 20)])
            if {"symbol", "event_timestamp"} <= set(frame.columns):
                cur.execute(sql.SQL("CREATE INDEX ON {} (symbol, event_timestamp)").format(table))
            cur.execute(sql.SQL("ANALYZE {}").format(table))

    def _tune_database(self) -> None:
        """``enable_nestloop = off`` for new sessions of the offline database (see the module docstring)."""
        from psycopg import errors, sql

        with self._connect() as conn:
            if conn.execute("SHOW enable_nestloop").fetchone()[0] == "off":
                return
            try:
                conn.execute(sql.SQL("ALTER DATABASE {} SET enable_nestloop = off").format(sql.Identifier(self.config.database)))
                conn.commit()
            except errors.InsufficientPrivilege:
                _log.warning("Feast offline store %s: not its owner, so the point-in-time joins may be slow; ask the DBA "
                             "for ALTER DATABASE %s SET enable_nestloop = off", self.config.database, self.config.database)

    def read(self, name: str) -> pl.DataFrame:
        """Table ``name`` as a polars frame (timestamps in UTC)."""
        from psycopg import sql

        buffer = io.BytesIO()
        query = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT (FORMAT csv, HEADER)").format(sql.Identifier(self.schema, name))
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            with cur.copy(query) as copy:
                for block in copy:
                    buffer.write(block)
            types = dict(cur.execute(sql.SQL("SELECT column_name, data_type FROM information_schema.columns "
                                             "WHERE table_schema = %s AND table_name = %s"), (self.schema, name)).fetchall())
        buffer.seek(0)
        polars_types = {c: _from_pg(t) for c, t in types.items()}
        return pl.read_csv(buffer, schema_overrides=polars_types, try_parse_dates=False).with_columns(
            pl.col(c).str.to_datetime(time_zone="UTC", time_unit="us") for c, t in types.items() if t.startswith("timestamp")
        )


def _pg_type(column: str, dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    found = _PG_TYPES.get(dtype.base_type())
    if found is None:
        raise FeatureStoreError(f"column {column!r}: type {dtype} has no PostgreSQL column type here")
    return found


def _from_pg(pg_type: str) -> pl.DataType:
    return {"text": pl.String, "double precision": pl.Float64, "real": pl.Float32, "bigint": pl.Int64,
            "integer": pl.Int32, "smallint": pl.Int16, "boolean": pl.Boolean}.get(pg_type, pl.String)
