"""Hot reload: a promotion changes nothing until POST /reload, which swaps to the new production ensemble."""

from __future__ import annotations

from tests.serving.serving_world import ADMIN_TOKEN, register_ridge

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SYMBOLS = {"symbols": ["AAA", "BBB"]}


def test_promoted_model_serves_only_after_reload_and_rollback_reloads_back(client, world):
    registry = world.registry
    before = client.post("/predict", json=SYMBOLS).json()
    assert before["model_version"] == world.champion
    challenger = register_ridge(registry, world.frame, alpha=1000.0, skill=1.0)
    registry.promote(challenger)
    try:
        assert client.post("/predict", json=SYMBOLS).json()["model_version"] == world.champion  # no silent swap

        swapped = client.post("/reload", headers=ADMIN)
        assert swapped.status_code == 200
        assert swapped.json() == {"reloaded": True, "model_version": challenger, "previous": world.champion}
        after = client.post("/predict", json=SYMBOLS).json()
        assert after["model_version"] == challenger
        assert [p["score"] for p in after["predictions"]] != [p["score"] for p in before["predictions"]]
        assert client.get("/model").json()["model_version"] == challenger

        again = client.post("/reload", headers=ADMIN).json()
        assert again == {"reloaded": False, "model_version": challenger, "previous": challenger}
    finally:
        registry.rollback()
    back = client.post("/reload", headers=ADMIN).json()
    assert back == {"reloaded": True, "model_version": world.champion, "previous": challenger}
    assert client.post("/predict", json=SYMBOLS).json() == before


def test_reload_without_a_production_model_keeps_serving_the_current_one(client, world, monkeypatch):
    monkeypatch.setattr(type(world.registry), "production", lambda self: None)
    refused = client.post("/reload", headers=ADMIN)
    assert refused.status_code == 409 and "still serving" in refused.json()["detail"]
    assert client.post("/predict", json=SYMBOLS).json()["model_version"] == world.champion
