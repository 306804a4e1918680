"""Translations between alpaca-py's models and the trader's domain, for :mod:`trader.brokers.alpaca` (no I/O here).

* Alpaca's many order statuses fold onto the domain's life cycle (:data:`TERMINAL_STATUS`;
  everything else is still working: accepted, or partially filled once something filled).
* Money and quantities arrive as strings (or JSON numbers) and become exact ``Decimal``.
* alpaca-py's order *requests* are typed ``float``: :func:`order_request` sends a quantity
  or price only if the float's shortest ``repr`` reads back as exactly the same Decimal.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide
from alpaca.trading.enums import OrderStatus as AlpacaStatus
from alpaca.trading.enums import TimeInForce as AlpacaTimeInForce
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from alpaca.trading.models import TradeAccount
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from trader.brokers.base import BrokerAccount, BrokerPosition
from trader.domain import (
    ZERO,
    ClientOrderId,
    Fill,
    FillId,
    Order,
    OrderId,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    to_symbol,
    to_utc,
)
from trader.errors import DomainError

#: Alpaca statuses after which the order cannot fill any more (``replaced``: we never replace, so it is a cancel).
TERMINAL_STATUS: dict[AlpacaStatus, OrderStatus] = {
    AlpacaStatus.FILLED: OrderStatus.FILLED,
    AlpacaStatus.CANCELED: OrderStatus.CANCELED,
    AlpacaStatus.REPLACED: OrderStatus.CANCELED,
    AlpacaStatus.EXPIRED: OrderStatus.EXPIRED,
    AlpacaStatus.REJECTED: OrderStatus.REJECTED,
}


def dec(value: Any, name: str) -> Decimal:
    """An exact Decimal from Alpaca's string (or a JSON number: its shortest repr, never its binary expansion)."""
    if isinstance(value, bool) or value is None:
        raise DomainError(f"alpaca: {name}: {value!r} is not a number")
    try:
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except ArithmeticError:
        raise DomainError(f"alpaca: {name}: {value!r} is not a number") from None


def _status(raw: AlpacaOrder, qty: Decimal, filled: Decimal) -> OrderStatus:
    terminal = TERMINAL_STATUS.get(AlpacaStatus(raw.status))
    if terminal is not None:
        return terminal
    if filled <= 0:
        return OrderStatus.ACCEPTED
    return OrderStatus.FILLED if filled >= qty else OrderStatus.PARTIALLY_FILLED


def order_from_alpaca(raw: AlpacaOrder) -> Order:
    """The domain view of an Alpaca order. Stop orders are shown as market (stop-limit as limit): reporting only."""
    if raw.qty is None or raw.symbol is None or raw.side is None:
        raise DomainError(f"alpaca: order {raw.client_order_id}: notional or multi-leg orders are not supported")
    qty, filled = dec(raw.qty, "qty"), dec(raw.filled_qty or 0, "filled_qty")
    limit = dec(raw.limit_price, "limit_price") if raw.limit_price not in (None, "") else None
    avg = dec(raw.filled_avg_price, "filled_avg_price") if raw.filled_avg_price not in (None, "") else None
    return Order(
        client_order_id=ClientOrderId(raw.client_order_id), symbol=to_symbol(raw.symbol), side=Side(str(raw.side.value)),
        qty=qty, created_at=raw.submitted_at or raw.created_at,
        order_type=OrderType.LIMIT if limit is not None else OrderType.MARKET, limit_price=limit,
        time_in_force=TimeInForce(str(raw.time_in_force.value)), status=_status(raw, qty, filled),
        order_id=OrderId(str(raw.id)), filled_qty=filled, avg_fill_price=avg if avg and filled > 0 else None,
        updated_at=raw.updated_at,
    )


def _exact_float(value: Decimal, name: str) -> float:
    out = float(value)
    if Decimal(repr(out)) != value:
        raise DomainError(f"{name}: {value} cannot be sent exactly (alpaca-py's order request is a float)")
    return out


def order_request(order: Order) -> MarketOrderRequest | LimitOrderRequest:
    """The alpaca-py request for ``order``, always under its own ``client_order_id``."""
    fields: dict[str, Any] = {
        "symbol": order.symbol, "qty": _exact_float(order.qty, "qty"), "side": OrderSide(order.side.value),
        "time_in_force": AlpacaTimeInForce(order.time_in_force.value), "client_order_id": order.client_order_id,
    }
    if order.order_type is OrderType.LIMIT:
        assert order.limit_price is not None
        return LimitOrderRequest(**fields, limit_price=_exact_float(order.limit_price, "limit_price"))
    return MarketOrderRequest(**fields)


def parse_time(value: Any, name: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return to_utc(value, name)
    try:
        return to_utc(dt.datetime.fromisoformat(str(value)), name)
    except ValueError:
        raise DomainError(f"alpaca: {name}: {value!r} is not an ISO 8601 time") from None


def execution_id(activity_id: str) -> FillId:
    """The ``fill_id`` of an execution: the uuid Alpaca's trade updates call ``execution_id``.

    A ``FILL`` activity's id is ``"<transaction time>::<execution uuid>"``; the same execution on the
    trade-update stream carries only the uuid. Both become the uuid, so a fill seen on both paths is one fill.

    Example:
        >>> execution_id("20261207143012345::6f2c1a9e-0b1d-4c56-9a43-2d0d8c1f7e11")
        '6f2c1a9e-0b1d-4c56-9a43-2d0d8c1f7e11'
    """
    return FillId(str(activity_id).rsplit("::", 1)[-1])


def fill_from_activity(act: dict[str, Any], *, client_order_id: ClientOrderId, venue: str, account: str) -> Fill:
    """A ``FILL`` account activity as a domain fill; its execution uuid is the stable ``fill_id`` (fees: none for equities)."""
    return Fill(fill_id=execution_id(act["id"]), order_id=OrderId(str(act["order_id"])), client_order_id=client_order_id,
                symbol=to_symbol(str(act["symbol"])), side=Side.BUY if act["side"] == "buy" else Side.SELL,
                qty=dec(act["qty"], "activity.qty"), price=dec(act["price"], "activity.price"), fee=ZERO,
                ts=parse_time(act["transaction_time"], "activity.transaction_time"), venue=venue, account=account)


def position_from_alpaca(raw: AlpacaPosition) -> BrokerPosition:
    qty = abs(dec(raw.qty, "position.qty"))
    sign = -1 if str(getattr(raw.side, "value", raw.side)) == "short" else 1
    return BrokerPosition(symbol=Symbol(raw.symbol), qty=sign * qty, avg_entry_price=dec(raw.avg_entry_price, "avg_entry_price"))


def account_from_alpaca(raw: TradeAccount) -> BrokerAccount:
    return BrokerAccount(account_id=raw.account_number, cash=dec(raw.cash or 0, "cash"), equity=dec(raw.equity or 0, "equity"),
                         buying_power=dec(raw.buying_power or 0, "buying_power"), currency=raw.currency or "USD")


def error_message(exc: APIError) -> str:
    """Alpaca's ``message`` (or the raw body, shortened); it never carries our keys, which travel in headers."""
    try:
        body = json.loads(str(exc))
        message = body.get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return (message or str(exc) or "no message").strip().splitlines()[0][:200]


def fill_from_trade_update(data: dict[str, Any], *, client_order_id: ClientOrderId, venue: str, account: str) -> Fill:
    """A ``fill``/``partial_fill`` trade update (the raw JSON ``data``, strings kept exact) as a domain fill.

    Its ``fill_id`` is the ``execution_id``: the same id :func:`fill_from_activity` gives the execution.
    """
    order = data["order"]
    return Fill(fill_id=execution_id(data["execution_id"]), order_id=OrderId(str(order["id"])), client_order_id=client_order_id,
                symbol=to_symbol(str(order["symbol"])), side=Side.BUY if order["side"] == "buy" else Side.SELL,
                qty=dec(data["qty"], "trade_update.qty"), price=dec(data["price"], "trade_update.price"), fee=ZERO,
                ts=parse_time(data["timestamp"], "trade_update.timestamp"), venue=venue, account=account)
