"""Trader metrics (prometheus_client) and the ops API's /health and /metrics."""

from __future__ import annotations

import datetime as dt
import urllib.request

import pytest
from fake_venue import FakeBroker, FakePredictor, config, make_bars
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trader.api import create_app
from trader.domain import TradingState
from trader.errors import TraderConfigError
from trader.metrics import TraderMetrics
from trader.runner import Runner, replay_ticks


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _run(store, cfg, n=6, predictor=None):
    """The run's reports and its metrics: counters as this run's increments, gauges as they stand.

    Increments, because a process that imported Feast has prometheus_client in multiprocess mode (Feast sets
    PROMETHEUS_MULTIPROC_DIR): counters of one name then add up across every TraderMetrics of the process.
    """
    bars = make_bars()
    broker, metrics = FakeBroker(bars=bars), TraderMetrics()
    before = samples(generate_latest(metrics.registry).decode())
    reports = Runner(config=cfg, store=store, broker=broker, predictor=predictor or FakePredictor(), run_id="m",
                     strict=True, observers=[metrics]).run(replay_ticks(bars)[:n], before_cycle=lambda t: broker.advance_to(t.ts))
    after = samples(generate_latest(metrics.registry).decode())
    counted = ("_total", "_count", "_sum", "_bucket")
    return reports, {k: v - before.get(k, 0.0) if k[0].endswith(counted) else v for k, v in after.items()}


def test_trader_metrics_count_cycles_orders_fills_and_track_equity_and_state(store):
    reports, m = _run(store, config())
    assert m[("alphaline_trader_cycles_total", ())] == len(reports) == 6
    assert m[("alphaline_trader_orders_submitted_total", ())] == sum(r.submitted for r in reports) > 0
    assert m[("alphaline_trader_fills_total", ())] == sum(r.fills for r in reports)
    assert m[("alphaline_trader_equity", ())] == pytest.approx(float(reports[-1].equity))
    assert m[("alphaline_trader_cycle_seconds_count", ())] == 6
    assert m[("alphaline_trader_state", (("alphaline_trader_state", "active"),))] == 1
    assert m[("alphaline_trader_last_cycle_timestamp_seconds", ())] == reports[-1].ts.timestamp()


def test_trader_metrics_count_denials_by_reason_code(store):
    reports, m = _run(store, config(risk={"max_notional_per_order": "100"}))
    denied = {labels[0][1]: v for (name, labels), v in m.items() if name == "alphaline_trader_order_denials_total"}
    assert denied == {"NOTIONAL_EXCEEDS_MAX_PER_ORDER": sum(r.denied for r in reports)} and sum(denied.values()) > 0


def test_trader_metrics_state_goes_halted_after_prediction_failures(store):
    predictor = FakePredictor()
    predictor.failures = ["HTTP 503"] * 3
    _, m = _run(store, config(), n=4, predictor=predictor)
    assert m[("alphaline_trader_state", (("alphaline_trader_state", "halted"),))] == 1
    assert m[("alphaline_trader_orders_submitted_total", ())] == 0


def test_trader_metrics_served_over_http_and_a_taken_port_is_one_line(store):
    metrics = TraderMetrics()
    server = metrics.serve(0)
    try:
        port = server.server_address[1]
        scrape = lambda: samples(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())  # noqa: E731
        before = scrape()[("alphaline_trader_cycles_total", ())]
        metrics.cycles.inc()
        assert scrape()[("alphaline_trader_cycles_total", ())] == before + 1
        with pytest.raises(TraderConfigError, match=rf"^trader.yaml: metrics.port: cannot serve metrics on 127.0.0.1:{port} "):
            TraderMetrics().serve(port)
    finally:
        server.shutdown()
        server.server_close()


def test_ops_api_health_and_metrics_read_the_store(store):
    _run(store, config())
    client = TestClient(create_app(store=store, token=None))
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["state"] == "active"
    store.set_trading_state(TradingState.HALTED, reason="ops kill", changed_by="ops", at=dt.datetime(2024, 3, 5, 16, tzinfo=dt.UTC))
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    m = samples(response.text)
    assert m[("alphaline_trader_state", (("state", "halted"),))] == 1 and m[("alphaline_trader_state", (("state", "active"),))] == 0
    last = store.latest_audit("cycle").payload
    assert m[("alphaline_trader_equity", ())] == pytest.approx(float(last["equity"]))
    assert m[("alphaline_trader_audit_records", ())] == store.audit_head()[0]
    assert m[("alphaline_trader_open_positions", ())] == sum(1 for p in store.positions().values() if p.qty != 0)
    assert client.get("/health").json()["state"] == "halted"  # halted is healthy: the API works and says so


def test_ops_api_health_when_the_store_fails_is_503_with_the_reason(store, monkeypatch):
    from trader.errors import StoreError

    client = TestClient(create_app(store=store, token=None))
    assert client.get("/health").status_code == 200

    def broken() -> None:
        raise StoreError("sqlite:///trader.db: disk I/O error")

    monkeypatch.setattr(store, "trading_state", broken)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reason": "state store: StoreError: sqlite:///trader.db: disk I/O error"}
