"""AlpacaSource against a fake Alpaca data API on 127.0.0.1 (never the real one).

The fake serves ``GET /v2/stocks/bars`` in Alpaca's JSON shape, in pages of
``page_size`` bars with ``next_page_token``, records every request, and plays
scripted replies (429, 500, ...) before answering normally. Like Alpaca with
extended hours it serves every stored bar of the asked symbols; unlike Alpaca it
ignores ``start``/``end``, so the source's own window filter is what is tested.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from orchestration.errors import ConfigError, SourceError
from orchestration.market.alpaca import AlpacaConfig, AlpacaSource, retry_delay
from orchestration.market.bars import SOURCE_SCHEMA
from orchestration.market.validation import validate_bars

KEY_ID, SECRET = "test-key-id", "test-secret-value"
START = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
END = dt.datetime(2024, 1, 4, tzinfo=dt.UTC)
NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
UTC = dt.UTC


# --- the fake Alpaca ---------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: dict | str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request:
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # lower-case names


class FakeAlpaca:
    """Stored bars per symbol, served in pages; ``script`` replies go first (``None``: answer normally)."""

    def __init__(self) -> None:
        self.bars: dict[str, list[dict]] = {}
        self.script: deque[Reply | None] = deque()
        self.requests: list[Request] = []
        self.page_size = 10_000
        self.url = ""
        self._lock = threading.Lock()

    def handle(self, path: str, params: dict[str, str], headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(Request(path, params, headers))
            scripted = self.script.popleft() if self.script else None
        if path != "/v2/stocks/bars":
            return Reply(404, {"message": "Not Found"})
        return scripted or self._page(params)

    def _page(self, params: dict[str, str]) -> Reply:
        items = [(s, b) for s in sorted(params["symbols"].split(",")) for b in self.bars.get(s, [])]
        offset = int(base64.b64decode(params["page_token"])) if "page_token" in params else 0
        size = min(int(params.get("limit", 10_000)), self.page_size)
        page: dict[str, list[dict]] = {}
        for symbol, bar in items[offset : offset + size]:
            page.setdefault(symbol, []).append(bar)
        more = offset + size < len(items)
        token = base64.b64encode(str(offset + size).encode()).decode() if more else None
        return Reply(200, {"bars": page, "next_page_token": token})

    def page_tokens(self) -> list[str | None]:
        return [r.params.get("page_token") for r in self.requests]


def _handler(fake: FakeAlpaca) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # http.server calls it by this name
            url = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            reply = fake.handle(url.path, params, {k.lower(): v for k, v in self.headers.items()})
            time.sleep(reply.delay)
            data = (reply.body if isinstance(reply.body, str) else json.dumps(reply.body)).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out leaves a broken pipe behind; that is the test's point


@pytest.fixture
def fake():
    fake = FakeAlpaca()
    server = _QuietServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("ALPACA_API_KEY", KEY_ID)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)


def source(fake: FakeAlpaca, symbols=("AAA", "BBB"), **config) -> AlpacaSource:
    config = {"backoff_seconds": 0.01, **config}
    return AlpacaSource(AlpacaConfig(symbols=tuple(symbols), url_override=fake.url, **config))


def bar(t: str, price: float = 100.0, *, volume: int = 1200, trades: int = 12) -> dict:
    return {
        "t": t, "o": price, "h": price + 1.0, "l": price - 1.0, "c": price + 0.5, "v": volume, "n": trades, "vw": price + 0.25,
    }  # fmt: skip


def session_bars(day: dt.date, count: int = 26, *, price: float = 100.0) -> list[dict]:
    """``count`` 15-minute bars from a winter XNYS open (14:30 UTC)."""
    open_ = dt.datetime.combine(day, dt.time(14, 30), UTC)
    return [bar(f"{open_ + i * dt.timedelta(minutes=15):%Y-%m-%dT%H:%M:%SZ}", price + i * 0.1) for i in range(count)]


def ts(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# --- fetching ------------------------------------------------------------------


def test_alpaca_source_when_paged_returns_all_bars_in_contract(fake):
    fake.bars = {"AAA": session_bars(dt.date(2024, 1, 2), 5), "BBB": session_bars(dt.date(2024, 1, 2), 5, price=50.0)}
    fake.page_size = 4

    batch = source(fake).fetch(START, END, now=NOW)

    assert len(fake.requests) == 3 and fake.page_tokens()[0] is None and None not in fake.page_tokens()[1:]
    bars = batch.bars
    assert dict(bars.schema) == SOURCE_SCHEMA
    assert bars.height == 10 and bars["symbol"].to_list() == ["AAA"] * 5 + ["BBB"] * 5
    assert bars["timeframe"].unique().to_list() == ["15m"] and bars["source"].unique().to_list() == ["alpaca"]
    assert bars["source_row"].to_list() == list(range(10))
    assert batch.label == "alpaca"
    first = bars.row(0, named=True)
    assert first["ts"] == ts(2024, 1, 2, 14, 30)
    assert (first["open"], first["high"], first["low"], first["close"]) == (100.0, 101.0, 99.0, 100.5)
    assert (first["volume"], first["vwap"], first["trade_count"]) == (1200.0, 100.25, 12)


def test_alpaca_source_sends_env_keys_as_auth_headers_and_never_shows_the_secret(fake):
    fake.bars = {"AAA": session_bars(dt.date(2024, 1, 2), 1)}
    src = source(fake)

    src.fetch(START, END, now=NOW)

    headers = fake.requests[0].headers
    assert headers["apca-api-key-id"] == KEY_ID and headers["apca-api-secret-key"] == SECRET
    assert SECRET not in repr(src) and SECRET not in repr(src.config)


def test_alpaca_source_request_carries_timeframe_feed_adjustment_and_window(fake):
    source(fake, feed="sip", adjustment="split").fetch(START, END, now=NOW)

    (request,) = fake.requests
    params = request.params
    assert request.path == "/v2/stocks/bars"
    asked = (params["symbols"], params["timeframe"], params["feed"], params["adjustment"], params["limit"])
    assert asked == ("AAA,BBB", "15Min", "sip", "split", "10000")
    assert dt.datetime.fromisoformat(params["start"]) == START and dt.datetime.fromisoformat(params["end"]) == END


def test_alpaca_source_when_many_symbols_splits_them_across_requests(fake):
    symbols = ("AAA", "BBB", "CCC", "DDD", "EEE")
    fake.bars = {s: session_bars(dt.date(2024, 1, 2), 2) for s in symbols}

    batch = source(fake, symbols, symbols_per_request=2).fetch(START, END, now=NOW)

    assert [r.params["symbols"] for r in fake.requests] == ["AAA,BBB", "CCC,DDD", "EEE"]
    assert batch.bars.height == 10 and batch.bars["source_row"].to_list() == list(range(10))


def test_alpaca_source_when_window_is_empty_asks_nothing(fake):
    batch = source(fake).fetch(END, START, now=NOW)

    assert fake.requests == [] and batch.bars.is_empty() and dict(batch.bars.schema) == SOURCE_SCHEMA


def test_alpaca_source_drops_bars_outside_the_window(fake):
    times = ["14:45", "15:00", "15:15", "15:30", "15:45", "16:00", "16:15"]
    fake.bars = {"AAA": [bar(f"2024-01-02T{t}:00Z") for t in times]}

    batch = source(fake, ["AAA"]).fetch(ts(2024, 1, 2, 15), ts(2024, 1, 2, 16), now=NOW)

    assert batch.bars["ts"].dt.strftime("%H:%M").to_list() == ["15:00", "15:15", "15:30", "15:45"]


def test_alpaca_source_drops_bars_not_closed_by_now(fake):
    fake.bars = {"AAA": [bar(f"2024-01-02T{t}:00Z") for t in ("14:30", "14:45", "15:00")]}
    now = ts(2024, 1, 2, 15, 5)

    batch = source(fake, ["AAA"]).fetch(START, END, now=now)

    assert batch.bars["ts"].dt.strftime("%H:%M").to_list() == ["14:30", "14:45"]
    assert dt.datetime.fromisoformat(fake.requests[0].params["end"]) == now


def test_alpaca_source_drops_extended_hours_bars_and_counts_them(fake):
    fake.bars = {
        "AAA": [
            bar("2024-01-02T09:00:00Z"),  # 04:00 New York, pre-market
            bar("2024-01-02T14:15:00Z"),  # 09:15, ends at the open
            bar("2024-01-02T14:30:00Z"),
            bar("2024-01-02T20:45:00Z"),
            bar("2024-01-02T21:00:00Z"),  # 16:00, after hours
            bar("2024-11-29T17:45:00Z"),  # last bar of an early close (13:00 New York)
            bar("2024-11-29T18:00:00Z"),
        ]
    }

    batch = source(fake, ["AAA"]).fetch(START, ts(2024, 12, 1), now=NOW)

    assert batch.bars["ts"].to_list() == [ts(2024, 1, 2, 14, 30), ts(2024, 1, 2, 20, 45), ts(2024, 11, 29, 17, 45)]
    assert batch.notes == {"extended_hours_bars_dropped": "4"}


def test_alpaca_source_output_passes_validation_with_zero_rejects(fake):
    days = (dt.date(2024, 1, 2), dt.date(2024, 1, 3))
    prices = {"AAA": 100.0, "BRK.B": 350.0}
    fake.bars = {s: [b for d in days for b in session_bars(d, price=p)] for s, p in prices.items()}

    batch = source(fake, ["AAA", "BRK.B"]).fetch(START, END, now=NOW)
    result = validate_bars(batch.bars, now=NOW)

    assert batch.bars.height == 104
    assert result.rejected.height == 0 and result.clean.height == 104 and result.gaps.is_empty()


# --- daily bars ----------------------------------------------------------------


def test_alpaca_source_daily_bars_are_restamped_to_the_session_open(fake):
    fake.bars = {
        "AAA": [
            bar("2024-01-02T05:00:00Z"),  # midnight New York (EST)
            bar("2024-07-01T04:00:00Z"),  # midnight New York (EDT)
            bar("2024-11-29T05:00:00Z"),  # early close, regular open
        ]
    }
    window_start = ts(2024, 1, 2, 14, 30)  # the first session's open, after Alpaca's stamp

    batch = source(fake, ["AAA"], timeframe="1d").fetch(window_start, ts(2024, 12, 31), now=NOW)

    params = fake.requests[0].params
    assert params["timeframe"] == "1Day" and dt.datetime.fromisoformat(params["start"]) <= ts(2024, 1, 2, 5)
    assert batch.bars["ts"].to_list() == [ts(2024, 1, 2, 14, 30), ts(2024, 7, 1, 13, 30), ts(2024, 11, 29, 14, 30)]
    assert batch.bars["timeframe"].unique().to_list() == ["1d"] and batch.notes == {}
    assert validate_bars(batch.bars, now=NOW).rejected.height == 0


def test_alpaca_source_daily_bar_of_a_closed_day_keeps_its_time_and_fails_validation(fake):
    fake.bars = {"AAA": [bar("2024-11-28T05:00:00Z")]}  # Thanksgiving: no session to move it to

    batch = source(fake, ["AAA"], timeframe="1d").fetch(ts(2024, 11, 27), ts(2024, 12, 1), now=NOW)

    assert batch.bars["ts"].to_list() == [ts(2024, 11, 28, 5)]
    assert validate_bars(batch.bars, now=NOW).reason_counts == {"outside_session": 1}


# --- errors --------------------------------------------------------------------


def test_alpaca_source_when_rate_limited_once_retries_and_succeeds(fake, caplog):
    fake.bars = {"AAA": session_bars(dt.date(2024, 1, 2), 3)}
    fake.script.append(Reply(429, {"message": "too many requests."}))

    batch = source(fake, ["AAA"]).fetch(START, END, now=NOW)

    assert len(fake.requests) == 2 and batch.bars.height == 3
    assert "429" in caplog.text and SECRET not in caplog.text


def test_alpaca_source_when_rate_limited_on_a_later_page_retries_only_that_page(fake):
    fake.bars = {"AAA": session_bars(dt.date(2024, 1, 2), 6)}
    fake.page_size = 2
    fake.script.extend([None, Reply(429, {"message": "too many requests."})])

    batch = source(fake, ["AAA"]).fetch(START, END, now=NOW)

    tokens = fake.page_tokens()
    assert len(tokens) == 4 and tokens[0] is None and tokens[1] == tokens[2] != tokens[3]
    assert batch.bars.height == 6 and batch.bars["ts"].is_unique().all()


@pytest.mark.parametrize(("status", "words"), [(429, "rate limited (HTTP 429)"), (504, "(HTTP 504)")])
def test_alpaca_source_when_throttled_persistently_raises_after_max_attempts(fake, status, words):
    fake.script.extend([Reply(status, {"message": "slow down"})] * 10)

    with pytest.raises(SourceError) as err:
        source(fake, max_attempts=3).fetch(START, END, now=NOW)

    message = str(err.value)
    assert len(fake.requests) == 3
    assert words in message and "after 3 attempts" in message and "\n" not in message
    assert message.startswith("alpaca: GET /v2/stocks/bars (symbols AAA,BBB 2024-01-02..2024-01-04)")


def test_alpaca_source_when_retry_after_is_sent_waits_that_long_not_the_backoff(fake):
    fake.script.append(Reply(429, {"message": "too many requests."}, headers={"Retry-After": "0"}))

    started = time.monotonic()
    source(fake, backoff_seconds=2.0).fetch(START, END, now=NOW)

    assert time.monotonic() - started < 1.0 and len(fake.requests) == 2


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (Reply(500, {"code": 50010000, "message": "internal server error"}), "server error HTTP 500: internal server error"),
        (Reply(502, "<html>\n<h1>502 Bad Gateway</h1>\n</html>"), "server error HTTP 502: <html> <h1>502 Bad Gateway"),
    ],
)
def test_alpaca_source_when_server_fails_raises_without_retrying(fake, reply, words):
    fake.script.extend([reply] * 5)

    with pytest.raises(SourceError) as err:
        source(fake).fetch(START, END, now=NOW)

    assert len(fake.requests) == 1
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("status", [401, 403])
def test_alpaca_source_when_keys_refused_says_so_without_the_secret(fake, status):
    fake.script.append(Reply(status, {"message": "forbidden."}))

    with pytest.raises(SourceError) as err:
        source(fake).fetch(START, END, now=NOW)

    message = str(err.value)
    assert f"API keys refused (HTTP {status}: forbidden.)" in message and "ALPACA_API_KEY" in message
    assert SECRET not in message and KEY_ID not in message and len(fake.requests) == 1


def test_alpaca_source_when_request_rejected_includes_alpacas_message(fake):
    fake.script.append(Reply(422, {"code": 42210000, "message": "invalid start"}))

    with pytest.raises(SourceError, match=r"rejected \(HTTP 422: invalid start\)"):
        source(fake).fetch(START, END, now=NOW)


def test_alpaca_source_when_server_unreachable_names_the_host():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = AlpacaSource(AlpacaConfig(symbols=("AAA",), url_override=f"http://127.0.0.1:{port}"))

    with pytest.raises(SourceError, match=rf"cannot reach 127\.0\.0\.1:{port}"):
        src.fetch(START, END, now=NOW)


def test_alpaca_source_when_server_hangs_times_out(fake):
    fake.script.append(Reply(200, {"bars": {}, "next_page_token": None}, delay=1.0))

    started = time.monotonic()
    with pytest.raises(SourceError, match=r"no answer from 127\.0\.0\.1:\d+ within 0\.2 s"):
        source(fake, timeout_seconds=0.2).fetch(START, END, now=NOW)

    assert time.monotonic() - started < 0.9


def test_alpaca_source_when_window_is_naive_raises(fake):
    with pytest.raises(ValueError, match="timezone-aware"):
        source(fake).fetch(START.replace(tzinfo=None), END, now=NOW)


def test_alpaca_source_when_keys_missing_raises_config_error(monkeypatch):
    monkeypatch.delenv("ALPACA_API_KEY")
    monkeypatch.delenv("ALPACA_SECRET_KEY")

    with pytest.raises(ConfigError, match="ALPACA_API_KEY and ALPACA_SECRET_KEY must be set"):
        AlpacaSource(AlpacaConfig(symbols=("AAA",)))


def test_alpaca_source_when_keys_given_uses_them_over_env(fake):
    src = AlpacaSource(AlpacaConfig(symbols=("AAA",), url_override=fake.url), api_key="k2", secret_key="s2")

    src.fetch(START, END, now=NOW)

    assert fake.requests[0].headers["apca-api-key-id"] == "k2"


# --- config and helpers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"symbols": ()}, "symbols"),
        ({"symbols": "AAPL"}, "symbols"),
        ({"symbols": ("aapl",)}, "symbols"),
        ({"symbols": ("BTC/USD",)}, "symbols"),
        ({"symbols": ("AAA", "AAA")}, "symbols"),
        ({"timeframe": "30m"}, "timeframe"),
        ({"feed": "nasdaq"}, "feed"),
        ({"adjustment": "none"}, "adjustment"),
        ({"url_override": "127.0.0.1:8080"}, "url_override"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff_seconds": -1.0}, "backoff_seconds"),
        ({"symbols_per_request": 0}, "symbols_per_request"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
    ],
)
def test_alpaca_config_when_value_invalid_names_the_field(kwargs, field_name):
    with pytest.raises(ConfigError) as err:
        AlpacaConfig(**{"symbols": ("AAA",), **kwargs})

    assert f"alpaca: {field_name}" in str(err.value) and "\n" not in str(err.value)


def test_retry_delay_prefers_a_numeric_retry_after_and_caps_it():
    assert [retry_delay(a, 0.5, None) for a in range(3)] == [0.5, 1.0, 2.0]
    assert retry_delay(0, 0.5, "7") == 7.0
    assert retry_delay(0, 0.5, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.5
    assert retry_delay(0, 0.5, "86400") == 60.0
