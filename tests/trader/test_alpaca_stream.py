"""StreamingAlpacaBroker through alpaca-py's TradingStream against the fake streams on 127.0.0.1 (fake_alpaca_ws.py).

Every scenario ends with the same check: each execution recorded exactly once, the order's
end (if any) after its last fill, and the store's order in the venue's state.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal as D
from pathlib import Path

import pytest
from fake_alpaca import SECRETS
from fake_alpaca_ws import TRADING, alpaca_venue
from trader_builders import order

from trader.brokers import alpaca_stream
from trader.brokers.alpaca_stream import StreamingAlpacaBroker
from trader.brokers.base import Broker
from trader.cli import venue_broker
from trader.config import Mode, StreamsConfig, load_config
from trader.domain import Fill, OrderCanceled, OrderExpired, OrderFilled, OrderStatus
from trader.errors import ReconciliationError, TraderConfigError
from trader.reconcile import periodic, record_broker_event

ACTIVITIES = "GET /v2/account/activities/FILL"
EXAMPLE = Path(__file__).resolve().parents[2] / "trader" / "trader.example.yaml"


@pytest.fixture
def venue():
    with alpaca_venue() as v:
        yield v


@pytest.fixture
def broker(venue):
    b = StreamingAlpacaBroker(SECRETS, url_override=venue.url, stream_url=venue.trading_ws_url, timeout_s=0.5,
                              rest_backfill_every_s=3600, min_backoff_s=0.05, wait_connected_s=5)
    b.poll_events()  # the first connection's backfill: nothing to report yet
    yield b
    b.close()


def collect(broker, store, *, until, timeout: float = 5.0) -> list:
    """Poll (recording every event like the run loop does) until ``until(events)``; then twice more, to catch doubles."""
    events, deadline = [], time.monotonic() + timeout
    while not until(events):
        assert time.monotonic() < deadline, f"timed out with {events}"
        time.sleep(0.02)
        events += broker.poll_events()
    for _ in range(2):
        time.sleep(0.1)
        events += broker.poll_events()
    for event in events:
        record_broker_event(store, event)
    return events


def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def fills_of(events) -> list[tuple[D, D]]:
    return [(e.fill.qty, e.fill.price) for e in events if isinstance(e, OrderFilled)]


def placed(broker, store, cid: str, qty: int = 10):
    o = order(qty=qty, cid=cid)
    store.save_order(o)
    record_broker_event(store, broker.submit(o))
    return o


def test_trade_stream_reports_fills_as_they_happen_with_the_rest_fill_id_and_no_rest_read(venue, broker, store):
    assert isinstance(broker, Broker)
    placed(broker, store, "st-happy")
    reads = venue.rest.count(ACTIVITIES)
    venue.rest.fill("st-happy", "4", "100.25")
    venue.rest.fill("st-happy", "6", "100.5")
    events = collect(broker, store, until=lambda ev: len(ev) >= 2)
    assert fills_of(events) == [(D(4), D("100.25")), (D(6), D("100.5"))]
    assert venue.rest.count(ACTIVITIES) == reads  # the stream alone
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert [e.fill.fill_id for e in events] == [f.fill_id for f in broker.fills(since=since)]  # one id on both paths
    local = store.get_order("st-happy")
    assert (local.status, local.filled_qty, local.avg_fill_price) == (OrderStatus.FILLED, D(10), D("100.4"))


def test_trade_stream_when_disconnected_backfills_fills_over_rest(venue, broker, store):
    placed(broker, store, "st-gap", qty=10)
    venue.rest.fill("st-gap", "1", "100")
    first = collect(broker, store, until=lambda ev: len(ev) >= 1)
    with venue.ws.outage():  # these two trade updates are sent to nobody
        venue.rest.fill("st-gap", "2", "101")
        venue.rest.fill("st-gap", "3", "102")
        assert fills_of(broker.poll_events()) == []
    venue.ws.wait_for(TRADING, connections=2)
    until(lambda: broker.stream.connections == 2)  # the client has seen its reconnection too
    venue.rest.fill("st-gap", "4", "103")
    later = collect(broker, store, until=lambda ev: len(ev) >= 3)
    assert fills_of(first + later) == [(D(1), D(100)), (D(2), D(101)), (D(3), D(102)), (D(4), D(103))]  # oldest first
    assert len(store.list_fills(client_order_id="st-gap")) == 4
    assert store.get_order("st-gap").status is OrderStatus.FILLED


def test_trade_stream_with_duplicated_and_reversed_messages_reports_each_fill_once_and_the_cancel_last(venue, broker, store):
    placed(broker, store, "st-mess", qty=10)
    venue.ws.hold()
    venue.rest.fill("st-mess", "3", "99.5")
    venue.rest.fill("st-mess", "2", "99.75")
    venue.rest.cancel_at_venue("st-mess")
    venue.ws.duplicate_next(3)
    venue.ws.release(reverse=True)  # cancel, 2nd fill, 1st fill; each twice
    events = collect(broker, store, until=lambda ev: any(isinstance(e, OrderCanceled) for e in ev))
    assert sorted(fills_of(events)) == [(D(2), D("99.75")), (D(3), D("99.5"))]
    assert isinstance(events[-1], OrderCanceled) and len(events) == 3
    local = store.get_order("st-mess")
    assert (local.status, local.filled_qty) == (OrderStatus.CANCELED, D(5))


def test_trade_stream_holds_a_cancel_until_the_fill_before_it_is_reported(venue, broker, store):
    placed(broker, store, "st-late", qty=10)
    with venue.ws.outage():
        venue.rest.fill("st-late", "3", "99", publish=False)  # lost on the stream, not yet in Alpaca's activities
    venue.ws.wait_for(TRADING, connections=2)
    venue.rest.cancel_at_venue("st-late")  # streamed: canceled with 3 filled
    time.sleep(0.2)
    assert broker.poll_events() == [] and broker.poll_events() == []  # the cancel waits for its fill
    venue.rest.publish()
    events = collect(broker, store, until=lambda ev: len(ev) >= 2)
    assert [type(e) for e in events] == [OrderFilled, OrderCanceled]
    local = store.get_order("st-late")
    assert (local.status, local.filled_qty) == (OrderStatus.CANCELED, D(3))


def test_trade_stream_reports_an_expiry_and_forgets_the_order(venue, broker, store):
    placed(broker, store, "st-exp", qty=10)
    venue.rest.cancel_at_venue("st-exp", status="expired")
    events = collect(broker, store, until=lambda ev: len(ev) >= 1)
    assert [type(e) for e in events] == [OrderExpired]
    assert store.get_order("st-exp").status is OrderStatus.EXPIRED
    reads = venue.rest.count(ACTIVITIES)
    venue.ws.drop_connections()  # a reconnect's backfill finds nothing new to say
    venue.ws.wait_for(TRADING, connections=2)
    assert collect(broker, store, until=lambda ev: True) == [] and venue.rest.count(ACTIVITIES) == reads


def test_trade_stream_unreadable_fill_update_is_taken_from_rest_not_guessed(venue, broker, store):
    placed(broker, store, "st-bad", qty=10)
    venue.rest.listeners.clear()  # the venue records the fill; the test writes the stream's copy by hand
    venue.rest.fill("st-bad", "10", "42.5")
    execution = venue.rest.activities[-1]
    venue.ws.trade_update("fill", venue.rest.order("st-bad"), execution={**execution, "price": "n/a"})
    events = collect(broker, store, until=lambda ev: len(ev) >= 1)
    assert fills_of(events) == [(D(10), D("42.5"))]
    assert store.get_order("st-bad").status is OrderStatus.FILLED


def test_trade_stream_periodic_backfill_reads_rest_without_a_reconnect(venue, store):
    clock = [0.0]
    b = StreamingAlpacaBroker(SECRETS, url_override=venue.url, stream_url=venue.trading_ws_url, timeout_s=0.5,
                              rest_backfill_every_s=60, min_backoff_s=0.05, monotonic=lambda: clock[0])
    try:
        b.poll_events()
        placed(b, store, "st-tick")
        venue.ws.hold()  # the stream is slow: only REST can tell
        venue.rest.fill("st-tick", "10", "50")
        assert b.poll_events() == []
        clock[0] = 61.0
        assert fills_of(b.poll_events()) == [(D(10), D(50))]
        venue.ws.release()
        time.sleep(0.2)
        assert b.poll_events() == []  # the late stream copy is the same execution
    finally:
        b.close()


def test_store_knows_an_alpaca_fill_recorded_under_its_older_activity_id(store):
    from dataclasses import replace

    o = order(qty=10, cid="st-legacy")
    store.save_order(o)
    execution = "6f2c1a9e-0b1d-4c56-9a43-2d0d8c1f7e11"
    legacy = Fill(fill_id=f"20261207143012345::{execution}", order_id="A-1", client_order_id=o.client_order_id,
                  symbol=o.symbol, side=o.side, qty=D(3), price=D(100), fee=D(0), ts=dt.datetime.now(dt.UTC),
                  venue="alpaca-paper", account="PA-1")
    assert store.record_fill(legacy)
    assert not store.record_fill(replace(legacy, fill_id=execution))  # the same execution, read again after an upgrade
    assert store.record_fill(replace(legacy, fill_id="another-execution"))
    assert store.positions()[o.symbol].qty == D(6)


def test_streams_config_is_typed_and_refuses_unknown_keys(tmp_path):
    path = tmp_path / "trader.yaml"
    path.write_text("universe: {symbols: [AAA]}\nstreams: {trade_updates: true, rest_backfill_every_s: 30}\n")
    assert load_config(path).streams == StreamsConfig(trade_updates=True, rest_backfill_every_s=30, reconcile_every_cycles=0)
    assert load_config(EXAMPLE).streams.trade_updates is False  # REST polling unless asked
    for text, field in (("streams: {trade_update: true}", "streams.trade_update"),
                        ("streams: {rest_backfill_every_s: 0}", "streams.rest_backfill_every_s"),
                        ("streams: {reconcile_every_cycles: -1}", "streams.reconcile_every_cycles")):
        path.write_text(f"universe: {{symbols: [AAA]}}\n{text}\n")
        with pytest.raises(TraderConfigError) as err:
            load_config(path)
        assert err.value.field == field


def test_paper_venue_uses_the_trade_update_stream_only_when_the_config_says_so(monkeypatch):
    built = []
    monkeypatch.setattr(alpaca_stream, "StreamingAlpacaBroker", lambda secrets, **kw: built.append(kw) or "streaming")
    assert venue_broker(Mode.PAPER, SECRETS, streams=StreamsConfig(trade_updates=True, rest_backfill_every_s=15)) == "streaming"
    assert built == [{"paper": True, "rest_backfill_every_s": 15}]
    assert type(venue_broker(Mode.PAPER, SECRETS, streams=StreamsConfig())).__name__ == "AlpacaBroker"


def test_periodic_reconciliation_records_missed_fills_and_stops_on_an_order_the_store_does_not_know(venue, broker, store):
    class Tick:
        ts = dt.datetime.now(dt.UTC)

    hook = periodic(store, broker, every=2)
    placed(broker, store, "st-rec", qty=10)
    venue.rest.fill("st-rec", "10", "20")  # not polled: only reconciliation brings it in
    hook(Tick)
    assert store.list_fills(client_order_id="st-rec") == []  # every 2nd cycle
    hook(Tick)
    assert [f.qty for f in store.list_fills(client_order_id="st-rec")] == [D(10)]
    broker.submit(order(qty=1, cid="by-hand"))  # placed at the venue behind the trader's back
    hook(Tick)
    with pytest.raises(ReconciliationError, match="by-hand"):
        hook(Tick)
