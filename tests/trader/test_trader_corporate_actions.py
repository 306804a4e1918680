"""The trader's book through a 2-for-1 split and a cash dividend: positions, cash, invariants, idempotence, restart."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal as D

import duckdb
import pytest
from fake_venue import OPEN, FakePredictor, config, make_bars

from trader.brokers.bars import Bar, InMemoryBars
from trader.brokers.sim import FeeModel, SimBroker, SimConfig
from trader.corporate_actions import (
    CorporateAction,
    CorporateActionBook,
    InMemoryActions,
    WarehouseActions,
    applied_actions,
    apply_action,
    split_shares,
)
from trader.domain import Fill, Position, TradingState, positions_from_fills
from trader.errors import DomainError
from trader.runner import Runner, Tick, replay_ticks
from trader.store import TraderStore

DAY2 = dt.date(2024, 3, 6)
AT = dt.datetime(2024, 3, 6, 14, 45, tzinfo=dt.UTC)


def _fill(qty: str, price: str, ts: dt.datetime = OPEN) -> Fill:
    return Fill(fill_id=f"f-{qty}-{price}", order_id="o1", client_order_id="c1", symbol="AAA", side="buy", qty=D(qty),
                price=D(price), fee=D(0), ts=ts, venue="SIM", account="A1")


def test_corporate_action_when_the_ratio_is_not_positive_names_the_action_and_field():
    with pytest.raises(DomainError, match=r"corporate action AAA 2024-03-06: ratio: 0 must be > 0 and not 1"):
        CorporateAction(symbol="AAA", ex_date=DAY2, kind="split", ratio=D(0))
    with pytest.raises(DomainError, match=r"amount: missing for a cash_dividend"):
        CorporateAction(symbol="AAA", ex_date=DAY2, kind="cash_dividend")


def test_apply_action_when_a_2_for_1_split_doubles_qty_halves_avg_cost_and_keeps_market_value(store):
    store.record_fill(_fill("100", "50.00"))
    split = CorporateAction(symbol="AAA", ex_date=DAY2, kind="split", ratio=D(2))
    done = apply_action(store, split, at=AT)
    position = store.positions()["AAA"]
    assert (position.qty, position.avg_cost) == (D(200), D(25))
    assert position.market_value(D("52.00") / 2) == D(100) * D("52.00")  # the same value at the post-split price
    assert (done.qty_before, done.qty_after, done.share_delta, done.cash) == (D(100), D(200), D(100), D(0))
    # No fill is invented: fills plus the split's shares sum to the position.
    fills = positions_from_fills(store.list_fills())["AAA"].qty
    assert fills + split_shares(store)["AAA"] == position.qty
    assert [r.kind for r in store.audit_records()][-1] == "corporate_action" and store.verify_audit().ok


def test_apply_action_when_applied_twice_changes_nothing_the_second_time(store):
    store.record_fill(_fill("100", "50.00"))
    book = CorporateActionBook(InMemoryActions([CorporateAction(symbol="AAA", ex_date=DAY2, kind="split", ratio=D(2)),
                                                CorporateAction(symbol="AAA", ex_date=DAY2, kind="cash_dividend", amount=D("0.25"))]))
    before_ex = book.apply_due(store, now=dt.datetime(2024, 3, 5, 20, tzinfo=dt.UTC))
    first = book.apply_due(store, now=AT)
    second = book.apply_due(store, now=AT + dt.timedelta(hours=1))
    assert before_ex == [] and second == []
    # The dividend is per pre-split share: applied before the split on the same ex-date.
    assert [(a.action.kind, a.qty_before, a.cash) for a in first] == [("cash_dividend", D(100), D("25.00")), ("split", D(100), D(0))]
    assert store.positions()["AAA"].qty == D(200)
    assert [r.kind for r in store.audit_records()].count("corporate_action") == 2


def test_duckdb_actions_when_the_warehouse_has_no_corporate_actions_mart_reads_none(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create schema marts")
    assert WarehouseActions(path).actions(through=DAY2) == []
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table marts.corporate_actions (symbol varchar, ex_date date, kind varchar, "
                     "ratio decimal(24, 12), amount decimal(24, 12))")
        conn.execute("insert into marts.corporate_actions values ('AAA', '2024-03-06', 'split', 2, null), "
                     "('BBB', '2024-03-07', 'cash_dividend', null, 0.24)")
    assert WarehouseActions(path).actions(through=DAY2) == [CorporateAction(symbol="AAA", ex_date=DAY2, kind="split", ratio=D(2))]
    assert WarehouseActions(path).actions(through=DAY2)[0].ratio.as_tuple().exponent == 0  # 2, not 2.000000000000


# --- a strict sim session across an ex-date ------------------------------------


def _sim(bars: list[Bar], actions: list[CorporateAction]) -> SimBroker:
    return SimBroker(InMemoryBars(bars), config=SimConfig(slippage_bps=D(2), fees=FeeModel(per_share=D("0.005"))),
                     start=bars[0].ts, actions=actions)


def _runner(store: TraderStore, broker: SimBroker, actions: list[CorporateAction]) -> Runner:
    return Runner(config=config(), store=store, broker=broker, predictor=FakePredictor(), run_id="sim-test", strict=True,
                  corporate_actions=CorporateActionBook(InMemoryActions(actions)))


def _day2(split_symbol: str) -> list[Bar]:
    """The next session's bars, as traded: the split symbol at half the price, twice the volume."""
    bars = make_bars(start=OPEN + dt.timedelta(days=1))
    return [dataclasses.replace(b, open=b.open / 2, high=b.high / 2, low=b.low / 2, close=b.close / 2, volume=b.volume * 2)
            if b.symbol == split_symbol else b for b in bars]


def _held_after_day1(tmp_path) -> dict[str, D]:
    day1 = make_bars()
    with TraderStore(f"sqlite:///{tmp_path / 'probe.db'}") as probe:
        broker = _sim(day1, [])
        _runner(probe, broker, []).run(replay_ticks(day1), before_cycle=lambda t: broker.advance_to(t.ts))
        return {s: p.qty for s, p in probe.positions().items() if p.qty}


def test_runner_when_a_split_and_a_dividend_fall_in_a_strict_sim_session_keeps_books_and_venue_equal(store, tmp_path):
    held = _held_after_day1(tmp_path)
    longs = sorted(s for s, q in held.items() if q > 0)  # the test config's book is long-only
    assert len(longs) >= 2, held
    split_symbol, dividend_symbol = longs[0], longs[1]
    actions = [CorporateAction(symbol=split_symbol, ex_date=DAY2, kind="split", ratio=D(2)),
               CorporateAction(symbol=dividend_symbol, ex_date=DAY2, kind="cash_dividend", amount=D("0.50"))]
    day1, day2 = make_bars(), _day2(split_symbol)
    ticks2 = replay_ticks(day2)
    # The split symbol's first bar of the ex-date is late: the first tick still knows only its pre-split price.
    ticks2[0] = Tick(ts=ticks2[0].ts, prices={s: p for s, p in ticks2[0].prices.items() if s != split_symbol}, as_of=ticks2[0].as_of)
    broker = _sim(day1 + day2, actions)
    seen: list[tuple] = []
    runner = _runner(store, broker, actions)
    reports = runner.run(replay_ticks(day1) + ticks2, before_cycle=lambda t: broker.advance_to(t.ts),
                         on_report=lambda r: seen.append((r, store.positions())))

    assert len(reports) == 52 and all(r.problems == () and r.state is TradingState.ACTIVE for r in reports)
    split, dividend = sorted(applied_actions(store), key=lambda a: a.action.kind, reverse=True)
    assert (split.qty_before, split.qty_after) == (held[split_symbol], 2 * held[split_symbol])
    assert split.avg_cost_after == split.avg_cost_before / 2 and split.applied_at == ticks2[0].ts
    assert dividend.cash == held[dividend_symbol] * D("0.50") > 0
    # At the first ex-date cycle the split symbol is valued at its restated last price, not at the pre-split one.
    report, positions = seen[26]
    last_close = next(b.close for b in reversed(day1) if b.symbol == split_symbol)
    prices = {**{b.symbol: b.close for b in day1}, **ticks2[0].prices, split_symbol: last_close / 2}
    assert report.positions_value == sum(p.qty * prices[s] for s, p in positions.items() if p.qty)
    assert seen[25][0].equity - report.equity < D("0.01") * seen[25][0].equity  # no jump by the split shares' value
    held_now = {s: p.qty for s, p in store.positions().items() if p.qty}
    assert held_now == {s: p.qty for s, p in broker.positions().items()}
    fills = {s: p.qty for s, p in positions_from_fills(store.list_fills()).items()}
    assert {s: fills.get(s, D(0)) + split_shares(store).get(s, D(0)) for s in held_now} == held_now


def test_sim_broker_restore_when_the_store_applied_a_split_rebuilds_the_same_venue(store, tmp_path):
    held = _held_after_day1(tmp_path)
    symbol = sorted(s for s, q in held.items() if q > 0)[0]
    actions = [CorporateAction(symbol=symbol, ex_date=DAY2, kind="split", ratio=D(2))]
    day1, day2 = make_bars(), _day2(symbol)
    broker = _sim(day1 + day2, actions)
    ticks = replay_ticks(day1) + replay_ticks(day2)[:4]
    reports = _runner(store, broker, actions).run(ticks, before_cycle=lambda t: broker.advance_to(t.ts))
    restarted = _sim(day1 + day2, actions)
    restarted.restore(orders=store.list_orders(), fills=store.list_fills())
    assert {s: p.qty for s, p in restarted.positions().items()} == {s: p.qty for s, p in broker.positions().items()}
    assert restarted.account().cash == broker.account().cash == reports[-1].cash
    # A new run loop on the same store counts the split's shares with the fills: no broken invariant.
    more = _runner(store, restarted, actions).run(replay_ticks(day2)[4:6], before_cycle=lambda t: restarted.advance_to(t.ts))
    assert [r.problems for r in more] == [(), ()]
    assert Position(symbol=symbol).qty == 0  # (the flat default the split leaves alone)


def test_cli_corporate_actions_when_a_split_is_due_applies_it_once_to_the_sim_book(home):
    from fake_venue import PredictionServer
    from test_trader_cli import cli, write_config

    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        assert cli("run", "--mode", "sim", "--config", cfg).exit_code == 0
    with TraderStore(f"sqlite:///{home / 'trader' / 'sim.db'}") as store:
        held = {s: p.qty for s, p in store.positions().items() if p.qty > 0}
    symbol = sorted(held)[0]
    with duckdb.connect(str(home / "warehouse.duckdb")) as conn:
        conn.execute("create table marts.corporate_actions (symbol varchar, ex_date date, kind varchar, "
                     "ratio decimal(24, 12), amount decimal(24, 12))")
        conn.execute("insert into marts.corporate_actions values (?, '2024-03-06', 'split', 2, null)", [symbol])
    early = cli("corporate-actions", "--mode", "sim", "--config", cfg, "--date", "2024-03-05")
    first = cli("corporate-actions", "--mode", "sim", "--config", cfg, "--date", "2024-03-06")
    again = cli("corporate-actions", "--mode", "sim", "--config", cfg, "--date", "2024-03-06")
    assert early.output.strip().endswith("0 action(s) applied now, 0 in all"), early.output
    assert first.exit_code == 0 and f"{symbol}:2024-03-06:split" in first.output and "1 action(s) applied now" in first.output
    assert again.exit_code == 0 and "0 action(s) applied now, 1 in all" in again.output
    with TraderStore(f"sqlite:///{home / 'trader' / 'sim.db'}") as store:
        assert store.positions()[symbol].qty == 2 * held[symbol]


def test_restated_closes_when_the_warehouse_lags_the_ex_date_restates_only_pre_ex_date_closes():
    from trader.corporate_actions import restated_closes

    def bar(symbol: str, ts: dt.datetime, close: str) -> Bar:
        return Bar(symbol=symbol, ts=ts, open=D(close), high=D(close), low=D(close), close=D(close), volume=D(10))

    pre = dt.datetime(2024, 3, 5, 20, 45, tzinfo=dt.UTC)
    bars = InMemoryBars([bar("AAA", pre, "100"), bar("BBB", pre, "40"), bar("BBB", AT - dt.timedelta(minutes=15), "20.10")])
    actions = InMemoryActions([CorporateAction(symbol="AAA", ex_date=DAY2, kind="split", ratio=D(2)),
                               CorporateAction(symbol="BBB", ex_date=DAY2, kind="split", ratio=D(2)),
                               CorporateAction(symbol="AAA", ex_date=DAY2, kind="cash_dividend", amount=D("1"))])
    assert restated_closes(bars, ["AAA", "BBB"], AT, actions) == {"AAA": D("49.5"), "BBB": D("20.10")}
    assert restated_closes(bars, ["AAA", "BBB"], pre + dt.timedelta(minutes=15), actions) == {"AAA": D(100), "BBB": D(40)}
