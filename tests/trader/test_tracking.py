"""Live against backtest for one session (trader/tracking.py): the session's own orders through the backtest's costs."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from fake_venue import FakePredictor, config, make_bars

from trader.brokers.bars import InMemoryBars
from trader.brokers.sim import FeeModel, SimBroker, SimConfig
from trader.errors import TraderError
from trader.runner import Runner, replay_ticks
from trader.store import TraderStore
from trader.tracking import track_session


def _session(store: TraderStore, bars, *, slippage_bps: str, fee_bps: str) -> None:
    broker = SimBroker(InMemoryBars(bars), config=SimConfig(slippage_bps=D(slippage_bps), fees=FeeModel(bps=D(fee_bps))),
                       start=bars[0].ts)
    Runner(config=config(), store=store, broker=broker, predictor=FakePredictor(), run_id="paper", strict=True).run(
        replay_ticks(bars), before_cycle=lambda t: broker.advance_to(t.ts))


def test_tracking_when_the_venue_fills_like_the_backtest_the_difference_is_zero(store):
    bars = make_bars()
    _session(store, bars, slippage_bps="1.0", fee_bps="0.5")
    report = track_session(store, InMemoryBars(bars), commission_bps=0.5, half_spread_bps=1.0)
    assert len(report.points) == 26 and report.points[0].live_pnl == report.points[0].shadow_pnl == 0
    assert all(p.difference == 0 for p in report.points)
    assert report.live["fills"] == report.shadow["fills"] > 10
    assert report.live["fees"] == report.shadow["fees"] and report.live["slippage_bps"] == report.shadow["slippage_bps"]
    assert report.tracking_error == 0


def test_tracking_when_the_venue_fills_worse_the_difference_is_the_extra_cost(store):
    bars = make_bars()
    _session(store, bars, slippage_bps="10", fee_bps="0.5")
    report = track_session(store, InMemoryBars(bars), commission_bps=0.5, half_spread_bps=1.0)
    assert report.difference < 0  # the paper fills cost 9 bps more than the backtest assumed
    # Against the arrival (the decision's close) both include the close-to-open gap; the venue's is 9 bps worse.
    assert report.live["slippage_bps"] - report.shadow["slippage_bps"] == pytest.approx(D(9), abs=D("0.05"))
    assert report.live["fills"] == report.shadow["fills"]
    worse = [o for o in report.orders if o["live_avg"] != o["shadow_avg"]]
    assert worse and all(D(o["live_slippage_bps"]) > D(o["shadow_slippage_bps"]) for o in worse)
    lines = "\n".join(report.lines())
    assert "difference -" in lines and f"slippage live {report.live['slippage_bps']} bps" in lines
    assert report.record()["difference"] == str(report.difference)


def test_tracking_of_an_empty_store_says_so(store):
    with pytest.raises(TraderError, match="no cycle yet"):
        track_session(store, InMemoryBars(make_bars(n=2)), commission_bps=0, half_spread_bps=0)


def test_session_tracking_asset_reports_live_against_backtest_with_a_chart(tmp_path):
    import dagster as dg
    from fake_venue import write_marts_bars

    from orchestration.defs.trader.assets import TRADER_TABLES, session_tracking, trader_session
    from orchestration.resources import ModelsResource, TradingResource
    from orchestration.warehouse.resource import WarehouseResource

    bars = make_bars()
    write_marts_bars(tmp_path / "warehouse.duckdb", bars)
    trading = TradingResource.for_home(tmp_path, mode="paper")
    (tmp_path / "trader").mkdir()
    with TraderStore(trading.store_url) as store:
        _session(store, bars, slippage_bps="5", fee_bps="0.5")
    result = dg.materialize([*TRADER_TABLES, trader_session, session_tracking], selection=[session_tracking],
                            resources={"trading": trading, "models": ModelsResource(home=str(tmp_path)),
                                       "warehouse": WarehouseResource(location=str(tmp_path / "warehouse.duckdb"))},
                            instance=dg.DagsterInstance.ephemeral())
    meta = result.asset_materializations_for_node("session_tracking")[0].metadata
    assert meta["session"].value == "2024-03-05" and meta["cycles"].value == 26
    assert meta["difference"].value < 0 and meta["fills_live"].value == meta["fills_backtest"].value > 10
    assert meta["slippage_bps_live"].value - meta["slippage_bps_backtest"].value == pytest.approx(4, abs=0.05)
    assert meta["chart"].value.startswith("![live against backtest](data:image/png;base64,")
    report = tmp_path / "reports" / "tracking" / "paper-2024-03-05.md"
    assert report.is_file() and "| order | symbol |" in report.read_text()
    assert (tmp_path / "reports" / "tracking" / "paper-2024-03-05.png").stat().st_size > 5_000
