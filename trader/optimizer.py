"""Portfolio construction with skfolio: how the gross exposure is split across the names sizing selected.

:mod:`trader.sizing` picks the names and their sides (top ``k`` long, bottom ``k`` short); with
``sizing.optimizer`` set, :func:`optimize` decides each name's share of the gross instead of
``sizing.weighting``:

* ``hrp`` — hierarchical risk parity (López de Prado) on a Ledoit-Wolf shrunk covariance:
  no expected returns, risk spread across the correlation tree;
* ``mvo`` — mean-variance: maximise ``μ·w − risk_aversion · wᵀΣw`` with ``Σ`` Ledoit-Wolf and
  ``μ`` the side-adjusted prediction scores divided by ``score_horizon_bars`` (the scores
  forecast several bars ahead, the covariance is of one bar).

A short is handled by flipping the sign of its returns, so both problems are long-only over
"positions" and the shares sum to 1; each share is capped at ``max_weight / gross_exposure``
(raised to ``1/n`` when the cap could not add up to the whole). The covariance comes from the
trailing bar returns of :class:`~trader.history.MarketSnapshot` — bars closed by the decision
time only. With fewer than ``history.min_observations`` complete rows, or when the solver fails,
:func:`optimize` returns ``None`` and the reason, and sizing falls back to ``sizing.weighting``
(the cycle status says so).

skfolio (scikit-learn, scipy, cvxpy) is imported on the first call only: ``import trader.sizing``
stays light, and a trader without an optimiser never loads it.

Example:
    >>> import datetime as dt, numpy as np
    >>> from trader.history import MarketSnapshot
    >>> rng = np.random.default_rng(0)
    >>> snap = MarketSnapshot(asof=dt.datetime(2024, 3, 5, tzinfo=dt.UTC), symbols=("AAA", "BBB", "CCC"),
    ...                       returns=rng.normal(0, [0.01, 0.01, 0.03], size=(200, 3)))
    >>> shares, note = optimize({"AAA": 1, "BBB": 1, "CCC": -1}, {"AAA": 0.2, "BBB": 0.1, "CCC": -0.3}, snap,
    ...                         method="hrp", max_share=1.0, min_observations=60)
    >>> note, round(sum(shares.values()), 6), shares["CCC"] < shares["AAA"]  # the volatile name gets less
    ('hrp over 3 names, 200 bars', 1.0, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trader.domain import Symbol

if TYPE_CHECKING:
    from trader.history import MarketSnapshot


def optimize(sides: Mapping[Symbol, int], scores: Mapping[Symbol, float], snapshot: MarketSnapshot | None, *,
             method: str, max_share: float, min_observations: int, risk_aversion: float = 1.0,
             score_horizon_bars: int = 4) -> tuple[dict[Symbol, float] | None, str]:
    """Each selected name's share of the gross (shares ≥ 0, summing to 1), or ``None`` and why not.

    Args:
        sides: +1 long / −1 short per selected name (0 entries are ignored).
        scores: the prediction score per name (``mvo`` only).
        snapshot: trailing returns, point-in-time; ``None`` means no history was configured.
        method: ``mvo`` or ``hrp``.
        max_share: the largest share of one name.
        min_observations: fewer complete return rows than this: no optimisation.
    """
    import numpy as np

    names = sorted(s for s, side in sides.items() if side)
    if len(names) < 2:
        return ({names[0]: 1.0} if names else {}), f"{method}: {len(names)} name, nothing to optimise"
    if snapshot is None:
        return None, f"{method}: no market history configured"
    window = snapshot.window(names)
    if window.shape[0] < min_observations:
        return None, f"{method}: {window.shape[0]} bars of returns for {len(names)} names, fewer than {min_observations}"
    signs = np.array([sides[s] for s in names], dtype=float)
    flipped = window * signs  # a short earns minus its return
    cap = min(1.0, max(max_share, 1.0 / len(names)))
    try:
        if method == "hrp":
            weights = _hrp(flipped, cap)
        elif method == "mvo":
            mu = signs * np.array([scores.get(s, 0.0) for s in names]) / score_horizon_bars
            weights = _mvo(flipped, mu, cap, risk_aversion)
        else:
            raise ValueError(f"unknown optimizer {method!r}")
    except (ValueError, ArithmeticError) as exc:  # skfolio's solver failures are ValueErrors
        return None, f"{method} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    weights = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    if not np.isfinite(weights).all() or weights.sum() <= 0:
        return None, f"{method}: no usable weights"
    weights /= weights.sum()
    return dict(zip(names, (float(w) for w in weights), strict=True)), f"{method} over {len(names)} names, {window.shape[0]} bars"


def _prior(mu: Any = None) -> Any:
    from skfolio.moments import LedoitWolf
    from skfolio.prior import EmpiricalPrior

    return EmpiricalPrior(covariance_estimator=LedoitWolf(), **({"mu_estimator": _given_mu(mu)} if mu is not None else {}))


def _hrp(returns: Any, cap: float) -> Any:
    from skfolio.optimization import HierarchicalRiskParity

    model = HierarchicalRiskParity(prior_estimator=_prior(), max_weights=cap)
    return model.fit(returns).weights_


def _mvo(returns: Any, mu: Any, cap: float, risk_aversion: float) -> Any:
    from skfolio.optimization import MeanRisk, ObjectiveFunction

    model = MeanRisk(objective_function=ObjectiveFunction.MAXIMIZE_UTILITY, risk_aversion=risk_aversion,
                     prior_estimator=_prior(mu), min_weights=0.0, max_weights=cap, budget=1.0)
    return model.fit(returns).weights_


def _given_mu(mu: Any) -> Any:
    """A skfolio expected-returns estimator that returns the forecasts it is given (the model's scores)."""
    import numpy as np
    from skfolio.moments import BaseMu

    class GivenMu(BaseMu):
        def __init__(self, mu: Any = None) -> None:
            self.mu = mu

        def fit(self, X: Any, y: Any = None) -> GivenMu:
            X = np.asarray(X)
            if X.shape[1] != len(self.mu):
                raise ValueError(f"{len(self.mu)} expected returns for {X.shape[1]} assets")
            self.n_features_in_ = X.shape[1]
            self.mu_ = np.asarray(self.mu, dtype=float)
            return self

    return GivenMu(mu)
