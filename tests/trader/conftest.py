"""Fixtures of the trader tests: a fresh state store per test, under the test's own directory."""

from __future__ import annotations

import pytest
from fake_venue import make_bars, write_marts_bars

from trader.store import TraderStore


@pytest.fixture
def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'trader' / 'trader.db'}"


@pytest.fixture
def store(store_url):
    with TraderStore(store_url) as s:
        yield s


@pytest.fixture
def home(tmp_path, monkeypatch):
    """ALPHALINE_HOME with a warehouse holding the first 6 bars of a session for the test universe."""
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path))
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "TRADER_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    write_marts_bars(tmp_path / "warehouse.duckdb", make_bars(n=6))
    return tmp_path
