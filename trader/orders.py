"""Orders and their life cycle: :class:`Order`, its events, the one transition table, and the commands.

Commands are imperative (:class:`SubmitOrder`, :class:`CancelOrder`); events are past tense
(:class:`OrderAccepted`, :class:`OrderFilled`, ...). An :class:`Order` moves only along
:data:`TRANSITIONS`; ``order.apply(event)`` returns the next order or raises
:class:`~trader.errors.IllegalTransitionError`. Ids are deterministic
(:func:`make_client_order_id`), so a resubmission is recognised by the venue and the store.

Example:
    >>> import datetime as dt
    >>> ts = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
    >>> order = Order(client_order_id=ClientOrderId("al-1"), symbol=Symbol("AAA"), side=Side.BUY, qty=Decimal(10), created_at=ts)
    >>> order.apply(OrderAccepted(client_order_id=order.client_order_id, ts=ts, order_id=OrderId("b-1"))).status
    <OrderStatus.ACCEPTED: 'accepted'>
    >>> order.apply(OrderCanceled(client_order_id=order.client_order_id, ts=ts))
    Traceback (most recent call last):
    ...
    trader.errors.IllegalTransitionError: order al-1: OrderCanceled would move it new → canceled, which is not allowed
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from trader.errors import DomainError, IllegalTransitionError
from trader.order_types import LEG_SUFFIX, PRICE_FIELDS, OrderClass, OrderType, check_link, check_prices
from trader.positions import Fill
from trader.values import ZERO, ClientOrderId, OrderId, Side, Symbol, TimeInForce, to_decimal, to_symbol, to_utc

if TYPE_CHECKING:
    from trader.predictions import Prediction


class OrderStatus(StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return not TRANSITIONS[self]


_S = OrderStatus
#: The order life cycle, the only place it is defined. A venue may reject an order it had
#: acknowledged (``accepted → rejected``); a partially filled day order can expire at the close.
TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    _S.NEW: frozenset({_S.ACCEPTED, _S.REJECTED}),
    _S.ACCEPTED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.REJECTED, _S.EXPIRED}),
    _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.EXPIRED}),
    _S.FILLED: frozenset(),
    _S.CANCELED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset(),
}



@dataclass(frozen=True, kw_only=True)
class OrderAccepted:
    client_order_id: ClientOrderId
    ts: dt.datetime
    order_id: OrderId


@dataclass(frozen=True, kw_only=True)
class OrderFilled:
    client_order_id: ClientOrderId
    ts: dt.datetime
    fill: Fill


@dataclass(frozen=True, kw_only=True)
class OrderCanceled:
    client_order_id: ClientOrderId
    ts: dt.datetime
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class OrderRejected:
    client_order_id: ClientOrderId
    ts: dt.datetime
    reason: str


@dataclass(frozen=True, kw_only=True)
class OrderExpired:
    client_order_id: ClientOrderId
    ts: dt.datetime


_ORDER_ENUMS = (("side", Side), ("order_type", OrderType), ("time_in_force", TimeInForce), ("status", OrderStatus),
                ("order_class", OrderClass))
OrderEvent = OrderAccepted | OrderFilled | OrderCanceled | OrderRejected | OrderExpired


@dataclass(frozen=True, kw_only=True)
class Order:
    """An order and where it is in its life cycle; immutable: :meth:`apply` returns the next state.

    ``qty`` is positive (``side`` gives the direction). Prices by type: ``limit_price`` for
    limit and stop-limit orders, ``stop_price`` for stop and stop-limit orders, exactly one of
    ``trail_percent`` (0 < p < 100) or ``trail_price`` for trailing stops; any other price set
    is an error naming the field. ``order_class`` and ``parent_id`` link bracket and OCO
    orders (:class:`OrderClass`); a held bracket leg is ``accepted`` like any working order:
    the life cycle is the same for every type.
    """

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    qty: Decimal
    created_at: dt.datetime
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    status: OrderStatus = OrderStatus.NEW
    order_id: OrderId | None = None
    filled_qty: Decimal = ZERO
    avg_fill_price: Decimal | None = None
    fees: Decimal = ZERO
    status_reason: str = ""
    updated_at: dt.datetime | None = None
    stop_price: Decimal | None = None
    trail_percent: Decimal | None = None
    trail_price: Decimal | None = None
    order_class: OrderClass = OrderClass.SIMPLE
    parent_id: ClientOrderId | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "symbol", to_symbol(self.symbol))
        for name, enum in _ORDER_ENUMS:
            set_(self, name, enum(getattr(self, name)))
        for name in ("qty", "filled_qty", "fees"):
            set_(self, name, to_decimal(getattr(self, name), f"order.{name}"))
        for name in (*PRICE_FIELDS, "avg_fill_price"):
            if getattr(self, name) is not None:
                set_(self, name, to_decimal(getattr(self, name), f"order.{name}"))
        set_(self, "created_at", to_utc(self.created_at, "order.created_at"))
        set_(self, "updated_at", to_utc(self.updated_at or self.created_at, "order.updated_at"))
        if self.qty <= 0:
            raise DomainError(f"order {self.client_order_id}: qty must be > 0, got {self.qty}")
        check_prices(self)
        check_link(self)

    @property
    def oco_group(self) -> ClientOrderId | None:
        """The id shared by exits of which one's fill cancels the others (``None``: not such an exit)."""
        if self.order_class is OrderClass.OCO:
            return self.parent_id or self.client_order_id
        if self.order_class is OrderClass.BRACKET and self.parent_id is not None:
            return self.parent_id
        return None

    @property
    def is_exit_leg(self) -> bool:
        """A protective exit of a bracket or an OCO pair: it only ever shrinks a position."""
        return self.oco_group is not None

    @property
    def is_held_leg(self) -> bool:
        """A bracket leg: it may trade only once its entry (``parent_id``) has filled."""
        return self.order_class is OrderClass.BRACKET and self.parent_id is not None

    @property
    def signed_qty(self) -> Decimal:
        return self.qty * self.side.sign

    @property
    def remaining_qty(self) -> Decimal:
        return ZERO if self.status.is_terminal else self.qty - self.filled_qty

    @property
    def is_working(self) -> bool:
        """Not in a terminal status: it may still fill."""
        return not self.status.is_terminal

    def apply(self, event: OrderEvent) -> Order:
        """The order after ``event``; raises :class:`IllegalTransitionError` if :data:`TRANSITIONS` forbids it.

        Fills are not de-duplicated here: the store records each ``fill_id`` once and the
        caller applies only fills it had not seen (replayed broker events stay harmless).
        """
        if event.client_order_id != self.client_order_id:
            raise DomainError(f"order {self.client_order_id}: event is for {event.client_order_id}")
        changes: dict[str, Any] = {"updated_at": to_utc(event.ts, "event.ts")}
        if isinstance(event, OrderAccepted):
            target, changes["order_id"] = OrderStatus.ACCEPTED, event.order_id
        elif isinstance(event, OrderFilled):
            target = self._fill_changes(event.fill, changes)
        elif isinstance(event, OrderCanceled):
            target, changes["status_reason"] = OrderStatus.CANCELED, event.reason
        elif isinstance(event, OrderRejected):
            target, changes["status_reason"] = OrderStatus.REJECTED, event.reason
        elif isinstance(event, OrderExpired):
            target = OrderStatus.EXPIRED
        else:
            raise TypeError(f"not an order event: {event!r}")
        if target not in TRANSITIONS[self.status]:
            raise IllegalTransitionError(self.client_order_id, self.status.value, target.value, type(event).__name__)
        # A copy with the changed fields set, not ``replace`` (which validates every field again): the
        # rest was validated when this order was built, and each change above is already a checked value.
        moved = object.__new__(Order)
        moved.__dict__.update(self.__dict__, status=target, **changes)
        return moved

    def _fill_changes(self, fill: Fill, changes: dict[str, Any]) -> OrderStatus:
        if not TRANSITIONS[self.status] & {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED}:
            raise IllegalTransitionError(self.client_order_id, self.status.value, OrderStatus.FILLED.value, "OrderFilled")
        if fill.symbol != self.symbol or fill.side is not self.side:
            raise DomainError(f"order {self.client_order_id}: fill {fill.fill_id} is {fill.side} {fill.symbol}")
        filled = self.filled_qty + fill.qty
        if filled > self.qty:
            raise DomainError(f"order {self.client_order_id}: fill {fill.fill_id} overfills ({filled} > {self.qty})")
        cost = self.filled_qty * (self.avg_fill_price or ZERO) + fill.qty * fill.price
        changes.update(filled_qty=filled, avg_fill_price=cost / filled, fees=self.fees + fill.fee)
        return OrderStatus.FILLED if filled == self.qty else OrderStatus.PARTIALLY_FILLED

    def to_record(self) -> dict[str, Any]:
        """Plain values (enums as strings), e.g. for the store or an audit payload."""
        out = dict(self.__dict__)
        for name, _ in _ORDER_ENUMS:
            out[name] = out[name].value
        return out

    @classmethod
    def from_stored(cls, record: Mapping[str, Any]) -> Order:
        """The order a store row holds: :meth:`to_record`'s fields with Decimals and aware UTC datetimes.

        Only the enums are rebuilt: the row was written from an order validated when it was built,
        and the working orders are read every cycle (validating again cost as much as the read).
        """
        values = {name: record[name] for name in _ORDER_FIELDS}
        for name, enum in _ORDER_ENUMS:
            values[name] = enum(values[name])
        order = object.__new__(cls)
        order.__dict__.update(values)
        return order


_ORDER_FIELDS = tuple(f.name for f in fields(Order))


@dataclass(frozen=True, kw_only=True)
class SubmitOrder:
    """Command: send ``order``. ``prediction`` is the decision behind it (``None`` for a pure risk
    reduction); ``reference_price`` is the price it was sized at (checked against the price collar)."""

    order: Order
    prediction: Prediction | None = None
    reference_price: Decimal | None = None
    #: Why the exit policy sends it (``stop_loss``, ``take_profit``, ``trailing``, ``time``, ``protect``); ``None``:
    #: not an exit. An exit must reduce the position; then it passes even a HALTED kill switch.
    exit_reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class CancelOrder:
    """Command: cancel a working order. Always allowed, whatever the trading state."""

    client_order_id: ClientOrderId
    symbol: Symbol
    reason: str = ""


def make_client_order_id(*, run_id: str, decision_ts: dt.datetime, symbol: str, side: Side, leg: int = 0) -> ClientOrderId:
    """The deterministic id of the order one decision produces (``al-`` + 32 hex chars; Alpaca allows 128).

    The same run, decision time, symbol, side (and ``leg``, for a decision that sends
    several orders in one symbol) always give the same id, so a resubmission after a
    crash or timeout is recognised by the venue and by the store.

    Example:
        >>> import datetime as dt
        >>> ts = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
        >>> a = make_client_order_id(run_id="r1", decision_ts=ts, symbol="AAA", side=Side.BUY)
        >>> a == make_client_order_id(run_id="r1", decision_ts=ts, symbol="AAA", side=Side.BUY), len(a)
        (True, 35)
    """
    if not run_id:
        raise DomainError("run_id: must not be empty")
    key = json.dumps([run_id, to_utc(decision_ts, "decision_ts").isoformat(), to_symbol(symbol), Side(side).value, leg])
    return ClientOrderId("al-" + hashlib.sha256(key.encode()).hexdigest()[:32])


def leg_client_order_id(parent: ClientOrderId, role: str) -> ClientOrderId:
    """The id of a bracket or OCO exit leg: the parent's id plus ``-tp`` (``take_profit``) or ``-sl`` (``stop_loss``).

    Derived, not stored at the venue (Alpaca names legs itself), so an adapter can find a leg
    again from its parent after a restart.

    Example:
        >>> leg_client_order_id(ClientOrderId("al-1"), "stop_loss")
        'al-1-sl'
    """
    if role not in LEG_SUFFIX:
        raise DomainError(f"leg role: {role!r} is not one of {', '.join(LEG_SUFFIX)}")
    return ClientOrderId(parent + LEG_SUFFIX[role])
