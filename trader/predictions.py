"""Predictions as the trader sees them: the DESIGN.md §3.4 response, parsed and checked.

The trader never imports the serving code: it reads ``POST /predict`` answers through a
:class:`PredictionClient` (an HTTP client in production, a fake in tests) and gets
:class:`Prediction` objects. :func:`parse_predictions` turns a response body into a
:class:`PredictionBatch` or raises :class:`~trader.errors.PredictionError` naming the
field, so that a garbage answer stops trading instead of being guessed around.

Example:
    >>> batch = parse_predictions({"model_version": "ens:v3", "predictions": [
    ...     {"symbol": "AAA", "score": 0.8, "direction": "long", "confidence": 0.6,
    ...      "feature_ts": "2024-03-05T15:00:00Z", "stale": False}]})
    >>> p = batch.predictions[0]
    >>> p.symbol, p.direction, p.model_version, p.feature_ts.isoformat()
    ('AAA', <Direction.LONG: 'long'>, 'ens:v3', '2024-03-05T15:00:00+00:00')
    >>> parse_predictions({"model_version": "v", "predictions": [{"symbol": "AAA"}]})
    Traceback (most recent call last):
    ...
    trader.errors.PredictionError: prediction service: predictions.0.score: Field required
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, ValidationError

from trader.errors import DomainError, PredictionError
from trader.values import Symbol, to_symbol, to_utc


class Direction(StrEnum):
    LONG = "long"
    SHORT = "short"
    FLAT = "flat"


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """One symbol's forecast. ``score`` is a model score (a float: not money); ``feature_ts`` is
    when the features behind it became knowable; ``stale`` is the service's own staleness flag."""

    symbol: Symbol
    score: float
    direction: Direction
    confidence: float
    feature_ts: dt.datetime
    stale: bool
    model_version: str
    #: Why the score is what it is, when the trader asked (``prediction.explain``): SHAP ``base``, the top
    #: ``contributions`` by feature and ``other`` (the rest), summing to ``score``.
    explanation: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", to_symbol(self.symbol))
        object.__setattr__(self, "direction", Direction(self.direction))
        object.__setattr__(self, "feature_ts", to_utc(self.feature_ts, "prediction.feature_ts"))
        if not math.isfinite(self.score):
            raise DomainError(f"prediction {self.symbol}: score {self.score!r} is not finite")
        if not 0.0 <= self.confidence <= 1.0:
            raise DomainError(f"prediction {self.symbol}: confidence {self.confidence!r} is outside [0, 1]")

    def age(self, now: dt.datetime) -> dt.timedelta:
        """How old the features are at ``now`` (negative if they claim to come from the future)."""
        return to_utc(now, "now") - self.feature_ts

    def to_record(self) -> dict[str, Any]:
        return {**self.__dict__, "direction": self.direction.value}


@dataclass(frozen=True)
class PredictionBatch:
    """One ``/predict`` answer."""

    model_version: str
    predictions: tuple[Prediction, ...]

    def by_symbol(self) -> dict[Symbol, Prediction]:
        return {p.symbol: p for p in self.predictions}


class PredictionClient(Protocol):
    """What the run loop needs from the prediction service (DESIGN.md §3.4 ``POST /predict``).

    Implementations raise :class:`~trader.errors.PredictionError` when the service is
    down, times out or answers something :func:`parse_predictions` refuses.
    """

    def predict(self, symbols: Sequence[Symbol], *, as_of: dt.datetime | None = None) -> PredictionBatch: ...


class _Explanation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    base: Annotated[float, Field(allow_inf_nan=False)]
    contributions: dict[str, Annotated[float, Field(allow_inf_nan=False)]]
    other: Annotated[float, Field(allow_inf_nan=False)]
    families: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = {}


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore")
    symbol: Annotated[str, Field(pattern=r"^[A-Z0-9.\-/]{1,15}$")]
    score: Annotated[float, Field(allow_inf_nan=False)]
    direction: Direction
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    feature_ts: AwareDatetime
    stale: StrictBool
    explanation: _Explanation | None = None


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model_version: Annotated[str, Field(min_length=1)]
    predictions: list[_Item]


def parse_predictions(payload: Any, *, source: str = "prediction service") -> PredictionBatch:
    """Validate a ``/predict`` response body (a dict, or JSON text/bytes) against DESIGN.md §3.4."""
    try:
        if isinstance(payload, str | bytes):
            body = _Response.model_validate_json(payload)
        else:
            body = _Response.model_validate(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "body"
        raise PredictionError(f"{source}: {where}: {err['msg']}") from None
    items = tuple(
        Prediction(symbol=Symbol(i.symbol), score=i.score, direction=i.direction, confidence=i.confidence,
                   feature_ts=i.feature_ts, stale=i.stale, model_version=body.model_version,
                   explanation=i.explanation.model_dump() if i.explanation else None)
        for i in body.predictions
    )
    return PredictionBatch(body.model_version, items)
