"""Portfolio construction (skfolio HRP and mean-variance) in sizing, the point-in-time history, and sim runs with it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from fake_venue import OPEN, SYMBOLS, PredictionServer, make_bars, write_marts_bars
from trader_builders import NOW, prediction

from trader.brokers.bars import Bar, InMemoryBars
from trader.cli import main
from trader.config import SizingConfig, load_config
from trader.domain import Symbol
from trader.errors import TraderConfigError
from trader.history import MarketHistory, MarketSnapshot
from trader.optimizer import optimize
from trader.risk.record import decision_checks
from trader.sizing import limit_turnover, size_orders
from trader.store import TraderStore

STEP = dt.timedelta(minutes=15)


def snapshot(n: int = 300, vols=(0.01, 0.01, 0.03, 0.01)) -> MarketSnapshot:
    rng = np.random.default_rng(3)
    return MarketSnapshot(asof=NOW, symbols=tuple(Symbol(s) for s in ("AAA", "BBB", "CCC", "DDD")),
                          returns=rng.normal(0, vols, size=(n, len(vols))))


# -- history: point in time ----------------------------------------------------------------------
def test_history_snapshot_holds_only_bars_closed_by_the_decision_time():
    bars = [Bar(symbol="AAA", ts=OPEN + i * STEP, open=D(100), high=D(999), low=D(1), close=D(c), volume=D(10))
            for i, c in enumerate([100, 101, 102, 900])]
    history = MarketHistory(InMemoryBars(bars), lookback=dt.timedelta(days=3), min_observations=10)
    at_third_close = history.snapshot(["AAA"], until=OPEN + 3 * STEP)
    assert at_third_close.returns.shape == (2, 1) and at_third_close.returns.max() < 0.02  # the jump to 900 is not known
    assert history.snapshot(["AAA"], until=OPEN + 4 * STEP).returns[-1, 0] == pytest.approx(900 / 102 - 1)


def test_history_picks_up_a_bar_that_reached_the_warehouse_late():
    bars = make_bars(["AAA", "BBB"], n=4)
    late = [b for b in bars if not (b.symbol == "BBB" and b.ts == OPEN + STEP)]
    feed = InMemoryBars(late)
    history = MarketHistory(feed, lookback=dt.timedelta(days=3), min_observations=10)
    assert np.isnan(history.snapshot(["AAA", "BBB"], until=OPEN + 3 * STEP).returns).any()
    feed.__init__(bars)  # the missing bar lands after that decision
    snap = history.snapshot(["AAA", "BBB"], until=OPEN + 4 * STEP)
    assert snap.returns.shape == (3, 2) and not np.isnan(snap.returns).any()


def test_history_adv_counts_complete_sessions_only():
    day1 = make_bars(["AAA"], n=26, start=OPEN - dt.timedelta(days=1))  # every bar 100,000 shares
    today = make_bars(["AAA"], n=3)
    snap = MarketHistory(InMemoryBars(day1 + today), lookback=dt.timedelta(days=5)).snapshot(["AAA"], until=OPEN + 3 * STEP)
    assert snap.adv == {"AAA": D(2_600_000)}


# -- the optimiser -------------------------------------------------------------------------------
def test_hrp_gives_the_volatile_name_less_and_respects_the_cap():
    shares, note = optimize({"AAA": 1, "BBB": 1, "CCC": -1, "DDD": -1}, {}, snapshot(), method="hrp", max_share=0.3,
                            min_observations=60)
    assert note == "hrp over 4 names, 300 bars" and sum(shares.values()) == pytest.approx(1.0)
    assert shares["CCC"] < min(shares["AAA"], shares["BBB"], shares["DDD"]) and max(shares.values()) <= 0.3 + 1e-9


def test_mvo_puts_more_on_the_higher_score_at_equal_risk():
    scores = {"AAA": 0.004, "BBB": 0.001, "DDD": -0.002}
    shares, note = optimize({"AAA": 1, "BBB": 1, "DDD": -1}, scores, snapshot(), method="mvo", max_share=0.6,
                            min_observations=60)
    assert note.startswith("mvo over 3 names") and sum(shares.values()) == pytest.approx(1.0)
    assert shares["AAA"] > shares["DDD"] > shares["BBB"] and shares["AAA"] <= 0.6 + 1e-6


def test_optimizer_with_too_little_history_says_so_and_sizing_falls_back_to_equal_weights():
    preds = [prediction(s, score=x, direction="long" if x > 0 else "short") for s, x in
             [("AAA", 0.9), ("BBB", 0.5), ("CCC", -0.5), ("DDD", -0.9)]]
    result = size_orders(preds, positions={}, prices={Symbol(s): D(50) for s in "AAA BBB CCC DDD".split()}, equity=D(100_000),
                         config=SizingConfig(k=2, max_weight=D("0.25"), optimizer="hrp"), run_id="t", decision_ts=NOW,
                         market=snapshot(n=20), min_observations=60)
    assert result.note == "hrp: 20 bars of returns for 4 names, fewer than 60; weights by equal"
    assert set(result.weights.values()) == {D("0.25"), D("-0.25")}
    optimized = size_orders(preds, positions={}, prices={Symbol(s): D(50) for s in "AAA BBB CCC DDD".split()},
                            equity=D(100_000), config=SizingConfig(k=2, max_weight=D("0.4"), optimizer="hrp"), run_id="t",
                            decision_ts=NOW, market=snapshot(), min_observations=60)
    assert optimized.note.startswith("hrp over 4") and abs(optimized.weights["CCC"]) < optimized.weights["AAA"]
    assert sum(abs(w) for w in optimized.weights.values()) == pytest.approx(D(1), abs=D("1e-6"))


def test_turnover_cap_moves_part_of_the_way_and_net_cap_trims_the_heavier_side():
    assert limit_turnover({"AAA": D("0.4"), "BBB": D(0)}, {"BBB": D("0.4")}, D("0.4")) == {"AAA": D("0.2"), "BBB": D("0.2")}
    preds = [prediction("AAA", score=0.9), prediction("BBB", score=0.8), prediction("CCC", score=-0.5, direction="short")]
    result = size_orders(preds, positions={}, prices={Symbol(s): D(10) for s in ("AAA", "BBB", "CCC")}, equity=D(10_000),
                         config=SizingConfig(k=2, max_weight=D("0.3"), max_net_weight=D("0.1")), run_id="t", decision_ts=NOW)
    assert result.weights == {"AAA": D("0.2"), "BBB": D("0.2"), "CCC": D("-0.3")}  # longs 0.6 → 0.4: net 0.1


def test_config_with_an_unknown_optimizer_is_one_line_naming_the_field(tmp_path):
    path = tmp_path / "trader.yaml"
    path.write_text("universe: {symbols: [AAA]}\nsizing: {optimizer: blacklitterman}\n")
    with pytest.raises(TraderConfigError, match=r"trader.yaml: sizing.optimizer: Input should be 'none', 'mvo' or 'hrp'"):
        load_config(path)


# -- `trader run --mode sim` with an optimiser, then `trader risk` -----------------------------------
@pytest.fixture
def home_with_history(tmp_path, monkeypatch):
    """The replay day's first 6 bars plus three earlier sessions (78 bars a symbol) to estimate risk from."""
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path))
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "TRADER_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    bars = make_bars(n=6)
    for days_back in (1, 4, 5):  # Mon 4 Mar, Fri 1 Mar, Thu 29 Feb
        bars += make_bars(n=26, start=OPEN - dt.timedelta(days=days_back))
    write_marts_bars(tmp_path / "warehouse.duckdb", bars)
    return tmp_path


def write_config(home, url: str, optimizer: str, **risk) -> str:
    cfg = {"universe": {"symbols": list(SYMBOLS), "sectors": {"tech": ["AAA", "BBB"], "energy": ["CCC", "DDD"],
                                                             "health": ["EEE", "FFF"]}},
           "risk": {"max_position_pct": "0.30", "max_sector_pct": "0.60", "max_net_exposure_pct": "1.0", **risk},
           "sizing": {"k": 2, "max_weight": "0.3", "gross_exposure": "0.8", "optimizer": optimizer},
           "prediction": {"url": url, "timeout_s": 2}}
    path = home / "trader.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize("optimizer", ["hrp", "mvo"])
def test_cli_sim_session_with_an_optimizer_sizes_with_it_and_trades(home_with_history, optimizer):
    with PredictionServer() as server:
        cfg = write_config(home_with_history, server.url, optimizer, max_var_pct="0.5", max_adv_pct="0.05",
                           max_correlated_pct="2")
        result = CliRunner().invoke(main, ["run", "--mode", "sim", "--config", cfg])
    assert result.exit_code == 0, result.output
    assert "done: 6 cycles" in result.output
    assert f"{optimizer} over 4 names" in result.output  # every decision: 2 long + 2 short, 78+ bars of history
    with TraderStore(f"sqlite:///{home_with_history / 'trader' / 'sim.db'}") as store:
        assert store.list_fills()
        checks = {c["check"] for r in store.audit_records() if r.kind == "risk_decision" for c in decision_checks(r.payload)}
    assert {"value_at_risk", "liquidity", "correlation_concentration"} <= checks
    report = CliRunner().invoke(main, ["risk", "--mode", "sim", "--config", cfg])
    assert report.exit_code == 0, report.output
    assert "stress scenarios" in report.output and "market -5% in a bar (beta-scaled)" in report.output
    assert "historical, vol x3" in report.output and "liquidity" in report.output


def test_cli_sim_session_with_a_tight_var_limit_denies_with_the_code(home_with_history):
    with PredictionServer() as server:
        cfg = write_config(home_with_history, server.url, "hrp", max_var_pct="0.001")
        result = CliRunner().invoke(main, ["run", "--mode", "sim", "--config", cfg])
    assert result.exit_code == 0, result.output
    with TraderStore(f"sqlite:///{home_with_history / 'trader' / 'sim.db'}") as store:
        reasons = {r.payload["reason"] for r in store.audit_records() if r.kind == "risk_decision"}
        assert not store.list_fills()
    assert reasons == {"VAR_LIMIT_EXCEEDED"}


def test_cli_sim_session_with_an_optimizer_but_too_little_history_falls_back_and_says_so(home):
    with PredictionServer() as server:  # `home`: only the replay day's 6 bars in the warehouse
        cfg = write_config(home, server.url, "hrp")
        result = CliRunner().invoke(main, ["run", "--mode", "sim", "--config", cfg])
    assert result.exit_code == 0, result.output
    assert "hrp: 0 bars of returns for 3 names, fewer than 60; weights by equal" in result.output, result.output
    assert "hrp: 5 bars of returns for 4 names, fewer than 60; weights by equal" in result.output  # the 6th bar's cycle
    assert "hrp over" not in result.output and "done: 6 cycles" in result.output


def test_cli_risk_user_errors_are_one_line(home_with_history):
    with PredictionServer() as server:
        cfg = write_config(home_with_history, server.url, "none")
    no_store = CliRunner().invoke(main, ["risk", "--mode", "sim", "--config", cfg])
    assert no_store.exit_code == 1 and len(no_store.output.strip().splitlines()) == 1 and "no sim store" in no_store.output
    bad = CliRunner().invoke(main, ["risk", "--mode", "sim", "--config", cfg, "--market-shock", "five"])
    assert bad.exit_code == 2 and bad.output.strip() == "Error: --market-shock: 'five' is not a number"
