from __future__ import annotations

import json

import pytest

from trader.errors import PredictionError
from trader.predictions import Direction, parse_predictions

ITEM = {"symbol": "AAA", "score": 0.8, "direction": "long", "confidence": 0.6,
        "feature_ts": "2024-03-05T14:45:00Z", "stale": False}


def body(**changes) -> dict:
    return {"model_version": "ens:v3", "predictions": [ITEM | changes]}


def test_predictions_parse_the_design_response_from_dict_or_json_text():
    for payload in (body(), json.dumps(body())):
        (p,) = parse_predictions(payload).predictions
        assert (p.symbol, p.direction, p.model_version, p.feature_ts.tzinfo is not None) == ("AAA", Direction.LONG, "ens:v3", True)


@pytest.mark.parametrize(("payload", "where"), [
    (body(confidence=1.5), "predictions.0.confidence"),
    (body(feature_ts="2024-03-05T14:45:00"), "predictions.0.feature_ts"),   # naive
    (body(stale="no"), "predictions.0.stale"),
    (body(direction="up"), "predictions.0.direction"),
    (body(symbol="aaa"), "predictions.0.symbol"),
    ({"predictions": []}, "model_version"),
    ("<html>502 Bad Gateway</html>", "body"),
])
def test_predictions_garbage_answer_raises_naming_the_field(payload, where):
    with pytest.raises(PredictionError, match=f"^prediction service: {where}"):
        parse_predictions(payload)


def test_predictions_non_finite_score_is_refused():
    with pytest.raises(PredictionError, match="score"):
        parse_predictions('{"model_version": "v", "predictions": [' + json.dumps(ITEM)[:-1] + ', "score": NaN}]}')
