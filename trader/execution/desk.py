"""The execution desk: turns large sized orders into parents, releases their children each cycle, and keeps the books.

One cycle of the runner, with ``execution.algo`` ``twap`` or ``vwap``:

1. :meth:`ExecutionDesk.with_unsent` — the unsent slices of active parents count as pending for sizing (as working
   orders do), so an unchanged target sizes no new order and the schedule carries on;
2. :meth:`ExecutionDesk.check_all` — in place of :meth:`~trader.risk.RiskEngine.check_all`:

   * **supersede**: a new sized order for a symbol with an active parent ends that parent's remaining slices;
     the new order is resized to the whole change (``new + unsent``), so nothing is counted twice;
   * **parent**: a sized order above ``participation_threshold`` of the expected volume over the horizon passes
     the risk engine *whole* first (slicing never lets through what one order could not), then becomes a parent
     with its schedule; denied, it goes on unchanged and is denied and audited like any order;
   * **release**: each active parent's earliest unsent slice whose time has come goes out as a child — at most one
     per parent per cycle, and none while an order of that symbol and side is still working (the schedule
     stretches rather than stacking orders) — carrying the cycle's prediction for the symbol;
   * every child passes the risk engine like any order; a **denied child stops its parent** (the next decision
     sizes afresh from what was filled);

3. a parent stops when the trading state changes after it was scheduled (HALTED, REDUCING, a resume), when a
   cycle finds trading HALTED (:meth:`ExecutionDesk.stop_all`), and at the end of its New York session.

The parent's row (``parent_orders``) and a ``parent_order`` audit record (schedule, algo, profile, the whole
order's risk decision and arrival price) are written before any child is stored; each child is an ordinary order
whose ``order_submit`` names its parent; a parent's end is a ``parent_order_end`` record. Whether a slice went out
is read from the ``orders`` table by its deterministic id, so a restart mid-schedule resumes where it was.

Example (no volume history, so the order is sliced; its first child goes out now, the rest one per bar):
    >>> from decimal import Decimal as D
    >>> from trader.brokers.bars import InMemoryBars
    >>> from trader.config import RiskLimits
    >>> from trader.domain import Account, Order, TradingState
    >>> now = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
    >>> store = TraderStore("sqlite://")  # in memory
    >>> desk = ExecutionDesk(ExecutionConfig(algo="twap"), store=store, run_id="r1", feed=InMemoryBars([]))
    >>> engine = RiskEngine(RiskLimits(market_hours_only=False), sectors={"AAA": "tech"})
    >>> ctx = RiskContext(now=now, trading_state=TradingState.ACTIVE, account=Account(cash=D(100_000)),
    ...                   prices={"AAA": D(100)}, day_start_equity=D(100_000), peak_equity=D(100_000))
    >>> why = Prediction(symbol="AAA", score=0.5, direction="long", confidence=0.6, feature_ts=now, stale=False, model_version="v1")
    >>> order = Order(client_order_id="al-" + "a" * 32, symbol="AAA", side=Side.BUY, qty=D(80), created_at=now)
    >>> desk.with_unsent({}, now)
    {}
    >>> (child,) = desk.check_all([SubmitOrder(order=order, prediction=why, reference_price=D(100))], ctx, engine)
    >>> child.approved, child.command.order.client_order_id[-3:], child.command.order.qty
    (True, '-s0', Decimal('20'))
    >>> store.save_order(child.command.order)  # the runner stores it before sending; then it is working (pending 20)
    >>> desk.with_unsent({"AAA": D(20)}, now + dt.timedelta(minutes=15))  # 20 working + 60 in three unsent slices
    {'AAA': Decimal('80')}
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from trader.brokers.bars import BarFeed
from trader.config import ExecutionConfig
from trader.domain import ZERO, ClientOrderId, Side, SubmitOrder, Symbol, make_client_order_id
from trader.errors import TraderError
from trader.execution.algos import (
    NEW_YORK,
    STEP,
    VolumeProfile,
    build_schedule,
    children_for,
    expected_volume,
    slot_of,
    volume_profiles,
)
from trader.execution.parents import ParentOrder, ParentStatus, state_key
from trader.predictions import Prediction
from trader.risk import RiskContext, RiskDecision, RiskEngine
from trader.store import TraderStore

_log = logging.getLogger("alphaline.trader")
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class _NewParent:
    parent: ParentOrder
    command: SubmitOrder
    decision: RiskDecision
    note: str
    expected: Decimal | None
    profile: dict[str, Decimal]


@dataclass
class _Book:
    """This cycle's view: active parents, stored order ids (released slices), parent ids in use, parents ended."""

    now: dt.datetime
    active: list[ParentOrder]
    released: frozenset[ClientOrderId]
    known: set[str]
    ended: list[ParentOrder]
    state: str


class ExecutionDesk:
    """Parent/child order slicing between sizing and routing (see the module docstring).

    Args:
        config: ``execution`` of ``trader.yaml``; ``algo: none`` makes every method a pass-through.
        store: the state store (``parent_orders``, ``orders``, the audit chain).
        run_id: the run's id (a superseding order's id is derived from it, as sizing's are).
        feed: trailing bars for the volume profile (default: the warehouse's ``marts.bars``).
        calendar: with a ``session_close``, schedules are cut to the bars left in the session.
    """

    def __init__(self, config: ExecutionConfig, *, store: TraderStore, run_id: str, feed: BarFeed | None = None,
                 calendar: Any = None):
        self.config, self.store, self.run_id, self.calendar = config, store, run_id, calendar
        self._feed = feed
        self._book: _Book | None = None

    @property
    def enabled(self) -> bool:
        return self.config.algo != "none"

    # -- the runner's calls -------------------------------------------------------------------
    def with_unsent(self, pending: Mapping[Symbol, Decimal], now: dt.datetime) -> dict[Symbol, Decimal]:
        """``pending`` (signed working quantities) plus the unsent slices of the active parents."""
        out = dict(pending)
        if not self.enabled:
            return out
        book = self._load(now)
        for parent in book.active:
            out[parent.symbol] = out.get(parent.symbol, ZERO) + parent.unsent_signed(book.released)
        return out

    def stop_all(self, now: dt.datetime, reason: str) -> int:
        """End every active parent (their unsent slices are never sent); returns how many."""
        if not self.enabled:
            return 0
        book = self._load(now)
        count = len(book.active)
        book.ended += [p.ended(ParentStatus.STOPPED, reason, at=now) for p in book.active]
        book.active = []
        self._write(book, [])
        return count

    def check_all(self, commands: Sequence[SubmitOrder], ctx: RiskContext, engine: RiskEngine, *,
                  predictions: Iterable[Prediction] = ()) -> list[RiskDecision]:
        """The risk decisions for this cycle's orders: sized orders whole or as parents, and the children due now."""
        if not self.enabled:
            return engine.check_all(commands, ctx)[0]
        book = self._load(ctx.now)
        commands = self._supersede(commands, book, ctx.now)
        profiles = self._profiles([c.order.symbol for c in commands], ctx.now) if commands else {}
        whole: list[SubmitOrder] = []
        created: list[_NewParent] = []
        for command in commands:
            new = self._parent(command, ctx, engine, profiles.get(command.order.symbol), book)
            if new is None:
                whole.append(command)
            else:
                created.append(new)
        by_symbol: dict[Symbol, Prediction | None] = {p.symbol: p for p in predictions}
        by_symbol |= {n.parent.symbol: n.command.prediction for n in created}  # the first child carries the decision's
        children = self._release([*book.active, *(n.parent for n in created)], ctx, book, by_symbol)
        decisions, _ = engine.check_all([*whole, *children.values()], ctx)
        self._settle(book, created, children, decisions)
        self._write(book, created)
        return decisions

    # -- steps --------------------------------------------------------------------------------
    def _load(self, now: dt.datetime) -> _Book:
        """Active parents (ending those past their session or older than the latest trading-state change)."""
        if self._book is not None and self._book.now == now:
            return self._book
        parents = [ParentOrder.from_row(r) for r in self.store.parent_orders(status=ParentStatus.ACTIVE.value)]
        since = min((p.created_at for p in parents), default=now - _DAY)
        released = self.store.client_order_ids(since=min(since, now - _DAY))
        known = {r["client_order_id"] for r in self.store.parent_orders(since=now - _DAY)}
        state = self.store.trading_state()
        today = now.astimezone(NEW_YORK).date()
        book = _Book(now=now, active=[], released=released, known=known | {p.client_order_id for p in parents}, ended=[],
                     state=state_key(state))
        for p in parents:
            if p.created_at.astimezone(NEW_YORK).date() < today:
                book.ended.append(p.ended(ParentStatus.STOPPED, "its session ended before every slice went out", at=now))
            elif p.state_seen != book.state:
                changed = state.changed_at.isoformat() if state.changed_at else "?"
                book.ended.append(p.ended(ParentStatus.STOPPED, f"trading state changed to {state.state.value} at {changed} "
                                          f"by {state.changed_by or '?'} ({state.reason})", at=now))
            elif not p.unsent(released):
                book.ended.append(p.ended(ParentStatus.DONE, "every slice sent", at=now))
            else:
                book.active.append(p)
        self._book = book
        return book

    def _supersede(self, commands: Sequence[SubmitOrder], book: _Book, now: dt.datetime) -> list[SubmitOrder]:
        """A sized order for a symbol with an active parent ends it and takes over its unsent quantity."""
        out = []
        for command in commands:
            order = command.order
            mine = [p for p in book.active if p.symbol == order.symbol]
            if not mine:
                out.append(command)
                continue
            total = order.signed_qty + sum((p.unsent_signed(book.released) for p in mine), ZERO)
            for p in mine:
                book.active.remove(p)
                book.ended.append(p.ended(ParentStatus.SUPERSEDED, f"a new decision at {now.isoformat()} sized {order.side} "
                                          f"{order.qty} {order.symbol} ({order.client_order_id})", at=now))
            if total == 0:
                continue
            side = Side.BUY if total > 0 else Side.SELL
            out.append(replace(command, order=replace(order, side=side, qty=abs(total), client_order_id=self._fresh_id(order.symbol, side, now, book))))
        return out

    def _fresh_id(self, symbol: Symbol, side: Side, now: dt.datetime, book: _Book) -> ClientOrderId:
        """Sizing's id for (run, time, symbol, side), or the next leg when a parent already holds it (a re-run tick)."""
        leg = 0
        while (cid := make_client_order_id(run_id=self.run_id, decision_ts=now, symbol=symbol, side=side, leg=leg)) in book.known:
            leg += 1
        return cid

    def _parent(self, command: SubmitOrder, ctx: RiskContext, engine: RiskEngine, profile: VolumeProfile | None,
                book: _Book) -> _NewParent | None:
        """A parent for ``command`` when it is above the threshold and approved whole; ``None``: it goes whole."""
        order, cfg, now = command.order, self.config, ctx.now
        step = self._step()
        horizon = min(cfg.horizon_bars, self._bars_left(now, step))
        expected = expected_volume(profile, now=now, horizon=horizon, step=step)
        if expected is not None and expected > 0 and order.qty / expected <= cfg.participation_threshold:
            return None
        n = children_for(order.qty, command.reference_price or ctx.prices.get(order.symbol), n=min(cfg.n_slices, horizon),
                         min_child_notional=cfg.min_child_notional)
        if n < 2 or order.client_order_id in book.known:
            return None
        decision = engine.check(command, ctx)
        if not decision.approved:
            return None
        slices, note = build_schedule(cfg.algo, order.qty, profile, now=now, horizon=horizon, n=n,
                                      min_sessions=cfg.min_profile_sessions, step=step)
        if len(slices) < 2:
            return None
        if expected is None:
            note += "; no volume history: sliced by default"
        parent = ParentOrder(client_order_id=order.client_order_id, symbol=order.symbol, side=order.side, qty=order.qty,
                             algo=cfg.algo, arrival=command.reference_price, slices=slices, created_at=now, state_seen=book.state)
        book.known.add(parent.client_order_id)
        shape = {slot_of(now + k * step).isoformat("minutes"): profile.slot_volume(now + k * step)
                 for k in range(horizon)} if profile is not None else {}
        return _NewParent(parent, command, decision, note, expected, {k: v for k, v in shape.items() if v is not None})

    def _release(self, parents: Sequence[ParentOrder], ctx: RiskContext, book: _Book,
                 predictions: Mapping[Symbol, Prediction | None]) -> dict[ClientOrderId, SubmitOrder]:
        """The child due now of each parent (its earliest unsent slice), unless an order of that side is working."""
        out = {}
        for parent in parents:
            unsent = parent.unsent(book.released)
            if not unsent or unsent[0].due > ctx.now:
                continue
            if any(o.symbol == parent.symbol and o.side is parent.side for o in ctx.working_orders):
                continue  # the previous child (or another order) still works: the schedule waits
            child = parent.child(unsent[0], now=ctx.now)
            out[child.client_order_id] = SubmitOrder(order=child, prediction=predictions.get(parent.symbol),
                                                     reference_price=ctx.prices.get(parent.symbol))
        return out

    def _settle(self, book: _Book, created: list[_NewParent], children: Mapping[ClientOrderId, SubmitOrder],
                decisions: Sequence[RiskDecision]) -> None:
        """A denied child stops its parent; a parent whose last slice was approved is done."""
        verdicts = {d.command.order.client_order_id: d for d in decisions if isinstance(d.command, SubmitOrder)}
        sent = book.released | {cid for cid in children if verdicts[cid].approved}
        for parent in [*book.active, *(n.parent for n in created)]:
            mine = [cid for cid in children if cid.startswith(f"{parent.client_order_id}-s")]
            if mine and not verdicts[mine[0]].approved:
                ended = parent.ended(ParentStatus.STOPPED, f"child {mine[0]} denied: {verdicts[mine[0]].reason.value}", at=book.now)
            elif not parent.unsent(sent):
                ended = parent.ended(ParentStatus.DONE, "every slice sent", at=book.now)
            else:
                continue
            if parent in book.active:
                book.active.remove(parent)
            book.ended.append(ended)
        book.released = frozenset(sent)  # what the end records call unsent: after this cycle's children

    def _write(self, book: _Book, created: list[_NewParent]) -> None:
        """New parents (row + ``parent_order``) and ended ones (row + ``parent_order_end``) in one commit."""
        if created or book.ended:
            with self.store.transaction() as tx:
                for new in created:
                    tx.save_parent_order(new.parent.to_row())
                    tx.append_audit("parent_order", self._parent_record(new), ts=book.now)
                for p in book.ended:
                    tx.save_parent_order(p.to_row())
                    tx.append_audit("parent_order_end", {"client_order_id": p.client_order_id, "symbol": p.symbol,
                                                         "status": p.status.value, "reason": p.status_reason,
                                                         "unsent": [s.index for s in p.unsent(book.released)],
                                                         "run_id": self.run_id}, ts=book.now)
        self._book = None

    def _parent_record(self, new: _NewParent) -> dict[str, Any]:
        p, cfg = new.parent, self.config
        return {"client_order_id": p.client_order_id, "symbol": p.symbol, "side": p.side.value, "qty": p.qty, "algo": p.algo,
                "arrival": p.arrival, "horizon_bars": cfg.horizon_bars, "participation_threshold": cfg.participation_threshold,
                "expected_volume": new.expected, "participation": (p.qty / new.expected) if new.expected else None,
                "note": new.note, "profile": new.profile, "schedule": p.schedule_record(),
                "decision": new.decision.to_record(), "run_id": self.run_id}

    # -- market data --------------------------------------------------------------------------
    def _feed_or_default(self) -> BarFeed:
        if self._feed is None:
            from trader.brokers.bars import WarehouseBars

            self._feed = WarehouseBars(timeframe="15m")
        return self._feed

    def _step(self) -> dt.timedelta:
        return self._feed.timeframe if self._feed is not None else STEP

    def _profiles(self, symbols: Sequence[Symbol], now: dt.datetime) -> dict[Symbol, VolumeProfile]:
        """Volume profiles from bars closed by ``now`` (unreadable history: none, and every order above is sliced)."""
        feed = self._feed_or_default()
        try:
            bars = feed.bars(set(symbols), after=now - dt.timedelta(days=self.config.lookback_days), until=now - feed.timeframe)
        except TraderError as exc:
            _log.warning("execution: no volume history at %s: %s", now.isoformat(), exc)
            return {}
        return volume_profiles(bars, asof=now, step=feed.timeframe)

    def _bars_left(self, now: dt.datetime, step: dt.timedelta) -> int:
        """Bars before the session's close (the horizon when the calendar cannot say)."""
        close_at = getattr(self.calendar, "session_close", None)
        try:
            close = close_at(now) if close_at is not None else None
        except ValueError:
            close = None
        if close is None:
            return self.config.horizon_bars
        return max(1, math.ceil((close - now) / step))
