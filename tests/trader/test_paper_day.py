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
from decimal import Decimal as D

import pytest
from fake_alpaca import API_KEY, SECRET_KEY, FakeAlpaca, _iso
from fake_venue import OPEN, STEP, SYMBOLS, config, make_bars
from pydantic import SecretStr
from test_current_bar import FakeClock, OnlineStore

from trader.brokers.alpaca import AlpacaBroker
from trader.brokers.alpaca_mapping import execution_id
from trader.brokers.bars import Bar, InMemoryBars
from trader.config import Secrets
from trader.reconcile import reconcile
from trader.runner import Runner, last_closes, live_ticks
from trader.store import TraderStore
from trader.tca import session_tca, summarise
from trader.tracking import track_session, write_report

BARS = 26
SECRETS = Secrets(alpaca_api_key=SecretStr(API_KEY), alpaca_secret_key=SecretStr(SECRET_KEY))


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
    """The exchange behind the fake venue: a market order fills a second after it arrives, at the open of the bar it
    arrived in (the same price the backtest assumes; intrabar moves are not modelled)."""

    def __init__(self, fake: FakeAlpaca, bars: list[Bar]):
        self.fake = fake
        self.bars = {(b.symbol, b.ts): b for b in bars}

    def advance_to(self, now: dt.datetime) -> None:
        working = [o for o in self.fake.orders.values() if o["status"] in ("accepted", "new", "partially_filled")]
        for order in working:
            arrived = dt.datetime.fromisoformat(order["created_at"])
            bar = self.bars.get((order["symbol"], OPEN + STEP * ((arrived - OPEN) // STEP)))
            if bar is not None and arrived < now:
                left = D(order["qty"]) - D(order["filled_qty"])
                self.fake.fill(order["client_order_id"], str(left), str(bar.open), at=arrived + dt.timedelta(seconds=1))


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
