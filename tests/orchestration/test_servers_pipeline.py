"""The whole pipeline on the servers profile: ingest → features → train → serve → trader sim → EOD, with Dagster's
storage, Feast's registry, the warehouse (raw and dbt's marts) and the trader's store on a real PostgreSQL 16 and
Feast's online store on a real Redis (both started by tests/servers.py); no DuckDB file is created."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
import pytest
import redis
from click.testing import CliRunner
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from feature_repo import store as fs
from models.registry import Registry
from orchestration.cli.compliance import compliance
from orchestration.cli.demo_trading import trader_config
from orchestration.definitions import build_definitions
from orchestration.defs.market.schedules import INGEST_JOB
from orchestration.defs.training.schedules import TRAINING_JOB
from orchestration.settings import Settings, prepare_environment
from orchestration.warehouse import Warehouse
from serving.demo import free_port, running
from tests.orchestration.test_servers_profile import _ENV
from tests.servers import count_rows
from trader.servers import server_store_url
from trader.store import TraderStore

pytestmark = [pytest.mark.slow, pytest.mark.servers]
MARKET = {"n_symbols": 12, "n_sectors": 3}
RANGE = {ASSET_PARTITION_RANGE_START_TAG: "2024-01-03", ASSET_PARTITION_RANGE_END_TAG: "2024-04-30"}
_NY = ZoneInfo("America/New_York")
FAST = {"families": ["sklearn_ridge", "xgboost"], "n_folds": 2, "min_oos_timestamps": 100}


@pytest.fixture
def servers_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dbt_manifest: Path, postgres_url: str, redis_url: str) -> Settings:
    for var in _ENV:  # set first so that monkeypatch restores each, including those prepare_environment sets
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ALPHALINE_POSTGRES_URL", postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    monkeypatch.setenv("ALPHALINE_REDIS_URL", redis_url)
    settings = prepare_environment(Settings())
    settings.dbt_target_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(dbt_manifest, settings.dbt_target_dir / "manifest.json")
    return settings


def _run(settings: Settings, job: str, instance: dg.DagsterInstance, *, tags=None, models: dict[str, Any] | None = None):
    resources: dict[str, Any] = {"market": {"config": MARKET}}
    if models is not None:
        resources["models"] = {"config": {"home": str(settings.home), **models}}
    return build_definitions(settings).resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags, run_config={"resources": resources}, raise_on_error=False)


def test_pipeline_on_the_servers_profile_from_ingest_to_end_of_day(servers_home: Settings, redis_server) -> None:
    settings = servers_home
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME's dagster.yaml: PostgreSQL storage
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        ingest = _run(settings, INGEST_JOB, instance, tags=RANGE)
        assert ingest.success
        trained = _run(settings, TRAINING_JOB, instance, models=FAST)
        assert trained.success
        assert len(instance.get_runs()) == 2
    assert count_rows(os.environ["ALPHALINE_DAGSTER_POSTGRES_URL"], "SELECT count(*) FROM runs") == 2

    # The warehouse: raw rows and dbt's marts in the <prefix>_warehouse database, nothing in a DuckDB file.
    warehouse = Warehouse.for_settings(settings)
    assert warehouse.kind == "postgres" and warehouse.location.endswith("_warehouse")
    bars = warehouse.read("select count(*) as n, count(distinct symbol) as symbols from marts.bars").row(0)
    assert bars[0] > 0 and bars[1] == MARKET["n_symbols"]
    assert count_rows(warehouse.location, "SELECT count(*) FROM raw.batches") >= 1

    # Features: registry in PostgreSQL, online values in Redis, nothing of Feast's in SQLite.
    assert redis.Redis(host="127.0.0.1", port=redis_server.port).dbsize() == MARKET["n_symbols"]
    assert count_rows(os.environ["ALPHALINE_FEAST_REGISTRY_URL"], "SELECT count(*) FROM feature_views") >= 8
    assert not (settings.feast_dir / "registry.db").exists() and not (settings.feast_dir / "online.db").exists()
    online = fs.online_features(fs.open_store(settings.home, settings.feast_config), _symbols(settings)[:2])
    assert online["ts_bar_ret"].null_count() == 0
    production = Registry(settings.home).production()
    assert production is not None

    # Serve (features from Redis) and trade the newest session; the sim store is on PostgreSQL.
    (settings.home / "logs").mkdir(exist_ok=True)
    with running(settings.home, free_port(), log=settings.home / "logs" / "serve.log") as server:
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            answer = client.post("/predict", json={"symbols": _symbols(settings)[:3], "allow_stale": True})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] and len(answer.json()["predictions"]) == 3
        config = trader_config(settings, server.url)
        # `trader` as its console script runs it, from this checkout (the installed script may point at another one)
        trade = subprocess.run([sys.executable, "-c", "from trader.cli import main; main()", "run", "--mode", "sim",
                                "--config", str(config)], capture_output=True, text=True, timeout=1200, env=dict(os.environ),
                               cwd=Path(__file__).resolve().parents[2])
    assert trade.returncode == 0, trade.stderr[-2000:]
    assert "trader_sim" in trade.stdout
    assert not (settings.home / "trader" / "sim.db").exists()
    url = server_store_url("sim")
    with TraderStore(url) as store:
        fills = store.list_fills()
        assert fills and store.verify_audit().ok
    day = max(f.ts for f in fills).astimezone(_NY).date()

    # End of day: compliance reads the fills and the audit chain from PostgreSQL.
    closed = CliRunner().invoke(compliance, ["run", "--date", day.isoformat(), "--trader", "sim", "--allow-short"])
    assert closed.exit_code == 0, closed.output
    reports = settings.reports_dir / day.isoformat()
    assert (reports / "form_8949.csv").exists() and (reports / "audit_verification.json").exists()
    assert json.loads((reports / "audit_verification.json").read_text())["ok"] is True
    assert not list(settings.home.rglob("*.duckdb*")), "the servers profile wrote a DuckDB warehouse"


def _symbols(settings: Settings) -> list[str]:
    from serving.demo import universe

    return universe(settings.home)
