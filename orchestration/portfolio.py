"""The trader's portfolio construction inside the research backtest: one optimiser for both.

``models`` may not import ``trader`` (DESIGN §1), so :func:`models.backtest.run_backtest` takes a
``weigh`` callable, and this module (orchestration may import both) adapts
:func:`trader.optimizer.optimize` — the same skfolio HRP / mean-variance the trader runs with
``sizing.optimizer`` — to it. At each decision the backtest hands over the selected names' sides,
scores and trailing bar returns through that bar's close; the optimiser's shares of the gross come
back, or ``None`` (too little history, a solver failure) and the book keeps equal weights there,
as the trader falls back to ``sizing.weighting``.

Example:
    >>> import numpy as np
    >>> weigh = trader_weigh("hrp", min_observations=60)
    >>> rng = np.random.default_rng(0)
    >>> shares = weigh(np.array([1.0, 1.0, -1.0]), np.array([0.2, 0.1, -0.3]), rng.normal(0, [0.01, 0.01, 0.03], (200, 3)))
    >>> round(float(shares.sum()), 6), bool(shares[2] < shares[0])  # the volatile name gets less
    (1.0, True)
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from models.backtest import Weigh


def trader_weigh(method: str, *, max_share: float = 1.0, min_observations: int = 60, risk_aversion: float = 1.0,
                 score_horizon_bars: int = 4) -> Weigh:
    """A backtest ``weigh`` that calls the trader's optimiser (``hrp`` or ``mvo``) with these settings."""
    from trader.history import MarketSnapshot
    from trader.optimizer import optimize

    if method not in ("hrp", "mvo"):
        raise ValueError(f"backtest_optimizer: must be none, hrp or mvo, got {method!r}")

    def weigh(sides: np.ndarray, scores: np.ndarray, returns: np.ndarray) -> np.ndarray | None:
        names = tuple(f"S{i:04d}" for i in range(len(sides)))  # sorted like the optimiser sorts, so order is kept
        snapshot = MarketSnapshot(asof=dt.datetime(1970, 1, 1, tzinfo=dt.UTC), symbols=names, returns=returns,
                                  min_observations=min_observations)
        shares, _ = optimize(dict(zip(names, (int(s) for s in sides), strict=True)),
                             dict(zip(names, (float(x) for x in scores), strict=True)), snapshot, method=method,
                             max_share=max_share, min_observations=min_observations, risk_aversion=risk_aversion,
                             score_horizon_bars=score_horizon_bars)
        return None if shares is None else np.array([shares[n] for n in names])

    return weigh
