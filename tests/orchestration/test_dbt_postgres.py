"""The warehouse on a real PostgreSQL 16 against DuckDB: same ingest, same dbt models and tests, same marts, same readers.

The same synthetic batch (with bad rows and the planted split and dividend) is ingested through
:class:`orchestration.warehouse.Warehouse` into a DuckDB file and into a PostgreSQL database, ``dbt build`` runs on
each target (``local``, ``postgres``), and everything downstream reads both the same way: the marts row for row, the
quarantined rows with their reasons, the trader's bar and corporate-action feeds, compliance's closing marks and the
Great Expectations suite.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from dbt.cli.main import dbtRunner

from orchestration.defs.compliance.sources import closing_marks
from orchestration.defs.market.dbt import DBT_DIR
from orchestration.deployment import dbt_postgres_env
from orchestration.market.corporate_actions import ingest_actions
from orchestration.market.expectations import run_bars_suite
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket
from orchestration.market.warehouse import batch_reports, ingest_batch
from orchestration.warehouse import Warehouse
from trader.brokers.bars import WarehouseBars
from trader.corporate_actions import WarehouseActions
from trader.warehouse import conninfo

pytestmark = pytest.mark.servers
START, END = dt.datetime(2024, 1, 3, tzinfo=dt.UTC), dt.datetime(2024, 1, 17, tzinfo=dt.UTC)
MARTS = {"bars": "symbol, ts", "bars_daily": "symbol, session", "corporate_actions": "symbol, ex_date, kind"}


def _dbt_build(target: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("ALPHALINE_DBT_TARGET", target)
    result = dbtRunner().invoke(["build", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
                                 "--target-path", str(tmp / f"target-{target}"), "--log-path", str(tmp / "logs"), "--quiet"])
    assert result.success, result.exception or [(r.node.name, r.message) for r in result.result or [] if r.status != "pass"]
    return sorted(r.node.name for r in result.result)


def _ingest(warehouse: Warehouse) -> None:
    # With the planted dividend (2024-01-09) and split (2024-01-12): the adjustment factors' SQL runs on both engines.
    market = SyntheticMarket(SyntheticConfig(n_symbols=4, n_sectors=2, corporate_actions=True,
                                             faults={"negative_volume": 2, "ohlc_inconsistent": 1}))
    with warehouse.connect() as con:
        ingest_batch(con, market.fetch(START, END, now=END), asset="raw_bars", now=END)
        ingest_actions(con, market.corporate_actions(START.date(), END.date()), asset="raw_corporate_actions", label="synthetic")


def _assert_same(server: pl.DataFrame, local: pl.DataFrame, what: str) -> None:
    assert server.columns == local.columns and server.height == local.height > 0, what
    assert server.schema == local.schema, what  # the interface hands back the same types from both engines
    for name in (c for c in server.columns if c not in ("batch_id", "ingested_at")):  # per ingestion, not per row of data
        a, b = server[name], local[name]
        if b.dtype.is_float():
            assert ((a - b).abs().max() or 0.0) < 1e-9, (what, name)
        else:
            assert a.to_list() == b.to_list(), (what, name)


def test_warehouse_on_postgres_builds_and_reads_the_same_marts_as_duckdb(tmp_path, monkeypatch, postgres_url):
    local_wh, server_wh = Warehouse(tmp_path / "warehouse.duckdb"), Warehouse(conninfo(postgres_url))
    monkeypatch.setenv("ALPHALINE_WAREHOUSE", local_wh.location)
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    for wh in (local_wh, server_wh):
        _ingest(wh)
    local_nodes = _dbt_build("local", tmp_path, monkeypatch)
    for key, value in dbt_postgres_env(server_wh.location).items():  # what the servers profile sets for dbt
        monkeypatch.setenv(key, value)
    assert _dbt_build("postgres", tmp_path, monkeypatch) == local_nodes
    assert len([n for n in local_nodes if n not in ("bars", "bars_daily", "stg_bars")]) >= 20  # the dbt tests ran too

    # dbt-duckdb still holds the file open read-write in this process: read it with the same configuration.
    with local_wh.connect() as local, server_wh.connect(read_only=True) as server:
        for table, keys in MARTS.items():
            _assert_same(server.read(f"select * from marts.{table} order by {keys}"),
                         local.read(f"select * from marts.{table} order by {keys}"), table)
        rejects = "select source_row, reason, volume, high, low from raw.bars_rejected order by source_row, reason"
        _assert_same(server.read(rejects), local.read(rejects), "raw.bars_rejected")
        assert batch_reports(server, asset="raw_bars")[0].reasons == batch_reports(local, asset="raw_bars")[0].reasons != {}
        local_bars = local.read("select * from marts.bars order by symbol, ts")
        local_actions = local.fetchall("select symbol, ex_date, kind from marts.corporate_actions order by ex_date, symbol, kind")
    assert local_bars["price_factor"].n_unique() > 1  # the factors were computed, not all 1

    # The trader's feeds on PostgreSQL: the window's bars as exact decimals in UTC, adjusted on request; the actions.
    window = local_bars.filter(pl.col("ts").is_between(dt.datetime(2024, 1, 12, 14, 30, tzinfo=dt.UTC),
                                                       dt.datetime(2024, 1, 12, 16, 0, tzinfo=dt.UTC), closed="right"))
    for adjusted, close in ((False, "close"), (True, "adj_close")):
        bars = WarehouseBars(server_wh.location, adjusted=adjusted).bars(
            {"AAA", "BBB"}, after=dt.datetime(2024, 1, 12, 14, 30, tzinfo=dt.UTC), until=dt.datetime(2024, 1, 12, 16, 0, tzinfo=dt.UTC))
        expected = window.filter(pl.col("symbol").is_in(["AAA", "BBB"])).sort("ts", "symbol")
        assert [(b.symbol, b.ts, b.close) for b in bars] == [
            (s, t, Decimal(repr(c))) for s, t, c in expected.select("symbol", "ts", close).iter_rows()]
        assert all(b.ts.tzinfo is dt.UTC for b in bars)
    actions = WarehouseActions(server_wh.location).actions(through=END.date())
    assert [(a.symbol, a.ex_date, a.kind) for a in actions] == local_actions and len(actions) == 2

    # Compliance's closing marks: each symbol's last close of the session.
    day = dt.date(2024, 1, 12)
    last = local_bars.filter(pl.col("session") == day).sort("ts").group_by("symbol").last()
    assert closing_marks(server_wh.location, day) == {s: Decimal(repr(c)) for s, c in last.select("symbol", "close").iter_rows()}

    # Great Expectations on the frame read through the interface: the same verdict on both engines.
    server_frame = server_wh.read("select * from marts.bars order by symbol, ts")
    outcomes = [run_bars_suite(f.to_pandas(), docs_dir=tmp_path / name) for name, f in (("pg", server_frame), ("duck", local_bars))]
    assert outcomes[0].success and outcomes[1].success and outcomes[0].evaluated == outcomes[1].evaluated > 20
