"""A simulated paper day: the trader against a fake Alpaca on 127.0.0.1, from the open to the close, on a fake clock.

Everything the trader touches is real except the venue and the clock: alpaca-py's clients
(``TradingClient`` over REST) talk to :class:`FakeAlpaca`, the run loop is ``Runner`` with
``live_ticks`` (as ``trader run --mode paper`` builds it), predictions come from an online
store whose bar lands 80 s after each boundary. :class:`PaperMarket` plays the exchange: as the
clock passes a bar's open, the venue fills the working market orders there.

At the close the day must show: every cycle decided on the bar that had just closed, each of the
venue's fills recorded exactly once, the book reconciled with the venue's, and the TCA and
live-against-backtest reports written.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from decimal import Decimal as D

import pytest
from fake_alpaca import SECRETS, FakeAlpaca, _iso
from fake_alpaca_ws import TRADING, FakeAlpacaStreams
from fake_venue import OPEN, STEP, SYMBOLS, config, make_bars
from test_current_bar import FakeClock, OnlineStore

from trader.brokers.alpaca import AlpacaBroker
from trader.brokers.alpaca_mapping import execution_id
from trader.brokers.alpaca_stream import StreamingAlpacaBroker
from trader.brokers.bars import Bar, InMemoryBars
from trader.compliance.store_check import check_store
from trader.corporate_actions import CorporateAction, CorporateActionBook, InMemoryActions
from trader.domain import Fill
from trader.reconcile import reconcile
from trader.runner import Runner, last_closes, live_ticks
from trader.store import TraderStore
from trader.tca import session_tca, summarise
from trader.tracking import track_session, write_report

BARS = 26


class ClockedAlpaca(FakeAlpaca):
    """The fake venue stamping its orders with the test's clock (the day is 2024-03-05, not today)."""

    def __init__(self, clock: FakeClock):
        super().__init__()
        self.clock = clock

    def _create(self, body):
        order = super()._create(body)
        now = _iso(self.clock())
        order.update(created_at=now, updated_at=now, submitted_at=now)
        return order


class PaperMarket:
    """The exchange behind the fake venue. A market order fills a second after it arrives, at the open of the bar it
    arrived in (the price the backtest assumes; intrabar moves are not modelled). A resting limit or stop order fills
    in the first bar from its arrival on that reaches it, once that bar has closed: at its price, or at the open when
    the bar gaps through it."""

    def __init__(self, fake: FakeAlpaca, bars: list[Bar]):
        self.fake = fake
        self.bars = {(b.symbol, b.ts): b for b in bars}

    def advance_to(self, now: dt.datetime) -> None:
        for _ in range(3):  # a filled bracket entry releases its legs, which rest from then on
            filled = len(self.fake.activities)
            self._match(now)
            if len(self.fake.activities) == filled:
                return

    def _match(self, now: dt.datetime) -> None:
        working = [o for o in self.fake.orders.values() if o["status"] in ("accepted", "new", "partially_filled")]
        for order in working:
            if order["status"] not in ("accepted", "new", "partially_filled"):
                continue  # cancelled by its OCO sibling's fill in this loop
            arrived = dt.datetime.fromisoformat(order["created_at"])
            start = OPEN + STEP * ((arrived - OPEN) // STEP)
            if order["type"] == "market":
                bar = self.bars.get((order["symbol"], start))
                if bar is not None and arrived < now:
                    self._fill(order, bar.open, arrived + dt.timedelta(seconds=1))
                continue
            t = start  # the bar it arrived in counts (no finer data: its high and low stand for the rest of it)
            while t + STEP <= now and (bar := self.bars.get((order["symbol"], t))) is not None:
                price = _touched(order, bar)
                if price is not None:
                    self._fill(order, price, t + dt.timedelta(seconds=1))
                    break
                t += STEP

    def _fill(self, order: dict, price: D, at: dt.datetime) -> None:
        left = D(order["qty"]) - D(order["filled_qty"])
        self.fake.fill(order["client_order_id"], str(left), str(price), at=at)


def _touched(order: dict, bar: Bar) -> D | None:
    """The fill price of a resting limit or stop order in ``bar``, or None when the bar does not reach it."""
    sell = order["side"] == "sell"
    if order["type"] == "limit":
        limit = D(order["limit_price"])
        if (bar.high >= limit) if sell else (bar.low <= limit):
            return max(limit, bar.open) if sell else min(limit, bar.open)
    elif order["type"] == "stop":
        stop = D(order["stop_price"])
        if (bar.low <= stop) if sell else (bar.high >= stop):
            return min(stop, bar.open) if sell else max(stop, bar.open)
    return None


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("paper-day")
    bars = make_bars(n=BARS)
    clock = FakeClock(OPEN + STEP + dt.timedelta(seconds=30))
    with ClockedAlpaca(clock) as fake, TraderStore(f"sqlite:///{tmp_path / 'paper.db'}") as store:
        broker = AlpacaBroker(SECRETS, url_override=fake.url, clock=clock, sleep=lambda s: None)
        feed = InMemoryBars(bars)
        runner = Runner(config=config(), store=store, broker=broker, run_id="paper", clock=clock, sleep=clock.sleep,
                        predictor=OnlineStore(clock, lag=dt.timedelta(seconds=80), last_close=bars[-1].ts + STEP))
        market = PaperMarket(fake, bars)
        ticks = live_ticks(lambda at: last_closes(feed, list(SYMBOLS), at), clock=clock, sleep=clock.sleep)
        reports = runner.run(ticks, before_cycle=lambda t: market.advance_to(clock()), limit=BARS)
        yield {"reports": reports, "store": store, "fake": fake, "broker": broker, "clock": clock, "feed": feed,
               "home": tmp_path}


def test_paper_day_decides_on_the_just_closed_bar_every_cycle(day):
    reports, store = day["reports"], day["store"]
    assert [r.ts for r in reports] == [OPEN + STEP * (k + 1) for k in range(BARS)]
    decided = [r for r in store.audit_records() if r.kind == "prediction_batch"]
    assert len(decided) >= BARS - 1  # the 21:00 tick is the close: the market is shut, nothing to decide
    for record in decided:
        assert {str(p["feature_ts"]) for p in record.payload["predictions"]} == {str(record.ts)}
    assert not any(r.refused or r.behind for r in reports)


def test_paper_day_records_every_venue_fill_exactly_once_and_reconciles(day):
    store, fake, broker = day["store"], day["fake"], day["broker"]
    venue = {execution_id(a["id"]) for a in fake.activities}
    recorded = [f.fill_id for f in store.list_fills()]
    assert len(venue) > 20 and sorted(recorded) == sorted(venue)  # none lost, none doubled
    report = reconcile(store, broker, now=day["clock"]())
    assert report.can_trade, report.summary()
    held = {s: p.qty for s, p in store.positions().items() if p.qty}
    assert held == {s: p.qty for s, p in broker.positions().items()}


def test_paper_day_writes_the_tca_and_tracking_reports(day):
    store = day["store"]
    rows = session_tca(store, day=dt.date(2024, 3, 5))
    summary = summarise(rows)
    assert summary["orders"] > 20 and summary["fill_rate"] == 1
    tracking = track_session(store, day["feed"], commission_bps=0, half_spread_bps=0)
    # The fake venue fills at the open like a cost-free backtest: the paper day tracks it exactly.
    assert tracking.difference == 0 and tracking.live["fills"] == tracking.shadow["fills"]
    paths = write_report(tracking, day["home"] / "reports" / "tracking", mode="paper")
    assert paths["md"].is_file() and paths["png"].stat().st_size > 5_000


# -- the whole day: streams, a forced disconnect, a split, protective exits ----------------------------------------
SPLIT = CorporateAction(symbol="AAA", ex_date=dt.date(2024, 3, 5), kind="split", ratio=D(2))
EVE = dt.datetime(2024, 3, 4, 20, 45, tzinfo=dt.UTC)
DISCONNECT_AT = 10  # the cycle during whose market the trade-update stream is down


def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _opening_book(store: TraderStore, fake: FakeAlpaca) -> None:
    """100 AAA bought the evening before at 100 (pre-split), at the venue and in the store."""
    bought = Fill(fill_id="eve-1", order_id="eve-o1", client_order_id="eve-c1", symbol="AAA", side="buy", qty=D(100),
                  price=D(100), fee=D(0), ts=EVE, venue="alpaca-paper", account="PA-FAKE-1")
    with store.transaction() as tx:
        tx.record_fill(bought)
        tx.append_audit("fill", bought.to_record(), ts=EVE)
    # Overnight the venue splits the position 2-for-1, as Alpaca does before the open.
    fake.positions["AAA"] = {"qty": D(200), "avg": D(50)}
    fake.cash -= D(100) * D(100)


@pytest.fixture(scope="module")
def full_day(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("paper-full-day")
    bars = make_bars(n=BARS)
    clock = FakeClock(OPEN + STEP + dt.timedelta(seconds=30))
    cfg = config(exits={"stop_loss_pct": "0.01", "take_profit_pct": "0.015", "use_venue_brackets": True},
                 streams={"trade_updates": True})
    with ClockedAlpaca(clock) as fake, FakeAlpacaStreams() as ws, \
            TraderStore(f"sqlite:///{tmp_path / 'paper.db'}") as store:
        fake.listeners.append(lambda event, order, act: ws.trade_update(event, order, execution=act))
        _opening_book(store, fake)
        broker = StreamingAlpacaBroker(SECRETS, url_override=fake.url, stream_url=ws.trading_url, clock=clock,
                                       sleep=lambda s: None, rest_backfill_every_s=3600, min_backoff_s=0.05)
        feed, market = InMemoryBars(bars), PaperMarket(fake, bars)
        runner = Runner(config=cfg, store=store, broker=broker, run_id="paper", clock=clock, sleep=clock.sleep,
                        predictor=OnlineStore(clock, lag=dt.timedelta(seconds=80), last_close=bars[-1].ts + STEP),
                        corporate_actions=CorporateActionBook(InMemoryActions([SPLIT])))
        cycle = iter(range(BARS + 1))

        def before(tick) -> None:
            if next(cycle) == DISCONNECT_AT:
                with ws.outage():  # the venue fills while nobody listens: those trade updates are lost
                    market.advance_to(clock())
                ws.wait_for(TRADING, connections=2)
                _until(lambda: broker.stream.connections == 2)
                return
            waiting, sent = broker.stream.pending(), len(ws.sent)
            market.advance_to(clock())
            _until(lambda: broker.stream.pending() >= waiting + len(ws.sent) - sent)  # delivered before the cycle reads

        ticks = live_ticks(lambda at: last_closes(feed, list(SYMBOLS), at), clock=clock, sleep=clock.sleep)
        reads_before = fake.count("GET /v2/account/activities/FILL")
        reports = runner.run(ticks, before_cycle=before, limit=BARS)
        yield {"reports": reports, "store": store, "fake": fake, "broker": broker, "clock": clock, "feed": feed,
               "home": tmp_path, "rest_reads": fake.count("GET /v2/account/activities/FILL") - reads_before}
        broker.close()


def test_full_paper_day_every_cycle_on_the_just_closed_bar(full_day):
    reports, store = full_day["reports"], full_day["store"]
    assert len(reports) == BARS and not any(r.refused or r.behind for r in reports)
    for record in (r for r in store.audit_records() if r.kind == "prediction_batch"):
        assert {str(p["feature_ts"]) for p in record.payload["predictions"]} == {str(record.ts)}


def test_full_paper_day_streams_every_fill_once_through_a_disconnect(full_day):
    store, fake = full_day["store"], full_day["fake"]
    venue = {execution_id(a["id"]) for a in fake.activities}
    recorded = [f.fill_id for f in store.list_fills() if f.fill_id != "eve-1"]
    assert len(venue) > 20 and len(recorded) == len(set(recorded)) and set(recorded) == venue  # none lost, none doubled
    # Fills came over the stream; REST was read only around the reconnection (and by reconciliation's look-ups).
    assert full_day["rest_reads"] <= 3


def test_full_paper_day_follows_the_split_and_reconciles(full_day):
    store, broker = full_day["store"], full_day["broker"]
    applied = [r for r in store.audit_records() if r.kind == "corporate_action"]
    assert len(applied) == 1 and applied[0].payload["action_id"] == "AAA:2024-03-05:split"
    report = reconcile(store, broker, now=full_day["clock"]())
    assert report.can_trade, report.summary()
    held = {s: p.qty for s, p in store.positions().items() if p.qty}
    assert held == {s: p.qty for s, p in broker.positions().items()}
    assert check_store(store).problems == []  # orders and positions agree with fills, splits and the audit chain
    assert not any("invariant" in r.status or r.problems for r in full_day["reports"])


def test_full_paper_day_places_protective_exits_at_the_venue(full_day):
    fake = full_day["fake"]
    linked = [o for o in fake.orders.values() if o["order_class"] in ("bracket", "oco")]
    assert linked, "no entry went out with its exits"
    legs = [fake.orders[i] for ids in fake.legs_of.values() for i in ids]
    assert {leg["type"] for leg in legs} >= {"limit", "stop"}
    classes = Counter(o["order_class"] for o in linked)
    assert classes["bracket"] > 0 and classes["oco"] > 0  # entries from flat as brackets; settled positions get an OCO
    aaa = [o for o in linked if o["symbol"] == "AAA"]
    assert aaa and D(aaa[0]["qty"]) == 200  # the split position is protected for its post-split quantity


def test_full_paper_day_writes_the_tca_report(full_day):
    store = full_day["store"]
    rows = session_tca(store, day=dt.date(2024, 3, 5))
    market = {o.client_order_id for o in store.list_orders() if o.order_type.value == "market" and o.status.value == "filled"}
    summary = summarise(r for r in rows if r.client_order_id in market)
    assert summary["orders"] > 10 and summary["fill_rate"] == 1 and summary["slippage_bps"] is not None
    assert summarise(rows)["orders"] > summary["orders"]  # the resting exits are orders too (most never fill)
    tracking = track_session(store, full_day["feed"], commission_bps=0, half_spread_bps=0)
    paths = write_report(tracking, full_day["home"] / "reports" / "tracking", mode="paper")
    assert paths["md"].is_file() and tracking.live["fills"] > 10
