"""Orders, fills, positions and the account: the trader's domain model (DESIGN.md §3.5).

Identifiers have their own types (:data:`Symbol`, :data:`ClientOrderId`, :data:`OrderId`),
money and quantities are :class:`~decimal.Decimal` (a float is refused, not rounded), and
every timestamp is timezone-aware UTC (a naive datetime is refused). Commands are
imperative (:class:`SubmitOrder`, :class:`CancelOrder`); events are past tense
(:class:`OrderAccepted`, :class:`OrderFilled`, ...). An :class:`Order` moves only along
:data:`TRANSITIONS`; ``order.apply(event)`` returns the next order or raises
:class:`~trader.errors.IllegalTransitionError`.

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

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NewType

from trader.errors import DomainError, IllegalTransitionError
from trader.order_types import LEG_SUFFIX, PRICE_FIELDS, OrderClass, OrderType, check_link, check_prices

if TYPE_CHECKING:
    from trader.predictions import Prediction

Symbol = NewType("Symbol", str)
ClientOrderId = NewType("ClientOrderId", str)
OrderId = NewType("OrderId", str)
FillId = NewType("FillId", str)

_SYMBOL = re.compile(r"[A-Z0-9.\-/]{1,15}")
ZERO = Decimal(0)


def to_symbol(value: str) -> Symbol:
    """Validate a ticker against DESIGN.md §3.1 (upper case, 1–15 of ``A-Z 0-9 . - /``)."""
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value):
        raise DomainError(f"symbol: {value!r} is not 1–15 upper-case characters of A-Z 0-9 . - /")
    return Symbol(value)


def to_decimal(value: Any, name: str) -> Decimal:
    """Exact money/quantity: ``Decimal``, ``int`` or a numeric string; a float is refused (it is not exact)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise DomainError(f"{name}: {value!r} is a {type(value).__name__}; money and quantities must be Decimal")
    try:
        out = value if isinstance(value, Decimal) else Decimal(value)
    except (ArithmeticError, TypeError, ValueError):
        raise DomainError(f"{name}: {value!r} is not a number") from None
    if not out.is_finite():
        raise DomainError(f"{name}: {value!r} is not finite")
    return out


def to_utc(value: dt.datetime, name: str) -> dt.datetime:
    """A timezone-aware datetime converted to UTC; a naive datetime is refused."""
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise DomainError(f"{name}: {value!r} must be a timezone-aware datetime (UTC)")
    return value.astimezone(dt.UTC)


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    OPG = "opg"
    CLS = "cls"


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


class TradingState(StrEnum):
    """The kill switch: ACTIVE trades; REDUCING allows only risk-reducing orders; HALTED allows only cancels."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


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
class Fill:
    """One execution (the DESIGN.md §3.5 ``fills`` row). ``qty`` is positive; ``side`` gives the sign."""

    fill_id: FillId
    order_id: OrderId
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    ts: dt.datetime
    venue: str
    account: str

    def __post_init__(self) -> None:
        for name in ("qty", "price", "fee"):
            object.__setattr__(self, name, to_decimal(getattr(self, name), f"fill.{name}"))
        if self.qty <= 0 or self.price <= 0 or self.fee < 0:
            raise DomainError(f"fill {self.fill_id}: qty and price must be > 0 and fee >= 0")
        object.__setattr__(self, "side", Side(self.side))
        object.__setattr__(self, "symbol", to_symbol(self.symbol))
        object.__setattr__(self, "ts", to_utc(self.ts, "fill.ts"))

    @property
    def signed_qty(self) -> Decimal:
        return self.qty * self.side.sign

    def to_record(self) -> dict[str, Any]:
        """Plain values (enums as strings), e.g. for the store or an audit payload."""
        return {**self.__dict__, "side": self.side.value}


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


@dataclass(frozen=True, kw_only=True)
class Position:
    """A net position: ``qty`` is signed (short < 0), ``avg_cost`` the average entry price of what is open.

    ``realized_pnl`` is the trading P&L of closed quantity, before ``fees`` (kept apart).
    """

    symbol: Symbol
    qty: Decimal = ZERO
    avg_cost: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", to_symbol(self.symbol))
        for name in ("qty", "avg_cost", "realized_pnl", "fees"):
            object.__setattr__(self, name, to_decimal(getattr(self, name), f"position.{name}"))

    def apply_fill(self, fill: Fill) -> Position:
        """The position after ``fill`` (average cost; a fill through zero reopens at the fill price)."""
        if fill.symbol != self.symbol:
            raise DomainError(f"position {self.symbol}: fill {fill.fill_id} is for {fill.symbol}")
        q, f, price = self.qty, fill.signed_qty, fill.price
        new_q, realized = q + f, self.realized_pnl
        if q == 0 or (q > 0) == (f > 0):
            avg = (abs(q) * self.avg_cost + abs(f) * price) / abs(new_q)
        else:
            closed = min(abs(q), abs(f))
            realized += closed * (price - self.avg_cost) * (1 if q > 0 else -1)
            avg = ZERO if new_q == 0 else self.avg_cost if (new_q > 0) == (q > 0) else price
        # Decimals computed from validated ones: no second validation (fills are applied in every cycle)
        return Position._unchecked(symbol=self.symbol, qty=new_q, avg_cost=avg, realized_pnl=realized, fees=self.fees + fill.fee)

    @classmethod
    def from_stored(cls, record: Mapping[str, Any]) -> Position:
        """The position a store row holds (its fields as Decimals; other columns ignored), without re-validation:
        the row was written from a validated position, and the book is read every cycle."""
        return cls._unchecked(**{name: record[name] for name in _POSITION_FIELDS})

    @classmethod
    def _unchecked(cls, **values: Any) -> Position:
        position = object.__new__(cls)
        position.__dict__.update(values)
        return position

    def market_value(self, price: Decimal) -> Decimal:
        return self.qty * price

    def unrealized_pnl(self, price: Decimal) -> Decimal:
        return self.qty * (price - self.avg_cost)

    def to_record(self) -> dict[str, Any]:
        return dict(self.__dict__)


_POSITION_FIELDS = ("symbol", "qty", "avg_cost", "realized_pnl", "fees")

def positions_from_fills(fills: list[Fill] | tuple[Fill, ...]) -> dict[Symbol, Position]:
    """Positions rebuilt by applying ``fills`` in time order (ties by ``fill_id``)."""
    out: dict[Symbol, Position] = {}
    for fill in sorted(fills, key=lambda f: (f.ts, str(f.fill_id))):
        symbol = Symbol(fill.symbol)
        out[symbol] = out.get(symbol, Position(symbol=symbol)).apply_fill(fill)
    return out


@dataclass(frozen=True, kw_only=True)
class Account:
    """Cash and positions. Valuations take the prices explicitly; a held symbol without a price is an error."""

    cash: Decimal
    positions: Mapping[Symbol, Position] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cash", to_decimal(self.cash, "account.cash"))

    def position(self, symbol: Symbol) -> Position:
        return self.positions.get(symbol) or Position(symbol=symbol)

    def apply_fill(self, fill: Fill) -> Account:
        """Cash pays for buys (receives for sells) and the fee; the symbol's position moves."""
        symbol = Symbol(fill.symbol)
        positions = {**self.positions, symbol: self.position(symbol).apply_fill(fill)}
        return replace(self, cash=self.cash - fill.signed_qty * fill.price - fill.fee, positions=positions)

    def _open(self, prices: Mapping[Symbol, Decimal]) -> list[tuple[Position, Decimal]]:
        out = []
        for symbol, pos in self.positions.items():
            if pos.qty != 0:
                if symbol not in prices:
                    raise DomainError(f"account: no price for {symbol}, which is held ({pos.qty})")
                out.append((pos, prices[symbol]))
        return out

    def market_value(self, prices: Mapping[Symbol, Decimal]) -> Decimal:
        """Signed value of the positions (= net exposure)."""
        return sum((pos.market_value(p) for pos, p in self._open(prices)), ZERO)

    def gross_exposure(self, prices: Mapping[Symbol, Decimal]) -> Decimal:
        return sum((abs(pos.market_value(p)) for pos, p in self._open(prices)), ZERO)

    def equity(self, prices: Mapping[Symbol, Decimal]) -> Decimal:
        """Cash plus the signed value of the positions."""
        return self.cash + self.market_value(prices)
