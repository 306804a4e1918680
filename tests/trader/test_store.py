from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from decimal import Decimal as D

import pytest
import sqlalchemy as sa
from trader_builders import NOW, accepted, fill, order

from trader.domain import (
    ClientOrderId,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    Position,
    Side,
    Symbol,
    TradingState,
    positions_from_fills,
)
from trader.errors import AuditConflictError, StoreError
from trader.store import TraderStore, default_store_url

EXACT = ["0.10", "1E-9", "123456789012345678.123456789", "0.000001", "100"]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    """Every store test runs on the SQLite default and on a real PostgreSQL server (tests/servers.py)."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'trader' / 'trader.db'}"


def db_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def raw_sql(url: str, *statements: str) -> list[tuple]:
    """Run ``statements`` on the database behind the store, past its API (as someone with database access could);
    the rows of the last one."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            rows = [conn.exec_driver_sql(sql) for sql in statements][-1]
            return [tuple(r) for r in rows] if rows.returns_rows else []
    finally:
        engine.dispose()


def test_store_default_url_is_under_alphaline_home(tmp_path):
    assert default_store_url({"ALPHALINE_HOME": str(tmp_path)}) == f"sqlite:///{tmp_path / 'trader' / 'trader.db'}"


def test_store_sqlite_runs_in_wal_mode(tmp_path):
    url = f"sqlite:///{tmp_path / 'trader.db'}"
    TraderStore(url).close()
    with sqlite3.connect(db_path(url)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- orders, fills, positions -------------------------------------------------------------------

@pytest.mark.parametrize("text", EXACT)
def test_store_round_trips_decimals_exactly_as_text(store, store_url, text):
    f = fill(qty=text, price=text, fee="0.10")
    assert store.record_fill(f)
    (back,) = store.list_fills()
    assert back == f and str(back.price) == str(f.price) and str(back.qty) == str(f.qty)
    assert raw_sql(store_url, "SELECT qty, price, fee FROM fills") == [(text, text, "0.10")]


def test_store_round_trips_a_short_position_exactly(store):
    short = Position(symbol=Symbol("AAA"), qty=D("-0.5000"), avg_cost=D("123.4500"), realized_pnl=D("-1E-9"), fees=D("0.00"))
    with store.transaction() as tx:
        tx.save_position(short, at=NOW)
    back = store.positions()[Symbol("AAA")]
    assert back == short and [str(v) for v in back.to_record().values()] == ["AAA", "-0.5000", "123.4500", "-1E-9", "0.00"]


def test_store_round_trips_an_order_through_its_life_cycle(store):
    o = order(qty="10.5", limit="99.95")
    store.save_order(o)
    assert store.get_order(o.client_order_id) == o
    o = accepted(o)
    o = o.apply(OrderFilled(client_order_id=o.client_order_id, ts=NOW,
                            fill=fill(cid=o.client_order_id, qty="3.25", price="99.90", fee="0.01")))
    store.save_order(o)
    back = store.get_order(o.client_order_id)
    assert back == o and back.status is OrderStatus.PARTIALLY_FILLED and str(back.filled_qty) == "3.25"
    assert store.get_order("al-unknown") is None


def test_store_lists_working_orders_ids_and_recent_order_times(store):
    early = order("AAA", cid="al-1", at=NOW - dt.timedelta(minutes=5))
    late = accepted(order("BBB", cid="al-2"))
    done = order("CCC", cid="al-3").apply(OrderRejected(client_order_id=ClientOrderId("al-3"), ts=NOW, reason="x"))
    for o in (early, late, done):
        store.save_order(o)
    assert [o.client_order_id for o in store.working_orders()] == ["al-1", "al-2"]
    assert store.client_order_ids() == {"al-1", "al-2", "al-3"}
    assert store.order_times_since(NOW - dt.timedelta(minutes=1)) == (NOW, NOW)
    assert [o.client_order_id for o in store.list_orders(symbol="CCC")] == ["al-3"]


def test_store_records_a_fill_once_and_moves_the_position(store):
    f1 = fill("f-1", qty="10", price="100", fee="0.5")
    f2 = fill("f-2", side=Side.SELL, qty="4", price="110", fee="0.5", at=NOW + dt.timedelta(minutes=1))
    assert store.record_fill(f1) and store.record_fill(f2)
    assert store.record_fill(f1) is False  # a replayed fill changes nothing
    pos = store.positions()[Symbol("AAA")]
    assert pos == Position(symbol=Symbol("AAA"), qty=D(6), avg_cost=D(100), realized_pnl=D(40), fees=D("1.0"))
    assert store.positions() == positions_from_fills(store.list_fills())


def test_store_refuses_a_known_fill_id_with_different_content(store):
    store.record_fill(fill("f-1", qty="10"))
    with pytest.raises(StoreError, match="different content"):
        store.record_fill(fill("f-1", qty="11"))


def test_store_transaction_is_all_or_nothing(store):
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.save_order(order(cid="al-1"))
        tx.record_fill(fill("f-1", cid="al-1"))
        tx.append_audit("order", {"client_order_id": "al-1"}, ts=NOW)
        raise RuntimeError("crash before commit")
    assert store.get_order("al-1") is None and store.list_fills() == [] and store.audit_head()[0] == 0


def test_store_transaction_batches_fills_orders_and_a_chain_of_records(store):
    f1, f2 = fill("f-1", qty="10", price="100", fee="0"), fill("f-2", qty="5", price="106", fee="0", at=NOW + dt.timedelta(minutes=1))
    with store.transaction() as tx:
        tx.save_order(order(cid="al-1"))
        assert tx.record_fill(f1) and tx.record_fill(f2)
        assert tx.record_fill(f1) is False  # already recorded in this very transaction
        tx.save_order(accepted(order(cid="al-1")))  # the last state of an order wins
        heads = [tx.append_audit("step", {"i": i}, ts=NOW) for i in range(3)]  # (seq, hash) of each new head
    assert store.positions()[Symbol("AAA")].qty == D(15) and store.positions()[Symbol("AAA")].avg_cost == D(102)
    assert store.get_order("al-1").status is OrderStatus.ACCEPTED
    records = list(store.audit_records())
    assert [(r.seq, r.hash) for r in records] == heads == [(1, records[0].hash), (2, records[1].hash), (3, records[2].hash)]
    assert records[1].prev_hash == records[0].hash and [r.payload for r in records] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert store.verify_audit().ok


def test_store_commit_that_is_not_durable_is_still_kept_by_a_restart(store_url):
    with TraderStore(store_url) as store, store.transaction(durable=False) as tx:
        tx.record_fill(fill("f-1"))
        tx.append_audit("fill", {"fill_id": "f-1"}, ts=NOW)
    with TraderStore(store_url) as reopened:
        assert [f.fill_id for f in reopened.list_fills()] == ["f-1"] and reopened.verify_audit().count == 1


def test_store_fills_are_append_only_in_the_database(store, store_url):
    store.record_fill(fill("f-1"))
    with pytest.raises(sa.exc.IntegrityError, match="append-only"):
        raw_sql(store_url, "UPDATE fills SET qty = '1'")


# -- the kill switch ----------------------------------------------------------------------------

def test_store_trading_state_is_active_on_a_fresh_store(store):
    assert store.trading_state().state is TradingState.ACTIVE


def test_store_kill_switch_set_by_another_process_is_seen_by_the_next_read(store_url):
    with TraderStore(store_url) as runner, TraderStore(store_url) as operator:
        assert runner.trading_state().state is TradingState.ACTIVE  # now cached
        assert runner.trading_state().state is TradingState.ACTIVE
        operator.set_trading_state(TradingState.HALTED, reason="manual kill", changed_by="alice", at=NOW)
        assert runner.trading_state().state is TradingState.HALTED
        runner.set_trading_state(TradingState.ACTIVE, reason="resume", changed_by="bob", at=NOW)  # its own write too
        assert runner.trading_state().state is TradingState.ACTIVE and operator.trading_state().state is TradingState.ACTIVE


def test_store_kill_switch_survives_reopening_the_store(store_url):
    with TraderStore(store_url) as store:
        store.set_trading_state(TradingState.HALTED, reason="manual kill", changed_by="alice", at=NOW)
    with TraderStore(store_url) as reopened:
        record = reopened.trading_state()
        assert (record.state, record.reason, record.changed_by, record.changed_at) == (TradingState.HALTED, "manual kill", "alice", NOW)
        reopened.set_trading_state(TradingState.ACTIVE, reason="resume", changed_by="bob", at=NOW + dt.timedelta(hours=1))
    with TraderStore(store_url) as again:
        assert again.trading_state().state is TradingState.ACTIVE
        kinds = [(r.kind, r.payload["state"]) for r in again.audit_records()]
        assert kinds == [("trading_state", "halted"), ("trading_state", "active")]


# -- equity marks -------------------------------------------------------------------------------

def test_store_equity_marks_keep_the_high_water_mark_and_the_day_start(store):
    for minutes, equity in [(0, "100000"), (15, "103000.5"), (30, "99000")]:
        store.record_equity(ts=NOW + dt.timedelta(minutes=minutes), equity=D(equity), cash=D(equity))
    assert store.peak_equity() == D("103000.5")
    assert store.first_equity_since(NOW + dt.timedelta(minutes=1)) == D("103000.5")


# -- the audit chain ----------------------------------------------------------------------------

def test_store_audit_chain_appends_and_verifies(store):
    records = [store.append_audit("fill", {"qty": D("1.5"), "i": i}, ts=NOW) for i in range(3)]
    assert [r.seq for r in records] == [1, 2, 3] and records[1].prev_hash == records[0].hash
    result = store.verify_audit(expected_head=records[-1].hash, expected_count=3)
    assert result.ok and store.audit_head() == (3, records[-1].hash)
    assert list(store.audit_records()) == records


def test_store_audit_chain_continues_from_the_stored_head_after_reopening(store_url):
    with TraderStore(store_url) as store:
        first = store.append_audit("a", {}, ts=NOW)
    with TraderStore(store_url) as reopened:
        second = reopened.append_audit("b", {}, ts=NOW)
        assert (second.seq, second.prev_hash) == (2, first.hash) and reopened.verify_audit().ok


def _tamper(url: str, sql: str) -> None:
    on = " ON audit" if url.startswith("postgresql") else ""  # an attacker with database access can drop the triggers
    raw_sql(url, f"DROP TRIGGER audit_no_update{on}", f"DROP TRIGGER audit_no_delete{on}", sql)


def test_store_audit_detects_an_edited_payload(store, store_url):
    for i in range(3):
        store.append_audit("fill", {"qty": str(i)}, ts=NOW)
    _tamper(store_url, """UPDATE audit SET payload = '{"qty":"9"}' WHERE seq = 2""")
    result = store.verify_audit()
    assert not result.ok and result.first_bad_seq == 2 and "content does not match" in result.reason


def test_store_audit_detects_a_deleted_record(store, store_url):
    for i in range(3):
        store.append_audit("fill", {"i": i}, ts=NOW)
    _tamper(store_url, "DELETE FROM audit WHERE seq = 2")
    assert store.verify_audit().first_bad_seq == 3


def test_store_audit_detects_a_truncated_tail_against_the_published_head(store, store_url):
    head = [store.append_audit("fill", {"i": i}, ts=NOW) for i in range(3)][-1].hash
    _tamper(store_url, "DELETE FROM audit WHERE seq = 3")
    assert store.verify_audit().ok  # internally consistent ...
    assert not store.verify_audit(expected_head=head).ok  # ... but not the chain that was published


def test_store_audit_refuses_update_and_delete_in_the_database(store, store_url):
    store.append_audit("fill", {}, ts=NOW)
    statements = ["UPDATE audit SET kind = 'x'", "DELETE FROM audit"]
    if store_url.startswith("postgresql"):
        statements.append("TRUNCATE audit")
    for sql in statements:
        with pytest.raises(sa.exc.IntegrityError, match="append-only"):
            raw_sql(store_url, sql)
    assert store.verify_audit().count == 1


def test_store_audit_chain_stays_linear_with_two_concurrent_writers(store_url):
    TraderStore(store_url).close()
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            with TraderStore(store_url) as s:
                for i in range(25):
                    s.append_audit("w", {"writer": name, "i": i}, ts=NOW)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with TraderStore(store_url) as s:
        result = s.verify_audit()
    assert result.ok and result.count == 50


def test_an_append_at_a_seq_another_writer_took_is_a_conflict_with_no_unique_hash(store_url):
    """The audit table's ``seq`` key, not an index on ``hash``, refuses a second record at a place in the chain."""
    with TraderStore(store_url) as store:
        store.append_audit("first", {"n": 1}, ts=NOW)
        indexed = {tuple(ix["column_names"]) for ix in sa.inspect(store._engine).get_indexes("audit")}
        unique = {tuple(u["column_names"]) for u in sa.inspect(store._engine).get_unique_constraints("audit")}
        assert ("hash",) not in indexed | unique
        with pytest.raises(AuditConflictError, match="another writer appended seq 2 first"):
            with store.transaction() as tx:
                tx.append_audit("mine", {"n": 2}, ts=NOW)  # the head (seq 1) is read here
                tx._conn.exec_driver_sql("INSERT INTO audit (seq, ts, kind, payload, prev_hash, hash) "
                                         "VALUES (2, 't', 'theirs', '{}', 'p', 'h')")
        assert [r.kind for r in store.audit_records()] == ["first"] and store.verify_audit().ok


def test_a_store_made_with_a_unique_audit_hash_still_appends_and_verifies(tmp_path):
    """Stores created before issue 20 keep their unique index on ``audit.hash``; nothing changes for them."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE audit (seq INTEGER NOT NULL PRIMARY KEY, ts VARCHAR(40) NOT NULL, kind VARCHAR(64) "
                     "NOT NULL, payload TEXT NOT NULL, prev_hash VARCHAR(64) NOT NULL, hash VARCHAR(64) NOT NULL, UNIQUE (hash))")
    with TraderStore(f"sqlite:///{path}") as store:
        for n in range(3):
            store.append_audit("kept", {"n": n}, ts=NOW)
        assert store.verify_audit().ok and store.verify_audit().count == 3
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM pragma_index_list('audit') WHERE \"unique\" = 1 AND origin = 'u'").fetchone() == (1,)
