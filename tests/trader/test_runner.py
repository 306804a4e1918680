from __future__ import annotations

import datetime as dt
import gc
from decimal import Decimal as D

import httpx
import pytest
from fake_venue import OPEN, FakeBroker, FakePredictor, config, make_bars

from trader.brokers.bars import InMemoryBars
from trader.brokers.sim import FeeModel, SimBroker, SimConfig
from trader.domain import OrderStatus, TradingState, positions_from_fills
from trader.errors import BrokerUnavailableError
from trader.prediction_client import HttpPredictionClient
from trader.runner import Runner, Tick, replay_ticks
from trader.store import TraderStore


def runner(store, broker, predictor, cfg=None, **kwargs) -> Runner:
    return Runner(config=cfg or config(), store=store, broker=broker, predictor=predictor, run_id="sim-test", strict=True, **kwargs)


def advance(broker):
    return lambda tick: broker.advance_to(tick.ts)


def r_prices(ticks, report):
    return next(t.prices for t in ticks if t.ts == report.ts)


def kinds(store) -> list[str]:
    return [r.kind for r in store.audit_records()]


def sim_broker(bars, *, start=None) -> SimBroker:
    return SimBroker(InMemoryBars(bars), config=SimConfig(slippage_bps=D(2), fees=FeeModel(per_share=D("0.005"))),
                     start=start or bars[0].ts)


def venue_books(broker, prices) -> tuple[D, D]:
    """The venue's cash and its equity marked at the tick's prices."""
    cash = broker.account().cash
    return cash, cash + sum((p.qty * prices[s] for s, p in broker.positions().items()), D(0))


def test_runner_full_sim_session_keeps_the_books_consistent_at_every_step(store):
    bars = make_bars()
    broker, predictor, ticks = sim_broker(bars), FakePredictor(), replay_ticks(bars)
    venue = []
    reports = runner(store, broker, predictor).run(ticks, before_cycle=advance(broker),
                                                   on_report=lambda r: venue.append(venue_books(broker, r_prices(ticks, r))))
    assert len(reports) == len(ticks) == 26
    for report, (venue_cash, venue_equity) in zip(reports, venue, strict=True):
        assert report.problems == () and report.state is TradingState.ACTIVE
        assert report.equity == report.cash + report.positions_value == venue_equity
        assert report.cash == venue_cash
    assert sum(r.submitted for r in reports) > 10 and sum(r.fills for r in reports) > 10
    held = {s: p.qty for s, p in store.positions().items() if p.qty}
    from_fills = {s: p.qty for s, p in positions_from_fills(store.list_fills()).items() if p.qty}
    assert held == from_fills == {s: p.qty for s, p in broker.positions().items()}
    assert store.verify_audit().ok
    # Replays ask the prediction service as of each bar close; the close at 16:00 New York only syncs.
    assert predictor.calls == [t.ts for t in ticks[:-1]]
    assert reports[-1].status.startswith("market closed")


def test_runner_restart_resumes_after_the_last_cycle_without_a_second_order(store_url):
    bars, ticks = make_bars(), replay_ticks(make_bars())
    with TraderStore(store_url) as store:
        first = sim_broker(bars)
        runner(store, first, FakePredictor()).run(ticks[:10], before_cycle=advance(first))
    with TraderStore(store_url) as store:  # a new process: the simulator is rebuilt from the store
        broker = sim_broker(bars, start=ticks[9].ts)
        broker.restore(orders=store.list_orders(), fills=store.list_fills())
        reports = runner(store, broker, FakePredictor()).run(ticks, before_cycle=advance(broker))
        assert [r.ts for r in reports] == [t.ts for t in ticks[10:]] and all(r.problems == () for r in reports)
        submits = [r.payload["client_order_id"] for r in store.audit_records() if r.kind == "order_submit"]
        assert sorted(submits) == sorted(set(submits)) == sorted(o.client_order_id for o in store.list_orders())
        assert {o.client_order_id for o in broker.list_orders(open_only=False)} == set(submits)  # nothing lost at the venue


# -- prediction service down or answering garbage -----------------------------------------------

def test_runner_when_predictions_fail_sends_nothing_and_halts_after_n_failures(store):
    bars = make_bars()
    broker, predictor = FakeBroker(bars=bars), FakePredictor()
    predictor.failures = ["connection refused", "HTTP 503", "predictions.0.score: Field required"]
    r = runner(store, broker, predictor)
    reports = r.run(replay_ticks(bars)[:4], before_cycle=advance(broker))
    assert broker.submitted == []
    assert "prediction failed (1 of 3 before HALTED): prediction service: connection refused" in reports[0].status
    assert reports[1].state is TradingState.ACTIVE and "(2 of 3" in reports[1].status
    assert reports[2].state is TradingState.HALTED and "HALTED after 3 prediction failures" in reports[2].status
    state = store.trading_state()
    assert (state.state, state.changed_by) == (TradingState.HALTED, "runner") and "Field required" in state.reason
    assert len(predictor.calls) == 3  # once HALTED, the service is not even asked
    assert kinds(store).count("prediction_failure") == 3


def test_runner_run_unfreezes_the_heap_it_froze_for_its_loop_even_when_a_cycle_raises(store):
    """Runner.run keeps start-up objects out of the garbage collector's way only while it loops (steady_heap)."""
    bars = make_bars()
    broker, predictor = FakeBroker(bars=bars), FakePredictor()
    frozen: list[int] = []

    def before(tick):
        frozen.append(gc.get_freeze_count())
        if len(frozen) == 2:
            raise RuntimeError("stop")
        broker.advance_to(tick.ts)

    with pytest.raises(RuntimeError, match="stop"):
        runner(store, broker, predictor).run(replay_ticks(bars)[:4], before_cycle=before)
    assert frozen[0] > 0 and gc.get_freeze_count() == 0


def test_runner_a_good_answer_resets_the_failure_count(store):
    bars = make_bars()
    broker, predictor = FakeBroker(bars=bars), FakePredictor()
    r = runner(store, broker, predictor)
    ticks = replay_ticks(bars)
    for tick, fail in zip(ticks[:5], [True, True, False, True, True], strict=True):
        predictor.failures = ["down"] if fail else []
        advance(broker)(tick)
        report = r.cycle(tick)
    assert report.state is TradingState.ACTIVE and "(2 of 3" in report.status


def test_runner_with_the_http_client_treats_garbage_and_errors_as_failures(store):
    answers = iter([httpx.Response(200, text="<html>502 Bad Gateway</html>"), httpx.Response(500),
                    httpx.Response(200, json={"model_version": "v", "predictions": [{"symbol": "AAA"}]})])
    client = HttpPredictionClient("http://127.0.0.1:9", transport=httpx.MockTransport(lambda request: next(answers)))
    bars = make_bars()
    broker = FakeBroker(bars=bars)
    reports = runner(store, broker, client).run(replay_ticks(bars)[:3], before_cycle=advance(broker))
    assert broker.submitted == [] and [r.state for r in reports][-1] is TradingState.HALTED
    assert "body: Invalid JSON" in reports[0].status and "HTTP 500" in reports[1].status
    assert "predictions.0.score: Field required" in store.trading_state().reason


# -- the kill switch -----------------------------------------------------------------------------

def test_runner_when_halted_only_cancels_go_through_and_resume_trades_again(store, store_url):
    bars = make_bars()
    broker, predictor = FakeBroker(bars=bars, auto_fill=False), FakePredictor()
    r = runner(store, broker, predictor)
    ticks = replay_ticks(bars)
    first = r.cycle(ticks[0])
    working = {o.client_order_id for o in store.working_orders()}
    assert first.submitted == len(working) > 0
    with TraderStore(store_url) as other:  # `trader kill` from another process
        other.set_trading_state(TradingState.HALTED, reason="ops kill", changed_by="alice", at=ticks[0].ts)
    advance(broker)(ticks[1])
    halted = r.cycle(ticks[1])
    assert set(broker.cancels) == working and len(broker.submitted) == first.submitted and len(predictor.calls) == 1
    assert halted.state is TradingState.HALTED and "ops kill" in halted.status
    advance(broker)(ticks[2])
    r.cycle(ticks[2])  # the cancel events arrive
    assert store.working_orders() == [] and {o.status for o in store.list_orders()} == {OrderStatus.CANCELED}
    store.set_trading_state(TradingState.ACTIVE, reason="checked", changed_by="bob", at=ticks[2].ts)
    assert r.cycle(ticks[3]).submitted > 0


def test_runner_rereads_the_kill_switch_before_each_submit(store, store_url):
    bars = make_bars()
    broker = FakeBroker(bars=bars)
    other = TraderStore(store_url)

    def kill_after_first(order):
        if not broker.submitted:
            other.set_trading_state(TradingState.HALTED, reason="mid-cycle kill", changed_by="ops", at=OPEN)

    broker.on_submit = kill_after_first
    report = runner(store, broker, FakePredictor()).cycle(replay_ticks(bars)[0])
    assert len(broker.submitted) == 1 and report.submitted == 1 and report.denied >= 1
    blocked = [o for o in store.list_orders() if o.status is OrderStatus.REJECTED]
    assert blocked and all(o.status_reason == "not sent: trading state changed to halted mid-cycle" for o in blocked)
    other.close()


def test_runner_flattens_and_halts_at_the_drawdown_tier(store):
    bars = make_bars()
    broker, predictor = FakeBroker(bars=bars), FakePredictor()
    r = runner(store, broker, predictor)
    ticks = replay_ticks(bars)
    for tick in ticks[:3]:
        advance(broker)(tick)
        r.cycle(tick)
    assert broker.held_nonzero()
    store.record_equity(ts=ticks[3].ts - dt.timedelta(seconds=1), equity=D(150_000), cash=D(150_000))  # an old peak: -33 %
    advance(broker)(ticks[3])
    report = r.cycle(ticks[3])
    assert report.state is TradingState.HALTED and "flatten-and-halt" in report.status and broker.closed_all == 1
    assert store.trading_state().reason.startswith("drawdown")
    advance(broker)(ticks[4])
    r.cycle(ticks[4])  # the closing orders fill at the next open
    assert broker.held_nonzero() == {} and all(p.qty == 0 for p in store.positions().values())


# -- routing ------------------------------------------------------------------------------------

def test_runner_lost_submit_answer_is_looked_up_not_resent(store):
    bars = make_bars()
    broker = FakeBroker(bars=bars)
    real_submit = broker.submit

    def accept_then_lose_the_answer(order):
        real_submit(order)
        raise BrokerUnavailableError("timeout")

    broker.submit = accept_then_lose_the_answer
    report = runner(store, broker, FakePredictor()).cycle(replay_ticks(bars)[0])
    assert report.submitted == len(broker.submitted) > 0
    assert all(o.status is OrderStatus.ACCEPTED for o in store.list_orders())


def test_runner_order_of_unknown_fate_stays_working_and_blocks_a_second_order(store):
    bars = make_bars()
    broker = FakeBroker(bars=bars, auto_fill=False)
    broker.on_submit = lambda order: (_ for _ in ()).throw(BrokerUnavailableError("timeout"))
    r = runner(store, broker, FakePredictor())
    ticks = replay_ticks(bars)
    r.cycle(ticks[0])
    unknown = store.working_orders()
    assert unknown and all(o.status is OrderStatus.NEW for o in unknown) and "order_unknown" in kinds(store)
    broker.on_submit = None
    r.cycle(ticks[1])
    sides = [(o.symbol, o.side) for o in store.working_orders()]
    assert len(sides) == len(set(sides))  # never two live orders for one symbol and side


def test_runner_a_tick_already_run_is_refused(store):
    bars = make_bars(n=2)
    r = runner(store, FakeBroker(bars=bars), FakePredictor())
    tick = replay_ticks(bars)[0]
    r.cycle(tick)
    with pytest.raises(ValueError, match="already run"):
        r.cycle(Tick(ts=tick.ts, prices=tick.prices, as_of=tick.as_of))


def test_runner_tick_without_a_price_for_a_held_symbol_sends_nothing(store):
    bars = make_bars()
    broker = FakeBroker(bars=bars)
    ticks = replay_ticks(bars)
    runner(store, broker, FakePredictor()).run(ticks[:2], before_cycle=advance(broker))
    sent, held = len(broker.submitted), next(iter(broker.held_nonzero()))
    restarted = runner(store, broker, FakePredictor())  # a fresh process knows no prices yet
    restarted.start()
    report = restarted.cycle(Tick(ts=ticks[2].ts, prices={s: p for s, p in ticks[2].prices.items() if s != held}))
    assert report.status.startswith("cannot value the book") and held in report.status and len(broker.submitted) == sent


def test_runner_when_halted_keeps_orders_that_only_reduce_the_book_working(store):
    bars = make_bars()
    broker = FakeBroker(bars=bars)
    r = runner(store, broker, FakePredictor())
    ticks = replay_ticks(bars)
    for tick in ticks[:4]:
        advance(broker)(tick)
        r.cycle(tick)
    broker.auto_fill = False
    advance(broker)(ticks[4])
    r.cycle(ticks[4])
    held = {s: p.qty for s, p in store.positions().items()}
    working = store.working_orders()
    reducing = {o.client_order_id for o in working if held.get(o.symbol, 0) * o.side.sign < 0 and o.qty <= abs(held[o.symbol])}
    assert reducing and len(reducing) < len(working)  # this deterministic day has both kinds
    store.set_trading_state(TradingState.HALTED, reason="ops kill", changed_by="ops", at=ticks[4].ts)
    advance(broker)(ticks[5])
    r.cycle(ticks[5])
    assert set(broker.cancels) == {o.client_order_id for o in working} - reducing


def test_runner_run_checkpoints_the_log_and_collects_garbage_between_cycles_not_inside_them(store, monkeypatch):
    """Runner.run calls idle() after every cycle: the WAL checkpoint and a due full collection happen there."""
    bars = make_bars()
    broker, predictor = FakeBroker(bars=bars), FakePredictor()
    r = runner(store, broker, predictor)
    events: list[str] = []
    monkeypatch.setattr(r, "cycle", lambda tick, cycle=r.cycle: (events.append("cycle"), cycle(tick))[1])
    assert store.wal is not None  # a SQLite file
    monkeypatch.setattr(store.wal, "checkpoint_if_grown", lambda: events.append("checkpoint") or False)
    monkeypatch.setattr("trader.runner.collect_if_due", lambda: events.append("gc") or False)
    r.run(replay_ticks(bars)[:3], before_cycle=advance(broker))
    assert events == ["cycle", "checkpoint", "gc"] * 3


def test_collect_if_due_collects_only_when_the_oldest_generation_is_nearly_due():
    from trader.cycle import collect_if_due

    threshold = gc.get_threshold()
    try:
        gc.collect()
        gc.set_threshold(threshold[0], threshold[1], 1_000)
        assert not collect_if_due()  # count 0 of 1,000
        gc.set_threshold(threshold[0], threshold[1], 1)  # the next young collection would make it due
        assert collect_if_due() and gc.get_count()[2] == 0
    finally:
        gc.set_threshold(*threshold)
