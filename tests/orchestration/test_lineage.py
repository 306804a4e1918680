"""The whole story in the asset graph: bars → features → models → serving → trader → compliance; partitions where the
data begins; the trader's session and tables recorded from its store."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import dagster as dg
import pytest

from orchestration.definitions import build_definitions
from orchestration.defs.market.schedules import INGEST_JOB
from orchestration.defs.serving.assets import serving_deployment
from orchestration.defs.trader.assets import TRADER_AUDIT_LOG, TRADER_FILLS, TRADER_TABLES, trader_session
from orchestration.errors import ConfigError
from orchestration.resources import ModelsResource, TradingResource
from orchestration.settings import Settings, record_first_session
from trader.domain import Fill
from trader.store import TraderStore

CHAIN = ["raw_bars", "staging/stg_bars", "marts/bars", "bar_features", "training_frame", "walk_forward_predictions",
         "model_evaluation", "ensemble_candidate", "production_model", "serving_deployment", "trader/fills", "tax_lot_ledger",
         "compliance_reports", "sealed_compliance_records"]


@pytest.fixture
def defs(settings) -> dg.Definitions:
    return build_definitions(settings)


def test_the_graph_reads_bars_features_models_serving_trader_compliance(defs):
    graph = defs.resolve_asset_graph()
    for parent, child in itertools.pairwise(CHAIN):
        parents = {p.to_user_string() for p in graph.get(dg.AssetKey.from_user_string(child)).parent_keys}
        assert parent in parents, f"{parent} → {child}"
    groups = {k: graph.get(dg.AssetKey.from_user_string(k)).group_name for k in ("serving_deployment", "trader/fills", "trader_session")}
    assert groups == {"serving_deployment": "serving", "trader/fills": "trader", "trader_session": "trader"}
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("trader_session")).parent_keys} == {"trader/fills", "trader/audit_log"}


def test_the_ingest_job_stays_with_bars_and_features_though_serving_and_trader_now_hang_below_them(defs):
    keys = {k.to_user_string() for k in defs.resolve_job_def(INGEST_JOB).asset_layer.executable_asset_keys}
    assert "online_features" in keys
    assert not keys & {"training_frame", "serving_deployment", "trader_session", "tax_lot_ledger"}


def _first_partition(settings: Settings) -> str:
    defs = build_definitions(settings)
    keys = defs.resolve_job_def(INGEST_JOB).partitions_def.get_partition_keys(current_time=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    return keys[0]


def test_partitions_begin_at_the_first_session_ingested_not_at_the_market_origin(settings):
    assert _first_partition(settings) == "2024-01-02"  # nothing ingested yet: the market's origin
    record_first_session(settings, dt.date(2026, 7, 22))
    record_first_session(settings, dt.date(2026, 9, 1))  # a later ingest does not move the start
    assert _first_partition(Settings(home=settings.home)) == "2026-07-22"
    record_first_session(settings, dt.date(2026, 7, 1))
    assert _first_partition(Settings(home=settings.home)) == "2026-07-01"
    pinned = Settings(home=settings.home, partitions_start=dt.date(2026, 8, 3))
    assert _first_partition(pinned) == "2026-08-03"
    with pytest.raises(ConfigError, match="before ALPHALINE_PARTITIONS_START=2026-08-03"):
        record_first_session(pinned, dt.date(2026, 7, 1))


def _session_store(settings: Settings) -> TradingResource:
    trading = TradingResource.for_home(settings.home, mode="sim", service_url="http://127.0.0.1:9", timeout_s=0.5)
    (settings.home / "trader").mkdir(parents=True, exist_ok=True)
    store = TraderStore(trading.store_url)
    day = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)
    with store.transaction() as tx:
        for i, (symbol, side) in enumerate([("AAA", "buy"), ("BBB", "sell")]):
            fill = Fill(fill_id=f"F{i}", order_id=f"O{i}", client_order_id=f"C{i}", symbol=symbol, side=side, qty=Decimal(10),
                        price=Decimal("100.5"), fee=Decimal("0.25"), ts=day, venue="sim", account="A1")
            tx.record_fill(fill)
            tx.append_audit("fill", fill.to_record(), ts=day)
    for minutes, equity in ((15, "100000"), (30, "100120.5")):
        ts = day + dt.timedelta(minutes=minutes)
        store.append_audit("cycle", {"ts": ts.isoformat(), "state": "active", "equity": equity, "cash": "100000", "submitted": 2,
                                     "denied": 1, "fills": 2, "status": "ok", "problems": []}, ts=ts)
    store.close()
    return trading


def test_trader_session_records_the_session_and_observes_the_trader_tables(settings):
    trading = _session_store(settings)
    result = dg.materialize([*TRADER_TABLES, trader_session], resources={"trading": trading},
                            instance=dg.DagsterInstance.ephemeral(), selection=[trader_session])
    assert result.success
    meta = result.asset_materializations_for_node("trader_session")[0].metadata
    assert meta["session"].value == "2026-11-25" and meta["fills"].value == 2 and meta["cycles"].value == 2
    assert meta["denied"].value == 2 and meta["audit_chain"].value == "verified"
    assert meta["equity_curve"].value.startswith("![equity](data:image/png;base64,")
    observed = {e.asset_key: e.asset_observation_data.asset_observation.metadata for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"}
    assert observed[TRADER_FILLS]["dagster/row_count"].value == 2
    assert observed[TRADER_AUDIT_LOG]["chain_verified"].value is True


def test_trader_session_without_a_store_fails_in_one_line_naming_the_mode(settings):
    trading = TradingResource.for_home(settings.home, mode="paper")
    result = dg.materialize([*TRADER_TABLES, trader_session], resources={"trading": trading}, raise_on_error=False,
                            instance=dg.DagsterInstance.ephemeral(), selection=[trader_session])
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "no trader store at" in failure.description and "paper mode" in failure.description


def test_serving_deployment_says_when_no_production_model_and_no_service_answer(settings):
    trading = TradingResource.for_home(settings.home, service_url="http://127.0.0.1:9", timeout_s=0.5)
    result = dg.materialize([serving_deployment], resources={"trading": trading, "models": ModelsResource(home=str(settings.home))},
                            instance=dg.DagsterInstance.ephemeral())
    meta = result.asset_materializations_for_node("serving_deployment")[0].metadata
    assert meta["production"].value == "none" and meta["live_version"].value == "no answer"
    assert "did not answer GET /model" in meta["status"].value and meta["live_is_production"].value is False
