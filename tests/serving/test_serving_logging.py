"""The service's log: a refused request (4xx) is one WARNING line, a server error is ERROR with its traceback."""

from __future__ import annotations

import logging
import sys

import pytest
from pydantic import BaseModel, ValidationError

from serving.predictor import Predictor
from serving.refusals import ClientErrorsAsWarnings, client_error
from tests.serving.serving_world import LAGGING

JSON = {"content-type": "application/json"}


def _problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("path", "body", "headers", "status", "line"), [
    ("/predict", b'{"symbols": ["AAA"], "allow_stale": "yes"}', JSON, 400,
     "POST /predict -> 400 allow_stale: Input should be a valid boolean"),
    ("/predict", b'{"symbols": ["AAA"], "as_of": "2024-07-12T20:00:00"}', JSON, 400, "POST /predict -> 400 as_of: "),
    ("/predict", b"{", JSON, 400, "POST /predict -> 400 body: Invalid JSON"),
    ("/predict_rows", b'{"rows": 3}', JSON, 400, "POST /predict_rows -> 400 rows: "),
    ("/predict", b'{"symbols": ["AAA", "ZZZ"]}', JSON, 422,
     "POST /predict -> 422 symbols.1: unknown symbol 'ZZZ' (not in the feature store's universe) [symbols=2 as_of=-, "),
    ("/predict", b'{"symbols": ["%s"]}' % LAGGING.encode(), JSON, 422, f"POST /predict -> 422 symbols.0: stale features for {LAGGING}"),
    ("/predict", b'{"symbols": ["AAA"]}', {"content-type": "text/plain"}, 415,
     "POST /predict -> 415 body: Content-Type 'text/plain' is not accepted: send application/json"),
    ("/reload", b"", {}, 403, "POST /reload -> 403 reload: missing or wrong bearer token"),
])
def test_refused_request_logs_one_warning_line_without_traceback(client, caplog, path, body, headers, status, line):
    with caplog.at_level(logging.INFO):
        response = client.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert {"error", "detail"} & set(response.json())  # the client still gets the reason
    problems = _problems(caplog)
    assert len(problems) == 1, [r.getMessage() for r in problems]
    record = problems[0]
    assert record.levelname == "WARNING" and record.name == "alphaline.serving"
    assert record.getMessage().startswith(line) and "\n" not in record.getMessage()
    assert record.exc_info is None and "Traceback" not in caplog.text


def test_server_error_still_logs_error_with_its_traceback(client, caplog, monkeypatch):
    def broken(self, request):
        raise RuntimeError("a bug in the predictor")

    for path in ("quick", "predict"):  # the in-place lookup and the threaded call
        monkeypatch.setattr(Predictor, path, broken)
    with caplog.at_level(logging.INFO):
        response = client.post("/predict", json={"symbols": ["AAA"]})
    assert response.status_code == 500
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info and errors[0].exc_info[0] is RuntimeError
    assert "a bug in the predictor" in caplog.text and "Traceback" in caplog.text


def test_validation_error_outside_request_parsing_is_a_bug_and_keeps_its_traceback():
    class Answer(BaseModel):
        score: float

    try:
        Answer.model_validate({"score": "high"})
    except ValidationError as exc:
        assert client_error(exc, exc.__traceback__) is None
        record = logging.LogRecord("bentoml", logging.ERROR, __file__, 1, "Exception on %s [%s]",
                                   ("/predict", "POST"), sys.exc_info())
        assert ClientErrorsAsWarnings().filter(record) is True and record.levelno == logging.ERROR
