"""`alphaline compliance verify` against an attacker and an examiner (issue 19): each tamper case fails, naming what.

One home is built and sealed once per module (Mon and Tue, the store signed with ALPHALINE_AUDIT_KEY, one order with
its ``order_submit`` record); each test tampers with its own copy.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from test_compliance_pipeline import CLOSES, FILLS, MON, TUE, WED, _fill, archive_entries, record, run_day
from webhook_receiver import webhook_receiver

from orchestration.cli.compliance import compliance
from orchestration.settings import Settings, prepare_environment
from trader.audit import AuditRecord
from trader.audit_hmac import KEY_ENV, record_hmac
from trader.compliance.anchor import URLS_ENV, AnchorLog
from trader.domain import Order
from trader.store import TraderStore

KEY = "test-audit-key-0123456789abcdef"
_ENV = ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH", "ALPHALINE_WAREHOUSE", URLS_ENV)
ORDER_TS = dt.datetime(2024, 3, 6, 20, tzinfo=dt.UTC)  # after every fill: the chain stays in time order


def _build(home: Path) -> None:
    settings = prepare_environment(Settings(home=home))
    with TraderStore(f"sqlite:///{home / 'trader' / 'trader.db'}") as store:
        for row in FILLS:
            record(store, _fill(*row))
        order = Order(client_order_id="C-F1", symbol="AAA", side="buy", qty=Decimal(10), created_at=ORDER_TS,
                      status="filled", order_id="O-F1", filled_qty=Decimal(10), avg_fill_price=Decimal("100.00"),
                      fees=Decimal("1.00"))
        with store.transaction() as tx:
            tx.save_order(order)
            tx.append_audit("order_submit", {"client_order_id": "C-F1", "venue": "sim", "order": order.to_record()}, ts=ORDER_TS)
    con = duckdb.connect(str(settings.warehouse_path))
    con.execute("create schema marts; create table marts.bars (symbol varchar, timeframe varchar, ts timestamptz, "
                "close_ts timestamptz, session date, close double)")
    for day, closes in CLOSES.items():
        close_ts = dt.datetime.combine(day, dt.time(21), tzinfo=dt.UTC)
        for symbol, close in closes.items():
            con.execute("insert into marts.bars values (?, '15m', ?, ?, ?, ?)",
                        [symbol, close_ts - dt.timedelta(minutes=15), close_ts, day, close])
    con.close()
    assert run_day(settings, MON).success and run_day(settings, TUE).success


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("template") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALPHALINE_HOME", str(home))
        mp.setenv(KEY_ENV, KEY)
        for var in _ENV:
            mp.delenv(var, raising=False)
        _build(home)
    return home


@pytest.fixture
def home(template, tmp_path, monkeypatch) -> Path:
    """A copy of the sealed home, ALPHALINE_HOME pointing at it, the audit key set."""
    home = tmp_path / "home"
    shutil.copytree(template, home, symlinks=True)
    monkeypatch.setenv("ALPHALINE_HOME", str(home))
    monkeypatch.setenv(KEY_ENV, KEY)
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    prepare_environment(Settings(home=home))
    return home


def verify() -> tuple[int, str]:
    result = CliRunner().invoke(compliance, ["verify"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def sql(home: Path, *statements: str, params: tuple = ()) -> None:
    """Go around the store's append-only triggers, as an attacker with file access would."""
    con = sqlite3.connect(home / "trader" / "trader.db")
    for name, in con.execute("select name from sqlite_master where type = 'trigger'").fetchall():
        con.execute(f"drop trigger {name}")
    for statement in statements:
        con.execute(statement, params)
    con.commit()
    con.close()


def anchor_path(home: Path) -> Path:
    return home / "anchors" / "live.jsonl"


def test_verify_clean_home_passes_with_both_days_anchored(home):
    code, output = verify()
    assert code == 0 and "OK: nothing was altered" in output, output
    anchors = AnchorLog(anchor_path(home)).anchors()
    assert [a.date for a in anchors] == [MON, TUE] and all(a.first_signed == 1 for a in anchors)
    assert "2 line(s), 2 sealed day(s)" in output and "6 signed, 0 unsigned" in output
    assert "1 order(s) and 2 position(s) checked" in output


def test_verify_archive_deleted_fails_naming_the_anchored_days(home):
    shutil.rmtree(home / "archive")
    code, output = verify()
    assert code == 1, output
    assert "archive" in output and "missing, but the anchor has 2 day(s) (2024-03-04, 2024-03-05) sealed: the archive was deleted" in output


def test_verify_anchor_deleted_while_the_archive_has_days_fails(home):
    anchor_path(home).unlink()
    code, output = verify()
    assert code == 1 and "live.jsonl: missing, but the archive has 2 day(s) (2024-03-04, 2024-03-05) sealed" in output


def test_verify_anchor_line_edited_fails_naming_the_line(home):
    lines = anchor_path(home).read_text().splitlines()
    lines[0] = lines[0].replace('"count":', '"count":1', 1)
    anchor_path(home).write_text("\n".join(lines) + "\n")
    code, output = verify()
    assert code == 1 and "anchor line seq 1 (position 1): content altered" in output, output


def test_verify_anchor_line_deleted_fails_naming_the_day_not_anchored(home):
    lines = anchor_path(home).read_text().splitlines()
    anchor_path(home).write_text(lines[0] + "\n")
    code, output = verify()
    assert code == 1 and "1 day(s) (2024-03-05) sealed in the archive are not anchored" in output, output


def test_verify_anchor_rewritten_consistently_fails_against_the_archive_head(home):
    path = anchor_path(home)
    records = [AuditRecord(**json.loads(line)) for line in path.read_text().splitlines()]
    log = AnchorLog(path)
    path.unlink()
    for r in records:  # recompute every hash: the anchor chain itself checks out
        head = r.payload["audit_head"]
        log.append(date=dt.date.fromisoformat(r.payload["date"]), mode="live", head=(head["count"], "f" * 64),
                   merkle_root=r.payload["merkle_root"], first_signed=1)
    code, output = verify()
    assert code == 1 and "day 2024-03-04: the anchor has head 2:ffffffffffff" in output and "the archive does not" in output


def test_verify_archive_and_anchor_deleted_fails_naming_the_days_the_ledger_closed(home):
    shutil.rmtree(home / "archive")
    anchor_path(home).unlink()
    code, output = verify()
    assert code == 1 and "2 day(s) (2024-03-04, 2024-03-05) closed by the ledger but neither sealed" in output, output


def test_verify_order_qty_edited_fails_naming_the_order(home):
    sql(home, "update orders set qty = '12' where client_order_id = 'C-F1'")
    code, output = verify()
    assert code == 1
    assert "store: order C-F1 (AAA): qty: the table has 12, its order_submit record (audit seq 6) says 10" in output


def test_verify_order_filled_qty_edited_fails_naming_the_order(home):
    sql(home, "update orders set filled_qty = '9' where client_order_id = 'C-F1'")
    code, output = verify()
    assert code == 1 and "store: order C-F1 (AAA): filled_qty: the table has 9, its 1 fill(s) give 10" in output


def test_verify_position_qty_edited_fails_naming_the_symbol(home):
    sql(home, "update positions set qty = '7' where symbol = 'AAA'")
    code, output = verify()
    assert code == 1 and "store: position AAA: qty: the table has 7, the fills give 6" in output, output


def _forge(home: Path, *, with_hmac: str | None = None) -> int:
    """Append a forged fill record after the last published head, every hash recomputed."""
    con = sqlite3.connect(home / "trader" / "trader.db")
    seq, prev = con.execute("select seq, hash from audit order by seq desc limit 1").fetchone()
    con.close()
    forged = AuditRecord.create(seq=seq + 1, ts=ORDER_TS + dt.timedelta(minutes=5), kind="fill",
                                payload={"fill_id": "F9", "qty": "1000"}, prev_hash=prev)
    statements = ["insert into audit (seq, ts, kind, payload, prev_hash, hash) values (?, ?, ?, ?, ?, ?)"]
    params = (forged.seq, forged.ts, forged.kind, json.dumps(forged.payload, sort_keys=True, separators=(",", ":")),
              forged.prev_hash, forged.hash)
    sql(home, *statements, params=params)
    if with_hmac is not None:
        sql(home, "insert into audit_hmac (seq, hmac) values (?, ?)", params=(forged.seq, with_hmac))
    return forged.seq


def test_verify_forged_record_after_the_head_without_hmac_fails_at_once(home):
    seq = _forge(home)
    code, output = verify()
    assert code == 1, output
    assert f"audit HMAC: record seq {seq}: unsigned, after signing began at seq 1" in output


def test_verify_forged_record_after_the_head_with_a_made_up_hmac_fails(home):
    seq = _forge(home, with_hmac=record_hmac(b"not-the-key-0123456789", seq=7, record_hash="0" * 64))
    code, output = verify()
    assert code == 1 and f"audit HMAC: record seq {seq}: HMAC does not match" in output, output


def test_verify_forged_record_with_every_hmac_removed_fails_against_the_anchor(home):
    _forge(home)
    sql(home, "delete from audit_hmac")
    code, output = verify()
    assert code == 1 and "the anchor says records were signed from seq 1, but no record is signed" in output, output


def test_eod_anchor_is_sent_once_to_the_configured_url(home, monkeypatch):
    with webhook_receiver() as hook:
        monkeypatch.setenv(URLS_ENV, hook.url("anchor"))
        settings = Settings(home=home)
        shutil.rmtree(home / "anchors")
        shutil.rmtree(home / "archive")  # re-seal from scratch so the day is anchored anew
        assert run_day(settings, MON).success
        assert run_day(settings, MON).success  # a re-run anchors and sends nothing new
    assert len(hook.received) == 1 and hook.received[0]["path"] == "/anchor"
    sent = json.loads(hook.received[0]["message"])
    local = AnchorLog(anchor_path(home)).anchors()
    assert [(a.date, a.head.count, a.head.hash, a.hash) for a in local] == [
        (MON, sent["audit_head"]["count"], sent["audit_head"]["hash"], sent["hash"])]
    assert hook.received[0]["title"].startswith("Alphaline anchor live 2024-03-04: head ")
    assert len(archive_entries(Settings(home=home))) == 10


def test_adopt_anchor_starts_the_anchor_of_a_home_sealed_before_anchors_and_refuses_once_it_exists(home):
    before = anchor_path(home).read_text()
    anchor_path(home).unlink()  # a home sealed before anchors existed
    assert verify()[0] == 1
    adopted = CliRunner().invoke(compliance, ["adopt-anchor"])
    assert adopted.exit_code == 0 and "anchored 2 sealed head(s) into" in adopted.output, adopted.output
    payloads = [json.loads(line)["payload"] for line in anchor_path(home).read_text().splitlines()]
    assert payloads == [json.loads(line)["payload"] for line in before.splitlines()]  # the same heads as EOD anchored
    assert verify()[0] == 0
    again = CliRunner().invoke(compliance, ["adopt-anchor"])
    assert again.exit_code == 2 and "already exists; nothing adopted" in again.output


def test_verify_chain_rewritten_with_the_key_and_archive_deleted_fails_against_the_anchored_heads(home):
    """An attacker holding the key re-signs a rewritten history and deletes the archive: the anchor still has the heads."""
    shutil.rmtree(home / "archive")
    con = sqlite3.connect(home / "trader" / "trader.db")
    rows = con.execute("select seq, ts, kind, payload from audit order by seq").fetchall()
    con.close()
    statements, prev = [], "0" * 64
    for seq, ts, kind, payload in rows:
        body = json.loads(payload)
        if seq == 2:
            body["qty"] = "6"  # F2: 6 shares, not 5
        forged = AuditRecord(seq, ts, kind, body, prev, "")
        digest = forged.expected_hash()
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        statements.append((f"update audit set payload = ?, prev_hash = ?, hash = ? where seq = {seq}", (text, prev, digest)))
        statements.append((f"update audit_hmac set hmac = ? where seq = {seq}", (record_hmac(KEY.encode(), seq, digest),)))
        prev = digest
    for statement, params in statements:
        sql(home, statement, params=params)
    code, output = verify()
    assert code == 1, output
    assert "audit chain: record at position 2 does not match the published head" in output
    assert "audit HMAC" not in output.split("problem(s):")[1]  # re-signed with the key: only the anchor catches it


def test_eod_refuses_to_seal_a_new_day_while_the_anchor_is_tampered(home):
    lines = anchor_path(home).read_text().splitlines()
    anchor_path(home).write_text(lines[0].replace('"live"', '"sim"') + "\n" + lines[1] + "\n")
    before = archive_entries(Settings(home=home))
    result = run_day(Settings(home=home), WED)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "anchor line seq 1 (position 1): content altered" in str(failure.event_specific_data.error)
    assert "not sealing" in str(failure.event_specific_data.error)
    assert archive_entries(Settings(home=home)) == before  # nothing archived that could not be anchored
