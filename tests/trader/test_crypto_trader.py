"""Crypto on the trader's path: the 24/7 market-hours check, fractional sizing, the sim venue, Alpaca orders."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from fake_alpaca import API_KEY, SECRET_KEY, FakeAlpaca
from pydantic import SecretStr
from trader_builders import order

from trader.brokers.alpaca import AlpacaBroker
from trader.brokers.bars import Bar, InMemoryBars
from trader.brokers.sim import SimBroker, SimConfig
from trader.config import Secrets, SizingConfig, TraderConfig
from trader.domain import OrderAccepted, OrderFilled, Side, Symbol
from trader.market_hours import MarketCalendar, active_profile, market_profile
from trader.runner import session_start
from trader.sizing import target_quantities

SUNDAY_NOON = dt.datetime(2024, 3, 3, 12, 0, tzinfo=dt.UTC)
BTC = Symbol("BTC/USD")


def test_market_hours_open_on_a_sunday_for_crypto_closed_for_equities():
    assert MarketCalendar("24/7").is_open(SUNDAY_NOON)
    assert MarketCalendar("24/7").is_open(dt.datetime(2024, 12, 25, 0, 0, tzinfo=dt.UTC))  # no holidays either
    assert not MarketCalendar("XNYS").is_open(SUNDAY_NOON)
    assert market_profile("crypto").market_calendar().is_open(SUNDAY_NOON)


def test_the_profile_comes_from_the_environment_and_bad_values_are_one_line():
    assert active_profile({}).name == "equities" and active_profile({}).calendar == "XNYS"
    crypto = active_profile({"ALPHALINE_MARKET": "crypto"})
    assert (crypto.calendar, crypto.zone, crypto.cutoff) == ("24/7", "UTC", dt.time(0, 0))
    with pytest.raises(ValueError, match=r"ALPHALINE_MARKET='forex': unknown market"):
        active_profile({"ALPHALINE_MARKET": "forex"})
    with pytest.raises(ValueError, match=r"ALPHALINE_EOD_CUTOFF='25:00': not a time of day"):
        active_profile({"ALPHALINE_MARKET": "crypto", "ALPHALINE_EOD_CUTOFF": "25:00"})


def test_trading_days_cut_at_midnight_utc_for_crypto_and_new_york_midnight_for_equities(monkeypatch):
    late = dt.datetime(2024, 3, 2, 23, 59, tzinfo=dt.UTC)  # Saturday 23:59 UTC = 18:59 New York
    assert market_profile("crypto").trading_day(late) == dt.date(2024, 3, 2)
    assert market_profile("crypto").trading_day(late + dt.timedelta(minutes=1)) == dt.date(2024, 3, 3)
    assert market_profile("equities").trading_day(dt.datetime(2024, 3, 5, 3, 0, tzinfo=dt.UTC)) == dt.date(2024, 3, 4)
    cut = market_profile("crypto", cutoff="17:00")
    assert cut.trading_day(dt.datetime(2024, 3, 2, 16, 59, tzinfo=dt.UTC)) == dt.date(2024, 3, 2)
    assert cut.trading_day(dt.datetime(2024, 3, 2, 17, 0, tzinfo=dt.UTC)) == dt.date(2024, 3, 3)
    monkeypatch.setenv("ALPHALINE_MARKET", "crypto")
    assert session_start(dt.date(2024, 3, 3)) == dt.datetime(2024, 3, 3, tzinfo=dt.UTC)
    monkeypatch.setenv("ALPHALINE_MARKET", "equities")
    assert session_start(dt.date(2024, 3, 4)) == dt.datetime(2024, 3, 4, 5, tzinfo=dt.UTC)  # New York midnight (EST)


def test_crypto_pairs_pass_the_trader_config_and_fractional_sizing_cuts_to_the_lot():
    cfg = TraderConfig.model_validate({"universe": {"symbols": ["BTC/USD", "ETH/USD"]},
                                       "sizing": {"fractional": True, "qty_decimals": 4, "mode": "long_only"}})
    assert cfg.universe.symbols == ("BTC/USD", "ETH/USD") and cfg.sizing.lot_size == D("0.0001")
    qty, skipped = target_quantities({BTC: D("0.1")}, equity=D("6611.21415"), prices={BTC: D("43210.55")}, config=cfg.sizing)
    assert qty == {BTC: D("0.0153")} and skipped == {}  # 661.121415 / 43210.55 = 0.015300.. cut down to 0.0001
    whole, _ = target_quantities({BTC: D("0.1")}, equity=D("6611.21415"), prices={BTC: D("43210.55")}, config=SizingConfig())
    assert whole == {BTC: D(0)}  # equities' whole shares: no fraction of a coin


def _bar(ts: dt.datetime, close: str, volume: str = "2.5") -> Bar:
    price = D(close)
    return Bar(symbol=BTC, ts=ts, open=price, high=price, low=price, close=price, volume=D(volume))


def test_sim_venue_fills_fractions_of_a_coin_on_a_sunday():
    start = SUNDAY_NOON
    bars = [_bar(start, "43210.55"), _bar(start + dt.timedelta(minutes=15), "43210.55")]
    broker = SimBroker(InMemoryBars(bars, timeframe=dt.timedelta(minutes=15)), config=SimConfig(lot_size=D("0.0001")), start=start)
    broker.advance_to(start + dt.timedelta(minutes=15))
    assert isinstance(broker.submit(order("BTC/USD", qty="0.0153", cid="c-btc", at=start + dt.timedelta(minutes=15))), OrderAccepted)
    broker.advance_to(start + dt.timedelta(minutes=30))
    fills = [e.fill for e in broker.poll_events() if isinstance(e, OrderFilled)]
    assert [(f.qty, f.price) for f in fills] == [(D("0.0153"), D("43210.55"))]
    assert broker.positions()[BTC].qty == D("0.0153")


def test_alpaca_crypto_orders_go_gtc_with_fractional_qty_and_exact_fills():
    with FakeAlpaca() as fake:
        broker = AlpacaBroker(Secrets(alpaca_api_key=SecretStr(API_KEY), alpaca_secret_key=SecretStr(SECRET_KEY)),
                              url_override=fake.url, timeout_s=2.0, sleep=lambda s: None)
        answer = broker.submit(order("BTC/USD", qty="0.0153", cid="al-btc"))  # a day order in the domain
        assert isinstance(answer, OrderAccepted)
        sent = fake.order("al-btc")
        assert (sent["time_in_force"], sent["qty"], sent["asset_class"]) == ("gtc", "0.0153", "crypto")
        fake.fill("al-btc", "0.01", "43210.55")
        fake.fill("al-btc", "0.0053", "43211.10")
        assert [(e.fill.qty, e.fill.price) for e in broker.poll_events()] == [(D("0.01"), D("43210.55")), (D("0.0053"), D("43211.10"))]
        assert broker.positions()[BTC].qty == D("0.0153")
        assert order("BTC/USD", Side.SELL, qty="0.0153").time_in_force.value == "day"  # only the venue request changes
