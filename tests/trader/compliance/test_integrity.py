"""Issue 19 at the package level: archive names, the anchor file, audit HMACs, orders and positions vs fills."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from fake_venue import FakeBroker, FakePredictor, config, make_bars
from webhook_receiver import webhook_receiver

from trader.audit_hmac import KEY_ENV, check_signatures
from trader.compliance import ComplianceError, WormArchive
from trader.compliance.anchor import AnchorLog, anchor_urls, publish
from trader.compliance.store_check import check_store
from trader.errors import StoreError
from trader.runner import Runner, replay_ticks
from trader.store import TraderStore

DAY = dt.date(2024, 3, 5)
KEY = "unit-test-audit-key-0123456789"


@pytest.mark.parametrize(("name", "reason"), [
    ("..", "a directory reference"), (".", "a directory reference"), ("../manifest.jsonl", "has a path separator"),
    ("a/b.csv", "has a path separator"), ("a\\b.csv", "has a path separator"), ("", "empty"),
    (".hidden.csv", "hidden (starts with '.')"), ("a\nb.csv", "has a control character"),
    ("a\x00b", "has a control character"), ("x" * 129, "longer than 128 characters (129)"),
    (" a.csv", "starts or ends with whitespace"),
])
def test_archive_bad_names_are_refused_in_one_line_and_nothing_is_written(tmp_path, name, reason):
    archive = WormArchive(tmp_path / "archive")
    with pytest.raises(ComplianceError, match=r"^archive: name .*: " + reason.replace("(", r"\(").replace(")", r"\)")
                       + "; must be a plain file name$"):
        archive.put(b"x", name=name, date=DAY)
    source = tmp_path / "report.csv"
    source.write_bytes(b"x")
    with pytest.raises(ComplianceError, match="must be a plain file name"):
        archive.put_file(source, date=DAY, name=name)
    assert not archive.manifest_path.exists() and not (archive.root / "objects").exists()


def test_archive_plain_names_are_accepted(tmp_path):
    archive = WormArchive(tmp_path / "archive")
    assert archive.put(b"x", name="form_8949.csv", date=DAY).name == "form_8949.csv"
    assert archive.put(b"y", name="x" * 128, date=DAY).size == 1


def _anchor(log: AnchorLog, day: dt.date, count: int) -> None:
    log.append(date=day, mode="sim", head=(count, f"{count:064x}"), merkle_root="ab" * 32, first_signed=None)


def test_anchor_lines_are_chained_and_an_edit_or_a_removed_line_is_named(tmp_path):
    log = AnchorLog(tmp_path / "anchors" / "sim.jsonl")
    for i, day in enumerate((DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)), start=1):
        _anchor(log, day, i)
    _anchor(log, DAY, 1)  # a re-run: nothing new
    assert len(log.anchors()) == 3 and log.verify() == []
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    assert log.verify() == ["anchor line seq 3 (position 2): follows seq 1; seq 2 missing"]
    log.path.write_text("\n".join([lines[0], lines[1].replace('"sim"', '"live"'), lines[2]]) + "\n")
    assert log.verify() == ["anchor line seq 2 (position 2): content altered (does not match its hash)"]
    with pytest.raises(ComplianceError, match=r"sim.jsonl: seq 2: content does not match its hash; not appending"):
        _anchor(log, DAY + dt.timedelta(days=3), 4)


def test_anchor_is_published_to_a_json_receiver_and_a_bad_url_is_one_line(tmp_path):
    log = AnchorLog(tmp_path / "sim.jsonl")
    _anchor(log, DAY, 7)
    with webhook_receiver() as hook:
        assert publish(log.anchors()[0], urls=anchor_urls({"ALPHALINE_ANCHOR_URLS": hook.url("anchors")}))
    body = json.loads(hook.received[0]["message"])
    assert body["audit_head"] == {"count": 7, "hash": f"{7:064x}"} and body["date"] == "2024-03-05"
    with pytest.raises(ComplianceError, match=r"^environment: ALPHALINE_ANCHOR_URLS.0: 'htp://…' is not a URL apprise"):
        anchor_urls({"ALPHALINE_ANCHOR_URLS": "htp://host"})


def _trade(store: TraderStore, n: int = 6) -> TraderStore:
    bars = make_bars(n=n)
    broker = FakeBroker(bars=bars)
    Runner(config=config(), store=store, broker=broker, predictor=FakePredictor(), run_id="t", strict=True).run(
        replay_ticks(bars), before_cycle=lambda tick: broker.advance_to(tick.ts))
    return store


def _tamper(url: str, sql: str, *params) -> None:
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    con.execute(sql, params)
    con.commit()
    con.close()


def test_store_check_clean_store_passes(store):
    check = check_store(_trade(store))
    assert check.ok and check.orders > 0 and check.fills > 0, check.problems


def test_store_check_order_qty_and_avg_price_edits_are_named(store, store_url):
    order = next(o for o in _trade(store).list_orders() if o.filled_qty > 0)
    _tamper(store_url, "update orders set qty = ?, avg_fill_price = ? where client_order_id = ?",
            str(order.qty + 5), str(order.avg_fill_price + 1), order.client_order_id)
    problems = check_store(store).problems
    assert any(p.startswith(f"order {order.client_order_id} ({order.symbol}): qty: the table has {order.qty + 5}, its "
                            f"order_submit record") for p in problems), problems
    assert any(f"order {order.client_order_id} ({order.symbol}): avg_fill_price" in p for p in problems)


def test_store_check_deleted_order_is_named(store, store_url):
    order = _trade(store).list_orders()[0]
    _tamper(store_url, "delete from orders where client_order_id = ?", order.client_order_id)
    assert any(p.startswith(f"order {order.client_order_id}: submitted (audit seq") and p.endswith("(deleted)")
               for p in check_store(store).problems)


def test_store_check_position_qty_edit_is_named(store, store_url):
    symbol, position = next((s, p) for s, p in _trade(store).positions().items() if p.qty != 0)
    _tamper(store_url, "update positions set qty = ? where symbol = ?", str(position.qty * 2), symbol)
    assert check_store(store).problems == [f"position {symbol}: qty: the table has {position.qty * 2}, the fills give {position.qty}"]


def test_store_check_a_broker_position_adopted_by_reconciliation_is_not_a_problem(store):
    from dataclasses import replace

    symbol, position = next((s, p) for s, p in _trade(store).positions().items() if p.qty != 0)
    now = dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
    with store.transaction() as tx:  # what trader.reconcile does with adopt_positions
        tx.save_position(replace(position, qty=position.qty + 3, avg_cost=Decimal("12.5")), at=now)
        tx.append_audit("reconcile_position", {"symbol": symbol, "local_qty": position.qty, "broker_qty": position.qty + 3,
                                               "avg_cost": Decimal("12.5")}, ts=now)
    assert check_store(store).ok


def _signatures(store: TraderStore, key: bytes | None, required_from: int | None = None):
    rows = ((seq, digest) for seq, *_, digest in store.audit_rows())
    return check_signatures(rows, store.audit_hmacs(), key=key, required_from=required_from)


def test_hmac_unsigned_records_from_before_the_key_are_accepted_and_counted(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 't.db'}"
    ts = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with TraderStore(url) as store:
        store.append_audit("note", {"n": 1}, ts=ts)
    monkeypatch.setenv(KEY_ENV, KEY)
    with TraderStore(url) as store:
        store.append_audit("note", {"n": 2}, ts=ts)
        check = _signatures(store, KEY.encode())
    assert check.ok and (check.signed, check.unsigned, check.first_signed) == (1, 1, 2)
    assert check.summary() == "audit HMAC: 1 signed, 1 unsigned (from before ALPHALINE_AUDIT_KEY was set)"


def test_hmac_a_record_appended_without_the_key_after_signing_began_fails(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 't.db'}"
    ts = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
    monkeypatch.setenv(KEY_ENV, KEY)
    with TraderStore(url) as store:
        store.append_audit("note", {"n": 1}, ts=ts)
    monkeypatch.delenv(KEY_ENV)
    with TraderStore(url) as store:
        store.append_audit("note", {"n": 2}, ts=ts)  # a writer without the key: looks exactly like a forger
        assert _signatures(store, KEY.encode()).problems == [
            "record seq 2: unsigned, after signing began at seq 1 (appended without the key: forged?)"]
        assert _signatures(store, b"another-key-0123456789").problems[0] == (
            "record seq 1: HMAC does not match (forged or altered without the key, or another key)")
        unchecked = _signatures(store, None)
        assert unchecked.unchecked == 1 and "1 not checked (ALPHALINE_AUDIT_KEY is not set here)" in unchecked.summary()


def test_hmac_rows_removed_are_caught_against_the_anchored_start(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 't.db'}"
    monkeypatch.setenv(KEY_ENV, KEY)
    with TraderStore(url) as store:
        store.append_audit("note", {"n": 1}, ts=dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC))
    con = sqlite3.connect(tmp_path / "t.db")
    con.execute("drop trigger audit_hmac_no_delete")
    con.execute("delete from audit_hmac")
    con.commit()
    con.close()
    with TraderStore(url) as store:
        assert _signatures(store, KEY.encode()).ok  # alone, it looks like a chain from before the key...
        assert _signatures(store, KEY.encode(), required_from=1).problems == [  # ...but the anchor remembers
            "the anchor says records were signed from seq 1, but no record is signed (HMAC rows removed)"]


def test_hmac_a_short_key_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(StoreError, match=r"^ALPHALINE_AUDIT_KEY: too short \(5 bytes\); use at least 16 random bytes$"):
        TraderStore(f"sqlite:///{tmp_path / 't.db'}")


def test_hmac_rows_are_append_only_in_the_database(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with TraderStore(f"sqlite:///{tmp_path / 't.db'}") as store:
        store.append_audit("note", {"n": 1}, ts=dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC))
    con = sqlite3.connect(tmp_path / "t.db")
    with pytest.raises(sqlite3.IntegrityError, match="audit_hmac is append-only"):
        con.execute("update audit_hmac set hmac = 'x'")
    con.close()


def test_anchor_file_path_is_per_mode(tmp_path):
    from trader.compliance.anchor import anchor_file

    assert anchor_file(Path("/h"), "sim") == Path("/h/anchors/sim.jsonl")
