"""BentoML service ``Ensemble``: the production ensemble over HTTP (DESIGN.md §3.4).

Endpoints:

* ``POST /predict`` ``{"symbols": [...], "as_of": optional ISO UTC, "allow_stale": false}`` →
  ``{"model_version", "predictions": [{"symbol", "score", "direction", "confidence", "feature_ts", "stale"}]}``
* ``POST /predict_rows`` ``{"rows": [{"symbol", "features": {name: value}, "feature_ts": optional}]}`` → same shape
* ``GET /model`` → the model card; ``POST /reload`` (admin) → swap to the store's current production ensemble
* BentoML's own: ``GET /metrics`` (Prometheus), ``/livez``, ``/readyz``, ``/docs.json`` (OpenAPI), ``/``

Start it with ``python -m serving.serve`` (``make serve``), which points BentoML's model store
at ``$ALPHALINE_HOME/bentoml``; a bare ``bentoml serve serving.service:Ensemble`` needs
``BENTOML_HOME=$ALPHALINE_HOME/bentoml`` in the environment.

**Models.** The production ensemble and its members are class-level
``bentoml.models.BentoModel`` references, resolved when this module is imported: BentoML
learns which models a Bento must carry from class attributes, at class creation, so
there is no later hook (STYLE.md habit 4 yields here; the read is a few small YAML files
of the local model store). Each worker loads the ensemble once, at start-up.

**Hot reload.** A promotion does not change a running service. ``POST /reload`` loads the
store's current production ensemble next to the old one and swaps a single reference:
requests in flight finish on the model they started with, later ones use the new one.
It is admin-only (``Authorization: Bearer $ALPHALINE_SERVING_ADMIN_TOKEN``; without a
token configured, loopback clients only) and per worker: with ``--workers N`` > 1 it is refused
(409), since it would reach one worker only; restart the service instead.
A built Bento carries only its own models, so there a new model means a new Bento.

**Threads.** The API methods are ``async``: a ``/predict`` that is a lookup in the current
online snapshot (``Predictor.quick``) is answered on the event loop; everything that reads a
store or runs a model goes to one worker thread, as BentoML runs a sync API. The hand-off to
a thread costs ~0.3 ms, more than the lookup (``tests/benchmarks/bench_serving.py``).

**Logging.** One line per request (endpoint, sizes, ``as_of``, model, stale count,
status, milliseconds), never feature values; BentoML's access log adds method, path,
status and latency. Request models hide their input in validation errors for the same reason.
A refused request (every 4xx, including bodies BentoML itself rejects) is one WARNING line:
method, path, status, reason (:mod:`serving.refusals`); only real server errors log ERROR
with a traceback.

Example::

    python -m serving.serve &                                   # http://127.0.0.1:3001
    curl -s -X POST localhost:3001/predict -d '{"symbols": ["AAA", "BBB"]}'
    curl -s localhost:3001/model
"""

from __future__ import annotations

import gc
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import bentoml
from bentoml.models import BentoModel
from fastapi import FastAPI, Header, HTTPException, Request
from prometheus_client import Counter
from starlette.responses import JSONResponse

from feature_repo import FeatureStoreError
from serving.config import ServingSettings
from serving.errors import NoProductionModel, RequestRejected
from serving.middleware import JsonBodiesOnly
from serving.predictor import Predictor
from serving.refusals import install as install_refusal_logging
from serving.refusals import log_refusal
from serving.schemas import ModelCard, PredictRequest, PredictResponse, PredictRowsRequest, ReloadResponse

logger = logging.getLogger("alphaline.serving")
ENSEMBLE_REF = "ensemble_model"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
API_ROUTES = ("/predict", "/predict_rows")

# prometheus_client directly (BentoML 1.4 deprecates bentoml.metrics); BentoML's /metrics collects it with its own.
rejections = Counter("alphaline_serving_rejections", "Requests refused with a 4xx by the handlers, by reason.",
                     ["endpoint", "reason"])
admin = FastAPI(title="Alphaline serving: model card and admin", docs_url=None, redoc_url=None, openapi_url=None)


def _model_store() -> Any:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return BentoMLContainer.model_store.get()


def production_refs() -> dict[str, BentoModel]:
    """``BentoModel`` references to the production ensemble and its members in BentoML's model store.

    Empty when the store has no production ensemble (the service then refuses to start).
    """
    from models.registry import Registry

    registry = Registry.from_store(_model_store())
    tag = registry.production()
    if tag is None:
        return {}
    members = registry.info(tag)["metadata"].get("members") or {}
    return {ENSEMBLE_REF: BentoModel(tag), **{f"member_{family}": BentoModel(t) for family, t in sorted(members.items())}}


class _EnsembleService:
    """The production ensemble: scores, directions and confidences per symbol (DESIGN.md §3.4)."""

    def __init__(self) -> None:
        from models.registry import Registry

        ref = getattr(type(self), ENSEMBLE_REF, None)
        if not isinstance(ref, BentoModel) or ref.stored is None:
            raise NoProductionModel(f"no production ensemble in the model store {_model_store()._path} when the service was "
                                    "imported (train and promote one; serve with BENTOML_HOME=$ALPHALINE_HOME/bentoml)")
        # BentoML's logging config disables loggers that existed before it ran and leaves the root at WARNING:
        # re-enable this one, at INFO, so the per-request lines reach BentoML's handler.
        logger.disabled = False
        logger.setLevel(logging.INFO)
        install_refusal_logging()  # BentoML's own 4xx (bad types, malformed JSON) would log ERROR + traceback
        settings = ServingSettings()
        self.predictor = Predictor.from_settings(settings, Registry.from_store(_model_store()), tag=str(ref.tag))
        self.predictor.warm_up()  # the first request should not pay for the first Feast read
        self._threads: anyio.CapacityLimiter | None = None
        _freeze_heap()
        logger.info("serving %s (features from %s, stale after %d bars, clock %s)", self.predictor.model.tag,
                    settings.home, self.predictor.stale_bars, settings.stale_clock)

    @bentoml.api(route="/predict")
    async def predict(self, request: PredictRequest, /) -> PredictResponse:
        """Scores for symbols from the latest online features, or as of a past moment (``as_of``)."""
        extra = f"symbols={len(request.symbols)} as_of={request.as_of.isoformat() if request.as_of else '-'}"
        return await self._handle("/predict", self.predictor.predict, request, extra, quick=self.predictor.quick)

    @bentoml.api(route="/predict_rows")
    async def predict_rows(self, request: PredictRowsRequest, /) -> PredictResponse:
        """Scores for caller-supplied feature rows (every feature of the model card, by name)."""
        return await self._handle("/predict_rows", self.predictor.predict_rows, request, f"rows={len(request.rows)}")

    async def _handle(self, route: str, call: Callable[[Any], PredictResponse], request: Any, extra: str, *,
                      quick: Callable[[Any], PredictResponse | None] | None = None) -> Any:
        began = time.perf_counter()
        endpoint = route.lstrip("/")
        try:
            # A lookup in the current snapshot is answered on the event loop; anything that reads a store or runs a
            # model goes to one worker thread, as BentoML does for a sync API (the hand-off costs ~0.3 ms a request).
            answer = quick(request) if quick else None
            if answer is None:
                answer = await anyio.to_thread.run_sync(call, request, limiter=self._limiter())
        except RequestRejected as exc:
            rejections.labels(endpoint=endpoint, reason=exc.problems[0].type).inc()
            log_refusal("POST", route, exc.status, exc.summary(), f"{extra}, {_ms(began):.1f} ms")
            return JSONResponse(exc.body(), status_code=exc.status)
        except FeatureStoreError as exc:  # the store, not the request, is wrong: 503 says retry later
            logger.error("%s %s -> 503 %s", endpoint, extra, exc)
            return JSONResponse({"error": f"feature store: {exc}"}, status_code=503)
        stale = sum(p.stale for p in answer.predictions)
        logger.info("%s %s model=%s stale=%d -> 200 (%.1f ms)", endpoint, extra, answer.model_version, stale, _ms(began))
        return answer

    def _limiter(self) -> anyio.CapacityLimiter:
        # Created on the event loop, on first use: one thread at a time, BentoML's default for a sync API.
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(1)
        return self._threads

    @admin.get("/health")
    def health(self) -> JSONResponse:
        """200 with the live model and the newest online feature time; 503 when the online store cannot be read."""
        model_version = self.predictor.model.tag
        try:
            newest = self.predictor.source.online().newest
        except FeatureStoreError as exc:
            return JSONResponse({"status": "unavailable", "model_version": model_version,
                                 "reason": f"feature store: {exc}"}, status_code=503)
        return JSONResponse({"status": "ok", "model_version": model_version,
                             "newest_features": newest.isoformat() if newest else None})

    @admin.get("/model", response_model=ModelCard)
    def model_card(self) -> ModelCard:
        """The model card: members, weights, training window, out-of-sample metrics, gates, features."""
        return self.predictor.card()

    @admin.post("/reload", response_model=ReloadResponse)
    def reload(self, request: Request, authorization: str | None = Header(default=None)) -> ReloadResponse:
        """Swap to the model store's current production ensemble (admin)."""
        _authorize(request, authorization, self.predictor.settings)
        if self.predictor.settings.workers > 1:  # this request reaches one worker; the others would keep the old model
            raise _refuse(request, 409, f"reload: {self.predictor.settings.workers} workers would disagree on the model; "
                                        "restart the service to serve the new production model")
        try:
            old, new = self.predictor.swap()
        except NoProductionModel as exc:
            raise _refuse(request, 409, str(exc)) from None
        _freeze_heap()
        logger.info("reload: %s", f"{old.tag} -> {new.tag}" if new is not old else f"{old.tag} (unchanged)")
        return ReloadResponse(reloaded=new is not old, model_version=new.tag, previous=old.tag)


def _authorize(request: Request, authorization: str | None, settings: ServingSettings) -> None:
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    if token is None:
        host = request.client.host if request.client else ""
        if host not in LOOPBACK:
            raise _refuse(request, 403, "reload: admin only; from other hosts set ALPHALINE_SERVING_ADMIN_TOKEN "
                                        "and send Authorization: Bearer <token>")
        return
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise _refuse(request, 403, "reload: missing or wrong bearer token (Authorization: Bearer <token>)")


def _refuse(request: Request, status: int, detail: str) -> HTTPException:
    log_refusal(request.method, request.url.path, status, detail)
    return HTTPException(status_code=status, detail=detail)


def _freeze_heap() -> None:
    # Feast, polars, sklearn and the models leave a large long-lived heap; the first full collection over it
    # stalled requests for ~0.3 s under load (tests/benchmarks/bench_serving.py). Frozen objects are skipped.
    gc.freeze()


def _ms(began: float) -> float:
    return (time.perf_counter() - began) * 1000


for _name, _ref in production_refs().items():
    setattr(_EnsembleService, _name, _ref)

Ensemble = bentoml.service(
    name="alphaline_ensemble_service",
    workers=1,  # the default; serving.serve --workers N overrides it through BentoML's config (BENTOML_CONFIG_OPTIONS)
    traffic={"timeout": 30},
)(bentoml.asgi_app(admin, path="/")(_EnsembleService))
Ensemble.add_asgi_middleware(JsonBodiesOnly, paths=API_ROUTES)


class _VersionedService(type(Ensemble)):  # type: ignore[misc]
    """BentoML's service with a version and our own description on its OpenAPI page: served from source (no Bento),
    BentoML says version "None" and shows its default README, whose badges are images from other hosts (broken offline)."""

    __slots__ = ()

    @property
    def openapi_spec(self) -> Any:
        import attr

        spec = super().openapi_spec
        return attr.evolve(spec, info=attr.evolve(spec.info, version=_served_version(), description=_DESCRIPTION))


_DESCRIPTION = (
    "Alphaline's production ensemble: `POST /predict` scores symbols from the latest online features or `as_of` a past "
    "moment, `POST /predict_rows` scores feature rows you send, `GET /model` is the model card (members, weights, "
    "windows, out-of-sample metrics, gates), `POST /reload` swaps to the store's current production model (admin). "
    "Contract: DESIGN.md §3.4."
)


def _served_version() -> str:
    """``alphaline <package version>, <production model at start>`` (``GET /model`` names the live one after a reload)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("alphaline")
    except PackageNotFoundError:
        package = "unknown"
    ref = getattr(_EnsembleService, ENSEMBLE_REF, None)
    return f"alphaline {package}, model {ref.tag}" if isinstance(ref, BentoModel) else f"alphaline {package}"


Ensemble.__class__ = _VersionedService
