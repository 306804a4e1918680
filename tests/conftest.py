"""Shared fixtures: every test gets its own ALPHALINE_HOME; nothing touches the network."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from orchestration.settings import Settings, prepare_environment

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
UTC = dt.UTC


_ENV = ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH", "ALPHALINE_WAREHOUSE")


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


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)
