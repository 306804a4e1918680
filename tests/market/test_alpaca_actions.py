"""AlpacaCorporateActions against a fake ``GET /v1/corporate-actions`` on 127.0.0.1 (never the real API)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from orchestration.errors import SourceError
from orchestration.market.alpaca import AlpacaConfig
from orchestration.market.alpaca_actions import AlpacaCorporateActions
from orchestration.market.corporate_actions import validate_actions

PAGES = [
    {"corporate_actions": {
        "forward_splits": [{"symbol": "NVDA", "cusip": "67066G104", "new_rate": 10, "old_rate": 1, "process_date": "2024-06-10",
                            "ex_date": "2024-06-10", "record_date": "2024-06-06", "payable_date": "2024-06-07"}],
        "cash_dividends": [{"symbol": "AAPL", "cusip": "037833100", "rate": 0.25, "special": False, "foreign": False,
                            "process_date": "2024-05-16", "ex_date": "2024-05-10", "record_date": "2024-05-13",
                            "payable_date": "2024-05-16"}]},
     "next_page_token": "p2"},
    {"corporate_actions": {
        "reverse_splits": [{"symbol": "XYZ", "old_cusip": "1", "new_cusip": "2", "new_rate": 1, "old_rate": 10,
                            "process_date": "2024-07-01", "ex_date": "2024-07-01"}],
        "name_changes": [{"old_symbol": "OLD", "new_symbol": "NEW", "old_cusip": "3", "new_cusip": "4", "process_date": "2024-07-02"}]},
     "next_page_token": None},
]


class _Fake:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.script: deque[int] = deque()


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv("ALPACA_API_KEY", "test-key-id")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "test-secret-value")
    state = _Fake()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            state.requests.append((url.path, params))
            status = state.script.popleft() if state.script else 200
            body = PAGES[1 if params.get("page_token") == "p2" else 0] if status == 200 else {"message": "too many requests"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def _source(fake, **config) -> AlpacaCorporateActions:
    return AlpacaCorporateActions(AlpacaConfig(symbols=("AAPL", "NVDA", "XYZ"), url_override=fake.url, backoff_seconds=0.01, **config))


def test_alpaca_actions_when_pages_hold_splits_and_dividends_return_them_in_the_contract(fake):
    frame = _source(fake).corporate_actions(dt.date(2024, 5, 1), dt.date(2024, 7, 31))
    result = validate_actions(frame)
    assert result.rejected.is_empty()
    assert result.clean.select("symbol", "ex_date", "kind", "ratio", "amount", "source").rows() == [
        ("AAPL", dt.date(2024, 5, 10), "cash_dividend", None, "0.25", "alpaca"),
        ("NVDA", dt.date(2024, 6, 10), "split", "10", None, "alpaca"),
        ("XYZ", dt.date(2024, 7, 1), "split", "0.1", None, "alpaca"),
    ]
    path, params = fake.requests[0]
    assert path == "/v1/corporate-actions" and params["symbols"] == "AAPL,NVDA,XYZ"
    assert params["types"] == "forward_split,reverse_split,cash_dividend"
    assert (params["start"], params["end"]) == ("2024-05-01", "2024-07-31")
    assert [p.get("page_token") for _, p in fake.requests] == [None, "p2"]


def test_alpaca_actions_when_rate_limited_retries_that_page_then_fails_with_one_line(fake):
    fake.script.extend([429])
    assert _source(fake).corporate_actions(dt.date(2024, 5, 1), dt.date(2024, 7, 31)).height == 3
    fake.script.extend([429] * 4)
    with pytest.raises(SourceError, match=r"^alpaca: corporate actions of 3 symbol\(s\) 2024-05-01..2024-07-31 .*429") as err:
        _source(fake, max_attempts=2).corporate_actions(dt.date(2024, 5, 1), dt.date(2024, 7, 31))
    assert "test-secret-value" not in str(err.value) and "\n" not in str(err.value)
