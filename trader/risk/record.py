"""The ``risk_decision`` audit record: written compact, read in both the compact and the first (verbose) format.

A cycle writes one ``risk_decision`` per sized order, each with every check's verdict: most of the
audit log's bytes. The first format spelled each verdict out (``{"check", "approved", "reason",
"message"}``) and copied the whole prediction, though the record's head already holds its symbol,
model version and feature time. The compact format (written since issue 20) keeps the same facts:

* ``checks``: one entry per check, in the engine's order — ``[check, message]`` for a pass (its
  reason is ``APPROVED``), ``[check, reason, message]`` for a denial;
* ``prediction``: the score, direction, confidence, staleness flag and, when there is one, the
  explanation; the symbol, model version and feature time are the head's (a symbol that differs
  from the order's is kept).

Readers take the verdicts and the prediction through :func:`decision_checks` and
:func:`decision_prediction`, which give both formats in the first one's shape, so ``trader explain``
tells the same story of an old record and a new one. Stored records are never rewritten: the
audit chain verifies as before.

Example:
    >>> compact = {"symbol": "AAA", "model_version": "m1", "feature_ts": "2024-03-05T15:00:00+00:00",
    ...            "checks": [["trading_state", "trading state active"], ["max_notional", "MAX_NOTIONAL_EXCEEDED", "too big"]],
    ...            "prediction": {"score": 0.5, "direction": "long", "confidence": 0.6, "stale": False}}
    >>> [c["approved"] for c in decision_checks(compact)], decision_checks(compact)[1]["reason"]
    ([True, False], 'MAX_NOTIONAL_EXCEEDED')
    >>> decision_prediction(compact)["model_version"], decision_prediction(compact)["explanation"] is None
    ('m1', True)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trader.predictions import Prediction
from trader.risk.context import RiskCheckResult, RiskReason

_APPROVED = RiskReason.APPROVED.value
#: What the record's head already says about its prediction (the order's symbol, the prediction's model and time).
_IN_HEAD = ("model_version", "feature_ts")


def compact_checks(results: Iterable[RiskCheckResult]) -> list[list[str]]:
    """The verdicts as the compact record keeps them: ``[check, message]`` for a pass, ``[check, reason, message]`` otherwise."""
    return [[r.check, r.message] if r.reason is RiskReason.APPROVED else [r.check, r.reason.value, r.message] for r in results]


def compact_prediction(prediction: Prediction, symbol: str) -> dict[str, Any]:
    """The prediction without what the record's head repeats (``symbol`` is the order's)."""
    out: dict[str, Any] = {"score": prediction.score, "direction": prediction.direction.value,
                           "confidence": prediction.confidence, "stale": prediction.stale}
    if prediction.explanation is not None:
        out["explanation"] = prediction.explanation
    if prediction.symbol != symbol:
        out["symbol"] = prediction.symbol
    return out


def decision_checks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Every verdict of a ``risk_decision`` payload as ``{"check", "approved", "reason", "message"}``, in order (both formats)."""
    out = []
    for entry in payload.get("checks") or ():
        if isinstance(entry, dict):  # the first format
            out.append(entry)
        elif len(entry) == 2:
            out.append({"check": entry[0], "approved": True, "reason": _APPROVED, "message": entry[1]})
        else:
            out.append({"check": entry[0], "approved": False, "reason": entry[1], "message": entry[2]})
    return out


def decision_prediction(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The prediction of a ``risk_decision`` payload with every field of :meth:`Prediction.to_record` (both formats)."""
    prediction = payload.get("prediction")
    if prediction is None or "model_version" in prediction:  # none, or the first format's full copy
        return prediction
    return {"symbol": payload.get("symbol"), "explanation": None} | {k: payload.get(k) for k in _IN_HEAD} | prediction
