"""Streamed minute bars → 15-minute bars in raw.bars: BarStreamer through alpaca-py's StockDataStream on 127.0.0.1.

The fake (tests/trader/fake_alpaca_ws.py) streams the minutes and serves the same minutes over
REST for the backfill; the streamer's clock is the test's, so windows close when the test says.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import duckdb
import pytest

from orchestration.market.alpaca import AlpacaConfig
from orchestration.market.minute_bars import MinuteAggregator, minute_row
from orchestration.market.stream import BarStreamer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trader"))  # the Alpaca fakes live with the trader tests
from fake_alpaca import API_KEY, SECRET_KEY
from fake_alpaca_ws import DATA, alpaca_venue

OPEN = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC)  # 09:30 New York, a session open
MINUTE = dt.timedelta(minutes=1)
BARS = "GET /v2/stocks/bars"


def minute(i: int) -> tuple[dt.datetime, float, float, float, float, float]:
    """The i-th minute after the open: (ts, open, high, low, close, volume); prices climb by 0.1 a minute."""
    base = 100 + i / 10
    return OPEN + i * MINUTE, base, base + 0.5, base - 0.25, base + 0.1, 100.0 + i


def rest_bar(i: int) -> dict:
    t, o, h, low, c, v = minute(i)
    return {"t": t.isoformat().replace("+00:00", "Z"), "o": o, "h": h, "l": low, "c": c, "v": v, "n": 10, "vw": c}


class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def venue():
    with alpaca_venue() as v:
        v.rest.minute_bars["AAA"] = [rest_bar(i) for i in range(15)]
        yield v


@pytest.fixture
def clock():
    return Clock(OPEN - dt.timedelta(seconds=10))  # started just before the open: no gap in a session window


@pytest.fixture
def streamer(venue, clock, tmp_path):
    s = BarStreamer(AlpacaConfig(symbols=("AAA",), url_override=venue.url), warehouse=tmp_path / "warehouse.duckdb",
                    stream_url=venue.data_ws_url, api_key=API_KEY, secret_key=SECRET_KEY, min_backoff_s=0.05, clock=clock)
    s.start()
    venue.ws.wait_for(DATA, connections=1)
    yield s
    s.close()


def push(venue, streamer, minutes: range) -> None:
    expected = streamer.received + len(minutes)
    for i in minutes:
        t, o, h, low, c, v = minute(i)
        venue.ws.bar("AAA", t, o, h, low, c, v, vw=c)
    wait(lambda: streamer.received >= expected)


def wait(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def rows(tmp_path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


RAW = "select symbol, timeframe, ts, open, high, low, close, volume, trade_count, source from raw.bars order by ts"


def test_bar_stream_when_a_window_closes_writes_one_15m_raw_bar_from_its_minutes(venue, streamer, clock, tmp_path):
    push(venue, streamer, range(15))
    clock.now = OPEN + 15 * MINUTE - dt.timedelta(seconds=1)
    assert streamer.step() == []  # not closed yet
    clock.now = OPEN + 15 * MINUTE + dt.timedelta(seconds=6)
    [report] = streamer.step()
    assert (report.rows_accepted, report.rows_rejected, report.asset) == (1, 0, "streamed_bars")
    assert rows(tmp_path, RAW) == [("AAA", "15m", OPEN, 100.0, 101.9, 99.75, 101.5, sum(100.0 + i for i in range(15)), 150,
                                    "alpaca-stream")]
    assert venue.rest.count(BARS) == 0  # nothing was missing
    assert streamer.step() == []  # written once


def test_bar_stream_when_disconnected_backfills_the_missing_minutes_over_rest(venue, streamer, clock, tmp_path):
    push(venue, streamer, range(5))
    clock.now = OPEN + 5 * MINUTE + dt.timedelta(seconds=30)
    with venue.ws.outage():
        wait(lambda: streamer.drops >= 1)
        for i in range(5, 10):  # sent to nobody
            t, o, h, low, c, v = minute(i)
            venue.ws.bar("AAA", t, o, h, low, c, v)
        clock.now = OPEN + 10 * MINUTE + dt.timedelta(seconds=5)
    venue.ws.wait_for(DATA, connections=2)
    push(venue, streamer, range(10, 15))
    clock.now = OPEN + 15 * MINUTE + dt.timedelta(seconds=6)
    [report] = streamer.step()
    assert report.rows_accepted == 1 and venue.rest.count(BARS) == 1
    [(volume, high, close)] = rows(tmp_path, "select volume, high, close from raw.bars")
    assert (volume, high, close) == (sum(100.0 + i for i in range(15)), 101.9, 101.5)  # all 15 minutes


def test_bar_stream_quarantines_a_malformed_minute_with_its_reason_and_completes_the_bar_from_rest(
        venue, streamer, clock, tmp_path):
    push(venue, streamer, range(3))
    expected = streamer.received + 1
    t, o, _, low, c, v = minute(3)
    venue.ws.bar("AAA", t, o, low - 1, low, c, v, vw=c)  # high below low (so the vwap is outside the bar too)
    wait(lambda: streamer.received >= expected)
    push(venue, streamer, range(4, 15))
    clock.now = OPEN + 15 * MINUTE + dt.timedelta(seconds=6)
    [report] = streamer.step()
    assert (report.rows_accepted, report.rows_rejected) == (1, 1)
    assert rows(tmp_path, "select timeframe, ts, high, reason, source from raw.bars_rejected") == [
        ("1m", t.isoformat(), str(low - 1), "ohlc_inconsistent;vwap_out_of_range", "alpaca-stream")]
    [(volume,)] = rows(tmp_path, "select volume from raw.bars")
    assert volume == sum(100.0 + i for i in range(15))  # minute 3 from REST


def test_minute_aggregator_hands_over_gap_windows_for_backfill_and_drops_extended_hours():
    agg = MinuteAggregator(["AAA"], "15m", grace=dt.timedelta(seconds=5))
    agg.gap_started(OPEN - dt.timedelta(hours=1))  # before the first connection
    agg.add(minute_row("AAA", OPEN - 5 * MINUTE, 10, 11, 9, 10, 5))  # 09:25 New York: pre-market
    agg.gap_ended(OPEN + 20 * MINUTE)
    agg.add(minute_row("AAA", OPEN + 21 * MINUTE, 10, 11, 9, 10, 5))
    windows = agg.due(OPEN + 30 * MINUTE + dt.timedelta(seconds=5))
    assert [(w.start, w.backfill, len(w.minutes)) for w in windows] == [(OPEN, True, 0), (OPEN + 15 * MINUTE, True, 1)]
    assert agg.extended_hours_dropped == 1
    agg.add(minute_row("AAA", OPEN + 2 * MINUTE, 10, 11, 9, 10, 5))  # too late: its bar is written
    assert agg.late == 1 and agg.due(OPEN + dt.timedelta(hours=1)) == []


def test_market_stream_cli_without_keys_names_the_missing_variables(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from orchestration.cli import main
    from orchestration.errors import ConfigError

    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path))
    monkeypatch.delenv("ALPACA_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["market", "stream", "--symbols", "AAA"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "market stream needs ALPACA_API_KEY and ALPACA_SECRET_KEY in the environment"


def test_minute_aggregator_when_started_mid_window_completes_that_window_from_rest():
    agg = MinuteAggregator(["AAA"], "15m")
    agg.gap_started(OPEN + 5 * MINUTE)  # the stream process starts at 09:35 New York ...
    agg.gap_ended(OPEN + 5 * MINUTE + dt.timedelta(seconds=2))  # ... and listens two seconds later
    agg.add(minute_row("AAA", OPEN + 6 * MINUTE, 10, 11, 9, 10, 5))
    assert agg.due(OPEN + 7 * MINUTE) == []  # the window is still open
    [window] = agg.due(OPEN + 15 * MINUTE + dt.timedelta(seconds=5))
    assert (window.start, window.backfill, len(window.minutes)) == (OPEN, True, 1)  # minutes 0-4 come over REST


def test_bar_stream_when_rest_backfill_fails_keeps_the_window_for_the_next_step(venue, clock, tmp_path):
    clock.now = OPEN + 5 * MINUTE + dt.timedelta(seconds=20)  # started mid-window: minutes 0-4 must come over REST
    s = BarStreamer(AlpacaConfig(symbols=("AAA",), url_override=venue.url), warehouse=tmp_path / "warehouse.duckdb",
                    stream_url=venue.data_ws_url, api_key=API_KEY, secret_key=SECRET_KEY, min_backoff_s=0.05, clock=clock)
    try:
        s.start()
        venue.ws.wait_for(DATA, connections=1)
        push(venue, s, range(6, 15))
        venue.rest.fail_next(BARS, 500, "internal error")
        clock.now = OPEN + 15 * MINUTE + dt.timedelta(seconds=6)
        assert s.step() == [] and not (tmp_path / "warehouse.duckdb").exists()  # nothing half-written
        [report] = s.step()
        assert report.rows_accepted == 1 and venue.rest.count(BARS) == 2
        [(volume, open_)] = rows(tmp_path, "select volume, open from raw.bars")
        assert (volume, open_) == (sum(100.0 + i for i in range(15)), 100.0)  # minute 0's open, from REST
    finally:
        s.close()
