"""The ops API's /docs works offline: Swagger UI's JS and CSS come from the app itself, never a CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from trader.api import create_app
from trader.store import TraderStore


def test_docs_page_loads_swagger_from_the_app_and_every_asset_is_served(tmp_path):
    client = TestClient(create_app(store=TraderStore(f"sqlite:///{tmp_path}/t.db"), token=None))
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets  # nothing from another host
    assert {a.rsplit("/", 1)[1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200 and len(served.content) > 100, asset
    assert client.get("/openapi.json").json()["info"]["version"] not in ("", "None")


def test_status_of_a_store_nothing_ran_against_says_what_to_do(tmp_path):
    client = TestClient(create_app(store=TraderStore(f"sqlite:///{tmp_path}/t.db"), token=None, mode="paper"))
    status = client.get("/status").json()
    assert status["state"] == "active" and status["reason"].startswith("trading allowed: never halted")
    assert "no trading cycle in this paper store yet: `trader run --mode paper`" in status["note"]
