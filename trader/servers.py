"""The servers profile: every store on one PostgreSQL server, one database per store.

Setting ``ALPHALINE_POSTGRES_URL`` (a server, e.g. ``postgresql://alphaline:***@db:5432/alphaline``)
moves the trader's stores off the SQLite files under ``ALPHALINE_HOME``: each trader mode gets
its own database on that server, named after the URL's database (the prefix, default
``alphaline``) and the mode, created on first use when the role may (``CREATEDB``):

==========  ==============================
mode        database
==========  ==============================
live        ``<prefix>_trader``
paper       ``<prefix>_trader_paper``
sim         ``<prefix>_trader_sim``
dry-run     ``<prefix>_trader_dry_run``
==========  ==============================

The orchestration side (Dagster's storage, Feast's registry, the warehouse) names its
databases the same way (:func:`database_url`). Kept in ``trader`` and free of heavy imports:
the trader runs alone on a small box.

Example:
    >>> database_url("postgresql://u@db:5432/acme", "trader_sim")
    'postgresql+psycopg://u@db:5432/acme_trader_sim'
    >>> server_store_url("live", {"ALPHALINE_POSTGRES_URL": "postgresql://u@db/x"})
    'postgresql+psycopg://u@db/x_trader'
    >>> server_store_url("sim", {}) is None
    True
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping

import sqlalchemy as sa

from trader.errors import StoreError

ENV_VAR = "ALPHALINE_POSTGRES_URL"
_DEFAULT_PREFIX = "alphaline"


def postgres_server(env: Mapping[str, str] | None = None) -> str | None:
    """``ALPHALINE_POSTGRES_URL`` when set (non-empty), else ``None`` (the embedded profile)."""
    env = os.environ if env is None else env
    return env.get(ENV_VAR) or None


def database_url(server: str, purpose: str, *, driver: str = "psycopg") -> str:
    """The SQLAlchemy URL of ``<prefix>_<purpose>`` on ``server`` (``driver=""``: plain ``postgresql://``).

    Raises:
        StoreError: ``server`` is not a PostgreSQL URL.
    """
    try:
        url = sa.make_url(server)
    except sa.exc.ArgumentError:
        raise StoreError(f"{ENV_VAR}: not a database URL (e.g. postgresql://user:password@host:5432/alphaline)") from None
    if url.get_backend_name() != "postgresql":
        raise StoreError(f"{ENV_VAR}: {url.get_backend_name()!r} is not PostgreSQL (postgresql://user:password@host:5432/alphaline)")
    name = f"{url.database or _DEFAULT_PREFIX}_{purpose}"
    return url.set(drivername=f"postgresql+{driver}" if driver else "postgresql", database=name).render_as_string(hide_password=False)


def server_store_url(mode: str, env: Mapping[str, str] | None = None) -> str | None:
    """The trader store of ``mode`` on the server, or ``None`` without ``ALPHALINE_POSTGRES_URL``."""
    server = postgres_server(env)
    if server is None:
        return None
    purpose = "trader" if mode == "live" else f"trader_{mode.replace('-', '_')}"
    return database_url(server, purpose)


def ensure_database(url: str) -> None:
    """Create the database of ``url`` on its server if it does not exist (needs ``CREATEDB``; a team may pre-create it).

    Raises:
        StoreError: the server cannot be reached, or the database is missing and cannot be created.
    """
    target = sa.make_url(url)
    if target.get_backend_name() != "postgresql":
        return
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    safe = target.render_as_string(hide_password=True)
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}).first()
            if exists is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    except sa.exc.ProgrammingError as exc:
        if "already exists" not in str(exc.orig):  # another process created it first
            raise StoreError(f"{safe}: database missing and cannot be created ({exc.orig}); create it or grant CREATEDB") from None
    except sa.exc.OperationalError as exc:
        raise StoreError(f"{safe}: cannot reach the server ({str(exc.orig).splitlines()[0]})") from None
    finally:
        admin.dispose()


def database_exists(url: str) -> bool:
    """Whether the database of the PostgreSQL ``url`` exists on its server."""
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"))
    try:
        with admin.connect() as conn:
            return conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}).first() is not None
    except sa.exc.OperationalError as exc:
        raise StoreError(f"{target.render_as_string(hide_password=True)}: cannot reach the server "
                         f"({str(exc.orig).splitlines()[0]})") from None
    finally:
        admin.dispose()


def move_database_aside(url: str, *, now: dt.datetime | None = None) -> str:
    """Rename the database of ``url`` to ``<name>_replaced_<UTC time>`` (kept, never dropped); returns the new name.

    The server's own ``--fresh``: as a SQLite file is moved aside. Nothing may be connected to it.
    """
    target = sa.make_url(url)
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ").lower()
    aside = f"{target.database}_replaced_{stamp}"[-63:]  # PostgreSQL's identifier limit: keep the stamp
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{target.database}" RENAME TO "{aside}"')
    except sa.exc.DBAPIError as exc:
        raise StoreError(f"{target.render_as_string(hide_password=True)}: cannot move the database aside "
                         f"({str(exc.orig).splitlines()[0]})") from None
    finally:
        admin.dispose()
    return aside
