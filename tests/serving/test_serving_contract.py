"""The DESIGN.md §3.4 contract in-process (the service's ASGI app): answer shapes, every error class, stale features."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from feature_repo import FEATURE_NAMES
from serving.config import ServingSettings
from serving.errors import RequestRejected
from serving.predictor import Predictor
from serving.schemas import PredictRequest
from tests.features.synthetic_bars import BAR
from tests.serving.serving_world import LAG_BARS, LAGGING
from trader.errors import PredictionError
from trader.prediction_client import HttpPredictionClient

FRESH = ["DDD", "AAA", "CCC"]


def _features(world, symbol: str = "AAA") -> dict[str, float]:
    row = world.frame.filter(world.frame["symbol"] == symbol).tail(1)
    return {n: float(row[n][0]) for n in FEATURE_NAMES if row[n][0] is not None}


def test_predict_answers_each_symbol_in_request_order_with_the_contract_fields(client, world):
    response = client.post("/predict", json={"symbols": FRESH})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == world.champion
    assert [p["symbol"] for p in body["predictions"]] == FRESH
    for p in body["predictions"]:
        assert set(p) == {"symbol", "score", "direction", "confidence", "feature_ts", "stale", "explanation"}
        assert p["explanation"] is None  # only on request
        assert 0.0 <= p["confidence"] <= 1.0 and p["stale"] is False
        assert dt.datetime.fromisoformat(p["feature_ts"]) == world.last_ts
        expected = "flat" if p["confidence"] < 0.2 else ("long" if p["score"] > 0 else "short")
        assert p["direction"] == expected


def test_predict_explains_each_score_on_request_and_the_parts_add_up_to_it(client, world):
    body = client.post("/predict", json={"symbols": FRESH, "explain": 3}).json()
    for p in body["predictions"]:
        why = p["explanation"]
        assert len(why["contributions"]) == 3 and set(why["contributions"]) <= set(FEATURE_NAMES)
        sizes = [abs(v) for v in why["contributions"].values()]
        assert sizes == sorted(sizes, reverse=True)
        assert why["base"] + sum(why["contributions"].values()) + why["other"] == pytest.approx(p["score"], rel=1e-6, abs=1e-9)
        assert why["base"] + sum(why["families"].values()) == pytest.approx(p["score"], rel=1e-6, abs=1e-9)
        assert {"xs", "tech", "ret"} <= set(why["families"])
    plain = client.post("/predict", json={"symbols": FRESH}).json()
    assert [p["score"] for p in plain["predictions"]] == [p["score"] for p in body["predictions"]]


def test_model_card_names_version_members_features_and_serving_rules(client, world):
    card = client.get("/model").json()
    assert card["model_version"] == world.champion and card["stage"] == "production"
    assert card["features"] == list(FEATURE_NAMES) and card["context"] == 0
    assert [m["family"] for m in card["members"]] == ["sklearn_ridge"] and card["members"][0]["weight"] == 1.0
    assert card["members"][0]["tag"].startswith("alphaline_sklearn_ridge:")
    assert card["training_window"]["rows"] == world.frame.height and card["gates_passed"] is True
    assert card["serving"]["stale_bars"] == 4 and card["serving"]["bar_seconds"] == BAR.total_seconds()


def test_stale_symbol_is_refused_with_its_age_unless_allowed(client, world):
    refused = client.post("/predict", json={"symbols": ["AAA", LAGGING]})
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert [(d["loc"], d["type"]) for d in detail] == [(["symbols", 1], "stale_features")]
    assert f"stale features for {LAGGING}" in detail[0]["msg"] and f"{LAG_BARS:.1f} bars" in detail[0]["msg"]

    allowed = client.post("/predict", json={"symbols": ["AAA", LAGGING], "allow_stale": True}).json()["predictions"]
    assert [p["stale"] for p in allowed] == [False, True]
    assert allowed[1]["direction"] == "flat" and allowed[1]["confidence"] == 0.0
    assert dt.datetime.fromisoformat(allowed[1]["feature_ts"]) == world.last_ts - LAG_BARS * BAR


def test_as_of_beyond_the_feature_ttl_is_stale_and_before_any_data_is_missing(client, world):
    late = (world.last_ts + 5 * BAR).isoformat()
    response = client.post("/predict", json={"symbols": ["AAA", "BBB"], "as_of": late})
    assert response.status_code == 422 and {d["type"] for d in response.json()["detail"]} == {"stale_features"}
    early = client.post("/predict", json={"symbols": ["AAA"], "as_of": "2001-01-01T00:00:00Z"})
    assert early.status_code == 422
    assert early.json()["detail"][0]["type"] == "missing_features" and "AAA" in early.json()["error"]


@pytest.mark.parametrize(("body", "status", "loc", "type_"), [
    ({"symbols": []}, 400, ["symbols"], "too_short"),
    ({"symbols": "AAA"}, 400, ["symbols"], "list_type"),
    ({"symbols": ["aaa"]}, 400, ["symbols", 0], "string_pattern_mismatch"),
    ({"symbols": ["AAA"], "symbol": "BBB"}, 400, ["symbol"], "extra_forbidden"),
    ({"symbols": ["AAA"], "as_of": "2024-07-12T20:00:00"}, 400, ["as_of"], "timezone_aware"),
    ({"symbols": ["AAA"], "as_of": 1720814400}, 400, ["as_of"], "datetime_type"),
    ({"symbols": ["AAA"], "allow_stale": "yes"}, 400, ["allow_stale"], "bool_type"),
    ({"symbols": ["AAA"], "explain": -1}, 400, ["explain"], "greater_than_equal"),
    ({"symbols": ["AAA"], "explain": 101}, 400, ["explain"], "less_than_equal"),
    ({"symbols": ["AAA"], "explain": "3"}, 400, ["explain"], "int_type"),
    ({"symbols": ["AAA", "ZZZ"]}, 422, ["symbols", 1], "unknown_symbol"),
    ({"symbols": ["AAA", "BBB", "AAA"]}, 422, ["symbols", 0], "duplicate_symbol"),
    ({"symbols": [f"S{i}" for i in range(11)]}, 413, ["symbols"], "too_many"),
])
def test_predict_refuses_bad_requests_naming_the_field(client, body, status, loc, type_):
    response = client.post("/predict", json=body)
    assert response.status_code == status, response.text
    first = response.json()["detail"][0]
    assert (first["loc"], first["type"]) == (loc, type_)


def test_predict_rows_refuses_non_finite_missing_and_unknown_features(client, world):
    good = _features(world)
    cases = [
        (b'{"rows": [{"symbol": "AAA", "features": {"ret_log_1": NaN}}]}', 400, ["rows", 0, "features", "ret_log_1"]),
        (b'{"rows": [{"symbol": "AAA", "features": {"ret_log_1": 1e999}}]}', 400, ["rows", 0, "features", "ret_log_1"]),
        (b'{"rows": [{"symbol": "AAA", "features": {"ret_log_1": null}}]}', 400, ["rows", 0, "features", "ret_log_1"]),
        (b'{"rows": [{"symbol": "AAA", "features": {"ret_log_1": "0.1"}}]}', 400, ["rows", 0, "features", "ret_log_1"]),
        (b'{"rows": []}', 400, ["rows"]),
    ]
    for raw, status, loc in cases:
        response = client.post("/predict_rows", content=raw, headers={"content-type": "application/json"})
        assert (response.status_code, response.json()["detail"][0]["loc"]) == (status, loc), raw
    partial = {k: v for k, v in good.items() if k != "tech_rsi_14"}
    missing = client.post("/predict_rows", json={"rows": [{"symbol": "AAA", "features": partial}]})
    assert missing.status_code == 422 and "tech_rsi_14" in missing.json()["error"]
    typo = client.post("/predict_rows", json={"rows": [{"symbol": "AAA", "features": {**good, "tech_rsi_41": 1.0}}]})
    assert typo.status_code == 422 and typo.json()["detail"][0]["loc"] == ["rows", 0, "features", "tech_rsi_41"]
    unknown = client.post("/predict_rows", json={"rows": [{"symbol": "ZZZ", "features": good}]})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["type"] == "unknown_symbol"
    many = client.post("/predict_rows", json={"rows": [{"symbol": "AAA", "features": good}] * 11})
    assert many.status_code == 413


@pytest.mark.parametrize(("content_type", "payload"), [
    ("multipart/form-data", b"symbols=AAA"),
    ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"symbols\"\r\n\r\nAAA\r\n--x--\r\n"),
    ("application/vnd.bentoml+pickle", b"\x80\x04N."),
    ("text/plain", b'{"symbols": ["AAA"]}'),
])
def test_non_json_bodies_are_refused_with_415(client, content_type, payload):
    response = client.post("/predict", content=payload, headers={"content-type": content_type})
    assert response.status_code == 415 and "application/json" in response.json()["error"]


def test_curls_default_form_type_is_read_as_json(client):
    as_json = client.post("/predict", content=b'{"symbols": ["AAA"]}', headers={"content-type": "application/x-www-form-urlencoded"})
    assert as_json.status_code == 200 and as_json.json()["predictions"][0]["symbol"] == "AAA"
    form = client.post("/predict", content=b"symbols=AAA", headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 400 and form.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("payload", [b"", b"{", b"null", b"[]", b'"AAA"', b"{\"symbols\": [1e999]}", b"\xff\xfe", b"{\"rows\": 3}"])
def test_malformed_json_is_a_client_error_on_every_endpoint(client, payload):
    for path in ("/predict", "/predict_rows"):
        response = client.post(path, content=payload, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (path, payload, response.text)


def test_reload_is_refused_without_the_admin_token(client, world):
    assert client.post("/reload").status_code == 403
    assert client.post("/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.post("/predict", json={"symbols": ["AAA"]}).json()["model_version"] == world.champion


def test_wall_clock_staleness_refuses_features_from_a_past_session(world):
    predictor = Predictor.from_settings(ServingSettings(home=world.home, stale_clock="wall"), world.registry)
    with pytest.raises(RequestRejected) as refused:
        predictor.predict(PredictRequest(symbols=["AAA"]))
    assert refused.value.status == 422 and refused.value.problems[0].type == "stale_features"
    answer = predictor.predict(PredictRequest(symbols=["AAA"], allow_stale=True))
    assert answer.predictions[0].stale and answer.predictions[0].direction == "flat"


def test_the_traders_http_client_reads_answers_and_refusals(client, world):
    def forward(request: httpx.Request) -> httpx.Response:
        return client.request(request.method, request.url.path, content=request.content, headers=dict(request.headers))

    trader = HttpPredictionClient("http://serving", transport=httpx.MockTransport(forward))
    batch = trader.predict(["AAA", "BBB"])
    assert batch.model_version == world.champion and [p.symbol for p in batch.predictions] == ["AAA", "BBB"]
    assert batch.predictions[0].explanation is None
    why = HttpPredictionClient("http://serving", explain=2, transport=httpx.MockTransport(forward)).predict(["AAA"])
    assert len(why.predictions[0].explanation["contributions"]) == 2
    replay = trader.predict(["AAA"], as_of=world.last_ts - 2 * BAR)
    assert replay.predictions[0].feature_ts == world.last_ts - 2 * BAR
    with pytest.raises(PredictionError, match=r"HTTP 422 from /predict: .*stale features for FFF"):
        trader.predict(["AAA", LAGGING])
