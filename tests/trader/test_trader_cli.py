from __future__ import annotations

import re
from decimal import Decimal as D

import pytest
import yaml
from click.testing import CliRunner
from fake_venue import SYMBOLS, PredictionServer

from trader.cli import main
from trader.domain import OrderStatus, TradingState
from trader.store import TraderStore

CONFIG = {
    "universe": {"symbols": list(SYMBOLS), "sectors": {"tech": ["AAA", "BBB"], "energy": ["CCC", "DDD"], "health": ["EEE", "FFF"]}},
    "risk": {"max_position_pct": "0.30", "max_sector_pct": "0.60", "max_net_exposure_pct": "1.0"},
    "sizing": {"k": 2, "max_weight": "0.2"},
}


def one_line_error(result, *, code: int | None = None) -> str:
    """The CLI failed with exactly one line of output and no traceback."""
    assert result.exit_code != 0 and (code is None or result.exit_code == code), result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result.output.strip()


def write_config(home, url: str, **changes) -> str:
    path = home / "trader.yaml"
    path.write_text(yaml.safe_dump(CONFIG | {"prediction": {"url": url, "timeout_s": 2}} | changes))
    return str(path)


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_sim_run_then_status_positions_orders_and_explain(home):
    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        result = cli("run", "--mode", "sim", "--config", cfg)
    assert result.exit_code == 0, result.output
    assert "done: 6 cycles" in result.output and len(server.requests) == 6
    assert server.requests[0]["as_of"] == "2024-03-05T14:45:00Z"
    status = cli("status", "--config", cfg)
    assert status.exit_code == 0 and "state:     ACTIVE" in status.output and "sim.db" in status.output
    assert re.search(r"equity:    \d+\.\d\d  cash \d+\.\d\d  positions -?\d+\.\d\d\n", status.output)  # cents shown
    assert cli("positions", "--config", cfg).output.splitlines()[0].split() == ["symbol", "qty", "avg_cost", "realized", "fees"]
    with TraderStore(f"sqlite:///{home / 'trader' / 'sim.db'}") as store:
        filled = next(o for o in store.list_orders() if o.status is OrderStatus.FILLED)
    assert filled.client_order_id in cli("orders", "--config", cfg).output
    lineage = cli("explain", filled.client_order_id, "--config", cfg)
    assert lineage.exit_code == 0, lineage.output
    text = lineage.output
    assert f"order {filled.client_order_id}: {filled.side.value} {filled.qty} {filled.symbol}" in text
    assert re.search(r"prediction  model ens:http-fake, score [+-]\d\.\d{4} (long|short), confidence 0\.60, features at 2024-03-05T", text)
    assert server.requests[0]["explain"] == 5  # the default: each decision records the score's top SHAP contributions
    assert re.search(r"why         base \+0\.0000; xs_resid_ret_1 [+-]\d\.\d{4}, ret_4 [+-]\d\.\d{4}; other features", text)
    assert re.search(r"by family: xs [+-]\d\.\d{4}, ret [+-]\d\.\d{4}", text)
    assert "risk        APPROVED" in text and "trading_state" in text and "buying_power" in text
    assert "order submit, venue sim" in text and "order accepted, order_id sim-" in text and re.search(r"fill sim-\d+-1: ", text)


def test_cli_sim_run_resumes_and_once_runs_one_cycle(home):
    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        first = cli("run", "--once", "--config", cfg)
        second = cli("run", "--once", "--config", cfg)
        rest = cli("run", "--config", cfg)
        again = cli("run", "--config", cfg)
    assert "done: 1 cycles" in first.output and "done: 1 cycles" in second.output and "done: 4 cycles" in rest.output
    assert first.output.splitlines()[1].startswith("2024-03-05T14:45:00") and second.output.splitlines()[1].startswith("2024-03-05T15:00:00")
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_cli_sim_venue_charges_the_configured_costs_and_a_store_keeps_its_venue(home):
    """trader.yaml ``sim:``: each fill moved against the order by slippage_bps and charged fee_bps of its notional; a
    resumed store refuses other costs (its fills would not be comparable), ``--fresh`` starts one with them."""
    costs = {"slippage_bps": "2.5", "fee_bps": "1", "fee_per_share": "0.01", "max_participation": None}
    with PredictionServer() as server:
        cfg = write_config(home, server.url, sim=costs)
        assert cli("run", "--once", "--config", cfg).exit_code == 0
        cheaper = write_config(home, server.url, sim=costs | {"fee_bps": "0.5"})
        refused = cli("run", "--once", "--config", cheaper)
        assert refused.exit_code != 0
        assert refused.output.strip().splitlines()[-1] == (
            "Error: trader.yaml sim: this sim store started with fee_bps 1 (now 0.5); set it back or add --fresh")
        assert cli("run", "--config", write_config(home, server.url, sim=costs | {"fee_bps": "1.00"})).exit_code == 0
    with TraderStore(f"sqlite:///{home / 'trader' / 'sim.db'}") as store:
        fills, orders = store.list_fills(), {o.client_order_id: o for o in store.list_orders()}
        venue = next(r for r in store.audit_records() if r.kind == "sim_session").payload["venue"]
    assert fills and venue == costs
    for fill in fills:
        assert fill.fee == fill.qty * fill.price * D("1") / 10_000 + fill.qty * D("0.01")
    # The fill price is the next bar's open (whole cents) moved 2.5 bp against the order: up for a buy, down for a sell.
    for fill in fills:
        open_ = fill.price / (1 + fill.side.sign * D("0.00025"))
        assert open_ == open_.quantize(D("0.01")) and orders[fill.client_order_id].side is fill.side


def test_cli_sim_store_from_before_venue_costs_resumes_costless_or_refuses_other_costs(home):
    import datetime as dt

    (home / "trader").mkdir(exist_ok=True)
    with TraderStore(f"sqlite:///{home / 'trader' / 'sim.db'}") as store:  # the record an older version wrote
        store.append_audit("sim_session", {"cash": D(100_000), "first_day": "2024-03-05"},
                           ts=dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC))
    with PredictionServer() as server:
        refused = cli("run", "--once", "--config", write_config(home, server.url))
        costless = {"slippage_bps": 0, "fee_bps": 0}
        resumed = cli("run", "--config", write_config(home, server.url, sim=costless))
    assert refused.exit_code != 0 and "started with slippage_bps 0 (now 1.0), fee_bps 0 (now 0.5)" in refused.output
    assert resumed.exit_code == 0, resumed.output
    with TraderStore(f"sqlite:///{home / 'trader' / 'sim.db'}") as store:
        fills = store.list_fills()
    assert fills and all(f.fee == 0 for f in fills)


def test_cli_kill_persists_across_processes_and_the_loop_then_sends_nothing(home):
    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        kill = cli("kill", "--reason", "feed looks wrong", "--by", "alice", "--config", cfg)
        assert kill.exit_code == 0 and kill.output.startswith("HALTED (sim): feed looks wrong.")
        status = cli("status", "--config", cfg)  # a new store object, as a new process would open
        assert "state:     HALTED" in status.output and "by alice: feed looks wrong" in status.output
        run = cli("run", "--once", "--config", cfg)
        assert run.exit_code == 3 and "sent 0" in run.stdout and "HALTED (feed looks wrong)" in run.stdout
        assert "run ended HALTED" in run.stderr and "by alice: feed looks wrong" in run.stderr
        assert server.requests == []
        resume = cli("resume", "--by", "bob", "--config", cfg)
        assert resume.exit_code == 0 and "ACTIVE" in cli("status", "--config", cfg).output
        assert "sent 0" not in cli("run", "--once", "--config", cfg).output
    with TraderStore(f"sqlite:///{home / 'trader' / 'sim.db'}") as store:
        states = [(r.payload["state"], r.payload["changed_by"]) for r in store.audit_records() if r.kind == "trading_state"]
        assert states == [("halted", "alice"), ("active", "bob")] and store.trading_state().state is TradingState.ACTIVE


def test_cli_live_mode_needs_the_explicit_confirmation(home):
    cfg = write_config(home, "http://127.0.0.1:9")
    message = one_line_error(cli("run", "--mode", "live", "--config", cfg), code=2)
    assert "--i-understand-this-is-live" in message


@pytest.mark.parametrize(("args", "expected"), [
    (["explain", "al-nope"], "no sim store at "),  # an unknown order in an existing store: test_trader_cli_safety
    (["run", "--config", "missing.yaml"], "missing.yaml: cannot read the file"),
    (["run", "--mode", "sim", "--date", "2024-03-09"], "marts.bars has no 15m bars on 2024-03-09"),
    (["run", "--mode", "paper", "--date", "2024-03-05"], "--date and --fresh apply to --mode sim only"),
    (["run", "--cash", "lots"], "'lots' is not a number"),
    (["reconcile", "--mode", "paper"], "ALPACA_API_KEY: not set"),
    (["reconcile", "--mode", "sim"], "the venue lives inside `trader run`"),
    (["kill", "--reason", "x", "--mode", "paper"], "HALTED (paper), but the venue cannot be reached"),
])
def test_cli_user_errors_are_one_line_with_a_non_zero_exit(home, monkeypatch, args, expected):
    monkeypatch.chdir(home)
    write_config(home, "http://127.0.0.1:9")
    assert expected in one_line_error(cli(*args))


def test_cli_config_typo_and_placeholder_secret_are_one_line_errors(home, monkeypatch):
    cfg = write_config(home, "http://127.0.0.1:9", risk={"max_postion_pct": "0.1"})
    assert "risk.max_postion_pct: Extra inputs are not permitted" in one_line_error(cli("run", "--config", cfg))
    cfg = write_config(home, "http://127.0.0.1:9")
    monkeypatch.setenv("ALPACA_API_KEY", "changeme")
    assert "ALPACA_API_KEY: looks like a placeholder" in one_line_error(cli("run", "--config", cfg))


def test_cli_prediction_service_down_runs_without_orders_and_halts(home):
    cfg = write_config(home, "http://127.0.0.1:9", prediction={"url": "http://127.0.0.1:9", "timeout_s": 1,
                                                                "max_consecutive_failures": 2})
    result = cli("run", "--config", cfg)
    assert result.exit_code == 3, result.output  # ended HALTED
    lines = result.stdout.splitlines()
    assert "no new orders, prediction failed (1 of 2 before HALTED): prediction service http://127.0.0.1:9: unreachable" in lines[1]
    assert "HALTED after 2 prediction failures" in lines[2] and "sent 0" in lines[-2]
    status = cli("status", "--config", cfg).output
    assert "HALTED since" in status and "by runner: prediction service failed 2 cycles in a row" in status


def test_cli_output_never_shows_secrets(home, monkeypatch):
    monkeypatch.setenv("ALPACA_API_KEY", "PKSECRETKEY123")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "sk-very-secret-456")
    monkeypatch.setenv("TRADER_API_TOKEN", "tok-789-secret")
    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        outputs = [cli(*args, "--config", cfg).output for args in (["run", "--once"], ["status"], ["positions"], ["orders"])]
    for secret in ("PKSECRETKEY123", "sk-very-secret-456", "tok-789-secret"):
        assert not any(secret in out for out in outputs)


def test_python_m_trader_cli_runs_the_trader_command(home):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "trader.cli", "paths"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == cli("paths").output and "sim store:" in out.stdout
