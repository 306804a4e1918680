"""The venue's order events written into one store transaction: order states, fills (each once) and their audit records.

:func:`record_events` is the run loop's one path from what the venue says to what is stored
(:class:`trader.runner.Runner` syncs the venue's events with it and records the answers to its
orders); it returns the fills new to the store, by which the runner moves its cash ledger once
they have committed. An event that breaks the order life cycle, or names an order this trader did
not store, is recorded with a note for reconciliation, never applied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from trader.domain import Fill, Order, OrderEvent, OrderFilled
from trader.errors import IllegalTransitionError
from trader.store import StoreTx

_EVENT_KINDS = {"OrderAccepted": "order_accepted", "OrderFilled": "fill", "OrderRejected": "order_rejected",
                "OrderCanceled": "order_canceled", "OrderExpired": "order_expired"}


def record_events(tx: StoreTx, events: Sequence[OrderEvent], *, run_id: str,
                  notes: Sequence[tuple[str, dict[str, Any]]] = (), ts: dt.datetime | None = None) -> list[Fill]:
    """Write events (order states, fills, audit records) and ``notes`` in ``tx``; returns the new fills."""
    if not events:
        known: dict[str, Order | None] = {}
    else:  # this batch's view of the orders (the store does not see its own pending writes); one read
        # for the working orders, where nearly every event belongs, on the transaction's own connection
        known = {o.client_order_id: o for o in tx.working_orders()}
    tx.expect_fills(e.fill.fill_id for e in events if isinstance(e, OrderFilled))
    new_fills = []
    for event in events:
        cid = event.client_order_id
        if cid not in known:
            known[cid] = tx.get_order(cid)
        payload: dict[str, Any] = {"client_order_id": cid, "event": type(event).__name__, "run_id": run_id}
        if isinstance(event, OrderFilled):
            if not tx.record_fill(event.fill):
                continue  # a replayed fill: already recorded, already applied
            new_fills.append(event.fill)
            payload["fill"] = event.fill.to_record()
        else:
            payload |= {k: v for k, v in event.__dict__.items() if k not in ("client_order_id", "ts")}
        payload["note"] = _move(tx, known, event)
        tx.append_audit(_EVENT_KINDS.get(type(event).__name__, "order_event"), payload, ts=event.ts)
    for kind, note in notes:
        assert ts is not None
        tx.append_audit(kind, note | {"run_id": run_id}, ts=ts)
    return new_fills


def _move(tx: StoreTx, orders: dict[str, Order | None], event: OrderEvent) -> str:
    order = orders[event.client_order_id]
    if order is None:
        return "event for an order this trader did not store; reconciliation should review it"
    try:
        orders[event.client_order_id] = order = order.apply(event)
    except IllegalTransitionError as exc:
        return str(exc)
    tx.save_order(order)
    return ""
