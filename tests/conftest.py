"""Shared fixtures: every test gets its own ALPHALINE_HOME; nothing touches the network."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import shutil
from pathlib import Path

import pytest

from orchestration.settings import Settings, prepare_environment

TEST_DATA = Path(__file__).resolve().parent / "data"
#: sha256 of each real file as published (tests/data/README.md): the importer must see the vendor's exact bytes.
REAL_FILES = {
    "sp500_daily.csv": "1c4d0aeed8db9284de8ad71e4063c97f645ad6dd13507f8e305338e96c396ba7",
    "nasdaq_daily.csv": "799ab0bf4a29129f23c27743098215c4033c139ff76dc935a1cd53d1aea9997e",
}
UTC = dt.UTC

#: Real PostgreSQL and Redis servers (fixtures postgres_url, redis_url), started on first use.
pytest_plugins = ["tests.servers"]


_ENV = ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH", "ALPHALINE_WAREHOUSE", "ALPHALINE_MARKET", "ALPHALINE_EOD_CUTOFF",
        "ALPHALINE_WAREHOUSE_URL", "ALPHALINE_DBT_TARGET")


@pytest.fixture(scope="session")
def dbt_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dbt's manifest, parsed once per test session (the tests prepare it themselves, as CI must)."""
    from orchestration.defs.market.dbt import dbt_project, prepare_manifest

    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("manifest_home")
        mp.setenv("ALPHALINE_HOME", str(home))
        for var in _ENV:
            mp.delenv(var, raising=False)
        settings = prepare_environment(Settings(home=home))
        return prepare_manifest(dbt_project(settings.dbt_target_dir))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dbt_manifest: Path) -> Settings:
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path / "home"))
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    settings = prepare_environment(Settings(home=tmp_path / "home"))
    settings.dbt_target_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(dbt_manifest, settings.dbt_target_dir / "manifest.json")
    return settings


def warehouse_sql(settings: Settings, query: str):
    """A query's result (polars) on the warehouse of ``settings``, opened read-only."""
    from orchestration.warehouse import Warehouse

    return Warehouse.for_settings(settings).read(query)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.servers)])
def any_warehouse(request: pytest.FixtureRequest, tmp_path: Path):
    """An empty warehouse on each engine: a DuckDB file, and a fresh database on the test PostgreSQL server."""
    from orchestration.warehouse import Warehouse

    if request.param == "duckdb":
        return Warehouse(tmp_path / "warehouse.duckdb")
    return Warehouse(request.getfixturevalue("postgres_url"))


def real_csv(name: str, folder: Path) -> Path:
    """The real file ``name`` (``tests/data/<name>.gz``) unpacked into ``folder`` under its own name."""
    data = gzip.decompress((TEST_DATA / f"{name}.gz").read_bytes())
    assert hashlib.sha256(data).hexdigest() == REAL_FILES[name], f"tests/data/{name}.gz is not the published file"
    path = folder / name
    path.write_bytes(data)
    return path


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)
