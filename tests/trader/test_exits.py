"""The exit monitor (trader/exits.py) inside the runner, on the simulated venue: each exit, its audit record, the books."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from fake_venue import FakePredictor, config, make_bars
from trader_builders import fill

from trader.brokers.bars import Bar, InMemoryBars
from trader.brokers.sim import SimBroker, SimConfig
from trader.domain import (
    ClientOrderId,
    Order,
    OrderType,
    Side,
    Symbol,
    TradingState,
    positions_from_fills,
)
from trader.exits import bars_between, opened_at
from trader.predictions import PredictionBatch
from trader.risk.record import decision_checks
from trader.runner import Runner, replay_ticks

AAA = Symbol("AAA")
T0 = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC)  # 09:30 New York, a Tuesday
M15 = dt.timedelta(minutes=15)


class _NoPredictions:
    """Sizing sends nothing: every order in these tests is an exit."""

    def predict(self, symbols, *, as_of=None) -> PredictionBatch:
        return PredictionBatch("ens:test", ())


def path(*closes: str) -> list[Bar]:
    """AAA bars opening at the previous close (the first at 100), with a high/low just around open and close."""
    bars, prev = [], D(100)
    for i, c in enumerate(closes):
        close = D(c)
        bars.append(Bar(symbol=AAA, ts=T0 + i * M15, open=prev, high=max(prev, close), low=min(prev, close), close=close,
                        volume=D(1_000_000)))
        prev = close
    return bars


def session(store, bars: list[Bar], *, qty: int = 10, side: Side = Side.BUY, state: TradingState | None = None, **exits):
    """A strict sim run that opens ``qty`` AAA at the first open, then lets the exits (``exits:``) work."""
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(max_participation=None), start=T0)
    entry = Order(client_order_id=ClientOrderId("al-entry"), symbol=AAA, side=side, qty=D(qty), created_at=T0)
    store.save_order(entry.apply(broker.submit(entry)))
    runner = Runner(config=config(exits=exits), store=store, broker=broker, predictor=_NoPredictions(), run_id="sim-exits",
                    strict=True)
    if state is not None:
        store.set_trading_state(state, reason="test", changed_by="test", at=T0)
    reports = runner.run(replay_ticks(bars), before_cycle=lambda tick: broker.advance_to(tick.ts))
    return broker, reports


def exit_records(store) -> list[dict]:
    return [r.payload for r in store.audit_records() if r.kind == "exit"]


def assert_books_agree(store, broker, reports) -> None:
    assert all(r.problems == () for r in reports)
    held = {s: p.qty for s, p in store.positions().items() if p.qty}
    assert held == {s: p.qty for s, p in positions_from_fills(store.list_fills()).items() if p.qty} == \
        {s: p.qty for s, p in broker.positions().items()}


def test_exit_monitor_closes_a_long_at_the_stop_loss_and_records_why(store):
    broker, reports = session(store, path("99", "96", "94.5", "93", "95"), stop_loss_pct="0.05")
    (record,) = exit_records(store)
    assert (record["reason"], record["action"], record["approved"], record["last"]) == ("stop_loss", "close at market", True, "94.5")
    assert reports[2].submitted == 1 and reports[3].fills == 1
    closing = store.get_order(record["client_order_id"])
    assert closing.side is Side.SELL and closing.avg_fill_price == D("94.5")  # the next bar's open
    assert store.positions()[AAA].qty == 0
    assert_books_agree(store, broker, reports)


def test_exit_monitor_closes_a_short_at_the_take_profit(store):
    broker, reports = session(store, path("97", "94", "89.9", "90"), side=Side.SELL, take_profit_pct="0.10")
    assert [(r["reason"], r["last"]) for r in exit_records(store)] == [("take_profit", "89.9")]
    assert store.positions()[AAA].qty == 0
    assert_books_agree(store, broker, reports)


def test_exit_monitor_time_stop_closes_after_max_holding_bars(store):
    broker, reports = session(store, path("100", "101", "100", "101", "100"), max_holding_bars=3)
    (record,) = exit_records(store)
    assert (record["reason"], record["bars_held"]) == ("time", 3)
    assert [r.submitted for r in reports] == [0, 0, 1, 0, 0]  # the entry filled at bar 0's open: 3 bars by bar 2's close
    assert_books_agree(store, broker, reports)


def test_exit_monitor_trailing_stop_follows_the_best_price_seen(store):
    broker, reports = session(store, path("104", "110", "106", "104.4", "104"), trailing_stop_pct="0.05")
    (record,) = exit_records(store)
    assert (record["reason"], record["best"], record["last"]) == ("trailing", "110", "104.4")
    assert_books_agree(store, broker, reports)


def test_exit_monitor_does_nothing_while_no_exit_is_reached(store):
    session(store, path("99", "101", "102"), stop_loss_pct="0.05", take_profit_pct="0.10",
            max_holding_bars=10)
    assert exit_records(store) == [] and store.positions()[AAA].qty == 10


def test_exit_monitor_closes_even_when_trading_is_halted(store):
    _, reports = session(store, path("99", "94", "93"), state=TradingState.HALTED, stop_loss_pct="0.05")
    assert all(r.state is TradingState.HALTED for r in reports)
    assert [r["reason"] for r in exit_records(store)] == ["stop_loss"] and store.positions()[AAA].qty == 0
    decision = next(r.payload for r in store.audit_records() if r.kind == "risk_decision" and r.payload.get("exit"))
    assert decision["approved"] and decision_checks(decision)[0]["message"].startswith("trading is HALTED, but this exit")


def test_exit_monitor_with_venue_exits_rests_an_oco_pair_that_the_sim_fills(store):
    broker, reports = session(store, path("100", "101", "96", "94", "93"), stop_loss_pct="0.05", take_profit_pct="0.10",
                              use_venue_brackets=True)
    records = exit_records(store)
    assert [(r["reason"], r["action"], r["take_profit"], r["stop_loss"]) for r in records] == [
        ("protect", "venue OCO", "110.00", "95.00")]
    fills = [(f.client_order_id, f.price) for f in store.list_fills()]
    assert fills[1:] == [(records[0]["client_order_id"] + "-sl", D(95))]  # the stop leg, at its stop inside bar 3
    assert store.get_order(records[0]["client_order_id"]).status.value == "canceled"  # its take-profit: one cancels other
    assert_books_agree(store, broker, reports)


def test_exit_monitor_replaces_venue_exits_that_no_longer_match_the_position(store):
    bars = path("100", "101", "102", "101", "102")
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(max_participation=None), start=T0)
    runner = Runner(config=config(exits={"stop_loss_pct": "0.05", "take_profit_pct": "0.10", "use_venue_brackets": True}),
                    store=store, broker=broker, predictor=_NoPredictions(), run_id="sim-exits", strict=True)
    buys = {0: 10, 2: 5}  # 10 first; 5 more once the first pair rests
    for i, tick in enumerate(replay_ticks(bars)):
        broker.advance_to(tick.ts)
        if i in buys:
            order = Order(client_order_id=ClientOrderId(f"al-{i}"), symbol=AAA, side=Side.BUY, qty=D(buys[i]), created_at=tick.ts)
            store.save_order(order)
            runner._apply([broker.submit(order)])
        runner.cycle(tick)
    actions = [(r["action"], r.get("approved")) for r in exit_records(store)]
    assert actions == [("venue OCO", True), ("cancel venue exits", None), ("venue OCO", True)]
    legs = [o for o in store.working_orders() if o.is_exit_leg]
    assert sorted((o.order_type, o.qty) for o in legs) == [(OrderType.LIMIT, D(15)), (OrderType.STOP, D(15))]


def test_runner_with_exits_on_a_full_session_keeps_fills_summing_to_positions(store):
    bars = make_bars()
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(), start=bars[0].ts)
    cfg = config(exits={"stop_loss_pct": "0.01", "take_profit_pct": "0.01", "max_holding_bars": 4})
    reports = Runner(config=cfg, store=store, broker=broker, predictor=FakePredictor(), run_id="sim-monitor",
                     strict=True).run(replay_ticks(bars), before_cycle=lambda tick: broker.advance_to(tick.ts))
    assert_books_agree(store, broker, reports)
    records = exit_records(store)
    assert records and {r["reason"] for r in records} <= {"stop_loss", "take_profit", "time"}
    exit_fills = [f for f in store.list_fills() if f.client_order_id in {r["client_order_id"] for r in records}]
    assert exit_fills and sum(r.submitted for r in reports) > len(records)


def test_runner_with_venue_exits_on_a_full_session_keeps_fills_summing_to_positions(store):
    bars = make_bars()
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(), start=bars[0].ts)
    cfg = config(exits={"stop_loss_pct": "0.01", "take_profit_pct": "0.01", "max_holding_bars": 4, "use_venue_brackets": True})
    reports = Runner(config=cfg, store=store, broker=broker, predictor=FakePredictor(), run_id="sim-venue",
                     strict=True).run(replay_ticks(bars), before_cycle=lambda tick: broker.advance_to(tick.ts))
    assert_books_agree(store, broker, reports)
    actions = {r["action"] for r in exit_records(store) if r.get("approved")}
    assert {"bracket entry", "venue OCO"} <= actions  # entries from flat as brackets, added-to positions re-protected
    assert any(store.get_order(f.client_order_id).is_exit_leg for f in store.list_fills())  # a resting exit did fill
    brackets = store.list_orders()
    assert any(o.is_held_leg and o.status.value == "filled" for o in brackets)


def test_opened_at_is_the_fill_that_took_the_position_from_flat_and_bars_count_market_bars():
    fills = [fill("f1", qty="5", at=T0), fill("f2", side=Side.SELL, qty="5", at=T0 + M15), fill("f3", qty="3", at=T0 + 2 * M15),
             fill("f4", qty="2", at=T0 + 3 * M15)]
    assert opened_at(fills, AAA) == T0 + 2 * M15 and opened_at(fills[:2], AAA) is None
    close = dt.datetime(2024, 3, 5, 20, 45, tzinfo=dt.UTC)  # 15:45 New York: the session's last bar
    next_morning = dt.datetime(2024, 3, 6, 15, 0, tzinfo=dt.UTC)  # 10:00 New York

    class Calendar:
        def is_open(self, ts):
            local = ts.astimezone(dt.timezone(dt.timedelta(hours=-5)))
            return dt.time(9, 30) <= local.time() < dt.time(16)

    assert bars_between(close, next_morning, M15, calendar=Calendar(), stop_at=100) == 3  # 15:45, 09:30 and 09:45
    assert bars_between(close, next_morning, M15, calendar=None, stop_at=100) == 73
    assert bars_between(close, next_morning, M15, calendar=None, stop_at=5) == 5


def test_model_order_in_a_protected_symbol_cancels_the_resting_exits_first_and_they_come_back_sized_anew(store):
    bars = path("100", "101", "102", "101", "102")
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(max_participation=None), start=T0)
    runner = Runner(config=config(exits={"stop_loss_pct": "0.05", "take_profit_pct": "0.10", "use_venue_brackets": True}),
                    store=store, broker=broker, predictor=_NoPredictions(), run_id="sim-exits", strict=True)
    orders = {0: (Side.BUY, 10), 2: (Side.SELL, 4)}  # buy 10; sell 4 once the pair rests (a model decision)
    for i, tick in enumerate(replay_ticks(bars)):
        broker.advance_to(tick.ts)
        runner.cycle(tick)
        if i in orders:  # routed after the cycle's exits, as the runner routes its sized orders
            side, qty = orders[i]
            order = Order(client_order_id=ClientOrderId(f"al-{i}"), symbol=AAA, side=side, qty=D(qty), created_at=tick.ts)
            store.save_order(order)
            runner._apply([runner._send(order, tick.ts)])
    actions = [r["action"] for r in exit_records(store)]
    assert actions == ["bracket entry", "cancel venue exits for a model order", "venue OCO"]
    assert store.get_order("al-2").filled_qty == 4 and store.positions()[AAA].qty == 6
    legs = [o for o in store.working_orders() if o.is_exit_leg]
    assert sorted((o.order_type, o.qty) for o in legs) == [(OrderType.LIMIT, D(6)), (OrderType.STOP, D(6))]


def test_bracket_whose_entry_fills_over_several_bars_keeps_its_legs(store):
    bars = [Bar(symbol=AAA, ts=b.ts, open=b.open, high=b.high, low=b.low, close=b.close, volume=D(50))
            for b in path("100", "101", "102", "101")]
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(max_participation=D("0.1")), start=T0)  # 5 shares a bar
    runner = Runner(config=config(exits={"stop_loss_pct": "0.05", "take_profit_pct": "0.10", "use_venue_brackets": True}),
                    store=store, broker=broker, predictor=_NoPredictions(), run_id="sim-exits", strict=True)
    for i, tick in enumerate(replay_ticks(bars)):
        broker.advance_to(tick.ts)
        runner.cycle(tick)
        if i == 0:
            order = Order(client_order_id=ClientOrderId("al-e"), symbol=AAA, side=Side.BUY, qty=D(10), created_at=tick.ts)
            store.save_order(order)
            runner._apply([runner._send(order, tick.ts)])
    assert [r["action"] for r in exit_records(store)] == ["bracket entry"]  # never cancelled while the entry filled
    assert [f.qty for f in store.list_fills()] == [D(5), D(5)]
    legs = [o for o in store.working_orders() if o.is_exit_leg]
    assert sorted((o.client_order_id, o.qty) for o in legs) == [("al-e-sl", D(10)), ("al-e-tp", D(10))]
