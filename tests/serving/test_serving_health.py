"""``GET /health`` of the prediction service: the live model and the online store's newest features, or 503."""

from __future__ import annotations

from feature_repo import FeatureStoreError


def test_health_names_the_live_model_and_the_newest_online_features(client, world):
    answer = client.get("/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok" and body["model_version"] == client.get("/model").json()["model_version"]
    assert body["newest_features"] is not None and body["newest_features"].endswith("+00:00")


def test_health_when_the_online_store_cannot_be_read_is_503(client, monkeypatch):
    from serving.features import FeatureSource

    def broken(self):
        raise FeatureStoreError("online store: database is locked")

    monkeypatch.setattr(FeatureSource, "online", broken)
    answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable" and answer.json()["reason"] == "feature store: online store: database is locked"
