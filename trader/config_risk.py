"""How much to trade: the risk limits (``risk:`` with its drawdown tiers) and the sizing (``sizing:``) of ``trader.yaml``.

:class:`RiskLimits` are what :class:`trader.risk.RiskEngine` approves or denies against;
:class:`SizingConfig` is how :mod:`trader.sizing` turns scores into target weights and orders.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, PositiveInt, model_validator

from trader.config_base import Fraction, Money, Ticker, _Model


class DrawdownTier(_Model):
    """From a drawdown of ``at`` (fraction of the equity peak) on, new risk is sized by ``size_multiplier``."""

    at: Annotated[Decimal, Field(gt=0, lt=1)]
    size_multiplier: Fraction


class DrawdownConfig(_Model):
    """Drawdown tiers; at ``flatten_and_halt_at`` the trader flattens and halts (the size multiplier is 0)."""

    tiers: tuple[DrawdownTier, ...] = (
        DrawdownTier(at=Decimal("0.05"), size_multiplier=Decimal("0.75")),
        DrawdownTier(at=Decimal("0.10"), size_multiplier=Decimal("0.5")),
    )
    flatten_and_halt_at: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.15")

    @model_validator(mode="after")
    def _ordered(self) -> DrawdownConfig:
        ats = [t.at for t in self.tiers]
        if ats != sorted(set(ats)):
            raise ValueError("tiers must have strictly increasing 'at'")
        mults = [t.size_multiplier for t in self.tiers]
        if mults != sorted(mults, reverse=True):
            raise ValueError("a deeper tier cannot have a larger size_multiplier")
        if ats and ats[-1] >= self.flatten_and_halt_at:
            raise ValueError("every tier must start below flatten_and_halt_at")
        return self

    def size_multiplier(self, drawdown: Decimal) -> Decimal:
        """1 above the first tier, the deepest reached tier's multiplier, 0 from ``flatten_and_halt_at`` on."""
        if drawdown >= self.flatten_and_halt_at:
            return Decimal(0)
        reached = [t.size_multiplier for t in self.tiers if drawdown >= t.at]
        return reached[-1] if reached else Decimal(1)


class RiskLimits(_Model):
    """Limits of :class:`trader.risk.RiskEngine`. Percentages are fractions of equity (0.10 = 10 %)."""

    max_notional_per_order: Money = Decimal(50_000)
    max_position_pct: Fraction = Decimal("0.10")
    max_gross_exposure_pct: Annotated[Decimal, Field(gt=0, le=10)] = Decimal("1.0")
    max_net_exposure_pct: Annotated[Decimal, Field(ge=0, le=10)] = Decimal("0.5")
    #: ``None`` switches the sector check off; otherwise every traded symbol needs a sector.
    max_sector_pct: Fraction | None = Decimal("0.30")
    daily_loss_limit_pct: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.03")
    drawdown: DrawdownConfig = DrawdownConfig()
    price_collar_pct: Fraction = Decimal("0.05")
    max_orders_per_minute: PositiveInt = 60
    #: Seconds (``1800``) or ISO 8601 (``PT30M``); older features make a prediction stale.
    max_prediction_age: dt.timedelta = dt.timedelta(minutes=30)
    market_hours_only: bool = True
    restricted_symbols: frozenset[Ticker] = frozenset()
    # -- portfolio risk (:mod:`trader.risk.portfolio`), on the trailing bars of ``history``; ``None`` switches a check off
    #: Value at risk / expected shortfall of the book after the order, as a fraction of equity.
    max_var_pct: Fraction | None = None
    max_cvar_pct: Fraction | None = None
    #: ``historical`` (empirical quantile of past bar P&L), ``parametric`` (Gaussian, sample covariance) or
    #: ``worst`` (the larger of the two).
    var_method: Literal["historical", "parametric", "worst"] = "historical"
    var_confidence: Annotated[Decimal, Field(ge=Decimal("0.8"), lt=1)] = Decimal("0.99")
    #: Horizon in bars; one-bar figures are scaled by sqrt(horizon) (26 bars of 15 minutes = one session).
    var_horizon_bars: PositiveInt = 26
    #: An order's quantity may be at most this fraction of the symbol's average daily volume.
    max_adv_pct: Fraction | None = None
    #: Gross exposure of the positions moving with the order's symbol (signed correlation ≥ the threshold,
    #: the symbol itself included), as a fraction of equity.
    max_correlated_pct: Annotated[Decimal, Field(gt=0, le=10)] | None = None
    correlation_threshold: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.7")

    def needs_history(self) -> bool:
        return any(x is not None for x in (self.max_var_pct, self.max_cvar_pct, self.max_adv_pct, self.max_correlated_pct))


class SizingConfig(_Model):
    """How scores become orders (:mod:`trader.sizing`)."""

    mode: Literal["long_short", "long_only"] = "long_short"
    #: Names per side: the top ``k`` scores go long, the bottom ``k`` short (long-short only).
    k: PositiveInt = 5
    #: Target sum of |weights| before the drawdown size multiplier.
    gross_exposure: Annotated[Decimal, Field(gt=0, le=10)] = Decimal(1)
    weighting: Literal["equal", "kelly"] = "equal"
    #: Kelly from the prediction's confidence p and payoff ratio b: f = fraction · (p − (1 − p) / b), capped.
    kelly_fraction: Fraction = Decimal("0.25")
    kelly_cap: Fraction = Decimal("0.10")
    kelly_payoff: Money = Decimal(1)
    #: Volatility targeting: weights scale by target_vol / vol (same units as the vol estimates given).
    target_vol: Money | None = None
    max_weight: Fraction = Decimal("0.10")
    fractional: bool = False
    qty_decimals: Annotated[int, Field(ge=0, le=9)] = 4
    min_order_notional: Annotated[Decimal, Field(ge=0)] = Decimal(1)
    #: No order when |target weight − current weight| is below this (full closes excepted).
    rebalance_threshold: Annotated[Decimal, Field(ge=0, lt=1)] = Decimal("0.005")
    #: Only buy a long-direction prediction and only short a short-direction one; never trade "flat".
    respect_direction: bool = True
    #: Portfolio construction (:mod:`trader.optimizer`, skfolio) over the selected names: ``none`` keeps the
    #: ``weighting`` above; ``mvo`` maximises mean − risk_aversion · variance with the scores as expected returns and a
    #: Ledoit-Wolf covariance; ``hrp`` is hierarchical risk parity on the same covariance. Both use ``history``.
    optimizer: Literal["none", "mvo", "hrp"] = "none"
    #: mvo: the weight of variance against expected return.
    risk_aversion: Annotated[float, Field(gt=0, le=1e6)] = 1.0
    #: mvo: the bars ahead the scores forecast (the model's label horizon); they are divided by it to match
    #: the one-bar covariance.
    score_horizon_bars: PositiveInt = 4
    #: Largest Σ|target weight − current weight| per rebalance; a larger move goes part of the way. ``None``: no cap.
    max_turnover: Annotated[Decimal, Field(gt=0, le=20)] | None = None
    #: Largest |Σ weights| (long minus short) of the targets; the heavier side is scaled down. ``None``: no cap.
    max_net_weight: Annotated[Decimal, Field(ge=0, le=10)] | None = None

    @property
    def lot_size(self) -> Decimal:
        """The smallest quantity step: ``10^-qty_decimals`` when ``fractional`` (0.0001 BTC at 4), else one share."""
        return Decimal(1).scaleb(-self.qty_decimals) if self.fractional else Decimal(1)

