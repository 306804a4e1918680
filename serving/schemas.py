"""Request and response models of the prediction API (DESIGN.md §3.4).

Requests are strict: unknown keys, wrong types, NaN/inf numbers, naive timestamps and
numbers posing as timestamps are refused before any handler runs (BentoML answers
HTTP 400 naming the field). The size limits are settings (``serving.config``), so the
handlers check them, not these models.

Example:
    >>> PredictRequest.model_validate_json('{"symbols": ["AAA"], "as_of": "2024-07-31T20:00:00Z"}').as_of.isoformat()
    '2024-07-31T20:00:00+00:00'
    >>> from pydantic import ValidationError
    >>> try:
    ...     PredictRequest.model_validate_json('{"symbols": ["aaa"]}')
    ... except ValidationError as exc:
    ...     print(exc.errors()[0]["loc"], exc.errors()[0]["type"])
    ('symbols', 0) string_pattern_mismatch
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict, StrictBool

#: DESIGN.md §3.1: upper case, 1–15 characters.
SYMBOL_PATTERN = r"^[A-Z0-9.\-/]{1,15}$"
Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, description="Symbol, upper case (DESIGN.md §3.1).", examples=["AAA"])]
# Strict: only ISO 8601 strings with a zone; a bare number would be read as epoch seconds, silently.
UtcTimestamp = Annotated[AwareDatetime, Strict()]
FeatureValue = Annotated[float, Strict()]
#: At most this many contributions per score in an explanation (the model has fewer features than this).
MAX_EXPLAIN = 100


class _Request(BaseModel):
    # hide_input_in_errors: BentoML logs validation errors; feature payloads stay out of the log.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, allow_inf_nan=False)


class PredictRequest(_Request):
    """``POST /predict``: scores for ``symbols`` from the latest online features, or as of a past moment."""

    symbols: list[Symbol] = Field(min_length=1, description="Symbols to score; each at most once.")
    as_of: UtcTimestamp | None = Field(
        default=None, description="Score with the features knowable at this moment (offline store); "
                                  "omitted: the latest online features.")
    allow_stale: StrictBool = Field(
        default=False, description="Answer stale symbols with stale=true, direction flat and confidence 0 "
                                   "instead of refusing the request (HTTP 422).")
    explain: Annotated[int, Strict()] = Field(
        default=0, ge=0, le=MAX_EXPLAIN, description="Also return each score's SHAP attribution: its base value, "
                                                     "the top `explain` feature contributions, and the rest summed "
                                                     "(0, the default: none).")


class Explanation(BaseModel):
    """Why a score is what it is (SHAP): ``base + Σ contributions + other == score``."""

    base: float = Field(description="The score with every feature at its reference (training) values.")
    contributions: dict[str, float] = Field(description="The largest contributions by magnitude, largest first.")
    other: float = Field(description="The sum of the remaining features' contributions.")
    families: dict[str, float] = Field(default_factory=dict, description="Every feature's contribution summed by feature "
                                       "family (collinear features offset each other within one), largest first.")


class FeatureRow(_Request):
    """One row of ``POST /predict_rows``: a symbol and every model feature by name."""

    symbol: Symbol
    features: dict[str, FeatureValue] = Field(description="Every feature of the model card, finite numbers.")
    feature_ts: UtcTimestamp | None = Field(
        default=None, description="When these features became knowable. Required when the model reads "
                                  "history (card.context > 0): the rows before it come from the offline store.")


class PredictRowsRequest(_Request):
    """``POST /predict_rows``: score caller-supplied feature rows (offline/online parity checks)."""

    rows: list[FeatureRow] = Field(min_length=1)


class Prediction(BaseModel):
    symbol: str
    score: float = Field(description="Ensemble score (stacked, in units of the members' OOF spread).")
    direction: Literal["long", "short", "flat"]
    confidence: float = Field(ge=0.0, le=1.0, description="Share of out-of-fold |scores| below this |score|.")
    feature_ts: dt.datetime | None = Field(description="When the oldest feature used became knowable (UTC).")
    stale: bool
    explanation: Explanation | None = Field(default=None, description="Only when the request asked (`explain` > 0).")


class PredictResponse(BaseModel):
    model_version: str = Field(description="Tag of the production ensemble that scored, e.g. alphaline_ensemble:abc.")
    predictions: list[Prediction]


class Member(BaseModel):
    family: str
    tag: str
    weight: float
    scale: float


class ModelCard(BaseModel):
    """``GET /model``: what is serving and how it was validated (from the registry metadata)."""

    model_version: str
    stage: str | None
    created: str | None
    label: str | None
    features: list[str]
    context: int = Field(description="History rows per symbol the sequence members read (0: none).")
    members: list[Member]
    training_window: dict[str, Any] | None = None
    oos_window: dict[str, Any] | None = None
    oos_metrics: dict[str, Any] | None = None
    gates: list[dict[str, Any]] | None = None
    gates_passed: bool | None = None
    data_fingerprint: str | None = None
    code_version: str | None = None
    serving: dict[str, Any] = Field(description="How this service flags staleness and direction.")


class ReloadResponse(BaseModel):
    reloaded: bool
    model_version: str
    previous: str
