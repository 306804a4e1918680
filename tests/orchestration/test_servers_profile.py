"""The servers profile: ALPHALINE_POSTGRES_URL and ALPHALINE_REDIS_URL move Dagster, Feast and the trader onto real servers."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from orchestration.definitions import build_definitions
from orchestration.deployment import DAGSTER_URL_VAR, WAREHOUSE_URL_VAR, dbt_postgres_env
from orchestration.errors import ConfigError
from orchestration.settings import Settings, prepare_environment
from orchestration.warehouse import Warehouse

_ENV = ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH", "ALPHALINE_WAREHOUSE", DAGSTER_URL_VAR, "ALPHALINE_FEAST_CONFIG",
        WAREHOUSE_URL_VAR, *dbt_postgres_env("postgresql://x/y"),
        "ALPHALINE_FEAST_REGISTRY_URL", "ALPHALINE_FEAST_REDIS", "ALPHALINE_POSTGRES_URL", "ALPHALINE_REDIS_URL")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for var in _ENV:  # set first so that monkeypatch restores each, including those prepare_environment sets
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path / "home"))
    return monkeypatch


def servers_settings(monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_url: str) -> Settings:
    """The profile as a team sets it: two environment variables (the server URL's database is the prefix)."""
    monkeypatch.setenv("ALPHALINE_POSTGRES_URL", postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    monkeypatch.setenv("ALPHALINE_REDIS_URL", redis_url)
    return prepare_environment(Settings())


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.exec_driver_sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").scalars())
    finally:
        engine.dispose()


@dg.asset
def _probe() -> int:
    return 1


def test_servers_profile_puts_dagster_runs_events_and_schedules_in_postgres(clean_env, postgres_url, redis_url):
    settings = servers_settings(clean_env, postgres_url, redis_url)
    text = (settings.dagster_home / "dagster.yaml").read_text()
    assert "postgres_url" in text and "127.0.0.1" not in text  # the URL stays in the environment
    assert settings.feast_config == "prod"
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        result = dg.materialize([_probe], instance=instance)
        assert result.success
    dagster_db = postgres_url.rsplit("/", 1)[0] + "/" + postgres_url.rsplit("/", 1)[1] + "_dagster"
    assert {"runs", "event_logs", "jobs"} <= _tables(dagster_db)
    with dg.DagsterInstance.get() as again:  # another process reading the same instance sees the run
        assert again.get_run_by_id(result.run_id).is_success


def test_leaving_the_servers_profile_restores_the_local_dagster_storage(clean_env, postgres_url, redis_url):
    settings = servers_settings(clean_env, postgres_url, redis_url)
    for var in ("ALPHALINE_POSTGRES_URL", "ALPHALINE_REDIS_URL", DAGSTER_URL_VAR, "ALPHALINE_FEAST_CONFIG"):
        clean_env.delenv(var, raising=False)
    local = prepare_environment(Settings())
    assert local.feast_config == "local" and "postgres" not in (settings.dagster_home / "dagster.yaml").read_text()
    assert os.environ.get("ALPHALINE_DBT_TARGET") is None and WAREHOUSE_URL_VAR not in os.environ  # dbt on the DuckDB file again
    assert Warehouse.for_settings(local).kind == "duckdb"


def test_servers_profile_puts_the_warehouse_and_dbt_on_the_warehouse_database(clean_env, postgres_url, redis_url):
    settings = servers_settings(clean_env, postgres_url, redis_url)
    warehouse = Warehouse.for_settings(settings)
    database = sa.make_url(postgres_url).database + "_warehouse"
    assert warehouse.kind == "postgres" and warehouse.location == os.environ[WAREHOUSE_URL_VAR] and warehouse.exists()
    assert os.environ["ALPHALINE_DBT_TARGET"] == "postgres" and os.environ["ALPHALINE_WAREHOUSE_PG_DBNAME"] == database
    defs = build_definitions(settings)
    kinds = {key.to_user_string(): spec.kinds for key, spec in _specs(defs).items()}
    assert "postgres" in kinds["raw_bars"] and "duckdb" not in kinds["raw_bars"] and "postgres" in kinds["marts/bars"]
    # The trader's store is on the server too, Feast's online store on Redis: the asset graph names those engines.
    assert kinds["trader_session"] == {"postgres"} and kinds["trader/fills"] == {"postgres"}
    assert kinds["session_tracking"] == {"postgres"}
    assert kinds["online_features"] == {"feast", "redis"}
    resource = defs.resources["warehouse"]
    assert "127.0.0.1" not in str(resource.model_dump())  # the URL (and a password) stays in the environment
    assert not settings.warehouse_path.exists()


def _specs(defs: dg.Definitions) -> dict[dg.AssetKey, dg.AssetSpec]:
    specs = [a for a in defs.assets or [] if isinstance(a, dg.AssetSpec)]
    return {spec.key: spec for spec in specs + [s for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) for s in a.specs]}


def test_half_a_servers_profile_is_one_clear_error(clean_env):
    clean_env.setenv("ALPHALINE_POSTGRES_URL", "postgresql://u@127.0.0.1:9/x")
    with pytest.raises(ConfigError, match="ALPHALINE_REDIS_URL: not set"):
        prepare_environment(Settings())


def test_an_unreachable_postgres_server_is_one_clear_error_without_the_password(clean_env):
    clean_env.setenv("ALPHALINE_POSTGRES_URL", "postgresql://u:hunter2@127.0.0.1:9/x")
    clean_env.setenv("ALPHALINE_REDIS_URL", "redis://127.0.0.1:9/0")
    with pytest.raises(ConfigError, match="cannot reach the server") as err:
        prepare_environment(Settings())
    assert "hunter2" not in str(err.value)
