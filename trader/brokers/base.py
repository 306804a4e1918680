"""The broker interface every adapter implements (``SimBroker``, ``AlpacaBroker``, test fakes).

Contract, shared by all adapters:

* Orders are identified by their deterministic ``client_order_id``; the venue's id comes
  back in :class:`~trader.domain.OrderAccepted` and is kept as ``order.order_id``.
* :meth:`Broker.submit` returns the venue's answer as an event: ``OrderAccepted`` or
  ``OrderRejected`` (insufficient buying power, invalid quantity, not fractionable ...).
  It raises :class:`~trader.errors.BrokerUnavailableError` when the order's fate is unknown
  (timeout, 5xx, lost response): the caller must then call
  :meth:`Broker.get_order_by_client_id` and resubmit **only** if that returns ``None``.
  A venue's "duplicate client_order_id" answer means the order exists: adapters return
  the existing order's ``OrderAccepted`` rather than a rejection. It raises
  :class:`~trader.errors.BrokerRateLimitError` when told to back off (nothing was placed).
* Later changes (fills, cancels, expiries) arrive through :meth:`Broker.poll_events`, in
  venue order; every ``OrderFilled`` carries a :class:`~trader.domain.Fill` with a stable
  ``fill_id`` so replays are recognised by the store.
* Quantities and money are ``Decimal``; timestamps are aware UTC.
* Adapters never consult the risk engine and the risk engine never calls an adapter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from trader.domain import ClientOrderId, Fill, Order, OrderAccepted, OrderClass, OrderEvent, OrderRejected, Symbol
from trader.errors import DomainError


@dataclass(frozen=True, kw_only=True)
class BrokerAccount:
    """The venue's view of the account."""

    account_id: str
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    currency: str = "USD"


@dataclass(frozen=True, kw_only=True)
class BrokerPosition:
    """The venue's view of one position: ``qty`` signed (short < 0)."""

    symbol: Symbol
    qty: Decimal
    avg_entry_price: Decimal


@runtime_checkable
class Broker(Protocol):
    """What the run loop, reconciliation and the kill switch need from a venue."""

    #: Written into every fill's ``venue`` column (``"sim"``, ``"alpaca-paper"``, ``"alpaca-live"``).
    venue: str

    def submit(self, order: Order) -> OrderAccepted | OrderRejected:
        """Place ``order`` (status NEW) under its ``client_order_id``; see the module docstring for errors."""
        ...

    def cancel(self, client_order_id: ClientOrderId) -> None:
        """Request cancellation; idempotent. The outcome arrives as an event (canceled, or filled first)."""
        ...

    def get_order_by_client_id(self, client_order_id: ClientOrderId) -> Order | None:
        """The venue's current view of the order, or ``None`` if the venue never received it."""
        ...

    def list_orders(self, *, open_only: bool = True) -> list[Order]:
        """Orders the venue knows (working ones by default), for reconciliation."""
        ...

    def poll_events(self) -> list[OrderEvent]:
        """Events since the previous call (fills, cancels, expiries, late rejections), oldest first."""
        ...

    def fills(self, *, since: dt.datetime) -> list[Fill]:
        """Every fill at or after ``since``, for reconciliation (finds fills an event stream missed)."""
        ...

    def positions(self) -> dict[Symbol, BrokerPosition]:
        """Open positions (non-zero quantities only)."""
        ...

    def account(self) -> BrokerAccount:
        """Cash, equity and buying power."""
        ...

    def cancel_all(self) -> list[ClientOrderId]:
        """Kill switch, step 1: cancel every working order; returns the ids asked to cancel."""
        ...

    def close_all(self) -> list[Order]:
        """Kill switch / flatten: close every position at market; returns the closing orders the venue created."""
        ...


@runtime_checkable
class LinkedOrderBroker(Protocol):
    """A venue that holds linked orders itself (bracket and OCO exits that survive the trader)."""

    def submit_linked(self, orders: Sequence[Order]) -> list[OrderAccepted | OrderRejected]:
        """Place a bracket (entry, then its legs) or an OCO pair (take-profit, then stop-loss) as one unit.

        Returns one answer per order, in the same order; see :func:`check_linked` for the shape.
        """
        ...


def check_linked(orders: Sequence[Order]) -> OrderClass:
    """The class of a linked group, or a :class:`~trader.errors.DomainError` naming what is wrong with it.

    A group is its primary order (a bracket's entry, an OCO's take-profit limit) followed by its
    legs, each with ``parent_id`` = the primary's id, in the primary's symbol, quantity and class.
    """
    if len(orders) < 2:
        raise DomainError("linked orders: a bracket or OCO needs a primary order and at least one leg")
    head, legs = orders[0], orders[1:]
    if head.order_class not in (OrderClass.BRACKET, OrderClass.OCO) or head.parent_id is not None:
        raise DomainError(f"order {head.client_order_id}: order_class: the first of linked orders is a bracket or oco primary")
    for leg in legs:
        if leg.parent_id != head.client_order_id or leg.order_class is not head.order_class:
            raise DomainError(f"order {leg.client_order_id}: parent_id: must be {head.client_order_id} ({head.order_class.value})")
        if (leg.symbol, leg.qty) != (head.symbol, head.qty):
            raise DomainError(f"order {leg.client_order_id}: qty: legs trade the primary's symbol and quantity")
        if (leg.side is head.side) != (head.order_class is OrderClass.OCO):
            raise DomainError(f"order {leg.client_order_id}: side: bracket legs close the entry, OCO legs share a side")
    return head.order_class
