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
from decimal import Decimal

from trader.brokers.bars import Bar, BarFeed
from trader.brokers.base import BrokerAccount, BrokerPosition, check_linked
from trader.brokers.sim_config import BPS, FeeModel, SimConfig
from trader.brokers.sim_matching import SimMatchingEngine, _Working
from trader.corporate_actions import CorporateAction, ordered
from trader.domain import (
    ZERO,
    Account,
    ClientOrderId,
    Fill,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderId,
    OrderRejected,
    OrderStatus,
    Side,
    Symbol,
    TimeInForce,
    make_client_order_id,
    to_utc,
)
from trader.errors import BrokerError, BrokerRejectedError

__all__ = ["BPS", "FeeModel", "SimBroker", "SimConfig"]

_UNSUPPORTED_TIF = frozenset({TimeInForce.OPG, TimeInForce.CLS})


class SimBroker(SimMatchingEngine):
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



def _at_an_open(fill: Fill, order: Order | None) -> bool:
    """``fill`` came from a bar's open: a close fill is always a limit order's, exactly at its limit."""
    return order is None or order.limit_price is None or fill.price != order.limit_price
