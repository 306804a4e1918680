"""Order types and order classes, and the price fields and links each allows: the rules :class:`trader.domain.Order` checks.

Prices by type: ``limit_price`` for limit and stop-limit orders, ``stop_price`` for stop and
stop-limit orders, exactly one of ``trail_percent`` (0 < p < 100) or ``trail_price`` for
trailing stops; any other price set is an error naming the field. Links (Alpaca's
``order_class``): a bracket is an entry and its legs (``parent_id`` = the entry); an OCO pair is
a take-profit limit and its stop-loss leg (``parent_id`` = the take-profit). Legs are limit,
stop or stop-limit orders.

Example:
    >>> import datetime as dt
    >>> from decimal import Decimal
    >>> from trader.domain import ClientOrderId, Order, Side, Symbol
    >>> Order(client_order_id=ClientOrderId("al-1"), symbol=Symbol("AAA"), side=Side.SELL, qty=Decimal(10),
    ...       created_at=dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC), order_type=OrderType.STOP)
    Traceback (most recent call last):
    ...
    trader.errors.DomainError: order al-1: stop_price: required for stop orders
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING

from trader.errors import DomainError

if TYPE_CHECKING:
    from trader.domain import Order


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    #: Becomes a market order once the market trades at or through ``stop_price``.
    STOP = "stop"
    #: Becomes a limit order at ``limit_price`` once the market trades at or through ``stop_price``.
    STOP_LIMIT = "stop_limit"
    #: A stop that follows the best price seen by ``trail_percent`` (percent) or ``trail_price`` (dollars).
    TRAILING_STOP = "trailing_stop"


class OrderClass(StrEnum):
    """How an order is linked to others (Alpaca's ``order_class``); see :attr:`trader.domain.Order.parent_id`.

    * ``bracket``: an entry (no parent) and its two exit legs (``parent_id`` = the entry): a
      take-profit limit and a stop-loss stop, held until the entry fills; one leg's fill cancels the other;
    * ``oco``: two exits for a position already held: the take-profit limit (no parent) and the
      stop-loss stop (``parent_id`` = the take-profit); one's fill cancels the other.
    """

    SIMPLE = "simple"
    BRACKET = "bracket"
    OCO = "oco"


PRICE_FIELDS = ("limit_price", "stop_price", "trail_percent", "trail_price")
#: Which price fields each order type needs (all others must be unset; a trailing stop takes one of its two).
NEEDS: Mapping[OrderType, frozenset[str]] = {
    OrderType.MARKET: frozenset(), OrderType.LIMIT: frozenset({"limit_price"}), OrderType.STOP: frozenset({"stop_price"}),
    OrderType.STOP_LIMIT: frozenset({"stop_price", "limit_price"}), OrderType.TRAILING_STOP: frozenset(),
}
#: A leg's id is its parent's plus this suffix (:func:`trader.domain.leg_client_order_id`).
LEG_SUFFIX = {"take_profit": "-tp", "stop_loss": "-sl"}
_LEG_TYPES = frozenset({OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT})


def check_prices(order: Order) -> None:
    """Raise a one-line :class:`DomainError` naming the price field that ``order``'s type does not allow or misses."""
    cid, kind, needs = order.client_order_id, order.order_type.value, NEEDS[order.order_type]
    trailing = order.order_type is OrderType.TRAILING_STOP
    for name in PRICE_FIELDS:
        value = getattr(order, name)
        if name in needs and value is None:
            raise DomainError(f"order {cid}: {name}: required for {kind} orders")
        if value is not None and name not in needs and not (trailing and name.startswith("trail")):
            raise DomainError(f"order {cid}: {name}: not allowed for {kind} orders")
        if value is not None and value <= 0:
            raise DomainError(f"order {cid}: {name}: must be > 0, got {value}")
    if trailing:
        if (order.trail_percent is None) == (order.trail_price is None):
            raise DomainError(f"order {cid}: trail_percent/trail_price: a trailing stop needs exactly one of them")
        if order.trail_percent is not None and order.trail_percent >= 100:
            raise DomainError(f"order {cid}: trail_percent: must be < 100, got {order.trail_percent}")


def check_link(order: Order) -> None:
    """Raise a one-line :class:`DomainError` if ``order``'s ``order_class``/``parent_id`` do not make a bracket or OCO."""
    cid = order.client_order_id
    if order.parent_id is not None and order.order_class is OrderClass.SIMPLE:
        raise DomainError(f"order {cid}: parent_id: only bracket and oco orders have a parent")
    if order.parent_id == cid:
        raise DomainError(f"order {cid}: parent_id: an order cannot be its own parent")
    if order.is_exit_leg and order.order_type not in _LEG_TYPES:
        raise DomainError(f"order {cid}: order_type: a {order.order_class.value} exit is a limit, stop or stop_limit order, "
                          f"not {order.order_type.value}")
