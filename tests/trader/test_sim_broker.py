"""The simulated broker: next-open fills, exact slippage and fees, volume-limited partial fills, limits, cancels, flattening."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal as D

import pytest
from trader_builders import order as _order

from trader.brokers.bars import Bar, InMemoryBars
from trader.brokers.base import Broker
from trader.brokers.sim import FeeModel, SimBroker, SimConfig
from trader.domain import (
    ClientOrderId,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    Side,
    Symbol,
    TimeInForce,
    positions_from_fills,
)
from trader.errors import BrokerError, BrokerRejectedError

#: 2024-03-05 09:30 New York: the session's first 15-minute bar opens.
T0 = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC)
M15 = dt.timedelta(minutes=15)


def t(i: int) -> dt.datetime:
    return T0 + i * M15


def bar(i: int, open_: str = "100", *, symbol: str = "AAA", high: str | None = None, low: str | None = None,
        close: str | None = None, volume: str = "1000000", at: dt.datetime | None = None) -> Bar:
    return Bar(symbol=Symbol(symbol), ts=at or t(i), open=D(open_), high=D(high or open_), low=D(low or open_),
               close=D(close or open_), volume=D(volume))


def order(*args, at: dt.datetime = T0, **kwargs):
    """An order created at ``at`` (the session open by default)."""
    return _order(*args, at=at, **kwargs)


def sim(bars: list[Bar], **config) -> SimBroker:
    return SimBroker(InMemoryBars(bars), config=SimConfig(**config), start=T0)


def fills_of(events) -> list:
    return [e.fill for e in events if isinstance(e, OrderFilled)]


def test_sim_broker_implements_the_broker_protocol():
    assert isinstance(sim([]), Broker)


def test_sim_broker_decision_at_a_bars_close_fills_at_the_open_of_the_bar_starting_then():
    broker = sim([bar(0, "100"), bar(1, "101"), bar(2, "102")])
    broker.submit(order(qty=1, cid="al-held", at=T0))  # something working, so bar 0 is really processed
    broker.advance_to(t(1))  # bar 0 opened and closed: t(1) is its close and bar 1's open
    broker.poll_events()
    answer = broker.submit(order(qty=10, at=t(1)))  # the decision at bar 0's close
    assert isinstance(answer, OrderAccepted) and answer.order_id == "sim-2"
    broker.advance_to(t(1))
    assert broker.poll_events() == []  # bar 1's open is still ahead of the decision
    broker.advance_to(t(2))
    (fill,) = fills_of(broker.poll_events())
    assert (fill.price, fill.qty, fill.ts, fill.fill_id) == (D(101), D(10), t(1), "sim-2-1")
    assert broker.get_order_by_client_id(answer.client_order_id).status is OrderStatus.FILLED


def test_sim_broker_never_fills_at_the_open_of_a_bar_that_opened_before_the_order():
    broker = sim([bar(0, "100", low="98"), bar(1, "101"), bar(2, "102")])
    broker.submit(order(qty=1, cid="al-held", at=T0))
    broker.advance_to(T0 + dt.timedelta(minutes=1))  # past bar 0's open, which was processed
    assert [(f.price, f.ts) for f in fills_of(broker.poll_events())] == [(D(100), T0)]
    late = T0 + dt.timedelta(minutes=1)
    market = broker.submit(order(qty=10, cid="al-market", at=late)).client_order_id
    limit = broker.submit(order(qty=10, cid="al-limit", at=late, limit="99")).client_order_id  # bar 0's low touches it
    broker.advance_to(t(1))
    assert broker.poll_events() == []  # neither bar 0's open nor its close (the limit's touch) is theirs
    broker.advance_to(t(2))
    assert [(f.client_order_id, f.price, f.ts) for f in fills_of(broker.poll_events())] == [(market, D(101), t(1))]
    assert broker.get_order_by_client_id(limit).status is OrderStatus.ACCEPTED


def test_sim_broker_order_created_after_a_bar_opened_waits_even_when_the_clock_starts_earlier():
    broker = SimBroker(InMemoryBars([bar(0, "100"), bar(1, "101")]))  # no start: the clock starts at the first order
    first = broker.submit(order(qty=1, cid="al-first", at=T0)).client_order_id
    later = broker.submit(order(qty=1, cid="al-later", at=T0 + dt.timedelta(minutes=5))).client_order_id
    broker.advance_to(t(2))
    assert [(f.client_order_id, f.price) for f in fills_of(broker.poll_events())] == [(first, D(100)), (later, D(101))]


def test_sim_broker_order_submitted_mid_bar_waits_for_the_following_open():
    broker = sim([bar(0, "100"), bar(1, "101"), bar(2, "102")])
    broker.advance_to(t(1) - dt.timedelta(minutes=8))  # inside bar 0
    broker.submit(order(qty=5, at=t(1) - dt.timedelta(minutes=8)))
    broker.advance_to(t(2))
    assert [f.price for f in fills_of(broker.poll_events())] == [D(101)]


@pytest.mark.parametrize(("side", "price"), [(Side.BUY, D("100.1500")), (Side.SELL, D("99.8500"))])
def test_sim_broker_slippage_moves_the_price_against_the_order_exactly(side, price):
    broker = sim([bar(1, "100.00")], slippage_bps=D(15))
    broker.submit(order(side=side, qty=7))
    broker.advance_to(t(2))
    (fill,) = fills_of(broker.poll_events())
    assert fill.price == price


def test_sim_broker_fees_are_per_share_plus_bps_of_notional_in_exact_decimal():
    broker = sim([bar(1, "250.10")], fees=FeeModel(per_share=D("0.0035"), bps=D("0.5")))
    broker.submit(order(qty=37))
    broker.advance_to(t(2))
    (fill,) = fills_of(broker.poll_events())
    # 37 × 0.0035 + 37 × 250.10 × 0.5 / 10 000 = 0.1295 + 0.4626850
    assert fill.fee == D("0.5921850")
    assert broker.account().cash == D(100_000) - D(37) * D("250.10") - D("0.5921850")


def test_sim_broker_partial_fills_by_volume_leave_the_rest_working_for_following_bars():
    broker = sim([bar(i, str(100 + i), volume="1000") for i in range(1, 5)], max_participation=D("0.10"))
    cid = broker.submit(order(qty=250)).client_order_id
    statuses = []
    for i in range(2, 5):
        broker.advance_to(t(i))
        broker.poll_events()
        statuses.append(broker.get_order_by_client_id(cid).status)
    fills = broker.fills(since=T0)
    assert [(f.qty, f.price) for f in fills] == [(D(100), D(101)), (D(100), D(102)), (D(50), D(103))]
    assert statuses == [OrderStatus.PARTIALLY_FILLED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    assert broker.get_order_by_client_id(cid).avg_fill_price == D("101.8")


def test_sim_broker_orders_in_one_symbol_share_the_bars_volume_in_submission_order():
    broker = sim([bar(1, volume="1000"), bar(2, volume="1000")], max_participation=D("0.10"))
    first = broker.submit(order(qty=80, cid="al-first")).client_order_id
    second = broker.submit(order(qty=80, cid="al-second")).client_order_id
    broker.advance_to(t(2))
    assert [(f.client_order_id, f.qty) for f in fills_of(broker.poll_events())] == [(first, D(80)), (second, D(20))]
    broker.advance_to(t(3))
    assert [(f.client_order_id, f.qty) for f in fills_of(broker.poll_events())] == [(second, D(60))]


def test_sim_broker_bar_without_volume_fills_nothing():
    broker = sim([bar(1, volume="0"), bar(2, volume="1000")])
    broker.submit(order(qty=10))
    broker.advance_to(t(2))
    assert broker.poll_events() == []  # bar 1 opened and closed without volume
    broker.advance_to(t(3))
    assert [f.ts for f in fills_of(broker.poll_events())] == [t(2)]


def test_sim_broker_limit_buy_marketable_at_the_open_fills_at_the_open_capped_by_the_limit():
    broker = sim([bar(1, "99.98", high="101", low="99")], slippage_bps=D(5))
    broker.submit(order(qty=10, limit="100"))
    broker.advance_to(t(2))
    (fill,) = fills_of(broker.poll_events())
    assert fill.price == D(100) and fill.ts == t(1)  # 99.98 × 1.0005 = 100.029... is capped at the limit


def test_sim_broker_limit_buy_touched_inside_the_bar_fills_at_the_limit_when_the_bar_closes():
    broker = sim([bar(1, "101", high="102", low="98.50", close="99.5")])
    broker.submit(order(qty=10, limit="99", at=t(1)))  # decided as bar 1 opens: the whole of bar 1 is ahead of it
    broker.advance_to(t(2) - dt.timedelta(seconds=1))  # bar 1 has opened (at 101, not through the limit)
    assert broker.poll_events() == []  # not known before the bar closes
    broker.advance_to(t(2))
    (fill,) = fills_of(broker.poll_events())
    assert (fill.price, fill.ts) == (D(99), t(2))


def test_sim_broker_limit_sell_never_fills_below_its_limit():
    broker = sim([bar(1, "100", high="100.50", low="99"), bar(2, "102", high="103", low="101.5")])
    cid = broker.submit(order(side=Side.SELL, qty=10, limit="101")).client_order_id
    broker.advance_to(t(2))  # bar 1 opened and closed: its high 100.50 never reached the limit
    assert broker.poll_events() == [] and broker.get_order_by_client_id(cid).status is OrderStatus.ACCEPTED
    broker.advance_to(t(3))
    assert [(f.price, f.ts) for f in fills_of(broker.poll_events())] == [(D(102), t(2))]


def test_sim_broker_cancel_stops_a_working_order_and_is_idempotent():
    broker = sim([bar(1, volume="100"), bar(2, volume="100")])
    cid = broker.submit(order(qty=50)).client_order_id
    broker.advance_to(t(2))
    broker.cancel(cid)
    broker.cancel(cid)
    events = broker.poll_events()
    assert [type(e) for e in events] == [OrderFilled, OrderCanceled]
    broker.advance_to(t(3))
    assert broker.poll_events() == [] and broker.get_order_by_client_id(cid).filled_qty == D(10)
    with pytest.raises(BrokerRejectedError, match="no such order"):
        broker.cancel(ClientOrderId("al-unknown"))


def test_sim_broker_reused_client_order_id_returns_the_existing_order_and_places_nothing_new():
    broker = sim([bar(1)])
    first = broker.submit(order(qty=10, cid="al-x"))
    again = broker.submit(order(qty=10, cid="al-x"))
    assert again.order_id == first.order_id and len(broker.list_orders(open_only=False)) == 1


def test_sim_broker_day_order_expires_at_the_first_bar_of_the_next_session():
    next_day = dt.datetime(2024, 3, 6, 14, 30, tzinfo=dt.UTC)
    broker = sim([bar(1, volume="100"), bar(0, at=next_day, volume="100")])
    cid = broker.submit(order(qty=50)).client_order_id
    broker.advance_to(next_day)
    assert [type(e) for e in broker.poll_events()] == [OrderFilled]  # the next session's first bar is still ahead
    broker.advance_to(next_day + M15)
    assert [(type(e), e.ts) for e in broker.poll_events()] == [(OrderExpired, next_day)]
    assert broker.get_order_by_client_id(cid).filled_qty == D(10)


def test_sim_broker_ioc_cancels_what_the_first_open_cannot_fill_and_opg_is_rejected():
    broker = sim([bar(1, volume="100")])
    broker.submit(replace(order(qty=50), time_in_force=TimeInForce.IOC))
    broker.advance_to(t(2))
    assert [type(e) for e in broker.poll_events()] == [OrderFilled, OrderCanceled]
    answer = broker.submit(replace(order(cid="al-opg"), time_in_force=TimeInForce.OPG))
    assert isinstance(answer, OrderRejected) and "not simulated" in answer.reason


def test_sim_broker_close_all_cancels_working_orders_and_flattens_at_the_next_open():
    broker = sim([bar(1, "100"), bar(1, "50", symbol="BBB"), bar(2, "110"), bar(2, "45", symbol="BBB"),
                  bar(3, "120"), bar(3, "40", symbol="BBB")])
    broker.submit(order("AAA", qty=10))
    broker.submit(order("BBB", Side.SELL, qty=20))
    broker.advance_to(t(1) + dt.timedelta(minutes=1))  # both filled at bar 1's open
    working = broker.submit(order("AAA", qty=5, cid="al-working", limit="1"))
    broker.advance_to(t(2))  # bar 1's close: bar 2 opens now, still ahead of the flatten
    closing = broker.close_all()
    assert sorted((o.symbol, o.side, o.qty) for o in closing) == [("AAA", Side.SELL, D(10)), ("BBB", Side.BUY, D(20))]
    assert broker.get_order_by_client_id(working.client_order_id).status is OrderStatus.CANCELED
    again = broker.close_all()  # a second flatten replaces the first: still one closing order per position
    assert {o.client_order_id for o in again}.isdisjoint(o.client_order_id for o in closing)
    assert [broker.get_order_by_client_id(o.client_order_id).status for o in closing] == [OrderStatus.CANCELED] * 2
    broker.advance_to(t(3))
    assert broker.positions() == {} and broker.list_orders() == []
    assert sorted((f.symbol, f.price, f.ts) for f in broker.fills(since=t(2))) == [("AAA", D(110), t(2)), ("BBB", D(45), t(2))]
    assert broker.account().cash == D(100_000) + 10 * D(10) + 20 * D(5)


def test_sim_broker_account_marks_at_the_latest_seen_price_and_the_clock_never_goes_back():
    broker = sim([bar(1, "100", close="104"), bar(2, "103")])
    broker.submit(order(qty=10))
    broker.advance_to(t(1) + dt.timedelta(seconds=1))
    assert broker.account().equity == D(100_000)
    broker.advance_to(t(1) + M15 - dt.timedelta(seconds=1))
    assert broker.account().equity == D(100_000)  # the close is not known yet
    broker.advance_to(t(2))
    assert broker.account().equity == D(100_000) + 10 * D(4)  # bar 1's close; bar 2's open is not known yet
    broker.advance_to(t(3))
    assert broker.account().equity == D(100_000) + 10 * D(3)
    with pytest.raises(BrokerError, match="cannot go back"):
        broker.advance_to(t(1))


def test_sim_broker_restore_rebuilds_a_fresh_venue_from_stored_orders_and_fills():
    broker = sim([bar(1, volume="100"), bar(2, "101", volume="100"), bar(3, "102", volume="100")])
    broker.submit(order(qty=25, cid="al-a"))
    broker.advance_to(t(2))  # one fill, at bar 1's open (t(1))
    restored = sim([bar(1, volume="100"), bar(2, "101", volume="100"), bar(3, "102", volume="100")])
    restored.restore(orders=broker.list_orders(open_only=False), fills=broker.fills(since=T0))
    restored.advance_to(t(2))
    assert restored.poll_events() == []  # bar 1's open was traded on before the restart: not again
    restored.advance_to(t(4))
    broker.advance_to(t(4))
    assert [(f.qty, f.ts) for f in broker.fills(since=T0)] == [(D(10), t(1)), (D(10), t(2)), (D(5), t(3))]
    assert restored.fills(since=T0) == broker.fills(since=T0)
    assert restored.positions() == broker.positions() and restored.account() == broker.account()


def test_sim_broker_restore_after_a_limit_fill_at_a_close_still_trades_the_open_starting_then():
    bars = [bar(1, "101", low="98.50", close="99.5", volume="100"), bar(2, "98", volume="100"), bar(3, "97", volume="100")]
    broker = sim(bars)
    broker.submit(order(qty=25, cid="al-a", limit="99"))
    broker.advance_to(t(2))  # bar 1 touched the limit: 10 fill at 99, stamped at its close t(2)
    assert [(f.price, f.ts) for f in broker.fills(since=T0)] == [(D(99), t(2))]
    restored = SimBroker(InMemoryBars(bars), config=SimConfig(), start=t(2))  # as the CLI resumes: at the last cycle
    restored.restore(orders=broker.list_orders(open_only=False), fills=broker.fills(since=T0))
    for venue in (broker, restored):
        venue.advance_to(t(4))
    assert [(f.price, f.ts) for f in broker.fills(since=T0)] == [(D(99), t(2)), (D(98), t(2)), (D(97), t(3))]
    assert restored.fills(since=T0) == broker.fills(since=T0)
    assert restored.positions() == broker.positions() and restored.account() == broker.account()


def test_sim_broker_ten_thousand_orders_lose_nothing_end_to_end():
    symbols = [f"S{i:02d}" for i in range(50)]
    steps = 40
    bars = [bar(i, str(50 + (i + k) % 7), symbol=s, volume="1000000") for i in range(1, steps + 2) for k, s in enumerate(symbols)]
    broker = sim(bars, slippage_bps=D(2), fees=FeeModel(per_share=D("0.001")), max_participation=D("0.01"))
    started, submitted, events = time.perf_counter(), [], []
    for step in range(steps):
        broker.advance_to(t(step))
        events += broker.poll_events()
        for n in range(250):
            side = Side.BUY if (step + n) % 3 else Side.SELL
            o = order(symbols[n % 50], side, qty=1 + n % 9, cid=f"al-{step}-{n}", at=t(step))
            assert isinstance(broker.submit(o), OrderAccepted)
            submitted.append(o)
    broker.advance_to(t(steps + 1))
    events += broker.poll_events()
    elapsed = time.perf_counter() - started
    fills = fills_of(events)
    assert len(submitted) == 10_000 and len({o.client_order_id for o in submitted}) == 10_000
    assert all(o.status is OrderStatus.FILLED for o in broker.list_orders(open_only=False))
    assert len(broker.list_orders(open_only=False)) == 10_000 and broker.list_orders() == []
    assert len(fills) == len(broker.fills(since=T0)) and len({f.fill_id for f in fills}) == len(fills)
    assert sum(f.qty for f in fills) == sum(o.qty for o in submitted)
    assert {s: p.qty for s, p in positions_from_fills(fills).items() if p.qty} == {s: p.qty for s, p in broker.positions().items()}
    assert elapsed < 5, f"10,000 orders took {elapsed:.2f} s"


def test_sim_broker_and_reconcile_import_neither_alpaca_nor_duckdb():
    code = ("import sys\nimport trader.brokers.sim, trader.brokers.bars, trader.reconcile\n"
            "print(sorted({n.split('.')[0] for n in sys.modules} & {'alpaca', 'duckdb', 'pandas', 'requests'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["trader.brokers.sim", "trader.brokers.sim_config"])
def test_the_examples_in_the_sim_broker_docstrings_run(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0, name
