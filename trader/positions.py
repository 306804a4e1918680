"""Fills and what they add up to: a :class:`Fill`, a net :class:`Position` per symbol, and the :class:`Account`.

A fill's ``qty`` is positive and its ``side`` gives the sign. A position keeps its average
entry cost; a fill through zero reopens it at the fill price. The account pays cash for buys
(receives it for sells) and the fee; its valuations take the prices explicitly, and a held
symbol without a price is an error.

Example:
    >>> import datetime as dt
    >>> ts = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
    >>> def fill(fid, side, qty, price):
    ...     return Fill(fill_id=fid, order_id=OrderId("b-1"), client_order_id=ClientOrderId("al-1"), symbol="AAA",
    ...                 side=side, qty=Decimal(qty), price=Decimal(price), fee=Decimal(0), ts=ts, venue="sim", account="paper")
    >>> positions = positions_from_fills([fill("f-1", Side.BUY, 10, 100), fill("f-2", Side.SELL, 4, 110)])
    >>> positions[Symbol("AAA")].qty, positions[Symbol("AAA")].realized_pnl
    (Decimal('6'), Decimal('40'))
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from trader.errors import DomainError
from trader.values import ZERO, ClientOrderId, FillId, OrderId, Side, Symbol, to_decimal, to_symbol, to_utc


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
