"""The simulated broker: next-bar fills from a :class:`~trader.brokers.bars.BarFeed`, with slippage, fees and volume limits.

Fill rules, in the order a newcomer will ask about them:

* **Next bar, never the current one.** An order submitted at time ``t`` can first fill on the
  first bar that opens at or after ``t``: a decision taken at a bar's close fills at the open
  of the bar that starts then. :meth:`SimBroker.advance_to` ``(t)`` processes opens strictly
  before ``t`` only, so that open is still ahead when the decision at ``t`` is submitted.
* **The clock moves only when told**: :meth:`SimBroker.advance_to` processes every bar event
  up to ``ts`` — a bar's *open* at ``bar.ts`` and its *close* at ``bar.end`` — in time order.
  Marks use the open at the open and the close at the close, so nothing is seen early.
* **Limit orders** fill at the open when the open is at or through the limit; otherwise, if
  the bar trades through the limit (buy: ``low <= limit``; sell: ``high >= limit``), they fill
  at the limit, stamped at the bar's close (the time that fact became known).
* **Slippage** moves the price against the order by ``slippage_bps`` (a limit still caps it);
  **fees** are ``per_share * qty + bps * notional``. Everything is ``Decimal``, exactly.
* **Volume**: the orders of one symbol may take at most ``max_participation`` of a bar's
  volume (in whole ``lot_size`` units); the rest stays working and fills on following bars.
* ``DAY`` orders expire at the first bar of a later New York session than the one they first
  could trade in; ``IOC`` cancels what the first eligible open cannot fill, ``FOK`` fills all
  at that open or cancels. ``OPG``/``CLS`` are rejected.
* **Stops** (stop, stop-limit, trailing) trigger when a price reaches the stop: at the open if
  the bar gaps through it (a stop then fills *at the open*, a stop-limit at the open if the
  open satisfies its limit), otherwise when the bar's range touches it (a stop fills *at the
  stop*, stamped at the bar's close). A triggered stop-limit works as a limit order from then on.
* **Trailing stops** follow the best price since they started working (the last price at
  submission, then each open, then each bar's high for a sell / low for a buy). Within a bar the
  stop is the one set *before* that bar's high/low: which came first is unknown, and this is
  the choice that exits at the worse price.
* **Brackets and OCO** (:meth:`SimBroker.submit_linked`): a bracket's legs are held until the
  entry fills (cancelled if it ends unfilled); when one leg of a pair fills, the other is
  cancelled. **If a bar touches both the stop-loss and the take-profit, the stop is assumed to
  fill first** (the conservative rule), so the take-profit is cancelled. An exit leg never
  trades more than the position it closes: with nothing left to close it is cancelled.
* Ids are deterministic: order ``sim-<n>`` (n-th accepted order), fill ``<order_id>-<k>``.

Example:
    >>> import datetime as dt
    >>> from decimal import Decimal as D
    >>> from trader.brokers.bars import Bar, InMemoryBars
    >>> from trader.domain import ClientOrderId, Order, Side, Symbol
    >>> t0 = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC)
    >>> bar = lambda i, px: Bar(symbol="AAA", ts=t0 + dt.timedelta(minutes=15 * i), open=D(px), high=D(px),
    ...                         low=D(px), close=D(px), volume=D(10_000))
    >>> broker = SimBroker(InMemoryBars([bar(0, 100), bar(1, 101)]), start=t0,
    ...                    config=SimConfig(slippage_bps=D(5), fees=FeeModel(per_share=D("0.005"))))
    >>> order = Order(client_order_id=ClientOrderId("al-1"), symbol=Symbol("AAA"), side=Side.BUY, qty=D(10), created_at=t0)
    >>> broker.submit(order).order_id
    'sim-1'
    >>> broker.advance_to(t0)  # the bar opening at t0 is still ahead of the decision taken at t0
    >>> broker.poll_events()
    []
    >>> broker.advance_to(t0 + dt.timedelta(minutes=15))
    >>> [(e.fill.price, e.fill.fee, e.fill.ts == t0) for e in broker.poll_events()]
    [(Decimal('100.0500'), Decimal('0.050'), True)]
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_FLOOR, Decimal

from trader.brokers.bars import Bar, BarFeed
from trader.brokers.base import BrokerAccount, BrokerPosition, check_linked
from trader.corporate_actions import CorporateAction, ordered
from trader.domain import (
    ZERO,
    Account,
    ClientOrderId,
    Fill,
    FillId,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderId,
    OrderRejected,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    make_client_order_id,
    to_decimal,
    to_utc,
)
from trader.errors import BrokerError, BrokerRejectedError
from trader.market_hours import active_profile

BPS = Decimal(10_000)
_UNSUPPORTED_TIF = frozenset({TimeInForce.OPG, TimeInForce.CLS})
_STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})
_HUNDRED = Decimal(100)
_TICK = dt.timedelta(microseconds=1)  # the clock's resolution: "before ts" is "at or before ts - _TICK"


@dataclass(frozen=True, kw_only=True)
class FeeModel:
    """Fee of one fill: ``per_share * qty + bps / 10_000 * qty * price``."""

    per_share: Decimal = ZERO
    bps: Decimal = ZERO

    def __post_init__(self) -> None:
        for name in ("per_share", "bps"):
            value = to_decimal(getattr(self, name), f"fees.{name}")
            if value < 0:
                raise BrokerError(f"fees.{name}: must be >= 0, got {value}")
            object.__setattr__(self, name, value)

    def fee(self, qty: Decimal, price: Decimal) -> Decimal:
        fee = qty * self.per_share
        if self.bps:  # skipped when zero only to keep the figure tidy (0.050, not 0.0500)
            fee += qty * price * self.bps / BPS
        return fee


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """How the simulated venue fills. ``max_participation=None`` lifts the volume limit."""

    slippage_bps: Decimal = ZERO
    fees: FeeModel = field(default_factory=FeeModel)
    max_participation: Decimal | None = Decimal("0.10")
    lot_size: Decimal = Decimal(1)
    initial_cash: Decimal = Decimal(100_000)
    account: str = "sim"
    venue: str = "sim"

    def __post_init__(self) -> None:
        for name in ("slippage_bps", "lot_size", "initial_cash"):
            object.__setattr__(self, name, to_decimal(getattr(self, name), f"sim.{name}"))
        if self.slippage_bps < 0 or self.lot_size <= 0:
            raise BrokerError("sim: slippage_bps must be >= 0 and lot_size > 0")
        if self.max_participation is not None:
            object.__setattr__(self, "max_participation", to_decimal(self.max_participation, "sim.max_participation"))
            if not 0 < self.max_participation <= 1:
                raise BrokerError(f"sim.max_participation: must be in (0, 1], got {self.max_participation}")


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


class SimBroker:
    """A :class:`~trader.brokers.base.Broker` that fills against bars; see the module docstring.

    Args:
        feed: where bars come from (:class:`~trader.brokers.bars.InMemoryBars`, :class:`~trader.brokers.bars.WarehouseBars`).
        config: slippage, fees, participation, starting cash.
        start: the initial clock; ``None`` starts it at the first order's ``created_at``.
        actions: splits and cash dividends the venue applies at the first event of each ex-date, as a real
            venue does (:mod:`trader.corporate_actions`).
    """

    def __init__(self, feed: BarFeed, *, config: SimConfig | None = None, start: dt.datetime | None = None,
                 actions: Iterable[CorporateAction] = ()):
        self._feed, self._cfg = feed, config or SimConfig()
        self._actions, self._actions_done = ordered(actions), set[str]()
        self.venue = self._cfg.venue
        self._now = None if start is None else to_utc(start, "start")
        self._orders: dict[ClientOrderId, Order] = {}
        self._working: dict[Symbol, dict[ClientOrderId, _Working]] = {}
        self._fills: list[Fill] = []
        self._events: list[OrderEvent] = []
        self._account = Account(cash=self._cfg.initial_cash)
        self._last: dict[Symbol, Decimal] = {}
        self._pending: list[Bar] = []  # bars whose open was processed, not yet their close
        self._opens_done: dt.datetime | None = None  # set by restore(): opens at or before it were traded already
        self._capacity: dict[tuple[Symbol, dt.datetime], Decimal] = {}
        self._seq = 0

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

    # -- the Broker protocol ------------------------------------------------------------------
    def submit(self, order: Order) -> OrderAccepted | OrderRejected:
        """Accept ``order`` (it fills on a later bar); a reused ``client_order_id`` gets the existing order's answer."""
        cid = order.client_order_id
        known = self._orders.get(cid)
        if known is not None:
            if known.status is OrderStatus.REJECTED:
                return OrderRejected(client_order_id=cid, ts=known.updated_at or known.created_at, reason=known.status_reason)
            assert known.order_id is not None
            return OrderAccepted(client_order_id=cid, ts=known.created_at, order_id=known.order_id)
        at = order.created_at if self._now is None else max(self._now, order.created_at)
        if order.time_in_force in _UNSUPPORTED_TIF:
            rejected = OrderRejected(client_order_id=cid, ts=at, reason=f"time_in_force {order.time_in_force.value} is not simulated")
            self._orders[cid] = order.apply(rejected)
            return rejected
        self._seq += 1
        accepted = OrderAccepted(client_order_id=cid, ts=at, order_id=OrderId(f"sim-{self._seq}"))
        live = order.apply(accepted)
        self._orders[cid] = live
        w = _Working(live, at)
        if live.symbol in self._last:
            w.see(self._last[live.symbol])
        self._working.setdefault(live.symbol, {})[cid] = w
        return accepted

    def submit_linked(self, orders: Sequence[Order]) -> list[OrderAccepted | OrderRejected]:
        """Place a bracket or an OCO pair (see :func:`~trader.brokers.base.check_linked`); legs wait as the module docstring says."""
        check_linked(orders)
        return [self.submit(order) for order in orders]

    def cancel(self, client_order_id: ClientOrderId) -> None:
        order = self._orders.get(client_order_id)
        if order is None:
            raise BrokerRejectedError(f"sim: cannot cancel {client_order_id}: no such order")
        w = self._working.get(order.symbol, {}).get(client_order_id)
        if w is not None:  # a finished order stays finished: cancelling it again is a no-op
            self._apply(w, OrderCanceled(client_order_id=client_order_id, ts=self._stamp(order.created_at), reason="canceled on request"))

    def get_order_by_client_id(self, client_order_id: ClientOrderId) -> Order | None:
        return self._orders.get(client_order_id)

    def list_orders(self, *, open_only: bool = True) -> list[Order]:
        return [o for o in self._orders.values() if o.is_working or not open_only]

    def poll_events(self) -> list[OrderEvent]:
        events, self._events = self._events, []
        return events

    def fills(self, *, since: dt.datetime) -> list[Fill]:
        since = to_utc(since, "since")
        return [f for f in self._fills if f.ts >= since]

    def positions(self) -> dict[Symbol, BrokerPosition]:
        return {s: BrokerPosition(symbol=s, qty=p.qty, avg_entry_price=p.avg_cost)
                for s, p in self._account.positions.items() if p.qty != 0}

    def account(self) -> BrokerAccount:
        """Cash, and equity marked at the latest price seen (average cost for a symbol never seen)."""
        held = {s: self._last.get(s, p.avg_cost) for s, p in self._account.positions.items() if p.qty != 0}
        cash = self._account.cash
        return BrokerAccount(account_id=self._cfg.account, cash=cash, equity=self._account.equity(held),
                             buying_power=max(cash, ZERO))

    def cancel_all(self) -> list[ClientOrderId]:
        ids = [w.order.client_order_id for w in self._all_working()]
        for cid in ids:
            self.cancel(cid)
        return ids

    def close_all(self) -> list[Order]:
        """Cancel working orders, then send a market order closing each position (it fills at the next open)."""
        if self._now is None:
            raise BrokerError("sim: the clock has not started; advance_to() before closing positions")
        self.cancel_all()
        out = []
        for symbol, pos in sorted(self._account.positions.items()):
            if pos.qty == 0:
                continue
            side = Side.SELL if pos.qty > 0 else Side.BUY
            leg, cid = 0, None
            while cid is None or cid in self._orders:  # a second flatten at the same instant replaces the first
                cid = make_client_order_id(run_id=f"{self.venue}-close-all", decision_ts=self._now, symbol=symbol, side=side, leg=leg)
                leg += 1
            answer = self.submit(Order(client_order_id=cid, symbol=symbol, side=side, qty=abs(pos.qty), created_at=self._now))
            if isinstance(answer, OrderAccepted):
                out.append(self._orders[cid])
        return out

    # -- restart ------------------------------------------------------------------------------
    def restore(self, *, orders: Iterable[Order], fills: Iterable[Fill]) -> None:
        """Rebuild the venue from the trader's store when a sim session restarts (the simulator keeps no state).

        Fills set cash and positions; orders the venue had accepted come back (working ones
        keep working); ``NEW`` orders never reached the venue and are left out. The clock
        resumes at the latest stored event; when a fill there came from a bar's open, that
        open is marked as traded, so no bar already traded on is traded on again.

        A limit fill exactly at its limit is taken for a close fill (the next open still
        ahead): from the store alone it cannot be told from an open fill capped at the limit.
        """
        if self._orders or self._fills:
            raise BrokerError("sim: restore() works only on a fresh SimBroker")
        self._fills = sorted(fills, key=lambda f: (f.ts, str(f.fill_id)))
        for f in self._fills:
            self._corporate_actions(f.ts)  # a fill on or after an ex-date is in post-action shares
            self._account = self._account.apply_fill(f)
        per_order = Counter(f.client_order_id for f in self._fills)
        for order in orders:
            if order.status is OrderStatus.NEW or order.order_id is None:
                continue
            self._orders[order.client_order_id] = order
            if order.order_id.startswith("sim-") and order.order_id[4:].isdigit():
                self._seq = max(self._seq, int(order.order_id[4:]))
            if order.is_working:
                w = _Working(order, order.created_at, fills=per_order[order.client_order_id])
                self._working.setdefault(order.symbol, {})[order.client_order_id] = w
        times = [f.ts for f in self._fills] + [o.updated_at for o in self._orders.values() if o.updated_at is not None]
        if times:
            latest = max(times)
            self._corporate_actions(latest)
            self._now = latest if self._now is None else max(self._now, latest)
            if any(f.ts == latest and _at_an_open(f, self._orders.get(f.client_order_id)) for f in self._fills):
                self._opens_done = latest  # advance_to() would otherwise trade the open at ``latest`` again


def _through(order: Order, price: Decimal) -> bool:
    """``price`` is at or through the order's limit (always true for a market order)."""
    if order.limit_price is None:
        return True
    return price <= order.limit_price if order.side is Side.BUY else price >= order.limit_price


def _at_an_open(fill: Fill, order: Order | None) -> bool:
    """``fill`` came from a bar's open: a close fill is always a limit order's, exactly at its limit."""
    return order is None or order.limit_price is None or fill.price != order.limit_price
