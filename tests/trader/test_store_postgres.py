"""The store's PostgreSQL-only paths (trader/store_engine.py, store_bulk.py): one statement per table, one pipeline per
flush, BEGIN sent with the first statements, pings only after an idle pause. On a real server (tests/servers.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import psycopg
import pytest
import sqlalchemy as sa
from trader_builders import NOW, accepted, fill, order

from trader import store_engine
from trader.domain import OrderStatus
from trader.errors import StoreError
from trader.store import TraderStore

pytestmark = pytest.mark.servers


def drop_connections(url: str) -> int:
    """Terminate every other session on the store's database (as a server restart would); returns how many."""
    parsed = sa.make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        return conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                            "pg_backend_pid()", (parsed.database,)).fetchone()[0]


def test_rows_with_quotes_backslashes_braces_and_nulls_are_stored_exactly_by_the_array_insert(postgres_url):
    tricky = 'a "quoted" {brace}, back\\slash, NULL, comma\tand ü'
    with TraderStore(postgres_url) as store:
        with store.transaction() as tx:
            for i in range(3):  # one statement for the three orders (arrays), nulls among them
                tx.save_order(order(f"S{i}", cid=f"cid-{i}", limit="1.10" if i else None))
            tx.append_audit("note", {"text": tricky, "n": None}, ts=NOW)
            tx.record_fill(fill("f-1", cid="cid-0", symbol="S0", qty="0.10"))
        with TraderStore(postgres_url) as fresh:
            got = {o.client_order_id: o for o in fresh.list_orders()}
            assert [got[f"cid-{i}"].limit_price for i in range(3)] == [None, D("1.10"), D("1.10")]
            assert fresh.latest_audit("note").payload == {"text": tricky, "n": None} and fresh.verify_audit().ok
            assert str(fresh.positions()["S0"].qty) == "0.10"


def test_an_upsert_of_a_stored_order_updates_it_in_place(postgres_url):
    with TraderStore(postgres_url) as store:
        placed = order(cid="cid-1")
        store.save_order(placed)
        store.save_order(accepted(placed))
        with TraderStore(postgres_url) as fresh:
            assert [o.status for o in fresh.list_orders()] == [OrderStatus.ACCEPTED]


def test_a_second_equity_mark_in_one_transaction_sees_the_first_as_the_last_peak(postgres_url):
    with TraderStore(postgres_url) as store:
        with store.transaction() as tx:
            assert tx.record_equity(ts=NOW, equity=D("110"), cash=D("1")) == D("110")
            assert tx.record_equity(ts=NOW + dt.timedelta(minutes=1), equity=D("100"), cash=D("1")) == D("110")
        assert store.peak_equity() == D("110")
        assert store.first_equity_since(NOW) == D("110")


def test_a_connection_dropped_by_the_server_fails_one_call_and_the_next_call_reconnects(postgres_url):
    with TraderStore(postgres_url) as store:
        store.save_order(order(cid="cid-1"))
        assert drop_connections(postgres_url) >= 1
        with pytest.raises(StoreError):  # used a moment ago: not pinged, the dropped connection says so
            store.save_order(order("BBB", cid="cid-2"))
        store.save_order(order("BBB", cid="cid-2"))
        assert {o.client_order_id for o in store.list_orders()} == {"cid-1", "cid-2"}


def test_a_connection_idle_past_the_ping_threshold_is_pinged_and_replaced_when_the_server_dropped_it(postgres_url,
                                                                                                      monkeypatch):
    with TraderStore(postgres_url) as store:
        store.save_order(order(cid="cid-1"))
        assert drop_connections(postgres_url) >= 1
        monkeypatch.setattr(store_engine, "PING_IDLE_SECONDS", 0.0)
        store.save_order(order("BBB", cid="cid-2"))  # the ping finds the dropped connection: a new one, no error
        assert {o.client_order_id for o in store.list_orders()} == {"cid-1", "cid-2"}


def test_the_book_answered_outside_a_snapshot_follows_a_write_by_another_store(postgres_url):
    with TraderStore(postgres_url) as runner, TraderStore(postgres_url) as other:
        runner.save_order(order(cid="cid-1"))
        assert [o.client_order_id for o in runner.working_orders()] == ["cid-1"]  # cached now
        other.save_order(order("BBB", cid="cid-2"))
        assert [o.client_order_id for o in runner.working_orders()] == ["cid-1", "cid-2"]
        other.record_fill(fill("f-1", cid="cid-2", symbol="BBB"))
        assert runner.positions()["BBB"].qty == D(10)
