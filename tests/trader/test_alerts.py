"""Alerts from the trader: a real webhook receiver on 127.0.0.1, apprise's json:// URL pointed at it."""

from __future__ import annotations

import pytest
from fake_venue import FakeBroker, FakePredictor, config, make_bars
from webhook_receiver import webhook_receiver

from trader.alerts import Alerter, TraderAlerts, env_urls
from trader.config import load_config
from trader.domain import TradingState
from trader.errors import TraderConfigError
from trader.monitoring import run_observers
from trader.runner import Runner, replay_ticks


def _run(store, predictor, observers, n=8):
    bars = make_bars()
    broker = FakeBroker(bars=bars)
    runner = Runner(config=config(), store=store, broker=broker, predictor=predictor, run_id="sim-test", strict=True,
                    observers=observers)
    return runner.run(replay_ticks(bars)[:n], before_cycle=lambda t: broker.advance_to(t.ts))


def test_trader_alerts_when_halted_deliver_exactly_one_notification(store):
    predictor = FakePredictor()
    predictor.failures = ["connection refused"] * 3
    with webhook_receiver() as hook:
        alerts = TraderAlerts(Alerter.from_urls([hook.url()], source="test", field="urls"), run_id="sim-test")
        reports = _run(store, predictor, [alerts])
    assert [r.state for r in reports].count(TradingState.HALTED) == 6  # halted for six cycles...
    assert len(hook.received) == 1  # ...and told once
    note = hook.received[0]
    assert note["title"] == "Alphaline trader sim-test: HALTED" and note["type"] == "failure"
    assert "HALTED after 3 prediction failures in a row" in note["message"] and hook.received[0]["path"] == "/alerts"


def test_trader_alerts_a_trader_restarted_while_halted_does_not_alert_again(store):
    store.set_trading_state(TradingState.HALTED, reason="ops kill", changed_by="ops", at=make_bars()[0].ts)
    with webhook_receiver() as hook:
        alerts = TraderAlerts(Alerter([hook.url()]), run_id="sim-test", initial_state=store.trading_state().state)
        _run(store, FakePredictor(), [alerts], n=3)
    assert hook.received == []


def test_trader_alerts_repeated_denials_alert_once_per_streak(store):
    from trader.runner import CycleReport

    with webhook_receiver() as hook:
        alerts = TraderAlerts(Alerter([hook.url()]), run_id="paper", denied_cycles=2)
        ts = make_bars()[0].ts
        report = CycleReport(ts=ts, state=TradingState.ACTIVE, status="1 orders sized")
        for denials in ({"PRICE_COLLAR": 1}, {"PRICE_COLLAR": 2}, {"PRICE_COLLAR": 1}, {}, {"RATE_LIMITED": 1}):
            alerts.on_cycle(report, denials=denials, seconds=0.01)
    assert len(hook.received) == 1
    assert "denied 2 cycles in a row" in hook.received[0]["title"] and "PRICE_COLLAR × 3" in hook.received[0]["message"]


def test_trader_alerts_with_no_url_log_one_line_and_send_nothing(store, caplog):
    caplog.set_level("INFO", logger="alphaline.alerts")
    predictor = FakePredictor()
    predictor.failures = ["HTTP 503"] * 3
    _run(store, predictor, run_observers(config(), run_id="sim-test", env={}), n=4)
    lines = [r.getMessage() for r in caplog.records if r.name == "alphaline.alerts"]
    assert len(lines) == 1 and lines[0].startswith("alert not sent (no alert URLs configured")


def test_trader_alerts_a_receiver_that_is_down_never_stops_trading(store):
    with webhook_receiver() as hook:
        url = hook.url()
    predictor = FakePredictor()
    predictor.failures = ["HTTP 503"] * 3
    alerts = TraderAlerts(Alerter([url], timeout_s=1), run_id="sim-test")
    reports = _run(store, predictor, [alerts], n=4)
    assert len(reports) == 4 and reports[-1].state is TradingState.HALTED


def test_trader_config_bad_alert_url_is_one_line_naming_the_field(tmp_path):
    path = tmp_path / "trader.yaml"
    path.write_text("universe: {symbols: [AAA]}\nalerts: {urls: ['json://127.0.0.1:9/ok', 'slak://T000/B000/XXXX']}\n")
    with pytest.raises(TraderConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message == f"{path}: alerts.urls.1: 'slak://…' is not a URL apprise can send to (unknown scheme or missing parts)"
    assert "T000" not in message  # the rest of a URL may be a token


def test_trader_alerts_env_urls_split_like_apprise_and_refuse_a_bad_one():
    good = env_urls({"ALPHALINE_ALERT_URLS": "json://127.0.0.1:9/a, mailto://u:p@example.com?to=a@b.c,d@e.f"})
    assert good == ("json://127.0.0.1:9/a", "mailto://u:p@example.com?to=a@b.c,d@e.f")
    with pytest.raises(TraderConfigError, match=r"^environment: ALPHALINE_ALERT_URLS.1: 'nope://…' is not a URL"):
        env_urls({"ALPHALINE_ALERT_URLS": "json://127.0.0.1:9/a nope://secret"})


def test_trader_cli_run_that_halts_delivers_one_notification_and_exits_3(home):
    import socket

    from test_trader_cli import cli, write_config

    with socket.socket() as down, webhook_receiver() as hook:  # bound, never listening: the service is "down"
        down.bind(("127.0.0.1", 0))
        cfg = write_config(home, f"http://127.0.0.1:{down.getsockname()[1]}", alerts={"urls": [hook.url("trader")]})
        result = cli("run", "--mode", "sim", "--config", cfg)
    assert result.exit_code == 3, result.output
    assert len(hook.received) == 1 and hook.received[0]["title"] == "Alphaline trader sim-2024-03-05: HALTED"
    assert "HALTED after 3 prediction failures in a row" in hook.received[0]["message"]


def test_trader_cli_run_with_a_bad_env_alert_url_is_one_line(home, monkeypatch):
    from test_trader_cli import cli, one_line_error, write_config

    monkeypatch.setenv("ALPHALINE_ALERT_URLS", "hxxp://hooks.example/TOKEN123")
    line = one_line_error(cli("run", "--mode", "sim", "--config", write_config(home, "http://127.0.0.1:9")))
    assert "ALPHALINE_ALERT_URLS.0: 'hxxp://…' is not a URL apprise can send to" in line and "TOKEN123" not in line
    assert not (home / "trader" / "sim.db").exists()
