"""The crypto market profile: 24/7 sessions, the synthetic pairs through validation and features, Alpaca crypto bars."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import polars as pl
import pytest
from pydantic import ValidationError

from feature_repo.library import compute_features
from orchestration.defs.partitions import trading_day_partitions
from orchestration.errors import ConfigError, SourceError
from orchestration.market.alpaca_crypto import AlpacaCryptoConfig, AlpacaCryptoSource
from orchestration.market.calendars import bar_grid, sessions
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket
from orchestration.market.validation import validate_bars
from orchestration.settings import Settings, describe_invalid

SAT, SUN, MON = dt.date(2024, 3, 2), dt.date(2024, 3, 3), dt.date(2024, 3, 4)
UTC = dt.UTC


def test_every_utc_day_is_a_24_hour_session_on_the_24_7_calendar():
    s = sessions("24/7", SAT, MON)
    assert s["session"].to_list() == [SAT, SUN, MON]
    assert s["open_ts"][1] == dt.datetime(2024, 3, 3, tzinfo=UTC) and s["close_ts"][1] == dt.datetime(2024, 3, 4, tzinfo=UTC)
    grid = bar_grid("24/7", "15m", SUN, SUN)
    assert grid.height == 96 and grid["ts"][-1] == dt.datetime(2024, 3, 3, 23, 45, tzinfo=UTC)
    assert sessions("XNYS", SAT, SUN).is_empty()


def test_crypto_partitions_include_weekends_and_equities_do_not():
    crypto = trading_day_partitions(dt.date(2024, 3, 1), "crypto").get_partition_keys(current_time=dt.datetime(2024, 3, 5, tzinfo=UTC))
    equities = trading_day_partitions(dt.date(2024, 3, 1)).get_partition_keys(current_time=dt.datetime(2024, 3, 5, tzinfo=UTC))
    assert {"2024-03-02", "2024-03-03"} <= set(crypto) and not {"2024-03-02", "2024-03-03"} & set(equities)


def test_the_market_setting_is_typed_and_a_bad_value_is_one_line(monkeypatch):
    monkeypatch.setenv("ALPHALINE_MARKET", "crypto")
    assert Settings(home="/tmp/x").profile.calendar == "24/7"
    with pytest.raises(ValidationError) as err:
        Settings(home="/tmp/x", market="forex")
    assert describe_invalid(err.value).startswith("ALPHALINE_MARKET='forex': input should be 'equities' or 'crypto'")
    with pytest.raises(ValidationError) as err:
        Settings(home="/tmp/x", eod_cutoff="noon")
    assert "ALPHALINE_EOD_CUTOFF='noon'" in describe_invalid(err.value)


def test_the_eod_cut_of_a_crypto_day_is_midnight_utc(monkeypatch):
    from orchestration.defs.compliance.sources import day_start, is_session

    monkeypatch.setenv("ALPHALINE_MARKET", "crypto")
    assert is_session(SUN) and day_start(SUN) == dt.datetime(2024, 3, 3, tzinfo=UTC)
    monkeypatch.setenv("ALPHALINE_EOD_CUTOFF", "17:00")
    assert day_start(SUN) == dt.datetime(2024, 3, 2, 17, tzinfo=UTC)
    monkeypatch.setenv("ALPHALINE_MARKET", "equities")
    assert not is_session(SUN) and day_start(MON) == dt.datetime(2024, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def crypto_bars() -> pl.DataFrame:
    market = SyntheticMarket(SyntheticConfig(n_symbols=4, n_sectors=2, market="crypto", origin=dt.date(2024, 2, 28)))
    return market.fetch(dt.datetime(2024, 3, 1, tzinfo=UTC), dt.datetime(2024, 3, 4, tzinfo=UTC),
                        now=dt.datetime(2024, 3, 5, tzinfo=UTC)).bars


def test_synthetic_pairs_trade_weekends_with_decimals_and_fractional_volume_and_pass_validation(crypto_bars):
    assert sorted(crypto_bars["symbol"].unique()) == ["AVAX/USD", "BTC/USD", "ETH/USD", "SOL/USD"]
    assert crypto_bars.height == 3 * 96 * 4  # Friday, Saturday, Sunday
    assert (crypto_bars["volume"] % 1 != 0).mean() > 0.9 and (crypto_bars["close"] % 1 != 0).all()
    btc = crypto_bars.filter(pl.col("symbol") == "BTC/USD")["close"]
    assert 25_000 < btc.min() and btc.max() < 70_000
    result = validate_bars(crypto_bars, now=dt.datetime(2024, 3, 5, tzinfo=UTC))
    assert result.rejected.is_empty() and result.clean.height == crypto_bars.height and result.gaps.is_empty()


def test_synthetic_crypto_refuses_what_it_cannot_be():
    with pytest.raises(ConfigError, match="the crypto market has between 1 and 12 pairs"):
        SyntheticConfig(n_symbols=13, market="crypto")
    with pytest.raises(ConfigError, match="no splits or dividends"):
        SyntheticConfig(market="crypto", corporate_actions=True)


def test_features_of_pairs_with_a_slash(crypto_bars):
    day = pl.col("ts").dt.truncate("1d")  # the 24/7 session of a bar: its UTC day, as marts.bars has it
    bars = crypto_bars.with_columns(
        pl.lit("L1").alias("sector"), (pl.col("ts") + dt.timedelta(minutes=15)).alias("close_ts"), pl.col("ts").dt.date().alias("session"),
        day.alias("session_open"), (day + dt.timedelta(days=1)).alias("session_close"),
    ).sort("symbol", "ts")
    features = compute_features(bars, bar_length=dt.timedelta(minutes=15), created=dt.datetime(2024, 3, 5, tzinfo=UTC))
    assert sorted(features["symbol"].unique()) == ["AVAX/USD", "BTC/USD", "ETH/USD", "SOL/USD"]
    last = features.filter(pl.col("symbol") == "BTC/USD").sort("event_timestamp").tail(1)
    assert last["event_timestamp"][0] == dt.datetime(2024, 3, 4, tzinfo=UTC)  # the Sunday 23:45 bar, knowable at its close
    assert last["ret_log_4"].is_not_null().all() and last["xs_rank_ret_26"].is_not_null().all()


class _FakeCryptoBars(BaseHTTPRequestHandler):
    """``GET /v1beta3/crypto/us/bars`` like Alpaca: bars per pair, fractional volume, RFC 3339 times."""

    seen: list[dict[str, list[str]]] = []  # noqa: RUF012 - the test reads what the client asked

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        type(self).seen.append({"path": [url.path], **query})
        if "FAIL/USD" in query.get("symbols", [""])[0]:
            body, status = {"message": "invalid symbol: FAIL/USD"}, 422
        else:
            bars = {s: [{"t": "2024-03-03T12:00:00Z", "o": 43210.5, "h": 43300.25, "l": 43100.0, "c": 43250.75, "v": 1.23456789,
                         "n": 42, "vw": 43201.1},
                        {"t": "2024-03-03T12:15:00Z", "o": 43250.75, "h": 43260.0, "l": 43200.0, "c": 43222.0, "v": 0.5, "n": 7,
                         "vw": 43230.0}] for s in query["symbols"][0].split(",")}
            body, status = {"bars": bars, "next_page_token": None}, 200
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_crypto_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeCryptoBars)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_alpaca_crypto_bars_through_alpaca_py(fake_crypto_url):
    source = AlpacaCryptoSource(AlpacaCryptoConfig(symbols=("BTC/USD", "ETH/USD"), url_override=fake_crypto_url))
    batch = source.fetch(dt.datetime(2024, 3, 3, 12, tzinfo=UTC), dt.datetime(2024, 3, 3, 12, 30, tzinfo=UTC),
                         now=dt.datetime(2024, 3, 3, 12, 20, tzinfo=UTC))
    asked = _FakeCryptoBars.seen[-1]
    assert asked["path"] == ["/v1beta3/crypto/us/bars"] and asked["symbols"] == ["BTC/USD,ETH/USD"] and asked["timeframe"] == ["15Min"]
    # 12:15 has not closed by 12:20: only the 12:00 bars, volume kept fractional
    assert batch.bars.select("symbol", "volume").rows() == [("BTC/USD", 1.23456789), ("ETH/USD", 1.23456789)]
    assert validate_bars(batch.bars, now=dt.datetime(2024, 3, 3, 12, 20, tzinfo=UTC)).rejected.is_empty()
    bad = AlpacaCryptoSource(AlpacaCryptoConfig(symbols=("FAIL/USD",), url_override=fake_crypto_url))
    with pytest.raises(SourceError, match=r"^alpaca: GET /v1beta3/crypto/us/bars \(symbols FAIL/USD .*HTTP 422"):
        bad.fetch(dt.datetime(2024, 3, 3, 12, tzinfo=UTC), dt.datetime(2024, 3, 3, 13, tzinfo=UTC), now=dt.datetime(2024, 3, 4, tzinfo=UTC))


def test_daily_jobs_run_every_day_after_the_crypto_cut_and_weekdays_for_equities(monkeypatch):
    import dagster as dg

    from orchestration.defs.compliance.schedules import eod_request
    from orchestration.defs.features.schedules import intraday_request
    from orchestration.defs.market.schedules import ingest_request
    from orchestration.defs.partitions import daily_schedule

    monkeypatch.setenv("ALPHALINE_MARKET", "crypto")
    assert daily_schedule("30 17 * * 1-5", 30) == ("30 0 * * *", "UTC")
    monday_0030 = dt.datetime(2024, 3, 4, 0, 30, tzinfo=UTC)
    assert eod_request(monday_0030).partition_key == "2024-03-03"  # Sunday closed at the midnight cut
    assert ingest_request(monday_0030).partition_key == "2024-03-03"
    assert intraday_request(dt.datetime(2024, 3, 4, 0, 1, tzinfo=UTC)).partition_key == "2024-03-03"  # the 23:45 bar
    assert intraday_request(dt.datetime(2024, 3, 3, 12, 16, tzinfo=UTC)).partition_key == "2024-03-03"
    monkeypatch.setenv("ALPHALINE_EOD_CUTOFF", "17:00")
    assert daily_schedule("30 17 * * 1-5", 30) == ("30 17 * * *", "UTC")
    monkeypatch.setenv("ALPHALINE_MARKET", "equities")
    assert daily_schedule("30 17 * * 1-5", 30) == ("30 17 * * 1-5", "America/New_York")
    assert isinstance(eod_request(dt.datetime(2024, 3, 3, 22, 30, tzinfo=UTC)), dg.SkipReason)  # Sunday: no XNYS session
    assert isinstance(intraday_request(dt.datetime(2024, 3, 3, 17, 16, tzinfo=UTC)), dg.SkipReason)
