from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal as D

import pytest
from fake_venue import FakeBroker, FakePredictor, config, make_bars
from fastapi.testclient import TestClient
from pydantic import SecretStr

from trader.api import create_app
from trader.domain import TradingState
from trader.runner import Runner, replay_ticks

TOKEN = "tok-3f9a-very-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def traded(store):
    """A store after a few simulated cycles (orders, fills, positions, equity marks, audit records)."""
    bars = make_bars(n=4)
    broker = FakeBroker(bars=bars)
    Runner(config=config(), store=store, broker=broker, predictor=FakePredictor(), run_id="api-test", strict=True).run(
        replay_ticks(bars), before_cycle=lambda tick: broker.advance_to(tick.ts))
    return store


@pytest.fixture
def client(traded):
    canceled = []
    app = create_app(store=traded, token=SecretStr(TOKEN), canceller=lambda: canceled.append(1) or ["al-1", "al-2"])
    with TestClient(app) as c:
        c.canceled = canceled
        yield c


@pytest.mark.parametrize(("method", "path", "body"), [("post", "/kill", {"reason": "x"}), ("post", "/resume", {"by": "bob"})])
def test_ops_api_kill_and_resume_without_a_token_are_401_and_with_a_wrong_one_403(client, traded, method, path, body):
    assert client.request(method, path, json=body).status_code == 401
    assert client.request(method, path, json=body, headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    assert client.request(method, path, json=body, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert traded.trading_state().state is TradingState.ACTIVE


def test_ops_api_kill_with_the_token_halts_and_cancels_then_resume_reactivates(client, traded):
    response = client.post("/kill", json={"reason": "desk says stop", "by": "alice"}, headers=AUTH)
    assert response.status_code == 200 and response.json()["state"] == "halted" and response.json()["canceled"] == ["al-1", "al-2"]
    assert client.canceled == [1]
    assert (traded.trading_state().state, traded.trading_state().changed_by) == (TradingState.HALTED, "alice")
    assert client.get("/status").json()["reason"] == "desk says stop"
    assert client.post("/resume", json={"by": "bob"}, headers=AUTH).json()["state"] == "active"
    assert traded.trading_state().state is TradingState.ACTIVE


def test_ops_api_without_a_configured_token_refuses_kill(traded):
    with TestClient(create_app(store=traded, token=None)) as c:
        response = c.post("/kill", json={"reason": "x"}, headers=AUTH)
    assert response.status_code == 503 and "TRADER_API_TOKEN is not set" in response.json()["detail"]


def test_ops_api_kill_needs_a_reason(client):
    assert client.post("/kill", json={"reason": ""}, headers=AUTH).status_code == 422


def test_ops_api_read_endpoints_report_exact_state(client, traded):
    status = client.get("/status").json()
    assert status["state"] == "active" and status["last_cycle"]["run_id"] == "api-test" and status["audit"]["records"] > 0
    positions = client.get("/positions").json()
    held = {s: str(p.qty) for s, p in traded.positions().items() if p.qty}
    assert {p["symbol"]: p["qty"] for p in positions} == held and held  # quantities as exact strings
    orders = client.get("/orders", params={"limit": 3}).json()
    assert len(orders) == 3 and {"client_order_id", "status", "qty"} <= set(orders[0])
    pnl = client.get("/pnl").json()
    assert D(pnl["equity"]) == D(status["last_cycle"]["equity"])
    assert D(pnl["unrealized_pnl"]) + D(pnl["realized_pnl"]) - D(pnl["fees"]) == D(pnl["equity"]) - D(100_000)
    assert client.get("/audit/verify").json() | {"head": None} == {"ok": True, "count": status["audit"]["records"], "head": None,
                                                                  "first_bad_seq": None, "reason": ""}


def test_ops_api_audit_verify_reports_a_broken_chain(client, traded, store_url):
    import sqlite3

    with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
        conn.execute("DROP TRIGGER audit_no_update")  # an attacker with file access
        conn.execute("UPDATE audit SET payload = replace(payload, 'api-test', 'forged') WHERE seq = 3")
    result = client.get("/audit/verify").json()
    assert result["ok"] is False and result["first_bad_seq"] == 3


def test_ops_api_no_secret_in_any_response_or_log(client, monkeypatch, caplog):
    monkeypatch.setenv("ALPACA_SECRET_KEY", "sk-live-should-never-leak")
    caplog.set_level(logging.DEBUG)
    bodies = [client.get(path).text for path in ("/status", "/positions?all=true", "/orders", "/pnl", "/audit/verify", "/openapi.json")]
    bodies += [client.post("/kill", json={"reason": "r"}, headers=AUTH).text,
               client.post("/resume", json={"by": "b"}, headers={"Authorization": "Bearer wrong-guess"}).text]
    for secret in (TOKEN, "sk-live-should-never-leak", "wrong-guess"):
        assert not any(secret in body for body in bodies) and secret not in caplog.text
    assert dt.datetime.fromisoformat(client.get("/status").json()["changed_at"]).tzinfo is not None
