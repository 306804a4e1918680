"""Fixtures of the trader tests: a fresh state store per test, under the test's own directory."""

from __future__ import annotations

import duckdb
import pytest
from fake_venue import make_bars

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
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        conn.execute("CREATE SCHEMA marts")
        conn.execute("CREATE TABLE marts.bars (symbol VARCHAR, timeframe VARCHAR, ts TIMESTAMPTZ, open DOUBLE, high DOUBLE, "
                     "low DOUBLE, close DOUBLE, volume DOUBLE)")
        conn.executemany("INSERT INTO marts.bars VALUES (?, '15m', ?, ?, ?, ?, ?, ?)",
                         [(b.symbol, b.ts, float(b.open), float(b.high), float(b.low), float(b.close), float(b.volume))
                          for b in make_bars(n=6)])
    return tmp_path
