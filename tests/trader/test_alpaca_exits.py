"""Stop, trailing, bracket and OCO orders through alpaca-py against the fake Alpaca, and a runner whose exits rest there."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from fake_alpaca import SECRETS, FakeAlpaca
from fake_venue import config
from trader_builders import NOW

from trader.brokers.alpaca import AlpacaBroker
from trader.domain import (
    ClientOrderId,
    Fill,
    FillId,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderClass,
    OrderFilled,
    OrderId,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    TradingState,
    leg_client_order_id,
)
from trader.predictions import PredictionBatch
from trader.runner import Runner, Tick


@pytest.fixture
def fake():
    with FakeAlpaca() as server:
        yield server


@pytest.fixture
def connect(fake):
    """A new AlpacaBroker on the fake: calling it twice is a process restart."""
    return lambda: AlpacaBroker(SECRETS, url_override=fake.url, timeout_s=2, sleep=lambda s: None)


def make(cid: str, side: Side = Side.SELL, qty: int = 10, **kw) -> Order:
    kw.setdefault("time_in_force", TimeInForce.GTC)
    return Order(client_order_id=ClientOrderId(cid), symbol=Symbol("AAA"), side=side, qty=D(qty), created_at=NOW, **kw)


def bracket(cid: str = "al-e") -> list[Order]:
    entry = make(cid, Side.BUY, order_class=OrderClass.BRACKET, time_in_force=TimeInForce.DAY)
    link = {"order_class": OrderClass.BRACKET, "parent_id": entry.client_order_id, "time_in_force": TimeInForce.DAY}
    return [entry, make(leg_client_order_id(entry.client_order_id, "take_profit"), order_type=OrderType.LIMIT,
                        limit_price=D(110), **link),
            make(leg_client_order_id(entry.client_order_id, "stop_loss"), order_type=OrderType.STOP, stop_price=D(95), **link)]


def oco(cid: str = "al-tp") -> list[Order]:
    link = {"order_class": OrderClass.OCO}
    return [make(cid, order_type=OrderType.LIMIT, limit_price=D(110), **link),
            make(leg_client_order_id(ClientOrderId(cid), "stop_loss"), order_type=OrderType.STOP, stop_price=D(95),
                 parent_id=ClientOrderId(cid), **link)]


def events(broker: AlpacaBroker) -> list[tuple[str, str]]:
    return [(type(e).__name__, e.client_order_id) for e in broker.poll_events()]


def test_alpaca_bracket_entry_goes_out_as_one_order_whose_legs_alpaca_holds(fake, connect):
    answers = connect().submit_linked(bracket())
    assert [type(a) for a in answers] == [OrderAccepted] * 3
    assert [a.client_order_id for a in answers] == ["al-e", "al-e-tp", "al-e-sl"]
    assert fake.count("POST /v2/orders") == 1 and fake.order("al-e")["order_class"] == "bracket"
    take, stop = fake.leg("al-e", "limit"), fake.leg("al-e", "stop")
    assert (take["side"], take["limit_price"], take["status"]) == ("sell", "110", "held")
    assert (stop["side"], stop["stop_price"], stop["status"]) == ("sell", "95", "held")
    assert {answers[1].order_id, answers[2].order_id} == {take["id"], stop["id"]}


def test_alpaca_bracket_leg_fill_reaches_the_run_loop_under_the_traders_id_and_the_other_leg_is_cancelled(fake, connect):
    broker = connect()
    broker.submit_linked(bracket())
    fake.fill("al-e", "10", "100")
    assert events(broker) == [("OrderFilled", "al-e")]
    fake.fill(fake.leg("al-e", "stop")["client_order_id"], "10", "95")
    out = broker.poll_events()
    assert [(type(e).__name__, e.client_order_id) for e in out] == [("OrderFilled", "al-e-sl"), ("OrderCanceled", "al-e-tp")]
    assert out[0].fill.price == D(95) and out[0].fill.side is Side.SELL
    assert fake.positions == {}


def test_alpaca_oco_take_profit_fill_cancels_the_stop_loss(fake, connect):
    broker = connect()
    answers = broker.submit_linked(oco())
    assert [a.client_order_id for a in answers] == ["al-tp", "al-tp-sl"]
    head = fake.order("al-tp")
    assert (head["order_class"], head["type"], head["limit_price"]) == ("oco", "limit", "110")
    fake.fill("al-tp", "10", "110")
    assert events(broker) == [("OrderFilled", "al-tp"), ("OrderCanceled", "al-tp-sl")]


def test_alpaca_leg_is_found_under_its_parent_after_a_restart(fake, connect):
    connect().submit_linked(bracket())
    fake.fill("al-e", "10", "100")
    later = connect()
    leg = later.get_order_by_client_id(ClientOrderId("al-e-sl"))
    assert leg is not None and (leg.order_type, leg.stop_price, leg.parent_id) == (OrderType.STOP, D(95), "al-e")
    assert leg.status is OrderStatus.ACCEPTED and leg.is_exit_leg
    assert {o.client_order_id for o in later.list_orders()} == {"al-e-tp", "al-e-sl"}
    fake.fill(fake.leg("al-e", "limit")["client_order_id"], "10", "110")
    assert events(later) == [("OrderCanceled", "al-e-sl")]  # the leg it follows, under the trader's id


def test_alpaca_stop_and_trailing_stop_orders_carry_their_prices_both_ways(fake, connect):
    broker = connect()
    broker.submit(make("al-stop", order_type=OrderType.STOP_LIMIT, stop_price=D(95), limit_price=D("94.5")))
    broker.submit(make("al-trail", order_type=OrderType.TRAILING_STOP, trail_percent=D("2.5")))
    sent = fake.order("al-stop"), fake.order("al-trail")
    assert (sent[0]["type"], sent[0]["stop_price"], sent[0]["limit_price"]) == ("stop_limit", "95", "94.5")
    assert (sent[1]["type"], sent[1]["trail_percent"]) == ("trailing_stop", "2.5")
    back = broker.get_order_by_client_id(ClientOrderId("al-trail"))
    assert back is not None and (back.order_type, back.trail_percent, back.stop_price) == (OrderType.TRAILING_STOP, D("2.5"), None)


class _NoPredictions:
    def predict(self, symbols, *, as_of=None) -> PredictionBatch:
        return PredictionBatch("ens:test", ())


def test_runner_with_venue_exits_places_an_oco_and_books_the_stop_fill_of_the_right_order(fake, connect, store):
    broker = connect()
    entry = make("al-entry", Side.BUY, time_in_force=TimeInForce.DAY)
    broker.submit(entry)
    fake.fill("al-entry", "10", "100")
    (event,) = [e for e in broker.poll_events() if isinstance(e, OrderFilled)]
    store.save_order(entry.apply(OrderAccepted(client_order_id=entry.client_order_id, ts=NOW, order_id=OrderId("x")))
                     .apply(event))
    store.record_fill(Fill(**{**event.fill.__dict__, "fill_id": FillId(event.fill.fill_id)}))
    cfg = config(exits={"stop_loss_pct": "0.05", "take_profit_pct": "0.10", "use_venue_brackets": True})
    runner = Runner(config=cfg, store=store, broker=broker, predictor=_NoPredictions(), run_id="paper-test")
    first = runner.cycle(Tick(ts=NOW, prices={Symbol("AAA"): D(100)}))
    legs = [o for o in store.working_orders() if o.is_exit_leg]
    assert first.submitted == 2 and sorted((o.order_type, o.limit_price or o.stop_price) for o in legs) == [
        (OrderType.LIMIT, D("110.00")), (OrderType.STOP, D("95.00"))]
    (tp,) = [o for o in legs if o.order_type is OrderType.LIMIT]
    assert fake.order(tp.client_order_id)["order_class"] == "oco"
    fake.fill(fake.leg(tp.client_order_id, "stop")["client_order_id"], "10", "95")
    second = runner.cycle(Tick(ts=NOW + dt.timedelta(minutes=15), prices={Symbol("AAA"): D(95)}))
    assert second.fills == 1 and second.problems == () and second.state is TradingState.ACTIVE
    sl = store.get_order(leg_client_order_id(tp.client_order_id, "stop_loss"))
    assert sl is not None and sl.status is OrderStatus.FILLED and sl.avg_fill_price == D(95)
    assert store.get_order(tp.client_order_id).status is OrderStatus.CANCELED
    assert store.positions()[Symbol("AAA")].qty == 0
    assert [f.client_order_id for f in store.list_fills()] == ["al-entry", sl.client_order_id]
    assert any(r.kind == "exit" and r.payload["action"] == "venue OCO" for r in store.audit_records())
    assert not any(isinstance(e, OrderCanceled) for e in broker.poll_events())


class _LongAAA:
    """One long prediction, for AAA: a long-only book of one name."""

    def predict(self, symbols, *, as_of=None) -> PredictionBatch:
        from trader_builders import prediction

        return PredictionBatch("ens:test", (prediction("AAA", feature_ts=as_of or NOW),))


def test_runner_with_venue_exits_sends_an_opening_order_as_a_bracket_whose_leg_fill_is_booked(fake, connect, store):
    cfg = config(exits={"stop_loss_pct": "0.05", "take_profit_pct": "0.10", "use_venue_brackets": True},
                 sizing={"mode": "long_only", "k": 1})
    runner = Runner(config=cfg, store=store, broker=connect(), predictor=_LongAAA(), run_id="paper-test")
    first = runner.cycle(Tick(ts=NOW, prices={Symbol("AAA"): D(100)}, as_of=NOW))
    (entry,) = [o for o in store.working_orders() if not o.is_exit_leg]
    assert first.submitted == 1 and entry.order_class is OrderClass.BRACKET and entry.status is OrderStatus.ACCEPTED
    sent = fake.order(entry.client_order_id)
    assert sent["order_class"] == "bracket" and fake.count("POST /v2/orders") == 1
    take, stop = (store.get_order(leg_client_order_id(entry.client_order_id, role)) for role in ("take_profit", "stop_loss"))
    assert (take.limit_price, stop.stop_price, take.qty, take.status) == (D("110.00"), D("95.00"), entry.qty, OrderStatus.ACCEPTED)
    assert (take.order_id, stop.order_id) == (fake.leg(entry.client_order_id, "limit")["id"], fake.leg(entry.client_order_id, "stop")["id"])
    fake.fill(entry.client_order_id, str(entry.qty), "100")
    fake.fill(fake.leg(entry.client_order_id, "limit")["client_order_id"], str(entry.qty), "110")
    later = NOW + dt.timedelta(minutes=15)
    second = runner.cycle(Tick(ts=later, prices={Symbol("AAA"): D(110)}, as_of=later))
    assert second.fills == 2 and second.problems == ()
    assert [f.client_order_id for f in store.list_fills()] == [entry.client_order_id, take.client_order_id]
    assert store.get_order(stop.client_order_id).status is OrderStatus.CANCELED
    assert store.positions()[Symbol("AAA")].qty == 0
