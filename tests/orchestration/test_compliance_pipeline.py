"""The EOD compliance pipeline through Dagster, on a tiny trader store and a tiny warehouse.

Three sessions (Mon 2024-03-04 … Wed 03-06): buy AAA and BBB; sell some AAA at a gain and all
BBB at a loss; buy BBB back the next day (a wash sale). Closing prices sit in a hand-made
``marts.bars``; the trader's fills and audit records go in through ``TraderStore``.
"""

import csv
import datetime as dt
import json
import os
import sqlite3
import stat
import sys
import types
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from click.testing import CliRunner

from orchestration.cli.compliance import compliance
from orchestration.defs.compliance import ComplianceResource, build_defs
from orchestration.defs.compliance import eod as eod_module
from orchestration.defs.compliance.schedules import EOD_JOB, eod_request
from orchestration.settings import Settings, prepare_environment
from orchestration.warehouse.resource import WarehouseResource
from trader.compliance import ComplianceError
from trader.domain import Fill
from trader.store import TraderStore

MON, TUE, WED = dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 6)
FRI_BEFORE = dt.date(2024, 3, 1)
CLOSES = {FRI_BEFORE: {"AAA": 99.0, "BBB": 50.0}, MON: {"AAA": 101.0, "BBB": 49.5},
          TUE: {"AAA": 108.25, "BBB": 41.0}, WED: {"AAA": 107.0, "BBB": 42.5}}
FILLS = [  # fill_id, day, hour (UTC), symbol, side, qty, price, fee
    ("F1", MON, 15, "AAA", "buy", "10", "100.00", "1.00"),
    ("F2", MON, 16, "BBB", "buy", "5", "50.00", "0.50"),
    ("F3", TUE, 15, "AAA", "sell", "4", "110.00", "1.00"),
    ("F4", TUE, 16, "BBB", "sell", "5", "40.00", "0.50"),
    ("F5", WED, 15, "BBB", "buy", "5", "42.00", "0.50"),
]


def _fill(fid: str, day: dt.date, hour: int, symbol: str, side: str, qty: str, price: str, fee: str) -> Fill:
    return Fill(fill_id=fid, order_id=f"O-{fid}", client_order_id=f"C-{fid}", symbol=symbol, side=side, qty=Decimal(qty),
                price=Decimal(price), fee=Decimal(fee), ts=dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC),
                venue="sim", account="A1")


def record(store: TraderStore, fill: Fill) -> None:
    """What the trader does for a fill: the fill, its position and its audit record, in one transaction."""
    with store.transaction() as tx:
        tx.record_fill(fill)
        tx.append_audit("fill", fill.to_record(), ts=fill.ts)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh ALPHALINE_HOME with the trader's store and marts.bars (no dbt needed)."""
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path / "home"))
    for var in ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH", "ALPHALINE_WAREHOUSE"):  # as tests/conftest.py
        monkeypatch.delenv(var, raising=False)
    settings = prepare_environment(Settings(home=tmp_path / "home"))
    with TraderStore(f"sqlite:///{settings.home / 'trader' / 'trader.db'}") as store:
        for row in FILLS:
            record(store, _fill(*row))
    con = duckdb.connect(str(settings.warehouse_path))
    con.execute("create schema marts; create table marts.bars (symbol varchar, timeframe varchar, ts timestamptz, "
                "close_ts timestamptz, session date, close double)")
    for day, closes in CLOSES.items():
        for hour, bump in ((19, -1.0), (20, 0.0)):  # the later bar's close is the day's close
            close_ts = dt.datetime.combine(day, dt.time(hour, 45), tzinfo=dt.UTC) + dt.timedelta(minutes=15)
            for symbol, close in closes.items():
                con.execute("insert into marts.bars values (?, '15m', ?, ?, ?, ?)",
                            [symbol, close_ts - dt.timedelta(minutes=15), close_ts, day, close + bump])
    con.close()
    return settings


def definitions(settings: Settings, **loggers) -> dg.Definitions:
    resources = {"compliance": ComplianceResource.for_home(settings.home),
                 "warehouse": WarehouseResource(location=str(settings.warehouse_path))}
    return dg.Definitions.merge(build_defs(settings), dg.Definitions(resources=resources, loggers=loggers or None))


def run_day(settings: Settings, day: dt.date) -> dg.ExecuteInProcessResult:
    # An in-memory instance: Dagster's SQLite event log costs seconds per run and tests nothing of ours.
    return definitions(settings).resolve_job_def(EOD_JOB).execute_in_process(
        partition_key=day.isoformat(), instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, tuple[bool, str]]:
    return {f"{c.asset_key.to_user_string()}:{c.check_name}": (c.passed, c.description) for c in result.get_asset_check_evaluations()}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def archive_entries(settings: Settings) -> list[dict]:
    manifest = settings.home / "archive" / "manifest.jsonl"
    return [json.loads(line) for line in manifest.read_text().splitlines()] if manifest.exists() else []


def test_eod_job_writes_the_days_reports_seals_them_read_only_and_resumes_from_the_sealed_checkpoint(home):
    first = run_day(home, MON)
    assert first.success, checks(first)
    second = run_day(home, TUE)
    assert second.success, checks(second)
    assert all(passed for passed, _ in checks(second).values()) and len(checks(second)) == 5

    day = home.reports_dir / TUE.isoformat()
    realized = {r["symbol"]: r for r in rows(day / "realized_pnl.csv")}
    assert realized["AAA"]["gain_loss"] == "38.60"  # 4 × 110 − 1 − 4/10 × (1000 + 1)
    assert realized["BBB"]["gain_loss"] == "-51.00" and realized["BBB"]["wash_window_open"] == "true"
    assert [r["qty"] for r in rows(day / "tax_lots.csv")] == ["6"]
    assert json.loads((day / "audit_verification.json").read_text())["ok"] is True
    assert [r["fill_id"] for r in rows(day / "fills.csv")] == ["F3", "F4"]
    ledger = second.asset_materializations_for_node("tax_lot_ledger")[0].metadata
    assert ledger["ledger"].value == "resumed from the 2024-03-04 checkpoint" and ledger["fills_applied"].value == 2

    sealed = {e["payload"]["name"] for e in archive_entries(home) if e["payload"]["date"] == TUE.isoformat()}
    assert sealed == {"tax_lots.csv", "realized_pnl.csv", "wash_sales.csv", "form_8949.csv", "schedule_d.csv",
                      "roll_forward.csv", "fills.csv", "audit_records.jsonl", "audit_verification.json", "ledger_state.json"}
    for obj in (home.home / "archive" / "objects").glob("*/*"):
        assert stat.S_IMODE(obj.stat().st_mode) == 0o444

    third = run_day(home, WED)  # the replacement purchase turns Tuesday's BBB loss into a wash sale
    assert third.success, checks(third)
    wash = rows(home.reports_dir / WED.isoformat() / "wash_sales.csv")
    assert [(w["symbol"], w["disallowed_loss"], w["replacement_lot_id"]) for w in wash] == [("BBB", "51.00", "F5")]
    lot = next(r for r in rows(home.reports_dir / WED.isoformat() / "tax_lots.csv") if r["symbol"] == "BBB")
    assert lot["cost_basis"] == "261.50" and lot["holding_period_start"] == "2024-03-05"


def test_a_resumed_days_report_files_and_checkpoint_equal_a_replayed_days(home):
    paths, warehouse = ComplianceResource.for_home(home.home).paths(), str(home.warehouse_path)
    eod_module.close_ledger(replace(paths, resume=False), day=MON, warehouse=warehouse)
    for day in (TUE, WED):  # Tuesday's gain is sealed text by Wednesday's close, its loss still an object
        previous = MON if day == TUE else TUE
        paths.archive().put(paths.checkpoint(previous).read_bytes(), name=eod_module.LEDGER_STATE, date=previous)
        written = {}
        for mode in ("resumed", "replayed"):
            run = eod_module.close_ledger(replace(paths, resume=mode == "resumed"), day=day, warehouse=warehouse)
            assert (run.resumed_from == previous) == (mode == "resumed")
            reports = eod_module.write_day_reports(paths, day)
            written[mode] = {path.name: path.read_bytes() for path in (*reports.paths.values(), reports.directory / "fills.csv",
                                                                      paths.checkpoint(day))}
        assert written["resumed"] == written["replayed"] and len(written["resumed"]) == 8


def test_rerunning_a_sealed_day_archives_nothing_new(home):
    assert run_day(home, MON).success
    before = archive_entries(home)
    again = run_day(home, MON)
    assert again.success
    assert archive_entries(home) == before
    meta = again.asset_materializations_for_node("sealed_compliance_records")[0].metadata
    assert (meta["new"].value, meta["correction"].value, meta["unchanged"].value) == (0, 0, len(before))


def test_a_late_fill_makes_later_days_replay_and_its_day_is_sealed_again_as_corrections(home):
    assert run_day(home, MON).success and run_day(home, TUE).success
    originals = {e["payload"]["name"]: e["hash"] for e in archive_entries(home) if e["payload"]["date"] == MON.isoformat()}
    with TraderStore(ComplianceResource.for_home(home.home).store_url) as store:
        record(store, _fill("F1b", MON, 19, "AAA", "buy", "1", "101.00", "0.10"))

    wednesday = run_day(home, WED)  # Tuesday's checkpoint no longer matches the store: never trust it
    assert wednesday.success, checks(wednesday)
    note = wednesday.asset_materializations_for_node("tax_lot_ledger")[0].metadata["ledger"].value
    assert note == "the store has 5 fills through 2024-03-05, its checkpoint 4 (late fills): replaying every fill"
    assert [r["qty"] for r in rows(home.reports_dir / WED.isoformat() / "tax_lots.csv") if r["symbol"] == "AAA"] == ["6", "1"]

    monday = run_day(home, MON)
    assert monday.success, checks(monday)
    corrections = [e for e in archive_entries(home) if e["payload"]["corrects"]]
    assert {e["payload"]["name"] for e in corrections} >= {"fills.csv", "tax_lots.csv", "ledger_state.json"}
    assert all(e["payload"]["corrects"] == originals[e["payload"]["name"]] for e in corrections)
    assert set(originals.values()) <= {e["hash"] for e in archive_entries(home)}  # nothing was overwritten


def test_great_expectations_failure_on_a_negative_lot_blocks_the_reports_and_sealing(home, monkeypatch):
    real_close_day = eod_module.close_day

    def corrupt(*args, **kwargs):
        close = real_close_day(*args, **kwargs)
        close.ledger.open_lots()[0].qty = Decimal(-5)  # a bug that books a long lot below zero
        return close

    monkeypatch.setattr(eod_module, "close_day", corrupt)
    result = run_day(home, MON)
    assert not result.success
    passed, message = checks(result)["tax_lot_ledger:great_expectations_suite"]
    assert not passed and "lots: expect_column_values_to_be_between(qty): 1 unexpected" in message
    assert not result.asset_materializations_for_node("sealed_compliance_records")
    assert not (home.reports_dir / MON.isoformat() / "tax_lots.csv").exists()
    assert archive_entries(home) == []


def test_broker_fees_that_differ_by_more_than_a_cent_block_sealing(home):
    statements = home.home / "compliance" / "broker_fees"
    statements.mkdir(parents=True)
    (statements / f"{MON}.csv").write_text("fill_id,fee\nF1,1.005\nF2,0.53\n")
    result = run_day(home, MON)
    passed, message = checks(result)["compliance_reports:fees_reconcile"]
    assert not passed and "F2: ours 0.50, broker 0.53" in message
    assert archive_entries(home) == []
    assert (home.reports_dir / MON.isoformat() / "fee_reconciliation.csv").exists()  # written, to be looked at


def _tamper_sqlite(settings: Settings, sql: str) -> None:
    """Go around the store's append-only triggers, as an attacker with file access would."""
    con = sqlite3.connect(settings.home / "trader" / "trader.db")
    for table in ("fills", "audit"):
        con.execute(f"drop trigger if exists {table}_no_update")
    con.execute(sql)
    con.commit()
    con.close()


def test_verify_passes_on_an_untouched_archive_and_names_a_tampered_fill(home):
    assert run_day(home, MON).success and run_day(home, TUE).success
    runner = CliRunner()
    clean = runner.invoke(compliance, ["verify"])
    assert clean.exit_code == 0, clean.output
    assert "OK: nothing was altered" in clean.output

    _tamper_sqlite(home, "update fills set price = '111.00' where fill_id = 'F3'")
    tampered = runner.invoke(compliance, ["verify"])
    assert tampered.exit_code == 1
    assert "fills 2024-03-05: fill F3: price: archived 110.00, the store now has 111.00" in tampered.output
    rerun = run_day(home, TUE)  # the EOD run refuses to seal over it
    assert checks(rerun)["tax_lot_ledger:fills_match_archive"][0] is False


def test_verify_names_a_changed_byte_in_an_archived_file_and_a_rewritten_audit_record(home):
    assert run_day(home, MON).success
    entry = next(e for e in archive_entries(home) if e["payload"]["name"] == "form_8949.csv")
    obj = home.home / "archive" / "objects" / entry["payload"]["sha256"][:2] / entry["payload"]["sha256"]
    os.chmod(obj, 0o644)
    data = bytearray(obj.read_bytes())
    data[-3] ^= 1
    obj.write_bytes(bytes(data))
    os.chmod(obj, 0o444)
    _tamper_sqlite(home, "update audit set payload = replace(payload, '\"qty\":\"5\"', '\"qty\":\"6\"') where seq = 2")

    result = CliRunner().invoke(compliance, ["verify"])
    assert result.exit_code == 1
    assert f"object {entry['payload']['sha256']} (form_8949.csv, 2024-03-04" in result.output and "altered" in result.output
    assert "audit chain: record seq 2 (position 2): content altered" in result.output


def test_a_broken_audit_chain_fails_its_blocking_check_and_nothing_is_sealed(home):
    _tamper_sqlite(home, "update audit set payload = replace(payload, '\"qty\":\"5\"', '\"qty\":\"6\"') where seq = 2")
    result = run_day(home, MON)
    passed, message = checks(result)["audit_trail_verification:audit_chain_verified"]
    assert not passed and "record seq 2 (position 2): content altered" in message
    assert archive_entries(home) == []


def test_schedule_runs_weekdays_at_1730_new_york_for_sessions_only(home):
    defs = definitions(home)
    schedule = defs.resolve_schedule_def("eod_compliance_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == ("30 17 * * 1-5", "America/New_York", EOD_JOB)
    ny = dt.timezone(dt.timedelta(hours=-5))
    assert eod_request(dt.datetime(2024, 3, 5, 17, 30, tzinfo=ny)).partition_key == "2024-03-05"
    assert "not an XNYS session" in eod_request(dt.datetime(2024, 1, 15, 17, 30, tzinfo=ny)).skip_message  # MLK day
    keys = defs.resolve_job_def(EOD_JOB).partitions_def.get_partition_keys(current_time=dt.datetime(2024, 1, 9, 23, tzinfo=dt.UTC))
    assert keys == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"]  # no weekend


def test_cli_run_closes_a_day_and_prints_what_was_written_verified_and_sealed(home, monkeypatch):
    # run_job loads orchestration.definitions (every domain, Feast included: ~20 s of imports);
    # until compliance is wired in there, stand in a module with just this domain.
    stand_in = types.ModuleType("orchestration.definitions")
    stand_in.build_definitions = lambda settings, loggers=None: definitions(home, **(loggers or {}))
    monkeypatch.setitem(sys.modules, "orchestration.definitions", stand_in)
    monkeypatch.setattr(dg.DagsterInstance, "get", staticmethod(dg.DagsterInstance.ephemeral))  # see run_day
    result = CliRunner().invoke(compliance, ["run", "--date", "2024-03-04"])
    assert result.exit_code == 0, result.output
    assert "succeeded; 5/5 checks passed" in result.output
    assert "Audit trail  verified: 2 records" in result.output
    assert "10 record(s) sealed for 2024-03-04" in result.output and "ledger_state.json" in result.output

    holiday = CliRunner().invoke(compliance, ["run", "--date", "2024-07-04"])
    assert holiday.exit_code != 0 and "not an XNYS session" in str(holiday.exception)


def test_cli_run_refuses_a_session_without_bars_and_seals_nothing(home):
    before = archive_entries(home)
    result = CliRunner().invoke(compliance, ["run", "--date", "2024-07-12"])  # a session, but no bars of it
    assert result.exit_code != 0
    assert "--date 2024-07-12: marts.bars has no bars in that session" in str(result.exception)
    assert archive_entries(home) == before and not (home.reports_dir / "2024-07-12").exists()


def test_cli_run_names_a_missing_warehouse_and_trader_store_in_one_line(home):
    missing_store = CliRunner().invoke(compliance, ["run", "--date", "2024-03-04", "--trader", "paper"])
    assert missing_store.exit_code != 0 and "--trader paper: no trader store at" in str(missing_store.exception)
    home.warehouse_path.unlink()
    no_warehouse = CliRunner().invoke(compliance, ["run", "--date", "2024-03-04"])
    assert no_warehouse.exit_code != 0
    message = str(no_warehouse.exception)
    assert message.startswith("--date 2024-03-04: warehouse ") and "missing" in message and "dagster" not in message
    assert archive_entries(home) == []


def test_the_eod_assets_stay_out_of_the_market_jobs_that_select_everything_downstream_of_the_bars(home):
    # The market jobs run daily and every 15 minutes with their own partitions; pulling the EOD
    # assets in would break them (mixed partitions) or run compliance intraday.
    @dg.asset(key=["marts", "bars"], partitions_def=dg.DailyPartitionsDefinition(start_date="2024-01-02"))
    def bars() -> None: ...

    ingest = dg.define_asset_job("ingest", selection=dg.AssetSelection.assets(bars).downstream())
    defs = dg.Definitions.merge(definitions(home), dg.Definitions(assets=[bars], jobs=[ingest]))
    assert defs.resolve_job_def("ingest").asset_layer.executable_asset_keys == {dg.AssetKey(["marts", "bars"])}
    graph = defs.resolve_asset_graph()
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("tax_lot_ledger")).parent_keys} == {"trader/fills"}


def test_verify_on_a_fresh_home_has_nothing_to_report(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path / "fresh"))
    for var in ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH", "ALPHALINE_WAREHOUSE"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(compliance, ["verify"])
    assert result.exit_code == 0 and "nothing sealed yet" in result.output


def test_a_malformed_broker_statement_is_named_by_file_line_and_field(home):
    paths = ComplianceResource.for_home(home.home).paths()
    paths.broker_statement(MON).parent.mkdir(parents=True)
    paths.broker_statement(MON).write_text("fill_id,fee\nF1,1.00\nF2,abc\n")
    with pytest.raises(ComplianceError, match=r"2024-03-04.csv:3: fee: not a decimal number \('abc'\)"):
        eod_module.broker_fees(paths, MON)
