"""Reconciliation: make the store agree with the broker at start-up (and on demand), or say why it cannot.

:func:`reconcile` compares the store's working orders, fills and positions with the broker's
and resolves what is safe to resolve, each with an audit record:

* a local ``NEW`` order the broker has (the answer to submit was lost) is **adopted**: it
  becomes accepted under the broker's id — it is never sent again;
* a local ``NEW`` order the broker never received is marked rejected (it was never placed);
* fills the broker reports and the store lacks are **recorded** (positions move with them);
* an order the broker reports canceled, expired or rejected is closed locally.

What it cannot resolve safely is reported and blocks trading (``report.can_trade`` is
``False``): a local working order the broker does not know, filled quantities that still
differ, working orders at the broker that the store does not know (unless
``cancel_unknown``), and positions that still differ after the above (unless
``adopt_positions``, which overwrites the local quantities with the broker's).

:func:`record_broker_event` is the idempotent way to apply one broker event to the store
(a replayed fill or a repeated cancel changes nothing); the run loop can use it for
``broker.poll_events()`` too.

Example:
    >>> import datetime as dt, tempfile
    >>> from trader.brokers.bars import InMemoryBars
    >>> from trader.brokers.sim import SimBroker
    >>> from trader.store import TraderStore
    >>> store = TraderStore(f"sqlite:///{tempfile.mkdtemp()}/trader.db")
    >>> report = reconcile(store, SimBroker(InMemoryBars([])), now=dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC))
    >>> report.can_trade, report.summary()
    (True, 'reconciled: no differences')
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from trader.brokers.base import Broker
from trader.domain import (
    ZERO,
    ClientOrderId,
    Fill,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    Position,
    to_utc,
)
from trader.errors import DomainError, ReconciliationError
from trader.store import TraderStore

log = logging.getLogger(__name__)


class Issue(StrEnum):
    """What reconciliation found (resolved or not: see :attr:`Discrepancy.resolved`)."""

    ORDER_ADOPTED = "order_adopted"
    ORDER_NEVER_PLACED = "order_never_placed"
    ORDER_UNKNOWN_TO_BROKER = "order_unknown_to_broker"
    ORDER_CONFLICT = "order_conflict"
    ORDER_CLOSED = "order_closed"
    MISSING_FILLS = "missing_fills"
    FILLED_QTY_MISMATCH = "filled_qty_mismatch"
    UNKNOWN_BROKER_ORDER = "unknown_broker_order"
    POSITION_MISMATCH = "position_mismatch"


@dataclass(frozen=True, kw_only=True)
class Discrepancy:
    issue: Issue
    detail: str
    resolved: bool
    client_order_id: str | None = None
    symbol: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {"issue": self.issue.value, "detail": self.detail, "resolved": self.resolved,
                "client_order_id": self.client_order_id, "symbol": self.symbol}


@dataclass(frozen=True)
class ReconciliationReport:
    """The outcome: every difference found, and whether trading may proceed."""

    at: dt.datetime
    discrepancies: tuple[Discrepancy, ...]

    @property
    def unresolved(self) -> tuple[Discrepancy, ...]:
        return tuple(d for d in self.discrepancies if not d.resolved)

    @property
    def can_trade(self) -> bool:
        """``True`` only when nothing is left unresolved."""
        return not self.unresolved

    def summary(self) -> str:
        """One line, e.g. for ``trader reconcile`` and the run loop's refusal message."""
        if not self.discrepancies:
            return "reconciled: no differences"
        resolved = len(self.discrepancies) - len(self.unresolved)
        head = f"reconciled: {resolved} resolved, {len(self.unresolved)} unresolved"
        return head if self.can_trade else f"{head}; trading blocked: " + "; ".join(d.detail for d in self.unresolved[:3])

    def raise_if_blocked(self) -> None:
        if not self.can_trade:
            raise ReconciliationError(self.summary())

    def to_record(self) -> dict[str, Any]:
        return {"can_trade": self.can_trade, "discrepancies": [d.to_record() for d in self.discrepancies]}


#: Audit kinds per event: the run loop's (trader/runner.py), so one order's lineage reads the same whoever wrote it.
_EVENT_KINDS = {OrderAccepted: "order_accepted", OrderFilled: "fill", OrderRejected: "order_rejected",
                OrderCanceled: "order_canceled", OrderExpired: "order_expired"}


def _event_record(order: Order, event: OrderEvent, source: str) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"client_order_id": order.client_order_id, "event": type(event).__name__, "source": source,
                               "status": order.status.value}
    if isinstance(event, OrderFilled):
        payload["fill"] = event.fill.to_record()
    else:
        payload |= {k: v for k, v in event.__dict__.items() if k not in ("client_order_id", "ts")}
    return _EVENT_KINDS[type(event)], payload


def record_broker_event(store: TraderStore, event: OrderEvent, *, source: str = "broker") -> bool:
    """Apply one broker event to the store, with its audit record; ``False`` if it changed nothing.

    Idempotent: a fill whose ``fill_id`` is stored, an acceptance of an order that is no longer
    ``NEW``, or an end (cancel, expiry, rejection) of an order already closed changes nothing.
    An event for an order the store does not know is ignored (and logged). An event that the
    order's life cycle forbids (a fill after a cancel, an overfill) raises
    :class:`~trader.errors.ReconciliationError`: the two sides disagree; run reconciliation.
    """
    cid = event.client_order_id
    order = store.get_order(cid)
    if order is None:
        log.warning("broker event %s for %s, which the store does not know: ignored", type(event).__name__, cid)
        return False
    if isinstance(event, OrderFilled):
        if any(f.fill_id == event.fill.fill_id for f in store.list_fills(client_order_id=cid)):
            return False
    elif isinstance(event, OrderAccepted):
        if order.status is not OrderStatus.NEW:
            return False
    elif not order.is_working:
        return False
    try:
        updated = order.apply(event)
    except DomainError as exc:
        raise ReconciliationError(f"order {cid}: broker event {type(event).__name__} does not fit the stored order ({exc})") from None
    kind, payload = _event_record(updated, event, source)
    with store.transaction() as tx:
        if isinstance(event, OrderFilled):
            tx.record_fill(event.fill)
        tx.save_order(updated)
        tx.append_audit(kind, payload, ts=event.ts)
    return True


def _ending(remote: Order, at: dt.datetime) -> OrderEvent | None:
    cid, ts = remote.client_order_id, remote.updated_at or at
    if remote.status is OrderStatus.CANCELED:
        return OrderCanceled(client_order_id=cid, ts=ts, reason="canceled at the broker (reconciliation)")
    if remote.status is OrderStatus.EXPIRED:
        return OrderExpired(client_order_id=cid, ts=ts)
    if remote.status is OrderStatus.REJECTED:
        return OrderRejected(client_order_id=cid, ts=ts, reason="rejected at the broker (reconciliation)")
    return None


def _working_order(store: TraderStore, broker: Broker, order: Order, fills: list[Fill], now: dt.datetime) -> list[Discrepancy]:
    """Bring one local working order in line with the broker's view of it."""
    cid = order.client_order_id
    found = dict(client_order_id=cid, symbol=order.symbol)
    remote = broker.get_order_by_client_id(cid)
    if remote is None:
        if order.status is OrderStatus.NEW:
            record_broker_event(store, OrderRejected(client_order_id=cid, ts=now, reason="never reached the broker"), source="reconcile")
            return [Discrepancy(issue=Issue.ORDER_NEVER_PLACED, detail=f"{cid}: never reached the broker; marked rejected",
                                resolved=True, **found)]
        return [Discrepancy(issue=Issue.ORDER_UNKNOWN_TO_BROKER, resolved=False, **found,
                            detail=f"{cid}: {order.status.value} in the store, unknown to the broker")]
    if (remote.symbol, remote.side, remote.qty) != (order.symbol, order.side, order.qty):
        return [Discrepancy(issue=Issue.ORDER_CONFLICT, resolved=False, **found, detail=(
            f"{cid}: the broker holds {remote.side.value} {remote.qty} {remote.symbol} under this id"))]
    out = []
    if order.status is OrderStatus.NEW:
        assert remote.order_id is not None
        record_broker_event(store, OrderAccepted(client_order_id=cid, ts=remote.created_at, order_id=remote.order_id), source="reconcile")
        out.append(Discrepancy(issue=Issue.ORDER_ADOPTED, resolved=True, **found,
                               detail=f"{cid}: found at the broker as {remote.order_id}; adopted, not resent"))
    recorded = [f for f in fills if record_broker_event(store, OrderFilled(client_order_id=cid, ts=f.ts, fill=f), source="reconcile")]
    if recorded:
        qty = sum((f.qty for f in recorded), ZERO)
        out.append(Discrepancy(issue=Issue.MISSING_FILLS, resolved=True, **found,
                               detail=f"{cid}: {len(recorded)} fill(s) for {qty} recorded from the broker"))
    local = store.get_order(cid)
    assert local is not None
    if local.filled_qty != remote.filled_qty:
        return [*out, Discrepancy(issue=Issue.FILLED_QTY_MISMATCH, resolved=False, **found,
                                  detail=f"{cid}: the broker has {remote.filled_qty} filled, the store {local.filled_qty}")]
    ending = _ending(remote, now)
    if local.is_working and ending is not None:
        record_broker_event(store, ending, source="reconcile")
        out.append(Discrepancy(issue=Issue.ORDER_CLOSED, resolved=True, **found, detail=f"{cid}: {remote.status.value} at the broker"))
    return out


def _broker_orders(store: TraderStore, broker: Broker, *, cancel_unknown: bool) -> list[Discrepancy]:
    """Working orders at the broker that the store does not know, or holds as closed."""
    known, out = store.client_order_ids(), []
    for remote in broker.list_orders(open_only=True):
        cid = remote.client_order_id
        local = store.get_order(cid) if cid in known else None
        if local is not None and local.is_working:
            continue
        what = "unknown to the store" if local is None else f"{local.status.value} in the store"
        if cancel_unknown:
            broker.cancel(ClientOrderId(cid))
        issue = Issue.UNKNOWN_BROKER_ORDER if local is None else Issue.ORDER_CONFLICT
        out.append(Discrepancy(issue=issue, resolved=cancel_unknown, client_order_id=cid, symbol=remote.symbol,
                               detail=f"{cid}: working at the broker ({remote.side.value} {remote.qty} {remote.symbol}), {what}"
                                      + ("; cancel requested" if cancel_unknown else "")))
    return out


def _positions(store: TraderStore, broker: Broker, *, now: dt.datetime, adopt: bool) -> list[Discrepancy]:
    local_all = store.positions()
    remote = broker.positions()
    out = []
    for symbol in sorted({s for s, p in local_all.items() if p.qty != 0} | set(remote)):
        mine = local_all.get(symbol) or Position(symbol=symbol)
        theirs = remote[symbol].qty if symbol in remote else ZERO
        if mine.qty == theirs:
            continue
        detail = f"{symbol}: the store holds {mine.qty}, the broker {theirs}"
        if adopt:
            avg = remote[symbol].avg_entry_price if symbol in remote else ZERO
            with store.transaction() as tx:
                tx.save_position(replace(mine, qty=theirs, avg_cost=avg), at=now)
                tx.append_audit("reconcile_position", {"symbol": symbol, "local_qty": mine.qty, "broker_qty": theirs,
                                                       "avg_cost": avg}, ts=now)
            detail += "; adopted the broker's"
        out.append(Discrepancy(issue=Issue.POSITION_MISMATCH, resolved=adopt, symbol=symbol, detail=detail))
    return out


def reconcile(store: TraderStore, broker: Broker, *, now: dt.datetime | None = None, cancel_unknown: bool = False,
              adopt_positions: bool = False, fills_lookback: dt.timedelta = dt.timedelta(days=1)) -> ReconciliationReport:
    """Compare and resolve (see the module docstring); the report is also appended to the audit chain.

    Args:
        store: the trader's state store.
        broker: the venue (after a restart: a fresh adapter instance).
        now: the time stamped on what reconciliation records (default: the wall clock; a replay passes its own).
        cancel_unknown: ask the broker to cancel working orders the store does not know (or holds as closed).
        adopt_positions: overwrite local position quantities that still differ with the broker's.
        fills_lookback: how far before the oldest working order to ask the broker for fills.

    Raises:
        BrokerError: the broker could not be asked; nothing is known, so do not trade.
    """
    now = dt.datetime.now(dt.UTC) if now is None else to_utc(now, "now")
    working = store.working_orders()
    by_order: dict[str, list[Fill]] = defaultdict(list)
    if working:
        since = min(o.created_at for o in working) - fills_lookback
        for fill in broker.fills(since=since):
            by_order[fill.client_order_id].append(fill)
    found: list[Discrepancy] = []
    for order in working:
        try:
            found += _working_order(store, broker, order, sorted(by_order[order.client_order_id], key=lambda f: (f.ts, f.fill_id)), now)
        except ReconciliationError as exc:
            found.append(Discrepancy(issue=Issue.FILLED_QTY_MISMATCH, detail=str(exc), resolved=False,
                                     client_order_id=order.client_order_id, symbol=order.symbol))
    found += _broker_orders(store, broker, cancel_unknown=cancel_unknown)
    found += _positions(store, broker, now=now, adopt=adopt_positions)
    report = ReconciliationReport(now, tuple(found))
    store.append_audit("reconcile", report.to_record(), ts=now)
    (log.info if report.can_trade else log.error)("%s", report.summary())
    return report


def periodic(store: TraderStore, broker: Broker, *, every: int,
             then: Callable[[Any], object] | None = None) -> Callable[[Any], None]:
    """A run loop ``before_cycle`` hook: a full :func:`reconcile` before every ``every``-th cycle (stamped at the tick).

    What it cannot resolve stops the run like at start-up (:class:`~trader.errors.ReconciliationError`);
    ``then`` is the hook it wraps (a simulator's clock), called after it.

    Example:
        >>> import datetime as dt, tempfile
        >>> from trader.brokers.bars import InMemoryBars
        >>> from trader.brokers.sim import SimBroker
        >>> from trader.store import TraderStore
        >>> store = TraderStore(f"sqlite:///{tempfile.mkdtemp()}/trader.db")
        >>> hook = periodic(store, SimBroker(InMemoryBars([])), every=2)
        >>> class Tick: ts = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
        >>> for _ in range(4):
        ...     hook(Tick)
        >>> sum(1 for r in store.audit_records() if r.kind == "reconcile")
        2
    """
    if every < 1:
        raise ValueError("periodic reconciliation: every must be >= 1")
    cycles = 0

    def before_cycle(tick: Any) -> None:
        nonlocal cycles
        cycles += 1
        if cycles % every == 0:
            reconcile(store, broker, now=tick.ts).raise_if_blocked()
        if then is not None:
            then(tick)

    return before_cycle
