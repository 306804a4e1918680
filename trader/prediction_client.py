"""The HTTP client of the prediction service (DESIGN.md §3.4 ``POST /predict``), over httpx.

:class:`HttpPredictionClient` implements :class:`trader.predictions.PredictionClient`. Every
way the call can go wrong — the service is down, times out, answers a non-2xx status, or
answers something :func:`~trader.predictions.parse_predictions` refuses — becomes one
:class:`~trader.errors.PredictionError` with a one-line reason, so that the run loop sends
no new orders instead of guessing. The transport is injectable (``httpx.MockTransport`` in
tests), as httpx itself recommends.

Example:
    >>> import httpx
    >>> def service(request):
    ...     return httpx.Response(200, json={"model_version": "ens:v1", "predictions": [
    ...         {"symbol": "AAA", "score": 0.4, "direction": "long", "confidence": 0.6,
    ...          "feature_ts": "2024-03-05T14:45:00Z", "stale": False}]})
    >>> client = HttpPredictionClient("http://127.0.0.1:3001", transport=httpx.MockTransport(service))
    >>> client.predict(["AAA"]).model_version
    'ens:v1'
    >>> down = HttpPredictionClient("http://127.0.0.1:3001", transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    >>> down.predict(["AAA"])
    Traceback (most recent call last):
    ...
    trader.errors.PredictionError: prediction service http://127.0.0.1:3001: HTTP 503 from /predict
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import httpx

from trader.domain import Symbol, to_utc
from trader.errors import PredictionError
from trader.predictions import PredictionBatch, parse_predictions

#: A 4xx body is shown to explain the refusal; cut so that a stray HTML page stays one short line.
_DETAIL_CHARS = 200


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _DETAIL_CHARS else flat[: _DETAIL_CHARS - 1] + "…"


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return _one_line(response.text)
    if isinstance(body, dict) and "detail" in body:  # FastAPI / BentoML error shape
        body = body["detail"]
    return _one_line(str(body))


class HttpPredictionClient:
    """``POST {url}/predict`` with ``{"symbols": [...], "as_of": ISO UTC or omitted}``.

    Args:
        url: base URL of the service, e.g. ``http://127.0.0.1:3001`` (``trader.yaml``: ``prediction.url``).
        timeout: seconds for connect and read; a slower answer is a failure, not a wait.
        explain: ask for each score's top ``explain`` SHAP contributions (0: none); ``trader explain`` shows them.
        transport: an httpx transport to use instead of the network (tests).
    """

    def __init__(self, url: str, timeout: float = 5.0, *, explain: int = 0, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.explain = explain
        self._client = httpx.Client(base_url=self.url, timeout=timeout, transport=transport,
                                    headers={"accept": "application/json"})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpPredictionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def predict(self, symbols: Sequence[Symbol], *, as_of: dt.datetime | None = None) -> PredictionBatch:
        """Scores for ``symbols`` as of ``as_of`` (aware; ``None`` = the latest online features).

        Raises:
            PredictionError: the service is unreachable, slow, answered non-2xx, or broke the contract.
        """
        body: dict[str, object] = {"symbols": list(symbols)}
        if self.explain:
            body["explain"] = self.explain
        if as_of is not None:
            body["as_of"] = to_utc(as_of, "as_of").isoformat().replace("+00:00", "Z")
        source = f"prediction service {self.url}"
        try:
            response = self._client.post("/predict", json=body)
        except httpx.TimeoutException:
            raise PredictionError(f"{source}: no answer within {self._client.timeout.read}s") from None
        except httpx.HTTPError as exc:
            raise PredictionError(f"{source}: unreachable ({type(exc).__name__}: {_one_line(str(exc)) or 'no detail'})") from None
        if not response.is_success:
            detail = _detail(response) if response.is_client_error else ""
            raise PredictionError(f"{source}: HTTP {response.status_code} from /predict" + (f": {detail}" if detail else ""))
        batch = parse_predictions(response.content, source=source)
        unasked = sorted({p.symbol for p in batch.predictions} - set(symbols))
        if unasked:
            # An answer about symbols nobody asked for means the service and the trader disagree on
            # the request: trading on it would be guessing.
            raise PredictionError(f"{source}: predictions.symbol: {', '.join(unasked[:5])} were not asked for")
        return batch
