"""A real ``bentoml serve`` on a free port of 127.0.0.1: started, answered (BentoML's client, Prometheus), stopped cleanly."""

from __future__ import annotations

import bentoml
import httpx
import pytest

from serving.demo import free_port, running, serve_and_query
from tests.serving.serving_world import LAGGING

pytestmark = pytest.mark.timeout(300)


def test_live_service_answers_bentoml_client_exposes_metrics_and_stops_cleanly(world):
    with running(world.home, free_port()) as server:
        with bentoml.SyncHTTPClient(server.url, timeout=30) as client:
            assert client.is_ready()
            answer = client.predict({"symbols": ["AAA", "BBB"]})
        assert answer["model_version"] == world.champion
        assert [p["symbol"] for p in answer["predictions"]] == ["AAA", "BBB"]
        refused = httpx.post(f"{server.url}/predict", json={"symbols": [LAGGING]}, timeout=30)
        assert refused.status_code == 422 and refused.json()["detail"][0]["type"] == "stale_features"
        mistyped = httpx.post(f"{server.url}/predict", json={"symbols": ["AAA"], "allow_stale": "yes"}, timeout=30)
        assert mistyped.status_code == 400
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        assert 'bentoml_service_request_total{' in metrics and 'endpoint="/predict"' in metrics
        assert 'alphaline_serving_rejections_total{endpoint="predict",reason="stale_features"} 1.0' in metrics
        process = server.process
    assert process.poll() is not None and server.returncode == 0 and server.stopped_in < 20
    log = server.log.read_text()
    assert "predict symbols=2 as_of=- model=" in log and "-> 422 symbols.0: stale features for FFF" in log
    # a client's mistake is one WARNING line, not an ERROR with BentoML's traceback
    assert "POST /predict -> 400 allow_stale: Input should be a valid boolean" in log
    assert "Traceback" not in log and "ERROR" not in log
    assert "ret_log_1" not in log  # request logging carries no feature names or values


def test_serve_and_query_returns_the_universe_and_the_model_card(world):
    answer = serve_and_query(world.home, free_port())
    assert answer["returncode"] == 0 and answer["symbols"] == world.symbols
    assert answer["predict"]["status"] == 200 and answer["model"]["status"] == 200
    predictions = answer["predict"]["body"]["predictions"]
    assert [p["symbol"] for p in predictions] == world.symbols
    assert [p["symbol"] for p in predictions if p["stale"]] == [LAGGING]
    assert answer["model"]["body"]["model_version"] == world.champion
