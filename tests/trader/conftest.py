"""Fixtures of the trader tests: a fresh state store per test, under the test's own directory."""

from __future__ import annotations

import pytest

from trader.store import TraderStore


@pytest.fixture
def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'trader' / 'trader.db'}"


@pytest.fixture
def store(store_url):
    with TraderStore(store_url) as s:
        yield s
