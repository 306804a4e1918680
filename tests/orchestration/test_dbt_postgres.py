"""dbt's `postgres` target on a real PostgreSQL 16: the same models and the same dbt tests build the same marts as DuckDB.

The raw layer is written by the ingest code into DuckDB, copied table by table into the server's ``raw`` schema,
then ``dbt build`` runs on each target; ``marts.bars`` and ``marts.bars_daily`` must agree row for row.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest
import sqlalchemy as sa
from dbt.cli.main import dbtRunner

from orchestration.defs.market.dbt import DBT_DIR
from orchestration.market.corporate_actions import ingest_actions
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket
from orchestration.market.warehouse import ingest_batch
from orchestration.warehouse import Warehouse

pytestmark = pytest.mark.servers
RAW = ("bars", "symbols", "sessions", "corporate_actions")


def _dbt_build(target: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("ALPHALINE_DBT_TARGET", target)
    result = dbtRunner().invoke(["build", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
                                 "--target-path", str(tmp / f"target-{target}"), "--log-path", str(tmp / "logs"), "--quiet"])
    assert result.success, result.exception or [(r.node.name, r.message) for r in result.result or [] if r.status != "pass"]
    return sorted(r.node.name for r in result.result)


def _postgres_env(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    u = sa.make_url(url)
    for key, value in {"HOST": u.host, "PORT": str(u.port), "USER": u.username, "PASSWORD": u.password or "", "DBNAME": u.database}.items():
        monkeypatch.setenv(f"ALPHALINE_WAREHOUSE_PG_{key}", value)


def _copy_raw(duck: duckdb.DuckDBPyConnection, url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA raw")
        for table in RAW:
            duck.sql(f"select * from raw.{table}").pl().write_database(f"raw.{table}", connection=engine)
    finally:
        engine.dispose()


def _read(url: str, query: str) -> pl.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pl.read_database(query, conn)
    finally:
        engine.dispose()


def test_dbt_postgres_target_builds_the_same_marts_and_passes_the_same_tests(tmp_path, monkeypatch, postgres_url):
    warehouse = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("ALPHALINE_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    # With the planted dividend (2024-01-09) and split (2024-01-12): the adjustment factors' SQL runs on both engines.
    market = SyntheticMarket(SyntheticConfig(n_symbols=4, n_sectors=2, corporate_actions=True))
    start, end = dt.datetime(2024, 1, 3, tzinfo=dt.UTC), dt.datetime(2024, 1, 17, tzinfo=dt.UTC)
    with Warehouse(warehouse).connect() as con:
        ingest_batch(con, market.fetch(start, end, now=end), asset="raw_bars")
        ingest_actions(con, market.corporate_actions(start.date(), end.date()), asset="raw_corporate_actions", label="synthetic")

    local_nodes = _dbt_build("local", tmp_path, monkeypatch)
    with duckdb.connect(str(warehouse)) as duck:  # dbt-duckdb still holds it open, read-write, in this process
        duck.execute("set TimeZone = 'UTC'")
        _copy_raw(duck, postgres_url)
        local = {t: duck.sql(f"select * from marts.{t} order by {k}").pl() for t, k in (("bars", "symbol, ts"), ("bars_daily", "symbol, session"))}
    _postgres_env(monkeypatch, postgres_url)
    server_nodes = _dbt_build("postgres", tmp_path, monkeypatch)

    assert server_nodes == local_nodes and len([n for n in server_nodes if n not in ("bars", "bars_daily", "stg_bars")]) >= 20
    assert local["bars"]["price_factor"].n_unique() > 1  # the factors were computed, not all 1
    for table, keys in (("bars", "symbol, ts"), ("bars_daily", "symbol, session")):
        server = _read(postgres_url, f"select * from marts.{table} order by {keys}")
        assert server.columns == local[table].columns and server.height == local[table].height > 0, table
        for name in server.columns:
            a, b = server[name], local[table][name]
            if b.dtype.is_float():
                assert ((a.cast(pl.Float64) - b).abs().max() or 0.0) < 1e-9, (table, name)
            elif isinstance(b.dtype, pl.Datetime):
                assert a.dt.convert_time_zone("UTC").dt.cast_time_unit("us").to_list() == b.dt.cast_time_unit("us").to_list(), (table, name)
            else:
                assert a.cast(b.dtype).to_list() == b.to_list(), (table, name)
