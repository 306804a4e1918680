"""The pre-trade checks. Each takes an :class:`OrderView` and returns ``(reason, message)``.

Two rules run through them:

* a **risk-reducing** order (it shrinks a held position without flipping it) is never
  blocked by a size, exposure, loss or prediction check — getting out must stay possible;
  only the trading state, restrictions, market hours, duplicates, the throttle and the
  price collar apply to it;
* an exposure check denies only an order that leaves the exposure above its limit **and**
  larger than before (an order that moves an over-limit book back toward it passes);
* an **exit** (``SubmitOrder.exit_reason`` set, or a bracket/OCO leg) must shrink the position
  it protects (``EXIT_INCREASES_POSITION``), with its stop below the market for a sell and above
  for a buy (``STOP_PRICE_WRONG_SIDE``), a take-profit leg the other way (``TAKE_PROFIT_WRONG_SIDE``);
  one that reduces passes even a HALTED kill switch.

An exception inside a check is the engine's business: it denies with ``RISK_CHECK_ERROR``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

from trader.domain import OrderType, Side, TradingState
from trader.risk.context import OrderView, RiskReason
from trader.risk.portfolio import PORTFOLIO_CHECKS

Verdict = tuple[RiskReason, str]
Check = Callable[[OrderView], Verdict]
R = RiskReason
_MINUTE = dt.timedelta(minutes=1)
_STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})


def _reducing(v: OrderView) -> Verdict | None:
    return (R.APPROVED, "reduces the position") if v.reducing else None


def trading_state(v: OrderView) -> Verdict:
    state = v.ctx.trading_state
    if state is TradingState.HALTED and _is_exit(v) and v.reducing:
        return R.APPROVED, "trading is HALTED, but this exit only reduces the position"
    if state is TradingState.HALTED:
        return R.TRADING_HALTED, "trading is HALTED: only cancels (and exits that reduce a position) are allowed"
    if state is TradingState.REDUCING and not v.reducing:
        held = v.ctx.account.position(v.order.symbol).qty
        return R.TRADING_REDUCING_ONLY, f"trading is REDUCING and {v.order.side} {v.order.qty} does not reduce the {v.order.symbol} position ({held})"
    return R.APPROVED, f"trading state {state.value}"


def restricted_symbol(v: OrderView) -> Verdict:
    if v.order.symbol in v.limits.restricted_symbols:
        return R.SYMBOL_RESTRICTED, f"{v.order.symbol} is on the restricted list"
    return R.APPROVED, "not restricted"


def market_hours(v: OrderView) -> Verdict:
    if not v.limits.market_hours_only:
        return R.APPROVED, "market-hours check switched off"
    if not v.calendar.is_open(v.ctx.now):
        return R.MARKET_CLOSED, f"the market is closed at {v.ctx.now.isoformat()}"
    return R.APPROVED, "market open"


def duplicate_order(v: OrderView) -> Verdict:
    cid = v.order.client_order_id
    if cid in v.ctx.known_client_order_ids or any(o.client_order_id == cid for o in v.ctx.working_orders):
        return R.DUPLICATE_CLIENT_ORDER_ID, f"client_order_id {cid} was already used"
    for o in v.ctx.working_orders:
        if o.symbol == v.order.symbol and o.side is v.order.side:
            return R.DUPLICATE_WORKING_ORDER, f"{o.side} {o.symbol} is already working as {o.client_order_id}"
    return R.APPROVED, "no duplicate"


def order_rate(v: OrderView) -> Verdict:
    now, cap = v.ctx.now, v.limits.max_orders_per_minute
    sent = sum(1 for t in v.ctx.recent_order_times if now - _MINUTE < t <= now)
    if sent >= cap:
        return R.ORDER_RATE_EXCEEDED, f"{sent} orders in the last minute; the limit is {cap}"
    return R.APPROVED, f"{sent} orders in the last minute (limit {cap})"


def prediction_fresh(v: OrderView) -> Verdict:
    if (ok := _reducing(v)) is not None:
        return ok
    p = v.command.prediction
    if p is None:
        return R.PREDICTION_MISSING, "an order that adds risk needs the prediction behind it"
    if p.symbol != v.order.symbol:
        raise ValueError(f"the prediction is for {p.symbol}, the order for {v.order.symbol}")
    if p.stale:
        return R.PREDICTION_STALE, f"the service flagged the {p.symbol} prediction stale (features at {p.feature_ts.isoformat()})"
    age = p.age(v.ctx.now)
    if age < dt.timedelta(0):
        return R.PREDICTION_FROM_FUTURE, f"features at {p.feature_ts.isoformat()} are later than now ({v.ctx.now.isoformat()})"
    if age > v.limits.max_prediction_age:
        return R.PREDICTION_STALE, f"features are {age} old; the limit is {v.limits.max_prediction_age}"
    return R.APPROVED, f"features {age} old"


def _is_exit(v: OrderView) -> bool:
    return v.command.exit_reason is not None or v.order.is_exit_leg


def exit_order(v: OrderView) -> Verdict:
    """An exit must shrink the position it protects, and its stop or take-profit must sit on the right side of the market."""
    order = v.order
    if not _is_exit(v) and order.order_type not in _STOPS:
        return R.APPROVED, "not an exit or stop order"
    if _is_exit(v):
        basis = v.exit_basis
        if basis == 0 or (basis > 0) == (order.side.sign > 0) or order.qty > abs(basis):
            return R.EXIT_INCREASES_POSITION, f"exit {order.side} {order.qty} {order.symbol} does not reduce the position ({basis})"
    last = v.mark
    above = order.side is Side.BUY  # a buy stop triggers above the market, a sell stop below
    if order.stop_price is not None and (order.stop_price <= last if above else order.stop_price >= last):
        return R.STOP_PRICE_WRONG_SIDE, (f"{order.side} stop {order.stop_price} must be {'above' if above else 'below'} "
                                         f"the last price {last}: it would trigger at once")
    if order.is_exit_leg and order.order_type is OrderType.LIMIT:
        assert order.limit_price is not None
        if order.limit_price >= last if above else order.limit_price <= last:
            return R.TAKE_PROFIT_WRONG_SIDE, (f"take-profit {order.side} limit {order.limit_price} must be "
                                              f"{'below' if above else 'above'} the last price {last}")
    return R.APPROVED, f"{order.order_type.value} exit on the right side of {last}"


def price_collar(v: OrderView) -> Verdict:
    last = v.ctx.prices.get(v.order.symbol)
    if last is None or last <= 0:
        return R.PRICE_UNAVAILABLE, f"no last price for {v.order.symbol}"
    if v.order.is_exit_leg or v.order.order_type is OrderType.TRAILING_STOP:
        return R.APPROVED, "exit prices sit away from the market by design (checked by exit_order)"
    price: Decimal | None
    if v.order.limit_price is not None:
        price, what = v.order.limit_price, "limit price"
    elif v.order.stop_price is not None:
        price, what = v.order.stop_price, "stop price"
    else:
        price, what = v.command.reference_price, "sizing price"
    if price is None:
        return R.APPROVED, f"market order at the last price {last}"
    deviation = abs(price - last) / last
    if deviation > v.limits.price_collar_pct:
        return R.PRICE_OUTSIDE_COLLAR, f"{what} {price} is {deviation:.2%} from the last price {last} (collar {v.limits.price_collar_pct:.2%})"
    return R.APPROVED, f"{what} within {deviation:.2%} of the last price"


def max_notional(v: OrderView) -> Verdict:
    if (ok := _reducing(v)) is not None:
        return ok
    cap = v.limits.max_notional_per_order
    if v.notional > cap:
        return R.NOTIONAL_EXCEEDS_MAX_PER_ORDER, f"notional {v.notional:.2f} exceeds the per-order maximum {cap}"
    return R.APPROVED, f"notional {v.notional:.2f} ≤ {cap}"


def position_limit(v: OrderView) -> Verdict:
    if (ok := _reducing(v)) is not None:
        return ok
    share = abs(v.after_qty) * v.mark / v.equity
    cap = v.limits.max_position_pct
    if share > cap and abs(v.after_qty) > abs(v.before_qty):
        return R.POSITION_EXCEEDS_MAX_PCT_EQUITY, f"{v.order.symbol} would be {share:.2%} of equity; the limit is {cap:.2%}"
    return R.APPROVED, f"{v.order.symbol} {share:.2%} of equity"


def _exposure(v: OrderView, before: Decimal, after: Decimal, cap: Decimal, reason: RiskReason, what: str) -> Verdict:
    if (ok := _reducing(v)) is not None:
        return ok
    share = after / v.equity
    if share > cap and after > before:
        return reason, f"{what} would be {share:.2%} of equity; the limit is {cap:.2%}"
    return R.APPROVED, f"{what} {share:.2%} of equity"


def gross_exposure(v: OrderView) -> Verdict:
    return _exposure(v, v.ctx.gross, v.gross_after, v.limits.max_gross_exposure_pct, R.GROSS_EXPOSURE_EXCEEDED, "gross exposure")


def net_exposure(v: OrderView) -> Verdict:
    return _exposure(v, abs(v.ctx.net), abs(v.net_after), v.limits.max_net_exposure_pct, R.NET_EXPOSURE_EXCEEDED, "|net exposure|")


def sector_exposure(v: OrderView) -> Verdict:
    if v.limits.max_sector_pct is None:
        return R.APPROVED, "sector check switched off"
    if (ok := _reducing(v)) is not None:
        return ok
    sector = v.sectors.get(v.order.symbol)
    if sector is None:
        return R.SECTOR_UNKNOWN, f"{v.order.symbol} has no sector; the sector limit cannot be checked"
    members = {s for s, sec in v.sectors.items() if sec == sector}
    before = v.ctx.sector_gross(members)
    after = before + (abs(v.after_qty) - abs(v.before_qty)) * v.mark
    return _exposure(v, before, after, v.limits.max_sector_pct, R.SECTOR_EXPOSURE_EXCEEDED, f"sector {sector!r}")


def daily_loss(v: OrderView) -> Verdict:
    if (ok := _reducing(v)) is not None:
        return ok
    start, limit = v.ctx.day_start_equity, v.limits.daily_loss_limit_pct
    if start <= 0:
        raise ValueError(f"day_start_equity is {start}")
    loss = (start - v.ctx.equity) / start
    if loss >= limit:
        return R.DAILY_LOSS_LIMIT, f"down {loss:.2%} today; the daily loss limit is {limit:.2%}"
    return R.APPROVED, f"today's P&L {-loss:.2%}"


def drawdown(v: OrderView) -> Verdict:
    if (ok := _reducing(v)) is not None:
        return ok
    peak = v.ctx.peak_equity
    if peak <= 0:
        raise ValueError(f"peak_equity is {peak}")
    dd = max((peak - v.ctx.equity) / peak, Decimal(0))
    tiers = v.limits.drawdown
    if dd >= tiers.flatten_and_halt_at:
        return R.DRAWDOWN_HALT, f"drawdown {dd:.2%} reached the flatten-and-halt tier ({tiers.flatten_and_halt_at:.2%})"
    return R.APPROVED, f"drawdown {dd:.2%}, size multiplier {tiers.size_multiplier(dd)}"


def buying_power(v: OrderView) -> Verdict:
    if (ok := _reducing(v)) is not None:
        return ok
    power = v.ctx.account.cash if v.ctx.buying_power is None else v.ctx.buying_power
    # Working buys have already spoken for part of it (sells are not netted: they may not fill).
    reserved = sum((o.remaining_qty * (o.limit_price or v.ctx.price(o.symbol)) for o in v.ctx.working_orders
                    if o.side.sign > 0), Decimal(0))
    available = power - reserved
    if v.notional > available:
        return R.INSUFFICIENT_BUYING_POWER, f"needs {v.notional:.2f}, {available:.2f} available ({power:.2f} less {reserved:.2f} in working buys)"
    return R.APPROVED, f"needs {v.notional:.2f} of {available:.2f}"


#: Every check, in the order the audit trail lists them; the portfolio checks (:mod:`trader.risk.portfolio`) last.
DEFAULT_CHECKS: tuple[tuple[str, Check], ...] = tuple((f.__name__, f) for f in (
    trading_state, restricted_symbol, market_hours, duplicate_order, order_rate, exit_order, prediction_fresh, price_collar,
    max_notional, position_limit, gross_exposure, net_exposure, sector_exposure, daily_loss, drawdown, buying_power,
    *PORTFOLIO_CHECKS,
))
