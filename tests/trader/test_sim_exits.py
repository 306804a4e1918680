"""SimBroker stops, trailing stops, brackets and OCO pairs against bars (the rules in trader/brokers/sim.py's docstring)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from trader.brokers.bars import Bar, InMemoryBars
from trader.brokers.sim import SimBroker, SimConfig
from trader.domain import (
    ClientOrderId,
    Order,
    OrderCanceled,
    OrderClass,
    OrderFilled,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    leg_client_order_id,
)
from trader.errors import DomainError

T0 = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC)
M15 = dt.timedelta(minutes=15)


def t(i: int) -> dt.datetime:
    return T0 + i * M15


def bar(i: int, o: str, h: str, lo: str, c: str) -> Bar:
    return Bar(symbol=Symbol("AAA"), ts=t(i), open=D(o), high=D(h), low=D(lo), close=D(c), volume=D(1_000_000))


def make(cid: str, side: Side = Side.SELL, qty: int = 10, *, at: dt.datetime = T0, **kw) -> Order:
    return Order(client_order_id=ClientOrderId(cid), symbol=Symbol("AAA"), side=side, qty=D(qty), created_at=at,
                 time_in_force=TimeInForce.GTC, **kw)


def long_position(bars: list[Bar], qty: int = 10) -> SimBroker:
    """A broker holding ``qty`` AAA bought at bar 0's open (its clock is at bar 1's open, still ahead)."""
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(max_participation=None), start=T0)
    broker.submit(make("entry", Side.BUY, qty, order_type=OrderType.MARKET))
    broker.advance_to(t(1))
    broker.poll_events()
    assert broker.positions()[Symbol("AAA")].qty == qty
    return broker


def fills(broker: SimBroker) -> list[tuple[str, D, dt.datetime]]:
    return [(e.client_order_id, e.fill.price, e.fill.ts) for e in broker.poll_events() if isinstance(e, OrderFilled)]


def oco(stop: str, take: str, *, qty: int = 10, at: dt.datetime = T0) -> list[Order]:
    common = {"order_class": OrderClass.OCO, "qty": qty, "at": at}
    return [make("tp", order_type=OrderType.LIMIT, limit_price=D(take), **common),
            make(leg_client_order_id(ClientOrderId("tp"), "stop_loss"), order_type=OrderType.STOP, stop_price=D(stop),
                 parent_id=ClientOrderId("tp"), **common)]


def test_sim_stop_touched_inside_the_bar_fills_at_the_stop_at_the_bars_close():
    broker = long_position([bar(0, "100", "100", "100", "100"), bar(1, "99", "99.5", "94", "96")])
    broker.submit(make("stop", order_type=OrderType.STOP, stop_price=D(95), at=t(1)))
    broker.advance_to(t(2))
    assert fills(broker) == [("stop", D(95), t(2))]


def test_sim_stop_gapped_through_fills_at_the_open_not_at_the_stop():
    broker = long_position([bar(0, "100", "100", "100", "100"), bar(1, "90", "91", "89", "90")])
    broker.submit(make("stop", order_type=OrderType.STOP, stop_price=D(95), at=t(1)))
    broker.advance_to(t(2))
    assert fills(broker) == [("stop", D(90), t(1))]


def test_sim_stop_not_reached_keeps_working():
    broker = long_position([bar(0, "100", "100", "100", "100"), bar(1, "99", "101", "95.01", "100")])
    broker.submit(make("stop", order_type=OrderType.STOP, stop_price=D(95), at=t(1)))
    broker.advance_to(t(2))
    assert fills(broker) == [] and broker.get_order_by_client_id(ClientOrderId("stop")).is_working


def test_sim_stop_limit_gapped_below_its_limit_waits_as_a_limit_order():
    bars = [bar(0, "100", "100", "100", "100"), bar(1, "90", "92", "89", "91"), bar(2, "91", "94.5", "91", "94")]
    broker = long_position(bars)
    broker.submit(make("sl", order_type=OrderType.STOP_LIMIT, stop_price=D(95), limit_price=D(94), at=t(1)))
    broker.advance_to(t(2))
    assert fills(broker) == []  # triggered at 90, but 90 is below the 94 limit and the bar never got back to it
    broker.advance_to(t(3))
    assert fills(broker) == [("sl", D(94), t(3))]


def test_sim_trailing_stop_follows_the_high_water_mark_of_the_bars():
    bars = [bar(0, "100", "100", "100", "100"), bar(1, "101", "110", "101", "109"),  # best 110: stop 104.5
            bar(2, "108", "108", "104", "105")]
    broker = long_position(bars)
    broker.submit(make("trail", order_type=OrderType.TRAILING_STOP, trail_percent=D(5), at=t(1)))
    broker.advance_to(t(2))
    assert fills(broker) == []  # within bar 1 the stop is the one from before its high: 101 · 0.95
    broker.advance_to(t(3))
    assert fills(broker) == [("trail", D("104.50"), t(3))]


def test_sim_trailing_stop_by_price_for_a_short_follows_the_low():
    bars = [bar(0, "100", "100", "100", "100"), bar(1, "99", "99", "90", "91"), bar(2, "92", "93.5", "92", "93")]
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(max_participation=None), start=T0)
    broker.submit(make("short", Side.SELL, order_type=OrderType.MARKET))
    broker.advance_to(t(1))
    broker.poll_events()
    broker.submit(make("trail", Side.BUY, order_type=OrderType.TRAILING_STOP, trail_price=D(3), at=t(1)))
    broker.advance_to(t(3))
    assert fills(broker) == [("trail", D(93), t(3))]  # low 90 + 3


def test_sim_oco_take_profit_fill_cancels_the_stop_loss():
    broker = long_position([bar(0, "100", "100", "100", "100"), bar(1, "101", "111", "100", "110")])
    answers = broker.submit_linked(oco(stop="95", take="110", at=t(1)))
    assert [a.client_order_id for a in answers] == ["tp", "tp-sl"]
    broker.advance_to(t(2))
    events = broker.poll_events()
    assert [(type(e).__name__, e.client_order_id) for e in events] == [("OrderFilled", "tp"), ("OrderCanceled", "tp-sl")]
    assert broker.positions() == {}


def test_sim_oco_when_one_bar_touches_both_the_stop_fills_first():
    broker = long_position([bar(0, "100", "100", "100", "100"), bar(1, "100", "112", "94", "100")])
    broker.submit_linked(oco(stop="95", take="110", at=t(1)))
    broker.advance_to(t(2))
    events = broker.poll_events()
    assert [(type(e).__name__, e.client_order_id) for e in events] == [("OrderFilled", "tp-sl"), ("OrderCanceled", "tp")]
    assert events[0].fill.price == D(95)


def test_sim_bracket_legs_wait_for_the_entry_and_a_leg_fill_cancels_the_other():
    bars = [bar(0, "100", "100", "100", "100"), bar(1, "100", "100", "94", "95"), bar(2, "95", "96", "90", "91")]
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(max_participation=None), start=T0)
    entry = make("e", Side.BUY, order_type=OrderType.LIMIT, limit_price=D(96), order_class=OrderClass.BRACKET)
    legs = [make("e-tp", order_type=OrderType.LIMIT, limit_price=D(105), order_class=OrderClass.BRACKET, parent_id=entry.client_order_id),
            make("e-sl", order_type=OrderType.STOP, stop_price=D(92), order_class=OrderClass.BRACKET, parent_id=entry.client_order_id)]
    broker.submit_linked([entry, *legs])
    broker.advance_to(t(2))  # bar 0 never reaches the 96 limit; bar 1 fills it; bar 1 low 94 is above the stop
    assert fills(broker) == [("e", D(96), t(2))]
    assert broker.get_order_by_client_id(ClientOrderId("e-sl")).is_working
    broker.advance_to(t(3))
    events = broker.poll_events()
    assert [(type(e).__name__, e.client_order_id) for e in events] == [("OrderFilled", "e-sl"), ("OrderCanceled", "e-tp")]
    assert broker.positions() == {}


def test_sim_bracket_entry_that_ends_unfilled_cancels_its_legs():
    bars = [bar(0, "100", "100", "99", "100"), bar(1, "100", "100", "99", "100")]
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(max_participation=None), start=T0)
    entry = make("e", Side.BUY, order_type=OrderType.LIMIT, limit_price=D(90), order_class=OrderClass.BRACKET)
    leg = make("e-sl", order_type=OrderType.STOP, stop_price=D(85), order_class=OrderClass.BRACKET, parent_id=entry.client_order_id)
    broker.submit_linked([entry, leg])
    broker.cancel(entry.client_order_id)
    broker.advance_to(t(2))
    assert broker.get_order_by_client_id(ClientOrderId("e-sl")).status is OrderStatus.CANCELED


def test_sim_exit_leg_never_closes_more_than_the_position():
    broker = long_position([bar(0, "100", "100", "100", "100"), bar(1, "99", "99", "90", "91")], qty=4)
    broker.submit_linked(oco(stop="95", take="110", qty=10, at=t(1)))  # sized for 10, only 4 held
    broker.advance_to(t(2))
    events = broker.poll_events()
    filled = [e for e in events if isinstance(e, OrderFilled)]
    assert [(e.client_order_id, e.fill.qty) for e in filled] == [("tp-sl", D(4))]
    assert broker.positions() == {} and any(isinstance(e, OrderCanceled) and e.client_order_id == "tp" for e in events)


def test_sim_submit_linked_refuses_a_leg_of_another_parent():
    broker = SimBroker(InMemoryBars([]), start=T0)
    tp, _ = oco(stop="95", take="110")
    stray = make("x-sl", order_type=OrderType.STOP, stop_price=D(95), order_class=OrderClass.OCO, parent_id=ClientOrderId("x"))
    with pytest.raises(DomainError, match="x-sl: parent_id: must be tp"):
        broker.submit_linked([tp, stray])
