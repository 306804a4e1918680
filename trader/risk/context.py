"""What a risk check sees: reason codes, a check's result, the portfolio snapshot and one order's facts."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

from trader.config import RiskLimits
from trader.domain import ZERO, Account, ClientOrderId, Order, OrderType, SubmitOrder, Symbol, TradingState, to_utc
from trader.errors import DomainError
from trader.market_hours import TradingCalendar

if TYPE_CHECKING:
    from trader.history import MarketSnapshot


class RiskReason(StrEnum):
    """Why a check approved (``APPROVED``) or denied an order."""

    APPROVED = "APPROVED"
    TRADING_HALTED = "TRADING_HALTED"
    TRADING_REDUCING_ONLY = "TRADING_REDUCING_ONLY"
    SYMBOL_RESTRICTED = "SYMBOL_RESTRICTED"
    MARKET_CLOSED = "MARKET_CLOSED"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    DUPLICATE_WORKING_ORDER = "DUPLICATE_WORKING_ORDER"
    ORDER_RATE_EXCEEDED = "ORDER_RATE_EXCEEDED"
    PREDICTION_MISSING = "PREDICTION_MISSING"
    PREDICTION_STALE = "PREDICTION_STALE"
    PREDICTION_FROM_FUTURE = "PREDICTION_FROM_FUTURE"
    PRICE_UNAVAILABLE = "PRICE_UNAVAILABLE"
    PRICE_OUTSIDE_COLLAR = "PRICE_OUTSIDE_COLLAR"
    NOTIONAL_EXCEEDS_MAX_PER_ORDER = "NOTIONAL_EXCEEDS_MAX_PER_ORDER"
    POSITION_EXCEEDS_MAX_PCT_EQUITY = "POSITION_EXCEEDS_MAX_PCT_EQUITY"
    GROSS_EXPOSURE_EXCEEDED = "GROSS_EXPOSURE_EXCEEDED"
    NET_EXPOSURE_EXCEEDED = "NET_EXPOSURE_EXCEEDED"
    SECTOR_UNKNOWN = "SECTOR_UNKNOWN"
    SECTOR_EXPOSURE_EXCEEDED = "SECTOR_EXPOSURE_EXCEEDED"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    DRAWDOWN_HALT = "DRAWDOWN_HALT"
    INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"
    VAR_LIMIT_EXCEEDED = "VAR_LIMIT_EXCEEDED"
    CVAR_LIMIT_EXCEEDED = "CVAR_LIMIT_EXCEEDED"
    ORDER_EXCEEDS_ADV_LIMIT = "ORDER_EXCEEDS_ADV_LIMIT"
    CORRELATED_EXPOSURE_EXCEEDED = "CORRELATED_EXPOSURE_EXCEEDED"
    MARKET_HISTORY_UNAVAILABLE = "MARKET_HISTORY_UNAVAILABLE"
    STOP_PRICE_WRONG_SIDE = "STOP_PRICE_WRONG_SIDE"
    TAKE_PROFIT_WRONG_SIDE = "TAKE_PROFIT_WRONG_SIDE"
    EXIT_INCREASES_POSITION = "EXIT_INCREASES_POSITION"
    RISK_CHECK_ERROR = "RISK_CHECK_ERROR"


@dataclass(frozen=True)
class RiskCheckResult:
    """One check's verdict on one command."""

    check: str
    approved: bool
    reason: RiskReason
    message: str

    def to_record(self) -> dict[str, Any]:
        return {"check": self.check, "approved": self.approved, "reason": self.reason.value, "message": self.message}


#: What :class:`RiskContext` caches about the book (its working orders move them).
_BOOK_FIGURES = ("projected", "gross", "net")


@dataclass(frozen=True, kw_only=True)
class RiskContext:
    """The state every check reads, captured once per decision cycle (``now`` injected, never the wall clock).

    Attributes:
        now: the decision time (aware; the simulated bar time in a replay).
        trading_state: the kill switch, as stored.
        account: cash and positions.
        prices: last price per symbol; held or traded symbols without one are denied.
        day_start_equity: equity at the start of the trading day (daily loss limit).
        peak_equity: the high-water mark of equity (drawdown tiers).
        buying_power: what the broker says can be spent; ``None`` means the account's cash.
        working_orders: orders that may still fill (including those approved earlier this cycle), protective
            exit legs excepted: given here, they are moved to ``exit_orders``.
        exit_orders: working bracket/OCO exit legs. They only ever shrink a position and one of a pair
            cancels the other, so they count for no exposure, duplicate, buying-power or sizing figure.
        known_client_order_ids: every id already used (from the store), for duplicate detection.
        recent_order_times: when recent orders were sent, for the order-rate throttle.
        market: trailing bar returns and ADV closed by ``now`` (:mod:`trader.history`), for the portfolio checks.
    """

    now: dt.datetime
    trading_state: TradingState
    account: Account
    prices: Mapping[Symbol, Decimal]
    day_start_equity: Decimal
    peak_equity: Decimal
    buying_power: Decimal | None = None
    working_orders: tuple[Order, ...] = ()
    known_client_order_ids: AbstractSet[ClientOrderId] = frozenset()
    recent_order_times: tuple[dt.datetime, ...] = ()
    market: MarketSnapshot | None = None
    exit_orders: tuple[Order, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "now", to_utc(self.now, "risk context now"))
        object.__setattr__(self, "trading_state", TradingState(self.trading_state))
        if any(o.is_exit_leg for o in self.working_orders):
            object.__setattr__(self, "exit_orders", (*self.exit_orders, *(o for o in self.working_orders if o.is_exit_leg)))
            object.__setattr__(self, "working_orders", tuple(o for o in self.working_orders if not o.is_exit_leg))

    def with_submitted(self, order: Order) -> RiskContext:
        """This context after ``order`` was approved and sent: it is working and counts for the throttle.

        The book's figures this context has worked out move by the order alone (:meth:`_moved_by`) instead of being
        added up again over the whole book for each order of a cycle.
        """
        if order.is_exit_leg:
            return replace(self, exit_orders=(*self.exit_orders, order), recent_order_times=(*self.recent_order_times, self.now))
        after = copy.copy(self)  # no __post_init__ again: nothing to normalise, and the order is no exit leg
        object.__setattr__(after, "working_orders", (*self.working_orders, order))
        object.__setattr__(after, "recent_order_times", (*self.recent_order_times, self.now))
        for name in _BOOK_FIGURES:
            after.__dict__.pop(name, None)
        after.__dict__.update(self._moved_by(order))
        return after

    def _moved_by(self, order: Order) -> dict[str, Any]:
        """The cached figures (:data:`_BOOK_FIGURES`) of this context with ``order`` working too, as far as they are known.

        ``projected`` gains the order's signed quantity as :attr:`projected` would add it last; ``gross`` and ``net``
        move by the symbol's change times its price (exact Decimal arithmetic: the same value as the sum over the book,
        the step :attr:`OrderView.gross_after` takes too). A figure not worked out yet, or a price missing, is left to
        be computed (and to fail) as before.
        """
        if "projected" not in self.__dict__:
            return {}
        before = self.projected.get(order.symbol, ZERO)
        moved: dict[str, Any] = {"projected": self.projected | {order.symbol: before + order.remaining_qty * order.side.sign}}
        after = moved["projected"][order.symbol]
        if ("gross" in self.__dict__ or "net" in self.__dict__) and (before or after):
            try:
                price = self.price(order.symbol)
            except DomainError:
                return moved
        else:
            price = ZERO
        if "gross" in self.__dict__:
            moved["gross"] = self.gross + (abs(after) - abs(before)) * price
        if "net" in self.__dict__:
            moved["net"] = self.net + (after - before) * price
        return moved

    def price(self, symbol: Symbol) -> Decimal:
        price = self.prices.get(symbol)
        if price is None or price <= 0:
            raise DomainError(f"no usable last price for {symbol} ({price!r})")
        return price

    @cached_property
    def equity(self) -> Decimal:
        return self.account.equity(self.prices)

    @cached_property
    def projected(self) -> dict[Symbol, Decimal]:
        """Signed quantity per symbol if every working order filled."""
        out = {s: p.qty for s, p in self.account.positions.items() if p.qty != 0}
        for order in self.working_orders:
            out[order.symbol] = out.get(order.symbol, ZERO) + order.remaining_qty * order.side.sign
        return out

    @cached_property
    def gross(self) -> Decimal:
        return sum((abs(q) * self.price(s) for s, q in self.projected.items() if q), ZERO)

    @cached_property
    def net(self) -> Decimal:
        return sum((q * self.price(s) for s, q in self.projected.items() if q), ZERO)

    def sector_gross(self, members: AbstractSet[str]) -> Decimal:
        return sum((abs(q) * self.price(s) for s, q in self.projected.items() if q and s in members), ZERO)


class OrderView:
    """Facts about one order in one context, each computed on first use (a failure denies only its check)."""

    def __init__(self, command: SubmitOrder, ctx: RiskContext, limits: RiskLimits,
                 sectors: Mapping[str, str], calendar: TradingCalendar):
        self.command, self.order, self.ctx, self.limits = command, command.order, ctx, limits
        self.sectors, self.calendar = sectors, calendar

    @cached_property
    def mark(self) -> Decimal:
        """The symbol's last price (what positions are valued at)."""
        return self.ctx.price(self.order.symbol)

    @cached_property
    def price(self) -> Decimal:
        """The price the order would trade at: its limit, or the last price for a market order."""
        return self.order.limit_price if self.order.order_type is OrderType.LIMIT and self.order.limit_price else self.mark

    @cached_property
    def notional(self) -> Decimal:
        return self.order.qty * self.price

    @cached_property
    def equity(self) -> Decimal:
        if self.ctx.equity <= 0:
            raise DomainError(f"equity is {self.ctx.equity}; exposure limits cannot be applied")
        return self.ctx.equity

    @cached_property
    def reducing(self) -> bool:
        """Strictly reduces the held position without flipping it, even if every same-side working order fills.

        A bracket leg is measured against the position its entry opens (:attr:`exit_basis`).
        """
        held = self.exit_basis if self.order.is_held_leg else self.ctx.account.position(self.order.symbol).qty
        if held == 0 or (held > 0) == (self.order.side.sign > 0):
            return False
        pending = sum((o.remaining_qty for o in self.ctx.working_orders
                       if o.symbol == self.order.symbol and o.side is self.order.side
                       and o.client_order_id != self.order.client_order_id), ZERO)
        return self.order.qty + pending <= abs(held)

    @cached_property
    def exit_basis(self) -> Decimal:
        """The position an exit protects: the held quantity, plus a bracket entry's still working quantity."""
        held = self.ctx.account.position(self.order.symbol).qty
        parent = self.order.parent_id if self.order.is_held_leg else None
        entry = next((o for o in self.ctx.working_orders if o.client_order_id == parent), None)
        return held + (entry.remaining_qty * entry.side.sign if entry is not None else ZERO)

    @cached_property
    def before_qty(self) -> Decimal:
        return self.ctx.projected.get(self.order.symbol, ZERO)

    @cached_property
    def after_qty(self) -> Decimal:
        return self.before_qty + self.order.signed_qty

    @cached_property
    def gross_after(self) -> Decimal:
        return self.ctx.gross + (abs(self.after_qty) - abs(self.before_qty)) * self.mark

    @cached_property
    def net_after(self) -> Decimal:
        return self.ctx.net + self.order.signed_qty * self.mark
