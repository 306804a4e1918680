from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest
from trader_builders import NOW, accepted, fill, order

from trader.domain import (
    TRANSITIONS,
    Account,
    ClientOrderId,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderId,
    OrderRejected,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Symbol,
    make_client_order_id,
    positions_from_fills,
)
from trader.errors import DomainError, IllegalTransitionError

CID = "al-AAA-buy-10"


def filled_event(o: Order, qty: str, price: str = "100", fill_id: str = "f-1") -> OrderFilled:
    return OrderFilled(client_order_id=o.client_order_id, ts=NOW,
                       fill=fill(fill_id, cid=o.client_order_id, symbol=o.symbol, side=o.side, qty=qty, price=price))


def events_for(o: Order) -> dict[str, object]:
    cid = o.client_order_id
    return {
        "accepted": OrderAccepted(client_order_id=cid, ts=NOW, order_id=OrderId("b-1")),
        "filled": filled_event(o, "1"),
        "canceled": OrderCanceled(client_order_id=cid, ts=NOW, reason="test"),
        "rejected": OrderRejected(client_order_id=cid, ts=NOW, reason="test"),
        "expired": OrderExpired(client_order_id=cid, ts=NOW),
    }


# -- the transition table ---------------------------------------------------------------------

def test_order_happy_path_goes_new_accepted_partially_filled_filled_with_average_price():
    o = accepted(order(qty=10))
    assert o.status is OrderStatus.ACCEPTED and o.order_id == f"b-{CID}"
    o = o.apply(filled_event(o, "4", "100", "f-1"))
    assert (o.status, o.filled_qty, o.remaining_qty) == (OrderStatus.PARTIALLY_FILLED, D(4), D(6))
    o = o.apply(filled_event(o, "6", "101", "f-2"))
    assert (o.status, o.filled_qty, o.avg_fill_price, o.remaining_qty) == (OrderStatus.FILLED, D(10), D("100.6"), D(0))
    assert not o.is_working


def test_order_accepted_then_filled_in_one_fill_is_legal():
    o = accepted(order(qty=10))
    assert o.apply(filled_event(o, "10")).status is OrderStatus.FILLED


@pytest.mark.parametrize(("start", "event", "target"), [
    ("new", "rejected", OrderStatus.REJECTED),
    ("accepted", "canceled", OrderStatus.CANCELED),
    ("accepted", "expired", OrderStatus.EXPIRED),
    ("accepted", "rejected", OrderStatus.REJECTED),
    ("partial", "canceled", OrderStatus.CANCELED),
    ("partial", "expired", OrderStatus.EXPIRED),
])
def test_order_legal_transition_reaches_expected_status(start, event, target):
    o = order(qty=10)
    if start != "new":
        o = accepted(o)
    if start == "partial":
        o = o.apply(filled_event(o, "3"))
    out = o.apply(events_for(o)[event])
    assert out.status is target and out.is_working is False


@pytest.mark.parametrize("event", ["filled", "canceled", "expired"])
def test_order_when_still_new_refuses_events_that_need_an_acknowledgement(event):
    o = order()
    with pytest.raises(IllegalTransitionError, match="new →"):
        o.apply(events_for(o)[event])


@pytest.mark.parametrize("terminal", [s for s in OrderStatus if s.is_terminal])
@pytest.mark.parametrize("event", ["accepted", "filled", "canceled", "rejected", "expired"])
def test_order_in_terminal_status_refuses_every_event(terminal, event):
    o = Order(client_order_id=ClientOrderId(CID), symbol=Symbol("AAA"), side=Side.BUY, qty=D(10), created_at=NOW,
              status=terminal, filled_qty=D(10) if terminal is OrderStatus.FILLED else D(0))
    with pytest.raises(IllegalTransitionError) as err:
        o.apply(events_for(o)[event])
    assert err.value.current == terminal.value


def test_transition_table_has_exactly_four_terminal_states():
    assert {s for s, nxt in TRANSITIONS.items() if not nxt} == {
        OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}


def test_order_refuses_a_fill_that_overfills_it():
    o = accepted(order(qty=10))
    with pytest.raises(DomainError, match="overfills"):
        o.apply(filled_event(o, "11"))


def test_order_refuses_an_event_for_another_order():
    o = order()
    with pytest.raises(DomainError, match="event is for"):
        o.apply(OrderAccepted(client_order_id=ClientOrderId("al-other"), ts=NOW, order_id=OrderId("b")))


# -- values the domain refuses -----------------------------------------------------------------

def test_order_refuses_float_quantity():
    with pytest.raises(DomainError, match="must be Decimal"):
        Order(client_order_id=ClientOrderId(CID), symbol=Symbol("AAA"), side=Side.BUY, qty=10.5, created_at=NOW)


def test_order_refuses_naive_datetime():
    with pytest.raises(DomainError, match="timezone-aware"):
        Order(client_order_id=ClientOrderId(CID), symbol=Symbol("AAA"), side=Side.BUY, qty=D(1),
              created_at=dt.datetime(2024, 3, 5, 15))


@pytest.mark.parametrize(("order_type", "limit"), [(OrderType.LIMIT, None), (OrderType.MARKET, D(10))])
def test_order_requires_limit_price_for_limit_orders_only(order_type, limit):
    with pytest.raises(DomainError, match="limit_price"):
        Order(client_order_id=ClientOrderId(CID), symbol=Symbol("AAA"), side=Side.BUY, qty=D(1), created_at=NOW,
              order_type=order_type, limit_price=limit)


@pytest.mark.parametrize("symbol", ["aaa", "", "TOO_LONG_SYMBOL_X", "A B"])
def test_order_refuses_malformed_symbol(symbol):
    with pytest.raises(DomainError, match="symbol"):
        order(symbol)


def test_fill_refuses_non_positive_quantity():
    with pytest.raises(DomainError, match="qty and price must be > 0"):
        fill(qty="0")


# -- client order ids -------------------------------------------------------------------------

def test_client_order_id_is_deterministic_and_short():
    a = make_client_order_id(run_id="run-1", decision_ts=NOW, symbol="AAA", side=Side.BUY)
    assert a == make_client_order_id(run_id="run-1", decision_ts=NOW, symbol="AAA", side=Side.BUY)
    assert a.startswith("al-") and len(a) <= 128


def test_client_order_id_is_the_same_for_the_same_instant_in_another_timezone():
    ny = NOW.astimezone(ZoneInfo("America/New_York"))
    assert make_client_order_id(run_id="r", decision_ts=ny, symbol="AAA", side=Side.BUY) == \
        make_client_order_id(run_id="r", decision_ts=NOW, symbol="AAA", side=Side.BUY)


def test_client_order_id_differs_when_any_part_of_the_decision_differs():
    base = {"run_id": "r", "decision_ts": NOW, "symbol": "AAA", "side": Side.BUY}
    variants = [{}, {"run_id": "r2"}, {"decision_ts": NOW + dt.timedelta(minutes=15)}, {"symbol": "BBB"},
                {"side": Side.SELL}, {"leg": 1}]
    ids = {make_client_order_id(**(base | v)) for v in variants}
    assert len(ids) == len(variants)


def test_client_order_id_refuses_naive_decision_time():
    with pytest.raises(DomainError):
        make_client_order_id(run_id="r", decision_ts=dt.datetime(2024, 3, 5), symbol="AAA", side=Side.BUY)


# -- positions and the account ---------------------------------------------------------------

def test_position_average_cost_realised_pnl_and_flip_through_zero():
    p = Position(symbol=Symbol("AAA"))
    p = p.apply_fill(fill("1", qty="10", price="100")).apply_fill(fill("2", qty="10", price="110"))
    assert (p.qty, p.avg_cost) == (D(20), D(105))
    p = p.apply_fill(fill("3", side=Side.SELL, qty="5", price="120"))
    assert (p.qty, p.avg_cost, p.realized_pnl) == (D(15), D(105), D(75))
    p = p.apply_fill(fill("4", side=Side.SELL, qty="20", price="100"))  # closes 15 at −5 each, opens −5 at 100
    assert (p.qty, p.avg_cost, p.realized_pnl) == (D(-5), D(100), D(0))


def test_position_short_cover_realises_the_gain():
    p = Position(symbol=Symbol("AAA")).apply_fill(fill("1", side=Side.SELL, qty="10", price="50", fee="1"))
    p = p.apply_fill(fill("2", side=Side.BUY, qty="4", price="40", fee="0.5"))
    assert (p.qty, p.avg_cost, p.realized_pnl, p.fees) == (D(-6), D(50), D(40), D("1.5"))
    assert p.unrealized_pnl(D(45)) == D(30)


def test_account_cash_and_equity_follow_fills_exactly():
    acct = Account(cash=D("1000")).apply_fill(fill("1", qty="4", price="100.10", fee="0.35"))
    assert acct.cash == D("599.25")
    assert acct.equity({Symbol("AAA"): D("101")}) == D("1003.25")
    acct = acct.apply_fill(fill("2", side=Side.SELL, qty="4", price="101", fee="0.35"))
    assert acct.cash == D("1002.90") and acct.positions[Symbol("AAA")].qty == 0
    assert acct.equity({}) == D("1002.90")  # a flat position needs no price


def test_account_exposures_with_long_and_short_positions():
    acct = Account(cash=D(1000)).apply_fill(fill("1", qty="10", price="10")).apply_fill(
        fill("2", symbol="BBB", side=Side.SELL, qty="5", price="20"))
    prices = {Symbol("AAA"): D(12), Symbol("BBB"): D(18)}
    assert (acct.gross_exposure(prices), acct.market_value(prices), acct.equity(prices)) == (D(210), D(30), D(1030))


def test_account_valuation_without_a_price_for_a_held_symbol_raises():
    acct = Account(cash=D(1000)).apply_fill(fill("1", qty="1", price="10"))
    with pytest.raises(DomainError, match="no price for AAA"):
        acct.equity({})


def test_positions_rebuilt_from_fills_match_the_account():
    fills = [fill("1", qty="3", price="10"), fill("2", side=Side.SELL, qty="1", price="12", fee="0.1"),
             fill("3", symbol="BBB", qty="2", price="5")]
    acct = Account(cash=D(100))
    for f in fills:
        acct = acct.apply_fill(f)
    assert positions_from_fills(list(reversed(fills))) == dict(acct.positions)


@pytest.mark.parametrize("name", ["trader.domain", "trader.values", "trader.positions", "trader.orders"])
def test_the_examples_in_the_domain_module_docstrings_run(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0, name
