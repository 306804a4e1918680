"""The simulated venue's matching engine: the clock, bar events, stops, volume limits and executions.

:class:`SimMatchingEngine` is the half of :class:`~trader.brokers.sim.SimBroker` that turns
bars into fills, expiries and cancels, by the fill rules in :mod:`trader.brokers.sim`'s
docstring. It keeps no state of its own: :class:`~trader.brokers.sim.SimBroker` sets up the
attributes annotated on the class, and adds the order entry, the account and the restart.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal

from trader.brokers.bars import Bar, BarFeed
from trader.brokers.sim_config import BPS, SimConfig
from trader.corporate_actions import CorporateAction
from trader.domain import (
    Account,
    ClientOrderId,
    Fill,
    FillId,
    Order,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    to_utc,
)
from trader.errors import BrokerError
from trader.market_hours import active_profile

_STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})
_HUNDRED = Decimal(100)
_TICK = dt.timedelta(microseconds=1)  # the clock's resolution: "before ts" is "at or before ts - _TICK"


@dataclass(slots=True)
class _Working:
    """A working order and the venue's bookkeeping about it."""

    order: Order
    submitted_at: dt.datetime
    session: dt.date | None = None  # New York date of the first bar it could trade in (DAY expiry)
    fills: int = 0
    triggered: bool = False  # a stop whose price was reached (a stop-limit then works as a limit)
    best: Decimal | None = None  # trailing stops: the best price seen since it started working

    def stop_level(self) -> Decimal | None:
        """The price that triggers this stop now (``None``: not a stop, or a trailing stop with no price seen yet)."""
        o = self.order
        if o.order_type is not OrderType.TRAILING_STOP:
            return o.stop_price
        if self.best is None:
            return None
        sign = -1 if o.side is Side.SELL else 1
        if o.trail_percent is not None:
            return self.best * (1 + sign * o.trail_percent / _HUNDRED)
        assert o.trail_price is not None
        return self.best + sign * o.trail_price

    def see(self, price: Decimal) -> None:
        """A trailing stop's best price moves with ``price`` (up for a sell, down for a buy)."""
        if self.order.order_type is OrderType.TRAILING_STOP:
            better = max if self.order.side is Side.SELL else min
            self.best = price if self.best is None else better(self.best, price)


def _touches(w: _Working, price: Decimal) -> bool:
    """``price`` reaches the stop (sell: at or below it; buy: at or above it)."""
    level = w.stop_level()
    if level is None:
        return False
    return price <= level if w.order.side is Side.SELL else price >= level



class SimMatchingEngine:
    """The clock and the fill model of the simulated venue (base of :class:`~trader.brokers.sim.SimBroker`)."""

    # Set by SimBroker.__init__ (and restore()); listed here so this half reads on its own.
    _feed: BarFeed
    _cfg: SimConfig
    _actions: list[CorporateAction]
    _actions_done: set[str]
    venue: str
    _now: dt.datetime | None
    _orders: dict[ClientOrderId, Order]
    _working: dict[Symbol, dict[ClientOrderId, _Working]]
    _fills: list[Fill]
    _events: list[OrderEvent]
    _account: Account
    _last: dict[Symbol, Decimal]
    _pending: list[Bar]
    _opens_done: dt.datetime | None
    _capacity: dict[tuple[Symbol, dt.datetime], Decimal]

    @property
    def now(self) -> dt.datetime | None:
        """The simulated clock (``None`` until started)."""
        return self._now

    # -- the clock ----------------------------------------------------------------------------
    def advance_to(self, ts: dt.datetime) -> None:
        """Move the clock to ``ts``, filling, expiring and marking along the way; events go to :meth:`poll_events`."""
        ts = to_utc(ts, "ts")
        if self._now is not None and ts < self._now:
            raise BrokerError(f"sim clock: cannot go back from {self._now.isoformat()} to {ts.isoformat()}")
        start = self._now if self._now is not None else min((w.submitted_at for w in self._all_working()), default=ts)
        symbols = set(self._working) | {s for s, p in self._account.positions.items() if p.qty != 0}
        # Opens strictly before ``ts``: a bar opening exactly at ``ts`` is still ahead of a decision taken at ``ts``.
        after = start - _TICK
        if self._opens_done is not None:
            after = max(after, self._opens_done)
        new = self._feed.bars(symbols, after=after, until=ts - _TICK) if symbols and start < ts else []
        # At one instant a bar's close comes before the next bar's open (phase 0, then 1).
        steps = [(b.ts, 1, b) for b in new]
        waiting = self._pending + new
        steps += [(self._end(b), 0, b) for b in waiting if self._end(b) <= ts]
        self._pending = [b for b in waiting if self._end(b) > ts]
        for _, phase, bar in sorted(steps, key=lambda s: (s[0], s[1], s[2].symbol)):
            if phase == 0:
                self._at_close(bar)
            else:
                self._at_open(bar)
        self._corporate_actions(ts)
        self._now = ts

    def _end(self, bar: Bar) -> dt.datetime:
        return bar.end if bar.end is not None else bar.ts + self._feed.timeframe

    def _corporate_actions(self, at: dt.datetime) -> None:
        """Apply the actions due by ``at``'s New York date, once each: positions split, dividends paid, last prices restated."""
        day = active_profile().trading_day(at)
        for action in self._actions:
            if action.ex_date > day:
                break
            if action.action_id in self._actions_done:
                continue
            self._actions_done.add(action.action_id)
            held = self._account.position(action.symbol)
            positions = {**self._account.positions, action.symbol: action.apply_to(held)} if held.qty else self._account.positions
            self._account = replace(self._account, cash=self._account.cash + action.cash(held), positions=positions)
            if action.symbol in self._last:
                self._last[action.symbol] = action.restate_price(self._last[action.symbol])

    def _at_open(self, bar: Bar) -> None:
        self._corporate_actions(bar.ts)
        self._last[bar.symbol] = bar.open
        for w in list(self._working.get(bar.symbol, {}).values()):
            if w.submitted_at > bar.ts or not self._active(w, bar.ts) or self._expired(w, bar):
                continue
            order = w.order
            if order.order_type in _STOPS and not w.triggered:
                w.see(bar.open)
                if not _touches(w, bar.open):
                    continue
                w.triggered = True  # gapped through: a stop fills at the open, not at its stop price
            marketable = order.order_type in (OrderType.MARKET, OrderType.STOP, OrderType.TRAILING_STOP) or _through(order, bar.open)
            if marketable:
                self._execute(w, bar, bar.open, bar.ts, all_or_none=order.time_in_force is TimeInForce.FOK)
            if order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK) and w.order.is_working:
                self._apply(w, OrderCanceled(client_order_id=order.client_order_id, ts=bar.ts,
                                             reason=f"{order.time_in_force.value}: unfilled at the first eligible open"))

    def _at_close(self, bar: Bar) -> None:
        self._last[bar.symbol] = bar.close
        # Stops before limits: when one bar touches a stop-loss and a take-profit, the stop fills first.
        for w in sorted(self._working.get(bar.symbol, {}).values(), key=lambda w: w.order.order_type is OrderType.LIMIT):
            order = w.order
            if not w.order.is_working or w.submitted_at > bar.ts or order.order_type is OrderType.MARKET:
                continue
            if not self._active(w, bar.ts):
                continue
            if order.order_type in _STOPS and not w.triggered:
                self._stop_in_bar(w, bar)
            elif order.limit_price is not None:
                extreme = bar.low if order.side is Side.BUY else bar.high
                if _through(order, extreme):
                    self._execute(w, bar, order.limit_price, self._end(bar), all_or_none=False)
            if w.order.is_working:
                w.see(bar.high if order.side is Side.SELL else bar.low)
        self._capacity.pop((bar.symbol, bar.ts), None)

    def _stop_in_bar(self, w: _Working, bar: Bar) -> None:
        """A stop not yet triggered, against the bar's range (its open was checked at the open)."""
        order, level = w.order, w.stop_level()
        extreme = bar.low if order.side is Side.SELL else bar.high
        if level is None or not _touches(w, extreme):
            return
        w.triggered = True
        if order.order_type is not OrderType.STOP_LIMIT:
            self._execute(w, bar, level, self._end(bar), all_or_none=False)
            return
        assert order.limit_price is not None
        other = bar.high if order.side is Side.SELL else bar.low  # how far the bar went the limit's way
        base = level if _through(order, level) else order.limit_price if _through(order, other) else None
        if base is not None:
            self._execute(w, bar, base, self._end(bar), all_or_none=False)

    def _active(self, w: _Working, ts: dt.datetime) -> bool:
        """A bracket leg trades only once its entry has filled; it is cancelled if the entry ends unfilled."""
        if not w.order.is_held_leg:
            return True
        assert w.order.parent_id is not None
        parent = self._orders.get(w.order.parent_id)
        if parent is not None and parent.status is OrderStatus.FILLED:
            return True
        if parent is None or (not parent.is_working and parent.filled_qty == 0):
            self._apply(w, OrderCanceled(client_order_id=w.order.client_order_id, ts=ts, reason="the bracket entry ended unfilled"))
            return False
        return not parent.is_working  # partly filled, then ended: the legs protect what was bought

    def _expired(self, w: _Working, bar: Bar) -> bool:
        if w.order.time_in_force is not TimeInForce.DAY:
            return False
        session = active_profile().trading_day(bar.ts)
        if w.session is None:
            w.session = session
        if session == w.session:
            return False
        self._apply(w, OrderExpired(client_order_id=w.order.client_order_id, ts=bar.ts))
        return True

    # -- executions ---------------------------------------------------------------------------
    def _available(self, bar: Bar) -> Decimal | None:
        if self._cfg.max_participation is None:
            return None
        key = (bar.symbol, bar.ts)
        if key not in self._capacity:
            lots = (bar.volume * self._cfg.max_participation / self._cfg.lot_size).to_integral_value(ROUND_FLOOR)
            self._capacity[key] = lots * self._cfg.lot_size
        return self._capacity[key]

    def _execute(self, w: _Working, bar: Bar, base: Decimal, ts: dt.datetime, *, all_or_none: bool) -> None:
        remaining = w.order.remaining_qty
        if w.order.is_exit_leg:  # an exit closes at most what is held
            held = self._account.position(w.order.symbol).qty * -w.order.side.sign
            if held <= 0:
                self._apply(w, OrderCanceled(client_order_id=w.order.client_order_id, ts=ts, reason="no position left to close"))
                return
            remaining = min(remaining, held)
        available = self._available(bar)
        qty = remaining if available is None else min(remaining, available)
        if qty <= 0 or (all_or_none and qty < remaining):
            return
        if available is not None:
            self._capacity[(bar.symbol, bar.ts)] = available - qty
        order = w.order
        price = base * (1 + order.side.sign * self._cfg.slippage_bps / BPS)
        if order.limit_price is not None:  # slippage never pushes a limit order through its limit
            price = min(price, order.limit_price) if order.side is Side.BUY else max(price, order.limit_price)
        w.fills += 1
        assert order.order_id is not None
        fill = Fill(fill_id=FillId(f"{order.order_id}-{w.fills}"), order_id=order.order_id, client_order_id=order.client_order_id,
                    symbol=order.symbol, side=order.side, qty=qty, price=price, fee=self._cfg.fees.fee(qty, price), ts=ts,
                    venue=self.venue, account=self._cfg.account)
        self._apply(w, OrderFilled(client_order_id=order.client_order_id, ts=ts, fill=fill))
        self._account = self._account.apply_fill(fill)
        self._fills.append(fill)

    def _apply(self, w: _Working, event: OrderEvent) -> None:
        w.order = w.order.apply(event)
        self._orders[w.order.client_order_id] = w.order
        self._events.append(event)
        if not w.order.is_working:
            by_symbol = self._working[w.order.symbol]
            del by_symbol[w.order.client_order_id]
            if not by_symbol:
                del self._working[w.order.symbol]
        if isinstance(event, OrderFilled) and w.order.is_exit_leg:
            self._cancel_siblings(w.order, event.ts)

    def _cancel_siblings(self, leg: Order, ts: dt.datetime) -> None:
        """One exit of a pair filled: the other is cancelled (one-cancels-other)."""
        for other in list(self._working.get(leg.symbol, {}).values()):
            if other.order.oco_group == leg.oco_group and other.order.client_order_id != leg.client_order_id:
                self._apply(other, OrderCanceled(client_order_id=other.order.client_order_id, ts=ts,
                                                 reason=f"one-cancels-other: {leg.client_order_id} filled"))

    def _all_working(self) -> list[_Working]:
        return [w for by_symbol in self._working.values() for w in by_symbol.values()]

    def _stamp(self, fallback: dt.datetime) -> dt.datetime:
        return self._now if self._now is not None else fallback


def _through(order: Order, price: Decimal) -> bool:
    """``price`` is at or through the order's limit (always true for a market order)."""
    if order.limit_price is None:
        return True
    return price <= order.limit_price if order.side is Side.BUY else price >= order.limit_price

