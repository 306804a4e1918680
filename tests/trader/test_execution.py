"""Execution algorithms: parents above the participation threshold go out as TWAP/VWAP child slices, one per cycle."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal as D

import pytest
from fake_venue import OPEN, STEP, SYMBOLS, FakeBroker, config, make_bars, write_marts_bars
from trader_builders import NOW, SECTORS, context, order, prediction, submit

from trader.brokers.bars import Bar, InMemoryBars, WarehouseBars
from trader.brokers.sim import SimBroker, SimConfig
from trader.config import ExecutionConfig, RiskLimits, TraderConfig, load_config
from trader.domain import SubmitOrder, TradingState, positions_from_fills
from trader.errors import TraderConfigError
from trader.execution import ExecutionDesk, ParentStatus, parent_of, twap_schedule, volume_profiles
from trader.execution.algos import allocate
from trader.history import MarketHistory
from trader.market_hours import MarketCalendar
from trader.predictions import Prediction, PredictionBatch
from trader.risk import RiskEngine
from trader.runner import Runner, replay_ticks
from trader.store import TraderStore
from trader.tca import session_tca

#: Fixed scores: AAA and BBB long, EEE and FFF short (k=2), every cycle the same targets.
SCORES = {"AAA": 0.9, "BBB": 0.5, "CCC": 0.1, "DDD": -0.1, "EEE": -0.5, "FFF": -0.9}


class ConstantPredictor:
    """The same score per symbol at every ``as_of`` (features as of the tick): targets stay put, schedules run out."""

    def __init__(self, scores: dict[str, float] | None = None):
        self.scores = dict(scores or SCORES)

    def predict(self, symbols, *, as_of=None) -> PredictionBatch:
        ts = as_of or OPEN
        return PredictionBatch("ens:test", tuple(
            Prediction(symbol=s, score=self.scores[s], direction="long" if self.scores[s] > 0 else "short", confidence=0.6,
                       feature_ts=ts, stale=False, model_version="ens:test") for s in symbols))


def thin_aaa(bars: list[Bar], volume: int = 1_000) -> list[Bar]:
    """AAA trades ``volume`` a bar (the others 100,000): only its orders are a large share of the expected volume."""
    return [dataclasses.replace(b, volume=D(volume)) if b.symbol == "AAA" else b for b in bars]


def desk_runner(store, broker, bars, *, predictor=None, **execution) -> Runner:
    cfg = config(execution={"algo": "twap", "participation_threshold": "0.01", **execution})
    market = MarketHistory(InMemoryBars(bars), lookback=dt.timedelta(days=5))
    return Runner(config=cfg, store=store, broker=broker, predictor=predictor or ConstantPredictor(), run_id="sim-exec",
                  strict=True, market=market)


def step(runner, broker, ticks):
    for tick in ticks:
        broker.advance_to(tick.ts)
        runner.cycle(tick)


def submits(store) -> list[dict]:
    return [r.payload for r in store.audit_records() if r.kind == "order_submit"]


def parents(store) -> dict[str, dict]:
    return {r["client_order_id"]: r for r in store.parent_orders()}


# -- slicing ------------------------------------------------------------------------------------

def test_twap_splits_a_large_order_into_equal_slices_over_four_bars_and_small_orders_go_whole(store):
    bars = thin_aaa(make_bars())
    broker, ticks = FakeBroker(bars=bars), replay_ticks(bars)
    step(desk_runner(store, broker, bars), broker, ticks[:5])
    ((pid, parent),) = parents(store).items()
    assert parent["symbol"] == "AAA" and parent["status"] == ParentStatus.DONE
    children = [o for o in broker.submitted if o.symbol == "AAA"]
    assert [o.client_order_id for o in children] == [f"{pid}-s{i}" for i in range(4)]
    assert [o.created_at for o in children] == [t.ts for t in ticks[:4]]  # one slice per bar
    assert len({o.qty for o in children}) == 1 and sum(o.qty for o in children) == parent["qty"]
    whole = [o for o in broker.submitted if o.symbol != "AAA"]
    assert {o.symbol for o in whole} == {"BBB", "EEE", "FFF"} and all(parent_of(o.client_order_id) is None for o in whole)
    assert all(o.created_at == ticks[0].ts for o in whole)  # under the threshold: sent at once, whole


def test_execution_algo_none_sends_every_order_whole(store):
    bars = thin_aaa(make_bars())
    broker, ticks = FakeBroker(bars=bars), replay_ticks(bars)
    step(desk_runner(store, broker, bars, algo="none"), broker, ticks[:2])
    assert store.parent_orders() == [] and {o.symbol for o in broker.submitted} == {"AAA", "BBB", "EEE", "FFF"}
    assert all(parent_of(o.client_order_id) is None and o.created_at == ticks[0].ts for o in broker.submitted)


def test_restart_mid_schedule_resumes_without_sending_a_slice_twice(store_url):
    bars = thin_aaa(make_bars())
    ticks = replay_ticks(bars)
    sim = SimConfig(max_participation=None)
    with TraderStore(store_url) as store:
        first = SimBroker(InMemoryBars(bars), config=sim, start=bars[0].ts)
        desk_runner(store, first, bars).run(ticks[:2], before_cycle=lambda t: first.advance_to(t.ts))
        (pid,) = parents(store)
        assert parents(store)[pid]["status"] == ParentStatus.ACTIVE
    with TraderStore(store_url) as store:  # a new process: the schedule is read back from the store
        broker = SimBroker(InMemoryBars(bars), config=sim, start=ticks[1].ts)
        broker.restore(orders=store.list_orders(), fills=store.list_fills())
        reports = desk_runner(store, broker, bars).run(ticks[:6], before_cycle=lambda t: broker.advance_to(t.ts))
        assert [r.ts for r in reports] == [t.ts for t in ticks[2:6]] and all(r.problems == () for r in reports)
        ids = [p["client_order_id"] for p in submits(store)]
        assert len(ids) == len(set(ids))
        assert sorted(i for i in ids if parent_of(i) == pid) == [f"{pid}-s{i}" for i in range(4)]
        assert parents(store)[pid]["status"] == ParentStatus.DONE


def test_halted_kill_switch_stops_the_remaining_slices(store):
    bars = thin_aaa(make_bars())
    broker, ticks = FakeBroker(bars=bars), replay_ticks(bars)
    r = desk_runner(store, broker, bars)
    step(r, broker, ticks[:2])
    (pid,) = parents(store)
    wall = dt.datetime(2026, 12, 7, 9, tzinfo=dt.UTC)  # `trader kill` on the wall clock, long after the replayed session
    store.set_trading_state(TradingState.HALTED, reason="ops kill", changed_by="alice", at=wall)
    step(r, broker, ticks[2:4])
    assert parents(store)[pid]["status"] == ParentStatus.STOPPED and "halted" in parents(store)[pid]["status_reason"].lower()
    store.set_trading_state(TradingState.ACTIVE, reason="checked", changed_by="bob", at=wall + dt.timedelta(minutes=5))
    step(r, broker, ticks[4:6])
    sent = {o.client_order_id for o in broker.submitted}
    assert {f"{pid}-s0", f"{pid}-s1"} <= sent and not {f"{pid}-s2", f"{pid}-s3"} & sent
    # After the resume the book is sized afresh: a new parent for what the stopped one left undone, and it runs on.
    (fresh,) = [p for p in store.parent_orders() if p["client_order_id"] != pid]
    assert (fresh["symbol"], fresh["created_at"], fresh["status"]) == ("AAA", ticks[4].ts, ParentStatus.ACTIVE)
    assert f"{fresh['client_order_id']}-s1" in sent


def test_a_new_sizing_for_the_symbol_supersedes_the_remaining_slices(store):
    bars = thin_aaa(make_bars())
    broker, ticks = FakeBroker(bars=bars), replay_ticks(bars)
    predictor = ConstantPredictor()
    r = desk_runner(store, broker, bars, predictor=predictor)
    step(r, broker, ticks[:2])
    (pid,) = parents(store)
    predictor.scores["AAA"] = -0.95  # AAA flips to the short side: the rest of the buy must not go out
    step(r, broker, ticks[2:3])
    old = parents(store)[pid]
    assert old["status"] == ParentStatus.SUPERSEDED and "a new decision" in old["status_reason"]
    assert not {f"{pid}-s2", f"{pid}-s3"} & {o.client_order_id for o in broker.submitted}
    (new,) = [p for p in store.parent_orders() if p["client_order_id"] != pid]
    bought = sum(o.qty for o in broker.submitted if parent_of(o.client_order_id) == pid)
    assert new["side"] == "sell" and new["qty"] > bought  # the new parent sells what was bought and goes short


# -- VWAP from the warehouse --------------------------------------------------------------------

def profile_bars() -> list[Bar]:
    """Six sessions before NOW's (2024-03-05) whose 10:00–10:45 New York bars trade 400, 300, 200, 100; later bars 1000,
    and a bar of the next session (not closed by NOW) that must change nothing."""
    days = [dt.date(2024, 2, d) for d in (26, 27, 28, 29)] + [dt.date(2024, 3, 1), dt.date(2024, 3, 4), dt.date(2024, 3, 6)]
    out = []
    for day in days:
        start = dt.datetime.combine(day, dt.time(14, 30), tzinfo=dt.UTC)
        for k in range(8):
            volume = {2: 400, 3: 300, 4: 200, 5: 100}.get(k, 1000) if day != dt.date(2024, 3, 6) else 10**9
            out.append(Bar(symbol="AAA", ts=start + k * STEP, open=D(100), high=D(100), low=D(100), close=D(100), volume=D(volume)))
    return out


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    write_marts_bars(path, profile_bars())
    return path


def vwap_desk(store, warehouse, **overrides) -> ExecutionDesk:
    cfg = ExecutionConfig(algo="vwap", participation_threshold=D("0.01"), **overrides)
    return ExecutionDesk(cfg, store=store, run_id="r1", feed=WarehouseBars(warehouse))


def test_vwap_follows_the_warehouse_volume_profile(store, warehouse):
    desk = vwap_desk(store, warehouse)
    engine = RiskEngine(RiskLimits(), sectors=SECTORS)
    (decision,) = desk.check_all([submit("AAA", qty=90, reference_price="100")], context(), engine)
    ((pid, parent),) = parents(store).items()
    assert decision.approved and decision.command.order.client_order_id == f"{pid}-s0"
    record = next(r.payload for r in store.audit_records() if r.kind == "parent_order")
    assert [s["qty"] for s in record["schedule"]] == ["36", "27", "18", "9"]  # 400 : 300 : 200 : 100 over 10:00–10:45
    assert [s["due"] for s in record["schedule"]] == [(NOW + k * STEP).isoformat() for k in range(4)]
    assert {k: D(v) for k, v in record["profile"].items()} == {"10:00": 400, "10:15": 300, "10:30": 200, "10:45": 100}
    assert D(record["expected_volume"]) == 1000 and record["note"] == "vwap over a 6-session volume profile"
    assert record["arrival"] == "100" and record["decision"]["approved"] and parent["algo"] == "vwap"


def test_vwap_with_a_short_profile_falls_back_to_twap_and_says_why(store, warehouse):
    desk = vwap_desk(store, warehouse, min_profile_sessions=10)
    desk.check_all([submit("AAA", qty=90, reference_price="100")], context(), RiskEngine(RiskLimits(), sectors=SECTORS))
    record = next(r.payload for r in store.audit_records() if r.kind == "parent_order")
    assert [s["qty"] for s in record["schedule"]] == ["23", "23", "22", "22"]
    assert record["note"] == "vwap fell back to twap: 6 complete sessions of volume history, 10 needed"


def test_volume_profile_uses_only_bars_closed_before_the_decision():
    bars = profile_bars()
    profile = volume_profiles(bars, asof=NOW)["AAA"]
    assert profile.sessions == 6 and profile.by_slot[dt.time(10)] == 400
    today = Bar(symbol="AAA", ts=NOW, open=D(1), high=D(1), low=D(1), close=D(1), volume=D(10**9))  # still open at NOW
    assert volume_profiles([*bars, today], asof=NOW)["AAA"] == profile


def test_an_order_below_the_threshold_or_denied_whole_is_not_sliced(store, warehouse):
    engine = RiskEngine(RiskLimits(), sectors=SECTORS)
    (small,) = vwap_desk(store, warehouse).check_all([submit("AAA", qty=5, reference_price="100")], context(), engine)
    assert small.approved and small.command.order.client_order_id == "al-AAA-buy-5"  # 5 of 1000 expected: whole
    (big,) = vwap_desk(store, warehouse).check_all([submit("AAA", qty=500, reference_price="100")], context(), engine)
    assert not big.approved and big.reason.value == "POSITION_EXCEEDS_MAX_PCT_EQUITY"  # whole, denied whole
    assert store.parent_orders() == []


def test_a_child_the_risk_engine_denies_stops_its_parent(store, warehouse):
    desk = vwap_desk(store, warehouse)
    (first,) = desk.check_all([submit("AAA", qty=90, reference_price="100")], context(), RiskEngine(RiskLimits(), sectors=SECTORS))
    store.save_order(first.command.order)  # what the runner's routing does with an approved child
    (pid,) = parents(store)
    later = NOW + STEP
    restricted = RiskEngine(RiskLimits(restricted_symbols=frozenset({"AAA"})), sectors=SECTORS)
    (second,) = desk.check_all([], context(now=later), restricted, predictions=[prediction("AAA", feature_ts=later)])
    assert second.command.order.client_order_id == f"{pid}-s1" and second.reason.value == "SYMBOL_RESTRICTED"
    stopped = parents(store)[pid]
    assert stopped["status"] == ParentStatus.STOPPED and f"{pid}-s1 denied: SYMBOL_RESTRICTED" in stopped["status_reason"]
    assert desk.check_all([], context(now=later + STEP), RiskEngine(RiskLimits(), sectors=SECTORS)) == []  # nothing more


def test_a_schedule_never_runs_past_the_session_close(store, warehouse):
    late = dt.datetime(2024, 3, 5, 20, 30, tzinfo=dt.UTC)  # 15:30 New York: two bars left
    desk = ExecutionDesk(ExecutionConfig(algo="twap"), store=store, run_id="r1", feed=WarehouseBars(warehouse), calendar=MarketCalendar())
    fresh = SubmitOrder(order=order("AAA", qty=90, at=late), prediction=prediction("AAA", feature_ts=late), reference_price=D(100))
    desk.check_all([fresh], context(now=late), RiskEngine(RiskLimits(), sectors=SECTORS))
    record = next(r.payload for r in store.audit_records() if r.kind == "parent_order")
    assert [(s["due"], s["qty"]) for s in record["schedule"]] == [(late.isoformat(), "45"), ((late + STEP).isoformat(), "45")]


def test_without_volume_history_an_order_is_sliced_and_the_record_says_why(store, tmp_path):
    desk = ExecutionDesk(ExecutionConfig(algo="twap"), store=store, run_id="r1", feed=WarehouseBars(tmp_path / "none.duckdb"))
    (decision,) = desk.check_all([submit("AAA", qty=8, reference_price="100")], context(), RiskEngine(RiskLimits(), sectors=SECTORS))
    record = next(r.payload for r in store.audit_records() if r.kind == "parent_order")
    assert record["expected_volume"] is None and record["note"] == "twap over 4 bars; no volume history: sliced by default"
    assert [s["qty"] for s in record["schedule"]] == ["2", "2", "2", "2"] and decision.command.order.qty == 2


# -- audit and TCA --------------------------------------------------------------------------------

def sim_session(store, ticks_run: int = 6):
    bars = thin_aaa(make_bars(), volume=2_000)
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(slippage_bps=D(2)), start=bars[0].ts)
    reports = desk_runner(store, broker, bars).run(replay_ticks(bars)[:ticks_run], before_cycle=lambda t: broker.advance_to(t.ts))
    return broker, reports, bars


def test_sim_run_with_twap_fills_the_parent_quantity_and_fills_sum_to_positions(store):
    broker, reports, _ = sim_session(store)
    assert all(r.problems == () and r.state is TradingState.ACTIVE for r in reports)  # strict: venue == books each cycle
    ((pid, parent),) = parents(store).items()
    filled = sum(f.qty for f in store.list_fills() if parent_of(f.client_order_id) == pid)
    assert parent["status"] == ParentStatus.DONE and filled == parent["qty"]
    held = {s: p.qty for s, p in store.positions().items() if p.qty}
    assert held == {s: p.qty for s, p in positions_from_fills(store.list_fills()).items() if p.qty}
    assert held == {s: p.qty for s, p in broker.positions().items()}
    assert held["AAA"] == parent["qty"]


def test_audit_trail_names_the_parent_of_every_child(store):
    sim_session(store)
    assert store.verify_audit().ok
    (pid,) = parents(store)
    records = list(store.audit_records())
    (head,) = [r.payload for r in records if r.kind == "parent_order"]
    assert head["algo"] == "twap" and [s["client_order_id"] for s in head["schedule"]] == [f"{pid}-s{i}" for i in range(4)]
    children = [p for p in submits(store) if p["client_order_id"].startswith(pid)]
    assert [(p["parent_id"], p["slice"]) for p in children] == [(pid, i) for i in range(4)]
    assert all("parent_id" not in p for p in submits(store) if not p["client_order_id"].startswith(pid))
    (end,) = [r.payload for r in records if r.kind == "parent_order_end"]
    assert (end["client_order_id"], end["status"], end["unsent"]) == (pid, "done", [])
    assert [r.kind for r in records].index("parent_order") < [r.kind for r in records].index("order_submit")


def test_tca_rolls_the_children_up_to_the_parent_at_its_arrival_price(store):
    _, _, bars = sim_session(store)
    ((pid, parent),) = parents(store).items()
    rows = {r.client_order_id: r for r in session_tca(store, feed=InMemoryBars(bars))}
    assert pid in rows and not any(parent_of(cid) for cid in rows)
    row = rows[pid]
    fills = [f for f in store.list_fills() if parent_of(f.client_order_id) == pid]
    avg = sum(f.qty * f.price for f in fills) / sum(f.qty for f in fills)
    assert (row.children, row.qty, row.filled, row.arrival) == (4, parent["qty"], parent["qty"], parent["arrival"])
    assert row.avg_price == avg and row.slippage_bps == ((avg - row.arrival) / row.arrival * 10_000).quantize(D("0.01"))
    assert row.decided_at == parent["created_at"]
    # The benchmark: the market's VWAP over the four bars the schedule spanned (the bars the children filled in).
    spanned = [b for b in bars if b.symbol == "AAA" and parent["created_at"] <= b.ts < parent["created_at"] + 4 * STEP]
    vwap = sum((b.high + b.low + b.close) / 3 * b.volume for b in spanned) / sum(b.volume for b in spanned)
    assert len(spanned) == 4 and row.market_vwap == vwap
    assert row.vwap_slippage_bps == ((avg - vwap) / vwap * 10_000).quantize(D("0.01"))
    without = next(r for r in session_tca(store) if r.client_order_id == pid)
    assert without.market_vwap is None and without.slippage_bps == row.slippage_bps  # no bars: no benchmark, the rest unchanged


# -- config ---------------------------------------------------------------------------------------

def test_execution_config_refuses_unknown_keys_and_more_slices_than_bars(tmp_path):
    base = {"universe": {"symbols": list(SYMBOLS)}}
    with pytest.raises(ValueError, match="slices"):
        TraderConfig.model_validate({**base, "execution": {"algo": "twap", "horizon_bars": 4, "slices": 5}})
    path = tmp_path / "trader.yaml"
    path.write_text("universe: {symbols: [AAA]}\nexecution: {algo: twap, horizon: 4}\n")
    with pytest.raises(TraderConfigError, match=r"execution\.horizon: Extra inputs are not permitted"):
        load_config(path)
    path.write_text("universe: {symbols: [AAA]}\nexecution: {algo: iceberg}\n")
    with pytest.raises(TraderConfigError, match=r"execution\.algo"):
        load_config(path)
    assert TraderConfig.model_validate(base).execution.algo == "none"


def test_the_example_config_documents_the_execution_section():
    from pathlib import Path

    import trader

    cfg = load_config(Path(trader.__file__).parent / "trader.example.yaml")
    assert cfg.execution == ExecutionConfig()


def test_allocate_splits_exactly_and_twap_spreads_fewer_slices_over_the_horizon():
    assert sum(allocate(D("10.003"), [D(1)] * 7)) == D("10.003")
    parts = twap_schedule(D(90), now=NOW, horizon=4, n=2)
    assert [(s.due, s.qty) for s in parts] == [(NOW, D(45)), (NOW + 2 * STEP, D(45))]


def test_cli_sim_run_with_twap_then_tca_and_explain_show_the_parents(home):
    import json

    from fake_venue import PredictionServer
    from test_trader_cli import cli, write_config

    with PredictionServer() as server:
        cfg = write_config(home, server.url, execution={"algo": "twap", "participation_threshold": 0.00001})
        result = cli("run", "--mode", "sim", "--config", cfg)
    assert result.exit_code == 0, result.output
    report = json.loads(cli("tca", "--json", "--config", cfg).output)
    rolled = [r for r in report["orders"] if r["children"]]
    assert rolled and not any(parent_of(r["client_order_id"]) for r in report["orders"])
    assert all(r["market_vwap"] is not None for r in rolled if D(r["filled"]) > 0)  # the warehouse's bars
    pid = rolled[0]["client_order_id"]
    explain = cli("explain", pid, "--config", cfg)
    assert explain.exit_code == 0 and "parent order by run" in explain.output, explain.output
    assert "  schedule    s0 " in explain.output and "whole order APPROVED" in explain.output
    child = cli("explain", f"{pid}-s0", "--config", cfg).output  # the parent's schedule names the child: it shows too
    assert f"order submit, parent_id {pid}, venue sim" in child and "parent order by run" in child


def test_the_examples_in_the_execution_and_tca_docstrings_run():
    import doctest
    import importlib

    for name in ("trader.execution.algos", "trader.execution.parents", "trader.execution.desk", "trader.tca"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.failed == 0 and result.attempted > 0, name


def test_tca_measures_an_order_named_like_a_child_but_without_a_parent_record_on_its_own(store):
    lone = order("AAA", qty=10, cid="al-" + "b" * 32 + "-s0")
    store.save_order(lone)
    store.append_audit("risk_decision", {"client_order_id": lone.client_order_id, "approved": True, "reference_price": "100"}, ts=NOW)
    (row,) = session_tca(store)
    assert (row.client_order_id, row.children, row.arrival) == (lone.client_order_id, 0, D(100))
