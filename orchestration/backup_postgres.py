"""The servers profile's PostgreSQL databases in a backup: ``pg_dump`` / ``pg_restore``, checked by row counts.

Which databases: every ``<prefix>_<store>`` on the ``ALPHALINE_POSTGRES_URL`` server (``_dagster``, ``_feast``,
``_trader``, ``_trader_<mode>``, ... — :mod:`trader.servers` names them), except those a ``--fresh`` moved
aside (``*_replaced_*``). Redis holds only Feast's online copy: re-materialise it after a restore.

**Backup**: per database, a read-only ``REPEATABLE READ`` transaction exports its snapshot; the row count of
every table is read in that snapshot and ``pg_dump --snapshot`` dumps exactly that state (custom format,
``postgres/<store>.dump``). The manifest records database, store, size, SHA-256 and the row counts.

**Restore** (after every checksum matched): each dump goes into ``<prefix>_<store>`` of the *current* server
and prefix (another server or prefix is fine). A database that holds tables is refused unless ``--replace``,
which renames it aside (kept, never dropped). ``pg_restore --single-transaction --exit-on-error`` either
restores all or nothing; then every table's row count must equal the manifest's.

The tools: ``pg_dump``/``pg_restore`` from ``ALPHALINE_PG_BINDIR`` when set, else from ``PATH``, else the
PostgreSQL binaries of the ``pgserver`` package (the tests' server). They must be at least the server's
version. The password goes through ``PGPASSWORD``, never the command line.

Example:
    >>> store_name("acme", "acme_trader_sim"), store_name("acme", "acme_trader_sim_replaced_20260101t000000z")
    ('trader_sim', None)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestration.errors import ConfigError

BINDIR_VAR = "ALPHALINE_PG_BINDIR"
FOLDER = "postgres"


@dataclass(frozen=True, kw_only=True)
class DatabaseEntry:
    store: str  # the database name without the prefix: dagster, feast, trader_sim, ...
    database: str  # its name when backed up
    file: str  # relative to the backup: postgres/<store>.dump
    size: int
    sha256: str
    tables: dict[str, int]  # "schema.table" -> rows


def store_name(prefix: str, database: str) -> str | None:
    """The store part of a profile database's name, ``None`` for another database or one moved aside."""
    if not database.startswith(f"{prefix}_") or "_replaced_" in database:
        return None
    return database[len(prefix) + 1:]


def tool(name: str) -> str:
    """The path of ``pg_dump`` / ``pg_restore`` (see the module docstring); ``ConfigError`` when none is found."""
    bindir = os.environ.get(BINDIR_VAR)
    if bindir:
        path = Path(bindir) / name
        if not os.access(path, os.X_OK):
            raise ConfigError(f"{BINDIR_VAR}={bindir}: no executable {name} there")
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    try:
        from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError:
        POSTGRES_BIN_PATH = None
    if POSTGRES_BIN_PATH is not None and (Path(POSTGRES_BIN_PATH) / name).is_file():
        return str(Path(POSTGRES_BIN_PATH) / name)
    raise ConfigError(f"{name}: not found; install the PostgreSQL client tools (version >= the server's) "
                      f"or set {BINDIR_VAR} to the folder holding {name}")


def _sa_url(server: str):
    import sqlalchemy as sa

    return sa.make_url(server)


def _connect(server: str, database: str):
    import psycopg

    url = _sa_url(server)
    return psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username, password=url.password,
                           dbname=database, **url.query)


def _run(args: list[str], server: str, database: str) -> None:
    url = _sa_url(server)
    env = {**os.environ, "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432), "PGDATABASE": database}
    if url.username:
        env["PGUSER"] = url.username
    if url.password:
        env["PGPASSWORD"] = url.password
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ConfigError(f"database {database}: {Path(args[0]).name} failed ({last})")


def profile_databases(server: str) -> list[tuple[str, str]]:
    """``(store, database)`` of every profile database on ``server``, sorted."""
    prefix = _sa_url(server).database or "alphaline"
    with _connect(server, "postgres") as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")]
    return sorted((store, name) for name in names if (store := store_name(prefix, name)))


def _row_counts(conn) -> dict[str, int]:
    from psycopg import sql

    tables = conn.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
                          "'information_schema') ORDER BY 1, 2").fetchall()
    return {f"{s}.{t}": conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(s, t))).fetchone()[0]
            for s, t in tables}


def dump(server: str, into: Path, sha256) -> list[DatabaseEntry]:
    """Dump every profile database into ``into/postgres/`` (a consistent snapshot each); returns the entries."""
    import psycopg

    pg_dump = tool("pg_dump")
    (into / FOLDER).mkdir(parents=True, exist_ok=True)
    entries = []
    for store, database in profile_databases(server):
        target = into / FOLDER / f"{store}.dump"
        with _connect(server, database) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # held until the transaction ends
            tables = _row_counts(conn)
            _run([pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={target}"], server, database)
        entries.append(DatabaseEntry(store=store, database=database, file=f"{FOLDER}/{store}.dump",
                                     size=target.stat().st_size, sha256=sha256(target), tables=tables))
    return entries


def check_restorable(server: str | None, entries: list[DatabaseEntry], *, replace: bool) -> None:
    """Refuse before anything is written: no server for the dumps, or a target database holding tables."""
    if not entries:
        return
    if server is None:
        names = ", ".join(e.store for e in entries)
        raise ConfigError(f"the backup holds PostgreSQL databases ({names}): set ALPHALINE_POSTGRES_URL and "
                          "ALPHALINE_REDIS_URL (the servers profile) to restore them")
    tool("pg_restore")
    if replace:
        return
    for e in entries:
        if _holds_tables(server, _target(server, e.store)):
            raise ConfigError(f"database {_target(server, e.store)}: not empty; restore into an empty one, or add "
                              "--replace to move it aside (kept, never dropped)")


def _target(server: str, store: str) -> str:
    return f"{_sa_url(server).database or 'alphaline'}_{store}"


def _holds_tables(server: str, database: str) -> bool:
    import psycopg

    try:
        with _connect(server, database) as conn:
            return conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
                                "'information_schema')").fetchone()[0] > 0
    except psycopg.OperationalError as exc:
        if "does not exist" in str(exc):
            return False
        raise ConfigError(f"database {database}: cannot connect ({str(exc).strip().splitlines()[0]})") from None


def load(server: str, backup: Path, entries: list[DatabaseEntry], *, replace: bool) -> list[str]:
    """Restore each dump into this server's profile database; returns the row-count mismatches found after."""
    from trader.errors import StoreError
    from trader.servers import database_url, ensure_database, move_database_aside

    pg_restore = tool("pg_restore")
    problems = []
    for e in entries:
        database, url = _target(server, e.store), database_url(server, e.store)
        try:
            if replace and _holds_tables(server, database):
                move_database_aside(url)
            ensure_database(url)
        except StoreError as err:
            raise ConfigError(str(err)) from None
        _run([pg_restore, "--single-transaction", "--exit-on-error", "--no-owner", f"--dbname={database}",
              str(backup / e.file)], server, database)
        with _connect(server, database) as conn:
            found = _row_counts(conn)
        problems += [f"database {database}: table {t}: {found.get(t)} rows, the backup had {n}"
                     for t, n in e.tables.items() if found.get(t) != n]
    return problems
