"""Orders, fills, positions and the account: the trader's domain model (DESIGN.md §3.5).

Identifiers have their own types (:data:`Symbol`, :data:`ClientOrderId`, :data:`OrderId`),
money and quantities are :class:`~decimal.Decimal` (a float is refused, not rounded), and
every timestamp is timezone-aware UTC (a naive datetime is refused). Commands are
imperative (:class:`SubmitOrder`, :class:`CancelOrder`); events are past tense
(:class:`OrderAccepted`, :class:`OrderFilled`, ...). An :class:`Order` moves only along
:data:`TRANSITIONS`; ``order.apply(event)`` returns the next order or raises
:class:`~trader.errors.IllegalTransitionError`.

Where it lives (this module re-exports the names, so ``from trader.domain import ...`` keeps working):

* :mod:`trader.values`: identifier types, ``to_decimal``/``to_utc``/``to_symbol``, :class:`Side`,
  :class:`TimeInForce`, :class:`TradingState`;
* :mod:`trader.positions`: :class:`Fill`, :class:`Position`, :class:`Account`;
* :mod:`trader.orders`: :class:`Order`, its events, :data:`TRANSITIONS`, the commands and the id makers;
* :mod:`trader.order_types`: :class:`OrderType`, :class:`OrderClass` and the price rules.

Example:
    >>> import datetime as dt
    >>> from decimal import Decimal
    >>> ts = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
    >>> order = Order(client_order_id=ClientOrderId("al-1"), symbol=Symbol("AAA"), side=Side.BUY,
    ...               qty=Decimal("10"), created_at=ts)
    >>> order = order.apply(OrderAccepted(client_order_id=order.client_order_id, ts=ts, order_id=OrderId("b-1")))
    >>> fill = Fill(fill_id="f-1", order_id=OrderId("b-1"), client_order_id=order.client_order_id, symbol=order.symbol,
    ...             side=Side.BUY, qty=Decimal("4"), price=Decimal("100"), fee=Decimal("0.1"), ts=ts,
    ...             venue="sim", account="paper")
    >>> order.apply(OrderFilled(client_order_id=order.client_order_id, ts=ts, fill=fill)).status
    <OrderStatus.PARTIALLY_FILLED: 'partially_filled'>
    >>> Account(cash=Decimal("1000")).apply_fill(fill).equity({Symbol("AAA"): Decimal("101")})
    Decimal('1003.9')
"""

from __future__ import annotations

from trader.order_types import OrderClass, OrderType
from trader.orders import (
    TRANSITIONS,
    CancelOrder,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    SubmitOrder,
    leg_client_order_id,
    make_client_order_id,
)
from trader.positions import Account, Fill, Position, positions_from_fills
from trader.values import (
    ZERO,
    ClientOrderId,
    FillId,
    OrderId,
    Side,
    Symbol,
    TimeInForce,
    TradingState,
    to_decimal,
    to_symbol,
    to_utc,
)

__all__ = [
    "TRANSITIONS", "ZERO", "Account", "CancelOrder", "ClientOrderId", "Fill", "FillId", "Order", "OrderAccepted",
    "OrderCanceled", "OrderClass", "OrderEvent", "OrderExpired", "OrderFilled", "OrderId", "OrderRejected", "OrderStatus",
    "OrderType", "Position", "Side", "SubmitOrder", "Symbol", "TimeInForce", "TradingState", "leg_client_order_id",
    "make_client_order_id", "positions_from_fills", "to_decimal", "to_symbol", "to_utc",
]
