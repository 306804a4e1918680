"""AlpacaBroker through alpaca-py itself, against a fake Alpaca on 127.0.0.1 (tests/trader/fake_alpaca.py)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal as D

import pytest
from fake_alpaca import API_KEY, SECRET_KEY, SECRETS, FakeAlpaca
from pydantic import SecretStr
from trader_builders import order

from trader.brokers.alpaca import AlpacaBroker
from trader.brokers.base import Broker, BrokerPosition
from trader.config import Secrets
from trader.domain import (
    ClientOrderId,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    Side,
    Symbol,
)
from trader.errors import BrokerRateLimitError, BrokerUnavailableError, TraderConfigError
from trader.reconcile import Issue, reconcile, record_broker_event

POST = "POST /v2/orders"
LOOKUP = "GET /v2/orders:by_client_order_id"


@pytest.fixture
def fake():
    with FakeAlpaca() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def connect(fake, sleeps):
    """A new AlpacaBroker on the fake: calling it twice is a process restart."""
    def make(**kwargs) -> AlpacaBroker:
        return AlpacaBroker(SECRETS, url_override=fake.url, timeout_s=0.3, sleep=sleeps.append, **kwargs)
    return make


def test_alpaca_broker_implements_the_broker_protocol_and_needs_both_keys(connect):
    assert isinstance(connect(), Broker) and connect().venue == "alpaca-paper"
    with pytest.raises(TraderConfigError, match="ALPACA_SECRET_KEY: not set"):
        AlpacaBroker(Secrets(alpaca_api_key=SecretStr(API_KEY)))


def test_alpaca_broker_happy_path_submits_once_and_reports_exact_fills(fake, connect):
    broker, o = connect(), order(qty=10, cid="al-happy")
    answer = broker.submit(o)
    assert isinstance(answer, OrderAccepted) and uuid.UUID(answer.order_id)
    assert fake.count(POST) == 1 and fake.order("al-happy")["qty"] == "10"
    fake.fill("al-happy", "4", "100.25")
    fake.fill("al-happy", "6", "100.5")
    events = broker.poll_events()
    assert [(e.fill.qty, e.fill.price) for e in events] == [(D(4), D("100.25")), (D(6), D("100.5"))]
    assert {(e.fill.venue, e.fill.account, e.fill.order_id) for e in events} == {("alpaca-paper", "PA-FAKE-1", answer.order_id)}
    local = o.apply(answer)
    for event in events:
        local = local.apply(event)
    assert (local.status, local.avg_fill_price) == (OrderStatus.FILLED, D("100.4"))
    assert broker.poll_events() == []  # filled: nothing more to say, nothing said twice
    assert broker.positions() == {Symbol("AAA"): BrokerPosition(symbol=Symbol("AAA"), qty=D(10), avg_entry_price=D("100.4"))}
    assert broker.account().cash == D(100_000) - D(1004)


@pytest.mark.parametrize(("status", "message"), [
    (403, "insufficient buying power"),
    (403, "asset AAA is not fractionable"),
    (422, "qty must be > 0"),
])
def test_alpaca_broker_403_and_422_reject_the_order_with_alpacas_reason_after_a_look_up(fake, connect, status, message):
    fake.fail_next(POST, status, message)
    answer = connect().submit(order(qty=10, cid="al-refused"))
    assert isinstance(answer, OrderRejected) and answer.reason == f"alpaca HTTP {status}: {message}"
    assert (fake.count(POST), fake.count(LOOKUP), fake.created) == (1, 1, 0)


def test_alpaca_broker_reused_client_order_id_422_adopts_the_existing_order(fake, connect):
    first = connect().submit(order(qty=10, cid="al-dup"))
    second = connect().submit(order(qty=10, cid="al-dup"))  # e.g. a naive resubmission after a restart
    assert isinstance(second, OrderAccepted) and second.order_id == first.order_id
    assert (fake.count(POST), fake.created) == (2, 1)


def test_alpaca_broker_reused_client_order_id_for_a_different_order_is_rejected_not_adopted(fake, connect):
    connect().submit(order(qty=10, cid="al-clash"))
    answer = connect().submit(order(qty=99, cid="al-clash"))
    assert isinstance(answer, OrderRejected) and "already used at Alpaca by buy 10 AAA" in answer.reason


def test_alpaca_broker_429_backs_off_and_retries_itself_one_post_per_attempt(fake, connect, sleeps):
    fake.fail_next(POST, 429, "rate limit exceeded", times=2)
    answer = connect(max_attempts=3, backoff_s=0.5).submit(order(qty=10, cid="al-slow"))
    assert isinstance(answer, OrderAccepted)
    assert sleeps == [0.5, 1.0]  # ours; alpaca-py's own 3 s retry loop is off
    assert (fake.count(POST), fake.count(LOOKUP), fake.created) == (3, 2, 1)


def test_alpaca_broker_429_that_persists_gives_up_with_a_rate_limit_error_and_nothing_placed(fake, connect, sleeps):
    fake.fail_next(POST, 429, "rate limit exceeded", times=5)
    with pytest.raises(BrokerRateLimitError, match="still HTTP 429 after 2 attempts"):
        connect(max_attempts=2, backoff_s=0.25).submit(order(qty=10, cid="al-limited"))
    assert (fake.count(POST), fake.created, sleeps) == (2, 0, [0.25])


def test_alpaca_broker_504_after_the_order_went_through_is_adopted_not_resent(fake, connect):
    fake.fail_next(POST, 504, "gateway timeout", create_first=True)
    answer = connect().submit(order(qty=10, cid="al-504"))
    assert isinstance(answer, OrderAccepted) and answer.order_id == fake.order("al-504")["id"]
    assert (fake.count(POST), fake.created) == (1, 1)  # alpaca-py alone would have POSTed again


def test_alpaca_broker_dropped_answer_is_settled_by_the_look_up(fake, connect):
    fake.lose_next_answer(POST)
    answer = connect().submit(order(qty=10, cid="al-dropped"))
    assert isinstance(answer, OrderAccepted) and (fake.count(POST), fake.created) == (1, 1)


def test_alpaca_broker_crash_after_the_order_was_accepted_places_no_second_order_after_restart(fake, connect, store):
    o = order(qty=10, cid="al-crash")
    store.save_order(o)  # the run loop records the decision before sending it
    fake.lose_next_answer(POST, sleep_s=1.0)  # accepted, but the answer comes after the client's 0.3 s timeout
    fake.fail_next(LOOKUP, 503, "service unavailable")  # ... and the process cannot even look it up before dying
    with pytest.raises(BrokerUnavailableError, match="fate is unknown"):
        connect().submit(o)
    assert store.get_order(o.client_order_id).status is OrderStatus.NEW

    restarted = connect()  # a new process: nothing in memory
    report = reconcile(store, restarted, now=dt.datetime.now(dt.UTC))
    assert report.can_trade and [d.issue for d in report.discrepancies] == [Issue.ORDER_ADOPTED]
    local = store.get_order(o.client_order_id)
    assert (local.status, local.order_id) == (OrderStatus.ACCEPTED, fake.order("al-crash")["id"])
    assert isinstance(restarted.submit(o), OrderAccepted)  # even a careless resubmission is answered 422 and adopted
    assert fake.created == 1 and len(fake.orders) == 1


def test_alpaca_broker_reports_a_cancel_only_after_every_fill_before_it(fake, connect, store):
    broker, o = connect(), order(qty=10, cid="al-partial")
    store.save_order(o)
    record_broker_event(store, broker.submit(o))
    fake.fill("al-partial", "3", "99.5", publish=False)  # Alpaca's activity feed lags behind the order status
    fake.cancel_at_venue("al-partial")
    assert broker.poll_events() == []  # canceled with 3 filled, but that fill is not published yet
    fake.publish()
    events = broker.poll_events()
    assert [type(e) for e in events] == [OrderFilled, OrderCanceled]
    assert all(record_broker_event(store, e) for e in events)
    assert not any(record_broker_event(store, e) for e in events)  # replays change nothing
    local = store.get_order(o.client_order_id)
    assert (local.status, local.filled_qty) == (OrderStatus.CANCELED, D(3))


def test_alpaca_broker_after_restart_reads_back_fills_older_than_its_window(fake, connect):
    connect().submit(order(qty=10, cid="al-old"))
    fake.backdate("al-old", dt.timedelta(hours=2))
    fake.fill("al-old", "4", "100", at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))  # before the new window
    restarted = connect()
    assert restarted.get_order_by_client_id(ClientOrderId("al-old")).status is OrderStatus.PARTIALLY_FILLED
    fake.cancel_at_venue("al-old")
    assert [type(e) for e in restarted.poll_events()] == [OrderFilled, OrderCanceled]
    assert [(f.client_order_id, f.qty) for f in restarted.fills(since=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))] == [
        ("al-old", D(4))]


def test_alpaca_broker_kill_switch_cancels_working_orders_and_flattens(fake, connect):
    broker = connect()
    broker.submit(order("AAA", qty=10, cid="al-a"))
    broker.submit(order("BBB", Side.SELL, qty=5, cid="al-b"))
    broker.submit(order("CCC", qty=1, cid="al-c"))
    fake.fill("al-a", "10", "100")
    fake.fill("al-b", "2", "50")
    broker.poll_events()
    assert sorted(broker.cancel_all()) == ["al-b", "al-c"]
    assert {type(e) for e in broker.poll_events()} == {OrderCanceled}
    closing = broker.close_all()
    assert sorted((o.symbol, o.side, o.qty, o.status) for o in closing) == [
        ("AAA", Side.SELL, D(10), OrderStatus.ACCEPTED), ("BBB", Side.BUY, D(2), OrderStatus.ACCEPTED)]
    for o in closing:
        fake.fill(o.client_order_id, str(o.qty), "101")
    assert {(e.client_order_id, e.fill.qty) for e in broker.poll_events()} == {(o.client_order_id, o.qty) for o in closing}
    assert broker.positions() == {}


def test_alpaca_broker_never_logs_or_raises_its_secret(fake, connect, caplog):
    caplog.set_level(logging.DEBUG)
    broker = connect()
    fake.fail_next(POST, 403, "insufficient buying power")
    messages = [broker.submit(order(qty=1, cid="al-s1")).reason]
    fake.fail_next(POST, 500, "internal error")
    fake.fail_next(LOOKUP, 500, "internal error")
    with pytest.raises(BrokerUnavailableError) as err:
        broker.submit(order(qty=1, cid="al-s2"))
    messages.append(str(err.value))
    fake.lose_next_answer(POST, sleep_s=0.6)
    fake.fail_next(LOOKUP, 404, "order not found")  # not visible yet
    with pytest.raises(BrokerUnavailableError, match="no answer to submit") as err:
        broker.submit(order(qty=1, cid="al-s3"))
    messages.append(str(err.value))
    assert SECRET_KEY not in caplog.text + "".join(messages) and SECRET_KEY not in repr(SECRETS)
