"""Protective exits: stop-loss, take-profit, trailing and time stops for every open position (``exits:`` in ``trader.yaml``).

The runner calls :meth:`ExitMonitor.cycle` once per decision cycle, after the broker's events
are synced and before anything new is sized. For each open position:

* **Venue protection** (``use_venue_brackets``, a venue that holds linked orders, a whole-share
  quantity, ``stop_loss_pct`` and ``take_profit_pct`` both set): the stop-loss and take-profit
  rest at the venue as an OCO pair (take-profit limit + stop-loss stop, one cancels the other),
  so the position stays protected if the trader dies. It is placed once the position is
  settled (no other order working in the symbol); a pair whose quantity no longer matches the
  position is cancelled and placed again on a later cycle. The pair holds the shares at the
  venue, so a model order in a protected symbol cancels it first (:meth:`ExitMonitor.submit`);
  Alpaca may still refuse that order if it has not released the shares yet (the next cycle's
  decision then goes through), and the position is protected again once settled.
* **The trader's own monitor** otherwise: the stop-loss and take-profit are checked against
  the cycle's last price. Trailing and time stops are always the trader's: the trailing stop
  follows the best last price seen while the position is open (kept in memory: a restart
  starts it again from the better of the entry and the last price), the time stop counts bars
  from the fill that opened the position (market bars only, when ``risk.market_hours_only``).
* **Bracket entries**: with venue protection on, a model order that opens a position from flat
  (whole shares, nothing else working in the symbol) goes out through :meth:`ExitMonitor.submit`
  as a bracket: the entry plus its take-profit and stop-loss legs, priced from the decision's
  price (the limit, or the last price), held by the venue until the entry fills. If the legs
  are denied, the entry goes out alone and gets its OCO pair once filled.
* A triggered exit closes the position with a market order. If venue exits rest on it, they
  are cancelled first and the close goes out on the next cycle (the venue holds those shares).

Prices are relative to the position's average entry price: a long at 100 with
``stop_loss_pct: 0.05`` and ``take_profit_pct: 0.10`` exits at 95 or 110 (a short at 105 or 90).
Every order goes through the risk engine like any other (:func:`trader.risk.checks.exit_order`);
an exit only reduces risk, so it passes a HALTED kill switch. Each decision is one ``exit``
audit record with its reason: ``stop_loss``, ``take_profit``, ``trailing``, ``time`` or
``protect`` (venue exits placed).

Example:
    >>> from trader.config import ExitPolicy
    >>> policy = ExitPolicy(stop_loss_pct=D("0.05"), take_profit_pct=D("0.10"))
    >>> trigger(policy, qty=D(10), entry=D(100), last=D("94.9"), best=D(100), bars_held=3)
    'stop_loss'
    >>> trigger(policy, qty=D(-10), entry=D(100), last=D("94.9"), best=D(100), bars_held=3) is None
    True
    >>> exit_prices(policy, qty=D(10), entry=D("100.003"))
    (Decimal('110.01'), Decimal('95.00'))
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import ROUND_CEILING, ROUND_FLOOR
from decimal import Decimal as D
from typing import TYPE_CHECKING, Any

from trader.brokers.bars import TIMEFRAMES
from trader.brokers.base import LinkedOrderBroker
from trader.config import ExitPolicy
from trader.domain import (
    ZERO,
    Account,
    Fill,
    Order,
    OrderAccepted,
    OrderClass,
    OrderEvent,
    OrderRejected,
    OrderType,
    Position,
    Side,
    SubmitOrder,
    Symbol,
    TimeInForce,
    TradingState,
    leg_client_order_id,
    make_client_order_id,
)
from trader.errors import BrokerError, BrokerUnavailableError
from trader.market_hours import TradingCalendar
from trader.risk import RiskContext, RiskEngine
from trader.store import TraderStore

if TYPE_CHECKING:
    from trader.runner import Runner

_CENT, _HUNDREDTH_CENT = D("0.01"), D("0.0001")


def trigger(policy: ExitPolicy, *, qty: D, entry: D, last: D, best: D, bars_held: int,
            venue_protected: bool = False) -> str | None:
    """Which exit the position hits now, or ``None``; checked in the order stop_loss, trailing, take_profit, time.

    ``best`` is the best price seen while it was open (highest for a long, lowest for a short);
    with ``venue_protected`` the stop-loss and take-profit are left to the venue.
    """
    sign = 1 if qty > 0 else -1
    move = sign * (last - entry) / entry  # the position's return at ``last``
    if not venue_protected and policy.stop_loss_pct is not None and move <= -policy.stop_loss_pct:
        return "stop_loss"
    if policy.trailing_stop_pct is not None and sign * (last - best) / best <= -policy.trailing_stop_pct:
        return "trailing"
    if not venue_protected and policy.take_profit_pct is not None and move >= policy.take_profit_pct:
        return "take_profit"
    if policy.max_holding_bars is not None and bars_held >= policy.max_holding_bars:
        return "time"
    return None


def exit_prices(policy: ExitPolicy, *, qty: D, entry: D) -> tuple[D, D]:
    """The (take-profit limit, stop-loss stop) of a position, rounded to the venue's tick away from the entry.

    Alpaca takes whole cents at or above $1 and 1/100 cent below.
    """
    assert policy.take_profit_pct is not None and policy.stop_loss_pct is not None
    sign = 1 if qty > 0 else -1
    tick = _CENT if entry >= 1 else _HUNDREDTH_CENT
    take = (entry * (1 + sign * policy.take_profit_pct)).quantize(tick, ROUND_CEILING if sign > 0 else ROUND_FLOOR)
    stop = (entry * (1 - sign * policy.stop_loss_pct)).quantize(tick, ROUND_FLOOR if sign > 0 else ROUND_CEILING)
    return take, stop


def opened_at(fills: Sequence[Fill], symbol: Symbol) -> dt.datetime | None:
    """When the current position in ``symbol`` opened: the fill that took it from flat (or through zero)."""
    qty, opened = ZERO, None
    for fill in sorted((f for f in fills if f.symbol == symbol), key=lambda f: (f.ts, str(f.fill_id))):
        after = qty + fill.signed_qty
        if after != 0 and (qty == 0 or (qty > 0) != (after > 0)):
            opened = fill.ts
        qty = after
    return opened if qty != 0 else None


def bars_between(start: dt.datetime, end: dt.datetime, step: dt.timedelta, *, calendar: TradingCalendar | None,
                 stop_at: int) -> int:
    """Bars of length ``step`` that closed in ``(start, end]`` (only bars of open market, given a calendar), up to ``stop_at``."""
    count, close = 0, start + step
    while close <= end and count < stop_at:
        if calendar is None or calendar.is_open(close - step):
            count += 1
        close += step
    return count


class ExitMonitor:
    """Places and watches the exits of every open position; see the module docstring.

    Args:
        policy: the ``exits:`` section.
        store, broker, engine, run_id: the runner's.
        context: builds the risk context of a cycle (the runner's).
        apply: records venue answers as order events (the runner's, so the books move in one place).
        calendar: counts only market bars for the time stop (``None``: every bar).

    Example:
        >>> monitor = ExitMonitor.for_runner(runner)  # what Runner.__init__ does; None when exits are off  # doctest: +SKIP
        >>> monitor.cycle(tick.ts, TradingState.ACTIVE, account)  # orders sent this cycle  # doctest: +SKIP
        1
    """

    def __init__(self, *, policy: ExitPolicy, store: TraderStore, broker: Any, engine: RiskEngine, run_id: str,
                 context: Callable[[dt.datetime, TradingState, Account], RiskContext],
                 apply: Callable[[Sequence[OrderEvent]], int], calendar: TradingCalendar | None):
        self.policy, self.store, self.broker, self.engine, self.run_id = policy, store, broker, engine, run_id
        self._context, self._apply, self._calendar = context, apply, calendar
        self._step = TIMEFRAMES[policy.timeframe]
        self._best: dict[Symbol, tuple[dt.datetime | None, D]] = {}  # symbol -> (opened_at, best price)
        self._closing: dict[Symbol, str] = {}  # venue exits cancelled: close on a later cycle for this reason
        self._cancel_sent: set[str] = set()
        self._cycle: tuple[dt.datetime, TradingState, Account] | None = None  # the current cycle's, for submit()

    @classmethod
    def for_runner(cls, runner: Runner) -> ExitMonitor | None:
        """The monitor of ``runner`` (``None`` when ``exits:`` sets no threshold: nothing changes then)."""
        cfg = runner.config
        if not cfg.exits.enabled:
            return None
        return cls(policy=cfg.exits, store=runner.store, broker=runner.broker, engine=runner.engine, run_id=runner.run_id,
                   context=runner._context, apply=runner._apply,
                   calendar=runner.engine.calendar if cfg.risk.market_hours_only else None)

    @property
    def venue_exits(self) -> bool:
        p = self.policy
        return (p.use_venue_brackets and isinstance(self.broker, LinkedOrderBroker)
                and p.stop_loss_pct is not None and p.take_profit_pct is not None)

    def cycle(self, now: dt.datetime, state: TradingState, account: Account) -> int:
        """Check every open position at ``now``; returns how many orders were sent."""
        self._cycle = (now, state, account)
        if self._calendar is not None and not self._calendar.is_open(now):
            return 0
        ctx = self._context(now, state, account)
        fills = self.store.list_fills() if self.policy.max_holding_bars or self.policy.trailing_stop_pct else []
        groups: list[tuple[list[SubmitOrder], dict[str, Any]]] = []
        for symbol in [s for s in self._closing if account.position(s).qty == 0]:
            del self._closing[symbol]  # closed some other way meanwhile
        for symbol, pos in sorted(account.positions.items()):
            if pos.qty != 0 and symbol in ctx.prices:
                group = self._position(ctx, pos, fills)
                if group is not None:
                    groups.append(group)
        return self._send(groups, ctx)

    # -- one position ---------------------------------------------------------------------------
    def _position(self, ctx: RiskContext, pos: Position, fills: Sequence[Fill]) -> tuple[list[SubmitOrder], dict[str, Any]] | None:
        symbol, last = pos.symbol, ctx.prices[pos.symbol]
        legs = [o for o in ctx.exit_orders if o.symbol == symbol]
        entries = {o.client_order_id for o in ctx.working_orders}
        if any(o.is_held_leg and o.parent_id in entries for o in legs):
            return None  # a bracket whose entry is still filling: its legs will protect what it buys
        closes_it = [o for o in legs if o.side.sign != (1 if pos.qty > 0 else -1) and o.remaining_qty == abs(pos.qty)]
        protected = len(closes_it) == len(legs) == 2  # both of the pair, each for the whole position
        since = opened_at(fills, symbol) if fills else None
        best = self._track_best(symbol, since, pos, last)
        held = bars_between(since, ctx.now, self._step, calendar=self._calendar,
                            stop_at=self.policy.max_holding_bars or 0) if since else 0
        reason = self._closing.get(symbol) or trigger(self.policy, qty=pos.qty, entry=pos.avg_cost, last=last, best=best,
                                                       bars_held=held, venue_protected=protected)
        note = {"symbol": symbol, "qty": pos.qty, "entry": pos.avg_cost, "last": last, "best": best, "bars_held": held}
        if legs and (reason is not None or not protected):
            self._cancel(legs, ctx.now, note | {"reason": reason or "protect", "action": "cancel venue exits"})
            if reason is not None:
                self._closing[symbol] = reason
            return None
        if reason is not None:
            return self._close(ctx, pos, reason, note)
        settled = not any(o.symbol == symbol for o in ctx.working_orders)  # e.g. no closing order on its way
        if not legs and settled and self.venue_exits and pos.qty == pos.qty.to_integral_value():
            return self._protect(ctx, pos, note)
        return None

    def _track_best(self, symbol: Symbol, since: dt.datetime | None, pos: Position, last: D) -> D:
        known = self._best.get(symbol)
        better = max if pos.qty > 0 else min
        best = better(pos.avg_cost, last) if known is None or known[0] != since else better(known[1], last)
        self._best[symbol] = (since, best)
        return best

    def _close(self, ctx: RiskContext, pos: Position, reason: str, note: dict[str, Any]) -> tuple[list[SubmitOrder], dict[str, Any]] | None:
        side = Side.SELL if pos.qty > 0 else Side.BUY
        working = sum((o.remaining_qty for o in ctx.working_orders if o.symbol == pos.symbol and o.side is side), ZERO)
        qty = abs(pos.qty) - working
        if qty <= 0:
            return None  # a closing order is already working
        cid = make_client_order_id(run_id=f"{self.run_id}-exit", decision_ts=ctx.now, symbol=pos.symbol, side=side)
        order = Order(client_order_id=cid, symbol=pos.symbol, side=side, qty=qty, created_at=ctx.now)
        self._closing.pop(pos.symbol, None)
        command = SubmitOrder(order=order, reference_price=ctx.prices[pos.symbol], exit_reason=reason)
        return [command], note | {"reason": reason, "action": "close at market", "client_order_id": cid}

    def _protect(self, ctx: RiskContext, pos: Position, note: dict[str, Any]) -> tuple[list[SubmitOrder], dict[str, Any]]:
        side = Side.SELL if pos.qty > 0 else Side.BUY
        take, stop = exit_prices(self.policy, qty=pos.qty, entry=pos.avg_cost)
        head = make_client_order_id(run_id=f"{self.run_id}-protect", decision_ts=ctx.now, symbol=pos.symbol, side=side)
        common: dict[str, Any] = {"symbol": pos.symbol, "side": side, "qty": abs(pos.qty), "created_at": ctx.now,
                                  "time_in_force": TimeInForce.GTC, "order_class": OrderClass.OCO}
        orders = [Order(client_order_id=head, order_type=OrderType.LIMIT, limit_price=take, **common),
                  Order(client_order_id=leg_client_order_id(head, "stop_loss"), order_type=OrderType.STOP, stop_price=stop,
                        parent_id=head, **common)]
        commands = [SubmitOrder(order=o, reference_price=ctx.prices[pos.symbol], exit_reason="protect") for o in orders]
        return commands, note | {"reason": "protect", "action": "venue OCO", "take_profit": take, "stop_loss": stop,
                                 "client_order_id": head}

    # -- bracket entries ------------------------------------------------------------------------
    def submit(self, order: Order) -> OrderAccepted | OrderRejected:
        """Send an approved model order (the runner's submit): as a bracket when it opens a position, else as it is.

        Broker errors propagate, exactly as from ``broker.submit`` (the runner looks the entry up).
        """
        group = self._bracket(order)
        if group is None:
            self._free(order)
            return self.broker.submit(order)
        answers = self.broker.submit_linked(group)
        self._apply([a for a in answers[1:]])
        return answers[0]

    def _free(self, order: Order) -> None:
        """Exits resting in the symbol of a model order are cancelled first: the venue holds those shares (Alpaca
        refuses the order otherwise), and the position they were sized for is about to change."""
        resting = [o for o in self.store.working_orders() if o.is_exit_leg and o.symbol == order.symbol]
        if resting:
            self._cancel(resting, order.created_at, {"symbol": order.symbol, "reason": "protect", "client_order_id":
                                                     order.client_order_id, "action": "cancel venue exits for a model order"})

    def _bracket(self, order: Order) -> list[Order] | None:
        """The entry and its two legs, stored and audited, if ``order`` should go out as a bracket and its legs pass risk."""
        if self._cycle is None or not self.venue_exits or order.order_class is not OrderClass.SIMPLE \
                or order.order_type not in (OrderType.MARKET, OrderType.LIMIT) or order.qty != order.qty.to_integral_value():
            return None
        now, state, account = self._cycle
        ctx = self._context(now, state, account)
        price = order.limit_price or ctx.prices.get(order.symbol)
        busy = any(o.symbol == order.symbol and o.client_order_id != order.client_order_id
                   for o in (*ctx.working_orders, *ctx.exit_orders))
        if account.position(order.symbol).qty != 0 or busy or price is None:
            return None
        take, stop = exit_prices(self.policy, qty=order.signed_qty, entry=price)
        entry = replace(order, order_class=OrderClass.BRACKET)
        link: dict[str, Any] = {"symbol": order.symbol, "side": Side.SELL if order.side is Side.BUY else Side.BUY,
                                "qty": order.qty, "created_at": order.created_at, "time_in_force": order.time_in_force,
                                "order_class": OrderClass.BRACKET, "parent_id": order.client_order_id}
        legs = [Order(client_order_id=leg_client_order_id(order.client_order_id, "take_profit"), order_type=OrderType.LIMIT,
                      limit_price=take, **link),
                Order(client_order_id=leg_client_order_id(order.client_order_id, "stop_loss"), order_type=OrderType.STOP,
                      stop_price=stop, **link)]
        note = {"symbol": order.symbol, "reason": "protect", "action": "bracket entry", "client_order_id": order.client_order_id,
                "price": price, "take_profit": take, "stop_loss": stop}
        commands = [SubmitOrder(order=leg, reference_price=price, exit_reason="protect") for leg in legs]
        return [entry, *legs] if self._record([(commands, note)], ctx, also=[entry]) else None

    # -- orders ---------------------------------------------------------------------------------
    def _cancel(self, legs: list[Order], now: dt.datetime, note: dict[str, Any]) -> None:
        todo = [o for o in legs if o.client_order_id not in self._cancel_sent]
        if not todo:
            return
        self.store.append_audit("exit", note | {"canceled": [o.client_order_id for o in todo], "run_id": self.run_id}, ts=now)
        for order in todo:
            try:
                self.broker.cancel(order.client_order_id)
            except BrokerError as exc:
                self.store.append_audit("cancel_failed", {"client_order_id": order.client_order_id, "reason": str(exc),
                                                          "run_id": self.run_id}, ts=now)
                continue
            self._cancel_sent.add(order.client_order_id)

    def _send(self, groups: list[tuple[list[SubmitOrder], dict[str, Any]]], ctx: RiskContext) -> int:
        """Risk-check each group (all its orders pass or none is sent), record it, send it, record the answers."""
        sendable = self._record(groups, ctx)
        answers: list[OrderEvent] = []
        for orders in sendable:
            answers += self._submit(orders, ctx.now)
        self._apply(answers)
        return sum(1 for a in answers if isinstance(a, OrderAccepted))

    def _record(self, groups: list[tuple[list[SubmitOrder], dict[str, Any]]], ctx: RiskContext, *,
                also: Sequence[Order] = ()) -> list[list[Order]]:
        """One commit: each group's ``exit`` record and risk decisions, and its orders (NEW) if all were approved.

        ``also``: orders saved with every approved group (a bracket's entry, re-saved as such).
        """
        sendable: list[list[Order]] = []
        with self.store.transaction() as tx:
            for commands, note in groups:
                decisions, trial = [], ctx
                for command in commands:
                    decisions.append(self.engine.check(command, trial))
                    trial = trial.with_submitted(command.order)
                approved = all(d.approved for d in decisions)
                tx.append_audit("exit", note | {"approved": approved, "run_id": self.run_id}, ts=ctx.now)
                for decision in decisions:
                    tx.append_audit("risk_decision", decision.to_record() | {"run_id": self.run_id, "exit": note["reason"]},
                                    ts=ctx.now)
                if not approved:
                    continue
                ctx = trial
                sendable.append([c.order for c in commands])
                for order in [*also, *sendable[-1]]:
                    tx.save_order(order)
                for order in sendable[-1]:
                    tx.append_audit("order_submit", {"client_order_id": order.client_order_id, "venue": self.broker.venue,
                                                     "run_id": self.run_id, "order": order.to_record()}, ts=ctx.now)
        return sendable

    def _submit(self, orders: list[Order], now: dt.datetime) -> list[OrderAccepted | OrderRejected]:
        try:
            if len(orders) > 1:
                return self.broker.submit_linked(orders)
            return [self.broker.submit(orders[0])]
        except BrokerUnavailableError as exc:  # fate unknown: left NEW (it blocks a second exit), looked up by id later
            self.store.append_audit("order_unknown", {"client_order_ids": [o.client_order_id for o in orders],
                                                      "reason": str(exc), "run_id": self.run_id}, ts=now)
            return []
        except BrokerError as exc:
            return [OrderRejected(client_order_id=o.client_order_id, ts=now, reason=f"refused by the venue: {exc}") for o in orders]
