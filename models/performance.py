"""Performance metrics of a return series, following empyrical's conventions.

Every metric takes simple per-period returns (``r_t = E_t / E_{t-1} - 1``) as a
1-D array-like, and annualises with ``periods_per_year`` (see
:func:`periods_per_year`). The conventions are empyrical's, so numbers can be
checked against it and against pyfolio tear sheets:

* annual return is the CAGR ``(prod(1 + r)) ** (ppy / n) - 1``;
* volatility, Sharpe and Sortino scale by ``sqrt(ppy)``; standard deviations
  use ``ddof=1``; the risk-free rate is per period (0 by default);
* Sortino's downside risk is ``sqrt(mean(min(r - rf, 0) ** 2))`` over *all*
  periods (not only the losing ones);
* max drawdown is a negative fraction measured from a wealth path that starts
  at 1 before the first return, so a first-period loss counts;
* Calmar is annual return over ``|max drawdown|`` (NaN without a drawdown);
* a NaN return (the first row of a ``pct_change``, a missing bar) is a period
  with return 0 for the compounding metrics — annual return, wealth, drawdown,
  Calmar: it counts in ``n`` — and is skipped by the moment-based ones
  (volatility, Sharpe, Sortino, downside risk), exactly as empyrical does;
* no variance with a non-zero mean gives a Sharpe of ``±inf``, and no downside
  with a positive mean a Sortino of ``inf`` (empyrical divides by zero too);
  with a zero mean both are NaN.

``tests/models/test_performance.py`` pins every metric to empyrical 0.5.5's own
output on series with and without NaN. One deliberate difference: a wealth that
went to or through zero has annual return −1 here; empyrical raises a negative
number to a fractional power there, which is NaN (or, for an integer exponent,
an accident of the sign).

Metrics that are undefined on the input (too few values, zero mean over zero
spread) return NaN (or ``inf`` for a profit factor without losses), never raise.

Example:
    >>> r = [0.01, -0.02, 0.03]
    >>> round(max_drawdown(r), 4)
    -0.02
    >>> periods_per_year("15m")
    6552
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Bars per regular session on each calendar (XNYS: 6.5 hours; bars aligned to the
#: timeframe, so the hourly grid has 7 bars, the last one half long).
BARS_PER_SESSION: dict[str, dict[str, int]] = {
    "XNYS": {"1m": 390, "5m": 78, "15m": 26, "1h": 7, "1d": 1},
    "24/7": {"1m": 1440, "5m": 288, "15m": 96, "1h": 24, "1d": 1},
}
SESSIONS_PER_YEAR: dict[str, int] = {"XNYS": 252, "24/7": 365}

ArrayLike = Sequence[float] | np.ndarray


class MetricInputError(ValueError):
    """A metric was asked for something it cannot compute (unknown timeframe, bad shape)."""


def periods_per_year(timeframe: str, calendar: str = "XNYS") -> int:
    """Bars in a year of ``timeframe`` on ``calendar`` (the annualisation factor).

    Args:
        timeframe: ``1m``, ``5m``, ``15m``, ``1h`` or ``1d``.
        calendar: ``XNYS`` (252 sessions of 6.5 hours) or ``24/7`` (365 full days).

    Example:
        >>> periods_per_year("1d"), periods_per_year("15m")
        (252, 6552)
    """
    if calendar not in BARS_PER_SESSION:
        raise MetricInputError(f"calendar: {calendar!r} is not supported (choose one of {', '.join(BARS_PER_SESSION)})")
    per_session = BARS_PER_SESSION[calendar]
    if timeframe not in per_session:
        raise MetricInputError(f"timeframe: {timeframe!r} is not supported (choose one of {', '.join(per_session)})")
    return per_session[timeframe] * SESSIONS_PER_YEAR[calendar]


def _returns(returns: ArrayLike) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise MetricInputError(f"returns: expected a 1-D series, got shape {r.shape}")
    return r[~np.isnan(r)]


def _periods(returns: ArrayLike) -> np.ndarray:
    """Every period, a NaN return as 0 (empyrical's ``cum_returns``): compounding counts it, earns nothing."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise MetricInputError(f"returns: expected a 1-D series, got shape {r.shape}")
    return np.where(np.isnan(r), 0.0, r)


def _ratio(num: float, den: float) -> float:
    """``num / den`` with empyrical's zero-denominator answers: ±inf, or NaN for 0/0."""
    if den > 0:
        return float(num / den)
    return float("nan") if num == 0 or np.isnan(num) or np.isnan(den) else float(np.copysign(np.inf, num))


def cumulative_wealth(returns: ArrayLike) -> np.ndarray:
    """Wealth path ``[1, (1 + r_1), (1 + r_1)(1 + r_2), ...]`` (one longer than ``returns``; NaN earns 0)."""
    return np.concatenate(([1.0], np.cumprod(1.0 + _periods(returns))))


def annual_return(returns: ArrayLike, periods_per_year: int) -> float:
    """Compound annual growth rate: ``prod(1 + r) ** (ppy / n) - 1``, ``n`` counting NaN periods (as empyrical).

    Example:
        >>> round(annual_return([float("nan"), 0.1], 2), 6)  # two periods, one year: 10 %
        0.1
    """
    r = _periods(returns)
    if r.size == 0:
        return float("nan")
    final = float(np.prod(1.0 + r))
    # A wealth that went through zero has no real compound rate; -100% says what happened.
    return final ** (periods_per_year / r.size) - 1.0 if final > 0 else -1.0


def annual_volatility(returns: ArrayLike, periods_per_year: int) -> float:
    """Standard deviation of returns (``ddof=1``) times ``sqrt(ppy)``."""
    r = _returns(returns)
    return float(np.std(r, ddof=1) * np.sqrt(periods_per_year)) if r.size > 1 else float("nan")


def sharpe_ratio(returns: ArrayLike, periods_per_year: int, risk_free: float = 0.0) -> float:
    """``mean(r - rf) / std(r - rf, ddof=1) * sqrt(ppy)``; ``risk_free`` is per period."""
    excess = _returns(returns) - risk_free
    if excess.size < 2:
        return float("nan")
    return _ratio(float(np.mean(excess)), float(np.std(excess, ddof=1))) * float(np.sqrt(periods_per_year))


def downside_risk(returns: ArrayLike, periods_per_year: int, required_return: float = 0.0) -> float:
    """Annualised ``sqrt(mean(min(r - required, 0) ** 2))`` over all periods."""
    r = _returns(returns)
    if r.size == 0:
        return float("nan")
    below = np.minimum(r - required_return, 0.0)
    return float(np.sqrt(np.mean(below**2)) * np.sqrt(periods_per_year))


def sortino_ratio(returns: ArrayLike, periods_per_year: int, required_return: float = 0.0) -> float:
    """``mean(r - required) * ppy / downside_risk``: ``inf`` with a positive mean and no downside."""
    if _periods(returns).size < 2:  # NaN periods count here, as in empyrical
        return float("nan")
    r = _returns(returns)
    return _ratio(float(np.mean(r - required_return) * periods_per_year), downside_risk(r, periods_per_year, required_return))


def drawdown(returns: ArrayLike) -> np.ndarray:
    """Per-period drawdown (``wealth / running peak - 1``, ≤ 0), one value per return."""
    wealth = cumulative_wealth(returns)
    return (wealth / np.maximum.accumulate(wealth) - 1.0)[1:]


def max_drawdown(returns: ArrayLike) -> float:
    """Deepest drawdown as a negative fraction (0.0 when wealth never fell)."""
    dd = drawdown(returns)
    return float(dd.min()) if dd.size else float("nan")


def max_drawdown_duration(returns: ArrayLike) -> int:
    """Longest run of consecutive periods spent below the previous peak (0 if none).

    A drawdown that has not recovered by the last period counts up to the end.
    """
    under = drawdown(returns) < 0
    longest = run = 0
    for flag in under:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return longest


def calmar_ratio(returns: ArrayLike, periods_per_year: int) -> float:
    """Annual return over ``|max drawdown|``; NaN when there was no drawdown."""
    mdd = max_drawdown(returns)
    if not mdd < 0:
        return float("nan")
    ratio = annual_return(returns, periods_per_year) / abs(mdd)
    return ratio if np.isfinite(ratio) else float("nan")


def win_rate(pnl: ArrayLike) -> float:
    """Share of non-zero outcomes that are positive (flat periods are not bets)."""
    x = _returns(pnl)
    decided = x[x != 0]
    return float(np.mean(decided > 0)) if decided.size else float("nan")


def profit_factor(pnl: ArrayLike) -> float:
    """Sum of gains over the absolute sum of losses (``inf`` with gains and no loss)."""
    x = _returns(pnl)
    gains, losses = float(x[x > 0].sum()), float(-x[x < 0].sum())
    if losses == 0:
        return float("inf") if gains > 0 else float("nan")
    return gains / losses


def exposure(gross_exposure: ArrayLike) -> float:
    """Share of periods with any position (``|gross exposure| > 0``)."""
    g = _returns(gross_exposure)
    return float(np.mean(np.abs(g) > 0)) if g.size else float("nan")


def turnover(traded_notional: ArrayLike, equity_before: ArrayLike) -> float:
    """Mean two-sided turnover per period: ``mean(traded notional_t / equity_{t-1})``.

    Buying a full book from cash is 1.0; flipping it from long to short is 2.0.
    """
    traded = np.asarray(traded_notional, dtype=np.float64)
    base = np.asarray(equity_before, dtype=np.float64)
    if traded.shape != base.shape or traded.ndim != 1:
        raise MetricInputError(f"turnover: traded_notional {traded.shape} and equity_before {base.shape} must be 1-D and equal")
    return float(np.mean(traded / base)) if traded.size else float("nan")


def summary(returns: ArrayLike, *, periods_per_year: int, risk_free: float = 0.0) -> dict[str, float]:
    """Every return-based metric above in one dict (names are the function names).

    Example:
        >>> s = summary([0.01, -0.02, 0.03, 0.0], periods_per_year=252)
        >>> round(s["max_drawdown"], 4), s["max_drawdown_duration"], round(s["win_rate"], 3)
        (-0.02, 1, 0.667)
    """
    return {
        "annual_return": annual_return(returns, periods_per_year),
        "annual_volatility": annual_volatility(returns, periods_per_year),
        "sharpe_ratio": sharpe_ratio(returns, periods_per_year, risk_free),
        "sortino_ratio": sortino_ratio(returns, periods_per_year, risk_free),
        "max_drawdown": max_drawdown(returns),
        "calmar_ratio": calmar_ratio(returns, periods_per_year),
        "max_drawdown_duration": max_drawdown_duration(returns),
        "win_rate": win_rate(returns),
        "profit_factor": profit_factor(returns),
    }
