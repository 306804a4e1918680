"""dbt in the Dagster process: the same Dagster events as dagster-dbt's subprocess, failures included."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import dagster as dg
import polars as pl
import pytest
from dagster_dbt import DbtCliResource

from orchestration.dbt_runner import InProcessDbtCliResource, _DbtThread
from orchestration.defs.market.dbt import MarketTranslator, dbt_project
from orchestration.market.bars import SourceBatch
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket
from orchestration.market.warehouse import ingest_batch
from orchestration.warehouse import Warehouse
from tests.conftest import warehouse_sql

pytestmark = pytest.mark.slow
DAY = dt.datetime(2024, 1, 3, tzinfo=dt.UTC)


def _warehouse_restated_with_a_broken_bar(settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two symbols, one session, five of AAA's bars received again restated; then the first bar's high set below its
    low, which the dbt test bars_ohlc_consistent catches. Returns the first batch and the restated bars."""
    batch = SyntheticMarket(SyntheticConfig(n_symbols=2, n_sectors=1)).fetch(DAY, DAY + dt.timedelta(days=1), now=DAY + dt.timedelta(days=2))
    first = batch.bars
    restated = first.filter(pl.col("symbol") == "AAA").head(5).with_columns(pl.col(c) * 2 for c in ("open", "high", "low", "close", "vwap"))
    with Warehouse(settings.warehouse_path).connect() as con:
        for bars, label, day in ((first, "first", 1), (restated, "restated", 2)):
            ingest_batch(con, SourceBatch(bars=bars, label=label, symbols=batch.symbols), asset="raw_bars", now=DAY + dt.timedelta(days=day))
        con.execute("update raw.bars set high = low / 2 where ts = (select min(ts) from raw.bars) and symbol = 'AAA'")
    return first, restated


def _build(resource: DbtCliResource, project) -> tuple[object, list[tuple[str, str, str, bool | None]]]:
    invocation = resource.cli(["build"], raise_on_error=False, manifest=project.manifest_path, dagster_dbt_translator=MarketTranslator())
    events = []
    for event in invocation.stream():
        if isinstance(event, dg.AssetCheckEvaluation):
            events.append(("check", event.asset_key.to_user_string(), event.check_name, event.passed))
        else:
            events.append((type(event).__name__, event.asset_key.to_user_string(), "", None))
    return invocation, sorted(events)


def test_dbt_in_process_gives_dagster_the_same_models_and_checks_as_the_subprocess_and_frees_the_warehouse(settings):
    project = dbt_project(settings.dbt_target_dir)
    first, restated = _warehouse_restated_with_a_broken_bar(settings)

    inside, in_process = _build(InProcessDbtCliResource(project_dir=project), project)
    assert isinstance(inside.process, _DbtThread)  # dbt ran here, not in a child process
    assert not inside.is_successful()  # a failed dbt test fails the command, as dbt's exit code 1 does
    assert ("check", "marts/bars", "bars_ohlc_consistent", False) in in_process
    # every model an asset, but bars_daily: dbt build skips what depends on a failed test
    assert sorted(e[1] for e in in_process if e[0] == "AssetMaterialization") == [
        "marts/adjustment_factors", "marts/bars", "marts/corporate_actions", "staging/stg_bars", "staging/stg_corporate_actions"]
    assert sum(1 for e in in_process if e[0] == "check") >= 30  # every dbt test a check
    # marts.bars ranks only the keys received twice: one row per key, the latest batch's
    bars = warehouse_sql(settings, "select symbol, ts, close from marts.bars order by symbol, ts")
    want = first.select("symbol", "ts", "close").update(restated.select("symbol", "ts", "close"), on=["symbol", "ts"])
    assert bars.equals(want.sort("symbol", "ts"))
    # dbt-duckdb closed the database: another process may write it (the subprocess below needs to)
    other = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(settings.warehouse_path)!r}).execute('checkpoint')"],
                           capture_output=True, text=True, check=False)
    assert other.returncode == 0, other.stderr

    outside, by_subprocess = _build(DbtCliResource(project_dir=project), project)
    assert not outside.is_successful()
    assert in_process == by_subprocess


def test_dbt_in_process_reports_an_invalid_command_as_an_error_naming_it(settings):
    project = dbt_project(settings.dbt_target_dir)
    invocation = InProcessDbtCliResource(project_dir=project).cli(["build", "--no-such-flag"], raise_on_error=False,
                                                                    manifest=project.manifest_path)
    invocation.wait()
    error = invocation.get_error()
    assert invocation.process.returncode == 2 and error is not None and "no-such-flag" in str(error)

