from __future__ import annotations

import datetime as dt
import json
import socket

import httpx
import pytest
from fake_venue import PredictionServer

from trader.errors import PredictionError
from trader.prediction_client import HttpPredictionClient

AS_OF = dt.datetime(2024, 3, 5, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))  # 15:00 UTC
ITEM = {"symbol": "AAA", "score": 0.8, "direction": "long", "confidence": 0.6, "feature_ts": "2024-03-05T14:45:00Z", "stale": False}


def mock(handler) -> HttpPredictionClient:
    return HttpPredictionClient("http://127.0.0.1:3000/", transport=httpx.MockTransport(handler))


def test_prediction_client_posts_symbols_and_as_of_in_utc_and_parses_the_answer():
    seen = []

    def service(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={"model_version": "ens:v3", "predictions": [ITEM]})

    batch = mock(service).predict(["AAA", "BBB"], as_of=AS_OF)
    assert seen == [("POST", "/predict", {"symbols": ["AAA", "BBB"], "as_of": "2024-03-05T15:00:00Z"})]
    assert batch.model_version == "ens:v3" and batch.predictions[0].feature_ts == dt.datetime(2024, 3, 5, 14, 45, tzinfo=dt.UTC)


def test_prediction_client_without_as_of_asks_for_the_latest():
    bodies = []
    mock(lambda r: bodies.append(json.loads(r.content)) or httpx.Response(200, json={"model_version": "v", "predictions": []})).predict(["AAA"])
    assert bodies == [{"symbols": ["AAA"]}]


@pytest.mark.parametrize(("response", "message"), [
    (httpx.Response(503, text="<html>Service Unavailable</html>"), r"HTTP 503 from /predict$"),
    (httpx.Response(422, json={"detail": "symbols.0: unknown symbol 'ZZZ'"}), r"HTTP 422 from /predict: symbols.0: unknown symbol 'ZZZ'$"),
    (httpx.Response(200, text="<html>oops</html>"), r": body: Invalid JSON"),
    (httpx.Response(200, json={"model_version": "v", "predictions": [ITEM | {"confidence": 7}]}), r"predictions.0.confidence"),
    (httpx.Response(200, json={"model_version": "v", "predictions": [ITEM | {"symbol": "XYZ"}]}), r"XYZ were not asked for"),
])
def test_prediction_client_bad_answers_raise_one_line_naming_the_reason(response, message):
    with pytest.raises(PredictionError, match=message) as err:
        mock(lambda request: response).predict(["AAA"])
    assert "\n" not in str(err.value) and str(err.value).startswith("prediction service http://127.0.0.1:3000: ")


def test_prediction_client_long_error_bodies_are_cut_to_one_short_line():
    with pytest.raises(PredictionError) as err:
        mock(lambda request: httpx.Response(400, text="bad\n" * 500)).predict(["AAA"])
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_prediction_client_service_down_is_a_prediction_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with HttpPredictionClient(f"http://127.0.0.1:{port}", timeout=2) as client, pytest.raises(PredictionError, match="unreachable"):
        client.predict(["AAA"])


def test_prediction_client_against_a_server_on_localhost():
    with PredictionServer() as server, HttpPredictionClient(server.url) as client:
        batch = client.predict(["AAA", "BBB"], as_of=AS_OF)
    assert [p.symbol for p in batch.predictions] == ["AAA", "BBB"] and batch.model_version == "ens:http-fake"
    assert server.requests == [{"symbols": ["AAA", "BBB"], "as_of": "2024-03-05T15:00:00Z"}]


def test_prediction_client_slow_server_times_out():
    with PredictionServer("slow", delay=1.0) as server, HttpPredictionClient(server.url, timeout=0.2) as client:
        with pytest.raises(PredictionError, match=r"no answer within 0.2s"):
            client.predict(["AAA"])
