"""From predictions to orders: scores → target weights → target quantities → orders. Pure functions, Decimal out.

1. **Selection** (:func:`target_weights`): fresh predictions are ranked by score; the top
   ``k`` go long and, in ``long_short`` mode, the bottom ``k`` short (with
   ``respect_direction``, only a ``long`` prediction is bought and only a ``short`` one
   sold short). Every other fresh symbol gets weight 0 (its position is closed). A stale
   prediction leaves its symbol out altogether: its position is held, not traded.
2. **Weights**: ``equal`` gives each selected name ``gross_exposure / n``; ``kelly`` gives
   ``min(kelly_fraction · (p − (1 − p) / b), kelly_cap)`` with ``p`` the prediction's
   confidence and ``b`` the payoff ratio (no edge → 0). With ``target_vol`` each weight is
   scaled by ``target_vol / vol`` (a symbol without a vol estimate is left out). Then each
   |weight| is capped at ``max_weight``, the book is scaled down if its gross exceeds
   ``gross_exposure``, the drawdown ``size_multiplier`` applies, and weights are cut (toward
   zero) to 8 decimals.
   With ``optimizer: hrp|mvo`` the selected names' shares of ``gross_exposure`` come from
   :func:`trader.optimizer.optimize` (skfolio, on trailing bar returns closed by the decision
   time) instead of ``weighting``/``target_vol``; too little history falls back to ``weighting``
   and :attr:`SizingResult.note` says so. Then ``max_net_weight`` scales the heavier side down
   and ``max_turnover`` moves the book only part of the way from its current weights (both
   optional, for any optimizer).
3. **Quantities** (:func:`target_quantities`): ``weight · equity / price`` cut toward zero
   to whole shares, or to ``qty_decimals`` for longs when ``fractional`` (short sales stay
   whole: brokers do not short fractions).
4. **Orders** (:func:`orders_for_targets`): the change from the current position (plus
   working orders, if given) becomes one market day order with a deterministic
   ``client_order_id``; no order below ``min_order_notional`` or when the change in weight
   is below ``rebalance_threshold`` (a full close is exempt from the threshold).

Ranking (step 1) is one order, highest score first and ties alphabetically: longs are its head,
shorts its tail. **Parity with the backtest**: with equal weights, ``max_weight`` not binding,
``rebalance_threshold`` and ``min_order_notional`` 0, ``respect_direction`` off, and the simulator
without slippage or participation limit, a sim session makes the same fills and equity as
``models.backtest.run_backtest`` to the cent (``tests/trader/test_backtest_parity.py``). The
differences by design, each shown exactly there: weights cut to 8 decimals here (1/6 → 0.16666666,
a share less at times); a symbol without a (fresh) prediction held here, closed there; with fewer
than ``2k`` fresh names ``gross_exposure / n`` over the names selected here, ``gross / 2k`` per
name there; the buying-power check; slippage in the fill price (with the fee charged on it) where
the backtest books a half spread as a cost. Switched off there rather than shown: the other risk
limits, drawdown tiers and ``risk.market_hours_only`` (no decision at a session's last close).
The full list is in the backtest module's docstring.

Example:
    >>> import datetime as dt
    >>> from decimal import Decimal as D
    >>> from trader.config import SizingConfig
    >>> from trader.predictions import Prediction
    >>> ts = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
    >>> preds = [Prediction(symbol=s, score=x, direction="long" if x > 0 else "short", confidence=0.6,
    ...                     feature_ts=ts, stale=False, model_version="v1") for s, x in [("AAA", 0.9), ("BBB", -0.4)]]
    >>> cfg = SizingConfig(k=1, max_weight=D("0.5"))
    >>> result = size_orders(preds, positions={}, prices={"AAA": D(100), "BBB": D(50)}, equity=D(10_000),
    ...                      config=cfg, run_id="r1", decision_ts=ts)
    >>> result.weights
    {'AAA': Decimal('0.50000000'), 'BBB': Decimal('-0.50000000')}
    >>> [(c.order.side.value, c.order.qty, c.order.symbol) for c in result.commands]
    [('buy', Decimal('50'), 'AAA'), ('sell', Decimal('100'), 'BBB')]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING

from trader.config import SizingConfig
from trader.domain import ZERO, Order, Side, SubmitOrder, Symbol, make_client_order_id
from trader.errors import DomainError
from trader.predictions import Direction, Prediction

if TYPE_CHECKING:
    from trader.history import MarketSnapshot

_WEIGHT_STEP = Decimal("1e-8")
ONE = Decimal(1)


@dataclass(frozen=True)
class SizingResult:
    """What one sizing pass decided: target weights and quantities, the orders, and what it left alone (and why)."""

    weights: dict[Symbol, Decimal]
    quantities: dict[Symbol, Decimal]
    commands: list[SubmitOrder]
    skipped: dict[Symbol, str] = field(default_factory=dict)
    #: How the weights were split: the optimiser's note (``hrp over 4 names, 180 bars``), a fallback, or ``""``.
    note: str = ""


def _dec(value: float | Decimal) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def select(predictions: Iterable[Prediction], config: SizingConfig) -> tuple[dict[Symbol, int], dict[Symbol, str]]:
    """+1 (long), −1 (short) or 0 per fresh symbol, and the stale symbols left out."""
    fresh, skipped = [], {}
    for p in predictions:
        if p.stale:
            skipped[p.symbol] = "stale prediction: position held"
        else:
            fresh.append(p)
    ranked = sorted(fresh, key=lambda p: (-p.score, p.symbol))
    sides = {p.symbol: 0 for p in ranked}

    def ok(p: Prediction, direction: Direction) -> bool:
        return not config.respect_direction or p.direction is direction

    for p in [p for p in ranked if ok(p, Direction.LONG)][: config.k]:
        sides[p.symbol] = 1
    if config.mode == "long_short":
        shorts = [p for p in reversed(ranked) if sides[p.symbol] == 0 and ok(p, Direction.SHORT)]
        for p in shorts[: config.k]:
            sides[p.symbol] = -1
    return sides, skipped


def _base_weight(p: Prediction, config: SizingConfig, n: int) -> Decimal:
    if config.weighting == "equal":
        return config.gross_exposure / n
    conf = _dec(p.confidence)
    kelly = config.kelly_fraction * (conf - (ONE - conf) / config.kelly_payoff)
    return max(min(kelly, config.kelly_cap), ZERO)


def target_weights(predictions: Iterable[Prediction], config: SizingConfig, *,
                   vols: Mapping[Symbol, float | Decimal] | None = None,
                   size_multiplier: Decimal = ONE, market: MarketSnapshot | None = None,
                   min_observations: int = 60) -> tuple[dict[Symbol, Decimal], dict[Symbol, str]]:
    """Signed target weight per fresh symbol (see the module docstring), and the symbols left out with why."""
    weights, skipped, _ = _weights(list(predictions), config, vols=vols, size_multiplier=size_multiplier, market=market,
                                   min_observations=min_observations)
    return weights, skipped


def _optimized(predictions: list[Prediction], sides: dict[Symbol, int], config: SizingConfig,
               market: MarketSnapshot | None, min_observations: int) -> tuple[dict[Symbol, Decimal] | None, str]:
    if config.optimizer == "none":
        return None, ""
    from trader.optimizer import optimize

    shares, note = optimize(sides, {p.symbol: p.score for p in predictions}, market, method=config.optimizer,
                            max_share=float(config.max_weight / config.gross_exposure), min_observations=min_observations,
                            risk_aversion=config.risk_aversion, score_horizon_bars=config.score_horizon_bars)
    if shares is None:
        return None, f"{note}; weights by {config.weighting}"
    return {s: _dec(round(w, 10)) * config.gross_exposure for s, w in shares.items()}, note


def _weights(predictions: list[Prediction], config: SizingConfig, *, vols: Mapping[Symbol, float | Decimal] | None,
             size_multiplier: Decimal, market: MarketSnapshot | None,
             min_observations: int) -> tuple[dict[Symbol, Decimal], dict[Symbol, str], str]:
    sides, skipped = select(predictions, config)
    by_symbol = {p.symbol: p for p in predictions}
    n = sum(1 for s in sides.values() if s)
    optimized, note = _optimized(predictions, sides, config, market, min_observations)
    raw: dict[Symbol, Decimal] = {}
    for symbol, side in sides.items():
        if side == 0:
            raw[symbol] = ZERO
            continue
        if optimized is not None:  # the optimiser already weighed risk: no vol targeting on top
            raw[symbol] = side * min(optimized[symbol], config.max_weight)
            continue
        weight = _base_weight(by_symbol[symbol], config, n)
        if config.target_vol is not None:
            vol = (vols or {}).get(symbol)
            if vol is None or _dec(vol) <= 0:
                skipped[symbol] = "no volatility estimate: position held"
                continue
            weight *= config.target_vol / _dec(vol)
        raw[symbol] = side * min(weight, config.max_weight)
    gross = sum((abs(w) for w in raw.values()), ZERO)
    scale = config.gross_exposure / gross if gross > config.gross_exposure else ONE
    raw = _cap_net({s: w * scale for s, w in raw.items()}, config.max_net_weight)
    weights = {s: (w * size_multiplier).quantize(_WEIGHT_STEP, rounding=ROUND_DOWN) for s, w in raw.items()}
    return weights, skipped, note


def _cap_net(weights: dict[Symbol, Decimal], cap: Decimal | None) -> dict[Symbol, Decimal]:
    """Scale the heavier side down until |long − short| ≤ ``cap``."""
    if cap is None:
        return weights
    longs = sum((w for w in weights.values() if w > 0), ZERO)
    shorts = -sum((w for w in weights.values() if w < 0), ZERO)
    if abs(longs - shorts) <= cap:
        return weights
    if longs > shorts:
        k = (shorts + cap) / longs
        return {s: w * k if w > 0 else w for s, w in weights.items()}
    k = (longs + cap) / shorts
    return {s: w * k if w < 0 else w for s, w in weights.items()}


def limit_turnover(targets: Mapping[Symbol, Decimal], current: Mapping[Symbol, Decimal],
                   cap: Decimal | None) -> dict[Symbol, Decimal]:
    """Move from ``current`` toward ``targets`` (weights) by at most ``cap`` of Σ|Δweight|: part of the way, evenly.

    Example:
        >>> from decimal import Decimal as D
        >>> limit_turnover({"AAA": D("0.5"), "BBB": D(0)}, {"BBB": D("0.5")}, D("0.5"))
        {'AAA': Decimal('0.25000000'), 'BBB': Decimal('0.25000000')}
    """
    targets = dict(targets)
    if cap is None:
        return targets
    moved = sum((abs(w - current.get(s, ZERO)) for s, w in targets.items()), ZERO)
    if moved <= cap:
        return targets
    part = cap / moved
    return {s: (current.get(s, ZERO) + (w - current.get(s, ZERO)) * part).quantize(_WEIGHT_STEP, rounding=ROUND_DOWN)
            for s, w in targets.items()}


def target_quantities(weights: Mapping[Symbol, Decimal], *, equity: Decimal, prices: Mapping[Symbol, Decimal],
                      config: SizingConfig) -> tuple[dict[Symbol, Decimal], dict[Symbol, str]]:
    """Signed target quantity per symbol, cut toward zero to whole shares (or fractions for longs)."""
    if equity <= 0:
        raise DomainError(f"sizing: equity is {equity}; nothing can be sized")
    quantities, skipped = {}, {}
    for symbol, weight in weights.items():
        price = prices.get(symbol)
        if price is None or price <= 0:
            skipped[symbol] = "no price: position held"
            continue
        raw = weight * equity / price
        step = Decimal(1).scaleb(-config.qty_decimals) if config.fractional and raw > 0 else ONE
        quantities[symbol] = raw.quantize(step, rounding=ROUND_DOWN) + ZERO  # + ZERO turns -0 into 0
    return quantities, skipped


def orders_for_targets(targets: Mapping[Symbol, Decimal], *, current: Mapping[Symbol, Decimal],
                       prices: Mapping[Symbol, Decimal], equity: Decimal, config: SizingConfig, run_id: str,
                       decision_ts: dt.datetime, predictions: Mapping[Symbol, Prediction] | None = None,
                       ) -> tuple[list[SubmitOrder], dict[Symbol, str]]:
    """One market order per symbol whose target differs enough from ``current`` (signed quantities)."""
    if equity <= 0:
        raise DomainError(f"sizing: equity is {equity}; nothing can be sized")
    commands, skipped = [], {}
    for symbol in sorted(targets):
        target, held = targets[symbol], current.get(symbol, ZERO)
        delta, price = target - held, prices.get(symbol)
        if delta == 0:
            continue
        if price is None or price <= 0:
            skipped[symbol] = "no price: position held"
            continue
        notional = abs(delta) * price
        if notional < config.min_order_notional:
            skipped[symbol] = f"change {notional:.2f} below the minimum order notional {config.min_order_notional}"
            continue
        if target != 0 and notional / equity < config.rebalance_threshold:
            skipped[symbol] = f"weight change {notional / equity:.4%} below the rebalance threshold"
            continue
        side = Side.BUY if delta > 0 else Side.SELL
        order = Order(client_order_id=make_client_order_id(run_id=run_id, decision_ts=decision_ts, symbol=symbol, side=side),
                      symbol=symbol, side=side, qty=abs(delta), created_at=decision_ts)
        commands.append(SubmitOrder(order=order, prediction=(predictions or {}).get(symbol), reference_price=price))
    return commands, skipped


def size_orders(predictions: Iterable[Prediction], *, positions: Mapping[Symbol, Decimal],
                prices: Mapping[Symbol, Decimal], equity: Decimal, config: SizingConfig, run_id: str,
                decision_ts: dt.datetime, vols: Mapping[Symbol, float | Decimal] | None = None,
                size_multiplier: Decimal = ONE, pending: Mapping[Symbol, Decimal] | None = None,
                market: MarketSnapshot | None = None, min_observations: int = 60) -> SizingResult:
    """The whole pipeline for one decision: predictions → weights → quantities → :class:`SubmitOrder` commands.

    ``positions`` are signed held quantities; ``pending`` the signed remaining quantity of
    working orders, counted as if filled so that a decision does not re-send them. ``market``
    (trailing returns closed by ``decision_ts``) feeds ``sizing.optimizer``.
    """
    predictions = list(predictions)
    weights, skipped, note = _weights(predictions, config, vols=vols, size_multiplier=size_multiplier, market=market,
                                      min_observations=min_observations)
    held = {s: positions.get(s, ZERO) + (pending or {}).get(s, ZERO) for s in weights}
    if config.max_turnover is not None and equity > 0:
        now = {s: q * prices[s] / equity for s, q in held.items() if q and prices.get(s)}
        weights = limit_turnover(weights, now, config.max_turnover)
    quantities, no_price = target_quantities(weights, equity=equity, prices=prices, config=config)
    current = {s: positions.get(s, ZERO) + (pending or {}).get(s, ZERO) for s in quantities}
    commands, no_order = orders_for_targets(quantities, current=current, prices=prices, equity=equity, config=config,
                                            run_id=run_id, decision_ts=decision_ts,
                                            predictions={p.symbol: p for p in predictions})
    return SizingResult(weights, quantities, commands, {**skipped, **no_price, **no_order}, note)
