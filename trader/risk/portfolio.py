"""Portfolio risk: VaR/CVaR of the book, liquidity and correlation concentration, as pre-trade checks.

Each check judges the book **after** the order (every working order, including the ones approved
earlier in the cycle, counted as filled) against the book before it, on the trailing bar returns
of :class:`~trader.history.MarketSnapshot` (bars closed by the decision time only):

* ``value_at_risk`` / ``expected_shortfall`` — VaR and CVaR (expected shortfall) at
  ``risk.var_confidence`` over ``risk.var_horizon_bars``, as a fraction of equity:

  - *historical*: the empirical ``1 − confidence`` quantile of the book's one-bar P&L
    ``R · x`` over the window (``x`` the dollar positions), CVaR the mean P&L beyond it;
  - *parametric*: Gaussian with zero mean and the sample covariance ``Σ``:
    ``VaR = z·σ``, ``CVaR = σ·φ(z)/(1 − confidence)`` with ``σ = sqrt(xᵀΣx)``;
  - one-bar figures are scaled by ``sqrt(horizon)``; ``worst`` takes the larger method;
* ``liquidity`` — the order's quantity over the symbol's average daily volume (complete sessions);
* ``correlation_concentration`` — the gross exposure of the positions that move *with* the
  order's symbol (``ρ · sign_i · sign_j ≥ correlation_threshold``, itself included): two longs
  correlated at 0.9 are one bet, a long hedged by a correlated short is not.

Like the other checks, a risk-reducing order always passes, and a check denies only an order that
leaves its number above the limit **and** larger than before. A check that is switched on but has
no history (or fewer rows than ``history.min_observations``) denies with
``MARKET_HISTORY_UNAVAILABLE``: it cannot vouch for the order (fail closed).

Example:
    >>> import numpy as np
    >>> pnl = np.arange(-50.0, 50.0)  # 100 bars of P&L: -50, -49, ..., 49
    >>> var, cvar = historical_var(pnl, 0.95)  # numpy's interpolated quantile; the tail is -50..-46
    >>> round(var, 2), round(cvar, 2)
    (45.05, 48.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from statistics import NormalDist
from typing import TYPE_CHECKING

from trader.domain import Symbol
from trader.risk.context import OrderView, RiskReason

if TYPE_CHECKING:
    import numpy as np

    from trader.history import MarketSnapshot

R = RiskReason
Verdict = tuple[RiskReason, str]


class NoHistory(Exception):
    """The snapshot cannot support the number asked for."""


# -- the numbers ---------------------------------------------------------------------------------
def historical_var(pnl: np.ndarray, confidence: float) -> tuple[float, float]:
    """One-period VaR and CVaR (losses as positive numbers) from a P&L sample."""
    import numpy as np

    cut = float(np.quantile(pnl, 1.0 - confidence))
    tail = pnl[pnl <= cut]
    return max(-cut, 0.0), max(-float(tail.mean()), 0.0)


def parametric_var(sigma: float, confidence: float) -> tuple[float, float]:
    """Gaussian VaR and CVaR of a zero-mean P&L with standard deviation ``sigma``."""
    normal = NormalDist()
    z = normal.inv_cdf(confidence)
    return z * sigma, sigma * normal.pdf(z) / (1.0 - confidence)


def book_var(snapshot: MarketSnapshot | None, exposures: Mapping[Symbol, float], *, method: str, confidence: float,
             horizon_bars: int) -> tuple[float, float]:
    """VaR and CVaR in currency of the dollar ``exposures`` over ``horizon_bars``."""
    import numpy as np

    names = sorted(s for s, x in exposures.items() if x)
    if not names:
        return 0.0, 0.0
    returns = _window(snapshot, names)
    x = np.array([exposures[s] for s in names])
    scale = float(np.sqrt(horizon_bars))
    hist = historical_var(returns @ x, confidence)
    cov = np.atleast_2d(np.cov(returns, rowvar=False, ddof=1))
    param = parametric_var(float(np.sqrt(max(x @ cov @ x, 0.0))), confidence)
    var, cvar = {"historical": hist, "parametric": param}.get(method, (max(hist[0], param[0]), max(hist[1], param[1])))
    return var * scale, cvar * scale


def correlated_exposure(snapshot: MarketSnapshot | None, exposures: Mapping[Symbol, float], symbol: Symbol,
                        threshold: float, *, members: list[Symbol] | None = None) -> tuple[float, list[Symbol]]:
    """Gross exposure of the positions moving with ``symbol`` (and the names), or over ``members`` if given."""
    import numpy as np

    if members is not None:
        return sum(abs(exposures.get(s, 0.0)) for s in members), members
    held = sorted(s for s, x in exposures.items() if x)
    if symbol not in held:
        return 0.0, []
    returns = _window(snapshot, held)
    corr = np.atleast_2d(np.corrcoef(returns, rowvar=False))
    i = held.index(symbol)
    sign = np.sign([exposures[s] for s in held])
    members = [s for j, s in enumerate(held) if j == i or corr[i, j] * sign[i] * sign[j] >= threshold]
    return sum(abs(exposures.get(s, 0.0)) for s in members), members


def _window(snapshot: MarketSnapshot | None, names: list[Symbol]) -> np.ndarray:
    if snapshot is None:
        raise NoHistory("no market history configured (history section, read from the warehouse)")
    returns = snapshot.window(names)
    if returns.shape[0] < snapshot.min_observations:
        raise NoHistory(f"{returns.shape[0]} bars of returns for {len(names)} held names, "
                        f"fewer than history.min_observations {snapshot.min_observations}")
    return returns


# -- the checks ----------------------------------------------------------------------------------
def _book(v: OrderView, *, after: bool) -> dict[Symbol, float]:
    qty = dict(v.ctx.projected)
    if after:
        qty[v.order.symbol] = qty.get(v.order.symbol, Decimal(0)) + v.order.signed_qty
    return {s: float(q * v.ctx.price(s)) for s, q in qty.items() if q}


def _view_var(v: OrderView, *, after: bool) -> tuple[float, float]:
    """VaR and CVaR of the book with or without the order, computed once per order for both checks."""
    memo = v.__dict__.setdefault("_portfolio_var", {})
    if after not in memo:
        lim = v.limits
        memo[after] = book_var(v.ctx.market, _book(v, after=after), method=lim.var_method,
                               confidence=float(lim.var_confidence), horizon_bars=lim.var_horizon_bars)
    return memo[after]


def _exempt(v: OrderView, cap: Decimal | None, what: str) -> Verdict | None:
    """Approved without measuring: the check is switched off (no limit), or the order reduces the position."""
    if cap is None:
        return R.APPROVED, f"{what} check switched off"
    if v.reducing:
        return R.APPROVED, "reduces the position"
    return None


def _var_check(v: OrderView, cap: Decimal | None, which: int, reason: RiskReason, what: str) -> Verdict:
    if (exempt := _exempt(v, cap, what)) is not None:
        return exempt
    lim = v.limits
    try:
        after, before = (_view_var(v, after=True)[which], _view_var(v, after=False)[which])
    except NoHistory as exc:
        return R.MARKET_HISTORY_UNAVAILABLE, f"{what} cannot be measured: {exc}"
    share = Decimal(repr(round(after, 2))) / v.equity
    label = f"{lim.var_method} {what} {lim.var_confidence:.0%} over {lim.var_horizon_bars} bars"
    if share > cap and after > before:
        return reason, f"{label} would be {share:.2%} of equity (from {before / float(v.equity):.2%}); the limit is {cap:.2%}"
    return R.APPROVED, f"{label} {share:.2%} of equity"


def value_at_risk(v: OrderView) -> Verdict:
    return _var_check(v, v.limits.max_var_pct, 0, R.VAR_LIMIT_EXCEEDED, "VaR")


def expected_shortfall(v: OrderView) -> Verdict:
    return _var_check(v, v.limits.max_cvar_pct, 1, R.CVAR_LIMIT_EXCEEDED, "CVaR")


def liquidity(v: OrderView) -> Verdict:
    cap = v.limits.max_adv_pct
    if (exempt := _exempt(v, cap, "liquidity")) is not None:
        return exempt
    adv = v.ctx.market.adv.get(v.order.symbol) if v.ctx.market is not None else None
    if not adv:
        return R.MARKET_HISTORY_UNAVAILABLE, f"no average daily volume for {v.order.symbol} (no complete session in the history)"
    share = v.order.qty / adv
    if share > cap:
        return R.ORDER_EXCEEDS_ADV_LIMIT, f"{v.order.qty} {v.order.symbol} is {share:.2%} of its ADV {adv:.0f}; the limit is {cap:.2%}"
    return R.APPROVED, f"{share:.3%} of ADV {adv:.0f}"


def correlation_concentration(v: OrderView) -> Verdict:
    cap = v.limits.max_correlated_pct
    if (exempt := _exempt(v, cap, "correlation")) is not None:
        return exempt
    after_book = _book(v, after=True)
    try:
        after, members = correlated_exposure(v.ctx.market, after_book, v.order.symbol, float(v.limits.correlation_threshold))
    except NoHistory as exc:
        return R.MARKET_HISTORY_UNAVAILABLE, f"correlations cannot be measured: {exc}"
    before, _ = correlated_exposure(None, _book(v, after=False), v.order.symbol, 0.0, members=members)
    share = Decimal(repr(round(after, 2))) / v.equity
    names = ", ".join(members)
    if share > cap and after > before:
        return (R.CORRELATED_EXPOSURE_EXCEEDED, f"{names} move together (ρ ≥ {v.limits.correlation_threshold}): "
                f"{share:.2%} of equity; the limit is {cap:.2%}")
    return R.APPROVED, f"correlated with {v.order.symbol}: {names or 'nothing held'} {share:.2%} of equity"


PORTFOLIO_CHECKS = (value_at_risk, expected_shortfall, liquidity, correlation_concentration)
