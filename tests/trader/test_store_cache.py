"""The store's in-memory book (trader/store_cache.py): working orders and positions served from memory only while
the database says no writer moved them — whoever that writer is."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
import sqlalchemy as sa
from trader_builders import NOW, accepted, fill, order

from trader.domain import OrderFilled, Position, Side, Symbol, TradingState
from trader.store import TraderStore


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'trader.db'}"


def stored(url: str) -> tuple[list, dict]:
    """What a fresh process reads from the database (no book of its own yet)."""
    with TraderStore(url) as fresh:
        return fresh.working_orders(), fresh.positions()


def book(store: TraderStore) -> tuple[list, dict]:
    return store.working_orders(), store.positions()


def test_book_follows_the_stores_own_writes_as_a_fresh_read_of_the_database_does(store_url):
    with TraderStore(store_url) as store:
        assert book(store) == ([], {})  # read (and kept) before anything is written
        first, second = order("AAA", cid="al-1"), order("BBB", Side.SELL, 5, cid="al-2", limit="50.5")
        with store.transaction() as tx:
            tx.save_order(first)
            tx.save_order(second)
        assert book(store) == stored(store_url)
        with store.transaction(durable=False) as tx:
            tx.save_order(accepted(first))
            tx.record_fill(fill("f-1", cid="al-1", qty="4", price="100.25", fee="0.01"))
        with store.transaction() as tx:
            tx.save_order(accepted(second))
        working, positions = book(store)
        assert (working, positions) == stored(store_url)
        assert [o.client_order_id for o in working] == ["al-1", "al-2"]
        assert positions[Symbol("AAA")] == Position(symbol=Symbol("AAA"), qty=D(4), avg_cost=D("100.25"), fees=D("0.01"))


def test_book_drops_a_terminal_order_and_keeps_the_stored_order_of_creation(store_url):
    with TraderStore(store_url) as store:
        late, early = order("AAA", cid="al-late"), order("BBB", cid="al-early", at=NOW.replace(minute=0, hour=14))
        store.save_order(late)
        store.save_order(early)
        assert [o.client_order_id for o in store.working_orders()] == ["al-early", "al-late"]
        store.record_fill(fill("f-1", cid="al-late", qty="10"))
        store.save_order(accepted(late).apply(OrderFilled(client_order_id=late.client_order_id, ts=NOW,
                                                          fill=fill("f-1", cid="al-late", qty="10"))))
        assert [o.client_order_id for o in store.working_orders()] == ["al-early"]
        assert book(store) == stored(store_url)


def test_book_sees_an_order_and_a_position_another_process_wrote(store_url):
    with TraderStore(store_url) as runner, TraderStore(store_url) as other:
        assert book(runner) == ([], {})
        other.save_order(order("CCC", cid="al-9"))
        other.record_fill(fill("f-9", cid="al-9", symbol="CCC", qty="3"))
        working, positions = book(runner)
        assert [o.client_order_id for o in working] == ["al-9"] and positions[Symbol("CCC")].qty == 3
        runner.save_order(order("AAA", cid="al-1"))  # its own write after someone else's: the book is reloaded, not patched
        assert book(runner) == stored(store_url)


def test_book_and_kill_switch_see_rows_changed_past_the_store_api(store_url):
    """Someone with database access (or an older version of this code) edits the tables directly: triggers count it."""
    with TraderStore(store_url) as store:
        store.save_order(order("AAA", cid="al-1"))
        store.record_fill(fill("f-1", qty="10"))
        assert len(store.working_orders()) == 1 and store.positions()[Symbol("AAA")].qty == 10
        assert store.trading_state().state is TradingState.ACTIVE  # cached from here on
        engine = sa.create_engine(store_url)  # plain SQL, no store: no advisory lock, no cache
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE orders SET status = 'canceled' WHERE client_order_id = 'al-1'")
            conn.exec_driver_sql("UPDATE positions SET qty = '7' WHERE symbol = 'AAA'")
            conn.exec_driver_sql("INSERT INTO risk_state (state, reason, changed_by, changed_at) "
                                 "VALUES ('halted', 'by hand', 'dba', '2024-03-05T15:00:00.000000+00:00')")
        engine.dispose()
        assert store.working_orders() == [] and store.positions()[Symbol("AAA")].qty == 7
        assert store.trading_state().state is TradingState.HALTED


def test_book_is_unchanged_by_a_transaction_that_rolled_back(store_url):
    with TraderStore(store_url) as store:
        store.save_order(order("AAA", cid="al-1"))
        before = book(store)
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.save_order(order("BBB", cid="al-2"))
            tx.record_fill(fill("f-1", cid="al-1", qty="10"))
            raise RuntimeError("crash before commit")
        assert book(store) == before == stored(store_url)


def test_book_inside_a_snapshot_is_the_snapshots_view(store_url):
    """One consistent view on both engines (PostgreSQL reads at REPEATABLE READ): a commit made while the snapshot is
    open is seen by none of its reads, cached or not."""
    with TraderStore(store_url) as runner, TraderStore(store_url) as other:
        runner.save_order(order("AAA", cid="al-1"))
        with runner.snapshot():
            assert [o.client_order_id for o in runner.working_orders()] == ["al-1"]
            other.save_order(order("BBB", cid="al-2"))  # committed while the snapshot is open
            other.set_trading_state(TradingState.HALTED, reason="ops", changed_by="test", at=NOW)
            assert [o.client_order_id for o in runner.working_orders()] == ["al-1"]
            assert [o.client_order_id for o in runner.list_orders()] == ["al-1"]
            assert runner.client_order_ids(since=NOW - dt.timedelta(days=1)) == frozenset({"al-1"})
        assert [o.client_order_id for o in runner.working_orders()] == ["al-1", "al-2"]
        assert runner.trading_state().state is TradingState.HALTED


def test_recent_order_ids_follow_the_stores_writes_and_another_processs(store_url):
    from datetime import timedelta
    with TraderStore(store_url) as runner, TraderStore(store_url) as other:
        runner.save_order(order("AAA", cid="al-old", at=NOW - timedelta(days=2)))
        runner.save_order(order("AAA", cid="al-1"))
        assert runner.client_order_ids(since=NOW - timedelta(days=1)) == {"al-1"}
        runner.save_order(order("BBB", cid="al-2", at=NOW + timedelta(minutes=15)))
        other.save_order(order("CCC", cid="al-3", at=NOW + timedelta(minutes=30)))
        assert runner.client_order_ids(since=NOW - timedelta(hours=1)) == {"al-1", "al-2", "al-3"}
        assert runner.client_order_ids(since=NOW + timedelta(minutes=20)) == {"al-3"}
        assert runner.client_order_ids(since=NOW - timedelta(days=3)) == {"al-old", "al-1", "al-2", "al-3"}  # older again: read
        with TraderStore(store_url) as fresh:
            assert fresh.client_order_ids(since=NOW) == runner.client_order_ids(since=NOW)


def test_a_write_transaction_reads_the_committed_working_orders_on_its_own_connection(store_url):
    """StoreTx.working_orders / get_order: what is committed, not the transaction's pending writes, without a second
    connection (the run loop's event batches read them so)."""
    with TraderStore(store_url) as store:
        first = order("AAA", cid="al-1")
        store.save_order(first)
        with store.transaction() as tx:
            tx.save_order(order("BBB", cid="al-2"))
            assert [o.client_order_id for o in tx.working_orders()] == ["al-1"]
            assert tx.get_order("al-1") == first and tx.get_order("al-2") is None
        assert [o.client_order_id for o in book(store)[0]] == ["al-1", "al-2"]


def test_sqlite_store_transactions_reuse_the_connection_used_last(tmp_path):
    """Two pooled connections handed out in turn each found the file written by the other and dropped their page
    cache: every write transaction started cold. The pool gives out the one used last."""
    with TraderStore(f"sqlite:///{tmp_path / 'trader.db'}") as store:
        with store.transaction() as tx:
            store.list_orders()  # a read while a write is open: a second connection joins the pool
        used = []
        for i in range(4):
            with store.transaction() as tx:
                tx.save_order(order("AAA", cid=f"al-{i}"))
                used.append(tx._conn.connection.dbapi_connection)
        assert len({id(c) for c in used}) == 1
