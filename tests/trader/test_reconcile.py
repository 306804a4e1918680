"""Reconciliation: a trader killed mid-session restarts into the broker's state with no order lost or doubled."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal as D

import pytest
from trader_builders import order as _order

from trader.brokers.bars import Bar, InMemoryBars
from trader.brokers.sim import SimBroker, SimConfig
from trader.domain import ClientOrderId, Order, OrderCanceled, OrderFilled, OrderStatus, Side, Symbol
from trader.errors import ReconciliationError
from trader.reconcile import Issue, reconcile, record_broker_event
from trader.store import TraderStore

T0 = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC)


def t(i: int) -> dt.datetime:
    return T0 + i * dt.timedelta(minutes=15)


def order(*args, at: dt.datetime = T0, **kwargs) -> Order:
    return _order(*args, at=at, **kwargs)


def venue() -> SimBroker:
    bars = [Bar(symbol=Symbol(s), ts=t(i), open=D(100 + i), high=D(100 + i), low=D(100 + i), close=D(100 + i), volume=D(1000))
            for i in range(10) for s in ("AAA", "BBB", "CCC")]
    return SimBroker(InMemoryBars(bars), config=SimConfig(max_participation=D("0.10"), slippage_bps=D(1)), start=T0)


def send(store: TraderStore, broker: SimBroker, o: Order) -> None:
    """The run loop's order path: record the decision, send it, record the answer."""
    store.save_order(o)
    record_broker_event(store, broker.submit(o))


def step(store: TraderStore, broker: SimBroker, ts: dt.datetime) -> None:
    broker.advance_to(ts)
    for event in broker.poll_events():
        record_broker_event(store, event)


def snapshot(store: TraderStore) -> tuple:
    orders = {o.client_order_id: (o.status, o.filled_qty) for o in store.list_orders()}
    positions = {s: p.qty for s, p in store.positions().items() if p.qty}
    return orders, positions, sorted(f.fill_id for f in store.list_fills())


def broker_snapshot(broker: SimBroker) -> tuple:
    orders = {o.client_order_id: (o.status, o.filled_qty) for o in broker.list_orders(open_only=False)}
    return orders, {s: p.qty for s, p in broker.positions().items()}, sorted(f.fill_id for f in broker.fills(since=T0))


def test_reconcile_after_a_kill_mid_session_restores_the_state_with_no_order_lost_or_doubled(store_url):
    broker = venue()  # the venue outlives the trader process
    with TraderStore(store_url) as store:
        send(store, broker, order("AAA", qty=250, cid="al-big"))  # 100 shares a bar
        send(store, broker, order("BBB", Side.SELL, qty=50, cid="al-short"))
        send(store, broker, order("CCC", qty=10, cid="al-limit", limit="50"))  # never marketable
        step(store, broker, t(1))
        # The crash: one order reached the venue but its answer was never recorded, one was
        # recorded but never sent, and a cancel went out whose outcome was never seen.
        lost_answer = order("CCC", qty=30, cid="al-lost-answer", at=t(1))
        store.save_order(lost_answer)
        broker.submit(lost_answer)
        store.save_order(order("BBB", qty=5, cid="al-never-sent", at=t(1)))
        broker.cancel(ClientOrderId("al-limit"))
        before_crash = snapshot(store)
    broker.poll_events()  # what the dead process had in memory is gone
    broker.advance_to(t(3))  # the venue keeps filling while the trader is down
    broker.poll_events()

    with TraderStore(store_url) as store:
        assert snapshot(store) == before_crash
        report = reconcile(store, broker, now=t(3))
        assert report.can_trade, report.summary()
        issues = {(d.issue, d.client_order_id) for d in report.discrepancies}
        assert issues == {(Issue.MISSING_FILLS, "al-big"), (Issue.ORDER_CLOSED, "al-limit"),
                          (Issue.ORDER_ADOPTED, "al-lost-answer"), (Issue.MISSING_FILLS, "al-lost-answer"),
                          (Issue.ORDER_NEVER_PLACED, "al-never-sent")}
        local_orders, local_positions, local_fills = snapshot(store)
        venue_orders, venue_positions, venue_fills = broker_snapshot(broker)
        assert local_positions == venue_positions and local_fills == venue_fills
        assert {cid: v for cid, v in local_orders.items() if cid != "al-never-sent"} == venue_orders
        assert local_orders["al-never-sent"] == (OrderStatus.REJECTED, D(0)) and "al-never-sent" not in venue_orders
        assert len(venue_orders) == 4  # every order placed once: nothing resent by the restart

        step(store, broker, t(4))  # the session goes on
        assert snapshot(store)[1:] == broker_snapshot(broker)[1:]
        assert store.get_order("al-big").status is OrderStatus.FILLED
        assert reconcile(store, broker, now=t(4)).discrepancies == ()
        assert store.verify_audit().ok
        kinds = {r.kind for r in store.audit_records()}
        assert {"fill", "order_accepted", "order_canceled", "order_rejected", "reconcile"} <= kinds
        adopted = [r.payload for r in store.audit_for_order("al-lost-answer") if r.payload.get("source") == "reconcile"]
        assert [p["event"] for p in adopted] == ["OrderAccepted", "OrderFilled"]


def test_reconcile_refuses_to_trade_when_positions_differ_and_adopts_them_only_when_told(store):
    broker = venue()
    broker.submit(order("AAA", qty=10, cid="al-by-hand"))  # placed outside the trader
    broker.advance_to(t(1))
    report = reconcile(store, broker, now=t(1))
    assert not report.can_trade and [d.issue for d in report.unresolved] == [Issue.POSITION_MISMATCH]
    assert "AAA: the store holds 0, the broker 10" in report.summary()
    with pytest.raises(ReconciliationError, match="trading blocked"):
        report.raise_if_blocked()
    adopted = reconcile(store, broker, now=t(1), adopt_positions=True)
    assert adopted.can_trade and store.positions()[Symbol("AAA")].qty == D(10)
    assert any(r.kind == "reconcile_position" for r in store.audit_records())


def test_reconcile_unknown_working_order_at_the_broker_blocks_unless_canceled(store):
    broker = venue()
    broker.submit(order("AAA", qty=10, cid="al-stranger", limit="1"))
    report = reconcile(store, broker, now=t(0))
    assert [(d.issue, d.resolved) for d in report.discrepancies] == [(Issue.UNKNOWN_BROKER_ORDER, False)]
    canceled = reconcile(store, broker, now=t(0), cancel_unknown=True)
    assert canceled.can_trade and broker.get_order_by_client_id(ClientOrderId("al-stranger")).status is OrderStatus.CANCELED


def test_reconcile_local_working_order_unknown_to_a_fresh_sim_venue_blocks_until_it_is_restored(store):
    broker = venue()
    send(store, broker, order("AAA", qty=300, cid="al-a"))
    step(store, broker, t(1))
    fresh = venue()  # a sim session restarted without its venue state
    report = reconcile(store, fresh, now=t(1))
    assert {d.issue for d in report.unresolved} == {Issue.ORDER_UNKNOWN_TO_BROKER, Issue.POSITION_MISMATCH}
    restored = venue()
    restored.restore(orders=store.list_orders(), fills=store.list_fills())
    assert reconcile(store, restored, now=t(1)).can_trade
    step(store, restored, t(3))
    assert store.get_order("al-a").filled_qty == D(300) and store.positions()[Symbol("AAA")].qty == D(300)


def test_record_broker_event_is_idempotent_and_refuses_a_fill_after_the_order_closed(store):
    broker = venue()
    send(store, broker, order("AAA", qty=10, cid="al-x"))
    broker.advance_to(t(1))
    (fill_event,) = broker.poll_events()
    assert record_broker_event(store, fill_event) and not record_broker_event(store, fill_event)
    send(store, broker, order("BBB", qty=10, cid="al-y", limit="1"))
    cancel = OrderCanceled(client_order_id=ClientOrderId("al-y"), ts=t(1))
    assert record_broker_event(store, cancel) and not record_broker_event(store, cancel)
    late = OrderFilled(client_order_id=ClientOrderId("al-y"), ts=t(2),
                       fill=replace(fill_event.fill, fill_id="late", client_order_id="al-y", symbol="BBB"))
    with pytest.raises(ReconciliationError, match="does not fit the stored order"):
        record_broker_event(store, late)
    assert not record_broker_event(store, OrderCanceled(client_order_id=ClientOrderId("al-unknown"), ts=t(1)))
