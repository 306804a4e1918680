"""Where the stores live: embedded on one machine (default) or on PostgreSQL and Redis servers.

Two settings move every server-capable store at once (the *servers profile*):

* ``ALPHALINE_POSTGRES_URL`` (e.g. ``postgresql://alphaline:***@db:5432/alphaline``): one database per
  store on that server, named ``<prefix>_<store>`` after the URL's database (:mod:`trader.servers`):
  ``_dagster`` (Dagster's runs, event log, schedules), ``_feast`` (Feast's SQL registry and its offline
  store's tables, schema ``feast_offline``), ``_warehouse`` (``raw.*``, ``staging.*``, ``marts.*``:
  :mod:`orchestration.warehouse`, with dbt's ``postgres`` target pointed at it), ``_trader`` and
  ``_trader_<mode>`` (the trader's stores); each created on first use when the role may;
* ``ALPHALINE_REDIS_URL`` (e.g. ``redis://:***@cache:6379/0``): Feast's online store.

The two go together (:func:`check`). Secrets stay in the environment: ``dagster.yaml`` names the
variable Dagster reads the URL from, never the URL itself, and the warehouse resource reads
``ALPHALINE_WAREHOUSE_URL`` (:data:`WAREHOUSE_URL_VAR`) the same way.

Still on the machine in this profile (and why): the Parquet copy of the features (read by the checks,
drift and the service's ``as_of`` replays) and BentoML's model store (files under ``ALPHALINE_HOME`` —
point it at shared storage), the WORM archive and the reports (files by design). No ``warehouse.duckdb``
is created in this profile.

Example:
    >>> from orchestration.settings import Settings
    >>> servers(Settings()) is None
    True
    >>> feast_redis("redis://:pw@cache:6380/2")
    'cache:6380,db=2,password=pw'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from orchestration.settings import Settings

#: The variable ``dagster.yaml`` reads Dagster's own Postgres URL from (set by :func:`configure`).
DAGSTER_URL_VAR = "ALPHALINE_DAGSTER_POSTGRES_URL"
#: The variable the warehouse resource reads the warehouse database's URL from (set by :func:`configure`).
WAREHOUSE_URL_VAR = "ALPHALINE_WAREHOUSE_URL"

DAGSTER_YAML_SERVERS = f"""\
# Written by alphaline (servers profile: ALPHALINE_POSTGRES_URL): runs, event log and schedules in PostgreSQL.
# The URL comes from the environment at load time; no secret is written here.
telemetry:
  enabled: false
storage:
  postgres:
    postgres_url:
      env: {DAGSTER_URL_VAR}
run_queue:
  max_concurrent_runs: 1
"""


@dataclass(frozen=True)
class Servers:
    """The servers of the profile (URLs hold secrets: never print them)."""

    postgres: str
    redis: str


def servers(settings: Settings) -> Servers | None:
    """The configured servers, or ``None`` for the embedded profile."""
    postgres, redis = settings.postgres_url.get_secret_value(), settings.redis_url.get_secret_value()
    return Servers(postgres, redis) if postgres and redis else None


def check(settings: Settings) -> None:
    """Refuse half a profile and a prod deployment without servers (``ConfigError`` naming the variable)."""
    from orchestration.errors import ConfigError

    postgres, redis = bool(settings.postgres_url.get_secret_value()), bool(settings.redis_url.get_secret_value())
    if postgres != redis:
        missing = "ALPHALINE_REDIS_URL" if postgres else "ALPHALINE_POSTGRES_URL"
        raise ConfigError(f"{missing}: not set, but the servers profile needs both ALPHALINE_POSTGRES_URL and ALPHALINE_REDIS_URL")
    if settings.feast_config == "prod" and not postgres and not os.environ.get("ALPHALINE_FEAST_REGISTRY_URL"):
        raise ConfigError("ALPHALINE_FEAST_CONFIG=prod: set ALPHALINE_POSTGRES_URL and ALPHALINE_REDIS_URL "
                          "(or ALPHALINE_FEAST_REGISTRY_URL and ALPHALINE_FEAST_REDIS)")


def feast_redis(url: str) -> str:
    """Feast's Redis ``connection_string`` (``host:port,db=N,password=...``) from a ``redis://`` URL (or that form itself)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    out = [f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"]
    db = parts.path.strip("/")
    if db and db != "0":
        out.append(f"db={db}")
    if parts.password:
        out.append(f"password={unquote(parts.password)}")
    if parts.scheme == "rediss":
        out.append("ssl=true")
    return ",".join(out)


def dbt_postgres_env(url: str) -> dict[str, str]:
    """dbt's ``postgres`` target (``dbt/profiles.yml``) on the database of ``url``: ``ALPHALINE_DBT_TARGET`` and
    ``ALPHALINE_WAREHOUSE_PG_*``.

    Example:
        >>> dbt_postgres_env("postgresql://u:pw@db:5433/acme_warehouse")["ALPHALINE_WAREHOUSE_PG_DBNAME"]
        'acme_warehouse'
    """
    parts = urlsplit(url)
    return {"ALPHALINE_DBT_TARGET": "postgres", "ALPHALINE_WAREHOUSE_PG_HOST": parts.hostname or "127.0.0.1",
            "ALPHALINE_WAREHOUSE_PG_PORT": str(parts.port or 5432), "ALPHALINE_WAREHOUSE_PG_USER": unquote(parts.username or ""),
            "ALPHALINE_WAREHOUSE_PG_PASSWORD": unquote(parts.password or ""),
            "ALPHALINE_WAREHOUSE_PG_DBNAME": parts.path.lstrip("/")}


def configure(settings: Settings) -> str | None:
    """Point Dagster, Feast, the warehouse and dbt at the servers (environment and ``dagster.yaml``); returns the yaml
    text, ``None`` if embedded.

    Raises:
        ConfigError: a half profile, or a server that cannot be reached or lacks a database it cannot create.
    """
    check(settings)
    found = servers(settings)
    if found is None:
        if os.environ.pop(WAREHOUSE_URL_VAR, None):  # this process left the profile: dbt back on the DuckDB file
            for key in dbt_postgres_env("postgresql://x/y"):
                os.environ.pop(key, None)
        return None
    from orchestration.errors import ConfigError
    from trader.errors import StoreError
    from trader.servers import database_url, ensure_database  # SQLAlchemy: only for the servers profile

    try:
        dagster_url = database_url(found.postgres, "dagster", driver="")
        feast_url = database_url(found.postgres, "feast")
        warehouse_url = database_url(found.postgres, "warehouse", driver="")
        for url in (dagster_url, feast_url, warehouse_url):
            ensure_database(url)
    except StoreError as err:
        raise ConfigError(str(err)) from None
    os.environ[DAGSTER_URL_VAR] = dagster_url
    os.environ[WAREHOUSE_URL_VAR] = warehouse_url
    os.environ.update(dbt_postgres_env(warehouse_url))
    os.environ["ALPHALINE_POSTGRES_URL"] = found.postgres  # the trader's stores (trader.servers reads it)
    os.environ["ALPHALINE_FEAST_CONFIG"] = "prod"  # the prediction service reads it when started from here
    os.environ["ALPHALINE_FEAST_REGISTRY_URL"] = feast_url
    os.environ["ALPHALINE_FEAST_REDIS"] = feast_redis(found.redis)
    return DAGSTER_YAML_SERVERS
