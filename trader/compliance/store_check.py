"""The trader's mutable tables checked against what cannot change: orders and positions vs fills and the audit chain.

``fills`` and ``audit`` are append-only (and sealed each day); ``orders`` and ``positions`` are
rewritten as orders fill, so a hand edit there leaves no broken hash. They are rebuilt here
from the append-only record and compared:

* **positions**: every position is the fills applied in time order
  (:func:`trader.domain.positions_from_fills`), except where reconciliation adopted the
  broker's quantity (an audited ``reconcile_position`` record): from there on the position
  starts from the adopted quantity and average cost. ``qty`` and ``fees`` must match exactly;
  ``avg_cost`` and ``realized_pnl`` to :data:`TOLERANCE` (the order fills are applied in may
  differ in the last digit of a division);
* **orders**: ``filled_qty`` and ``fees`` must be the sum of the order's fills, and
  ``avg_fill_price`` their volume-weighted price (to :data:`TOLERANCE`); ``symbol``, ``side``,
  ``qty`` (and the order type and limit) must be what the ``order_submit`` record says;
  an order submitted in the audit trail must still be in the table. A fill whose order is
  neither in the table nor submitted in the audit trail (an external fill) is not an error.

Example:
    >>> from trader.store import TraderStore
    >>> import tempfile
    >>> with TraderStore(f"sqlite:///{tempfile.mkdtemp()}/t.db") as store:
    ...     check_store(store).problems
    []
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from trader.corporate_actions import AppliedAction, applied_actions
from trader.domain import ZERO, Fill, Order, Position, Symbol
from trader.store import TraderStore
from trader.store_schema import audit

TOLERANCE = Decimal("0.000001")
SUBMIT, ADOPT = "order_submit", "reconcile_position"
_SUBMITTED_FIELDS = ("symbol", "side", "qty", "order_type", "limit_price")


@dataclass
class StoreCheck:
    """What :func:`check_store` compared and every difference, each naming the order or symbol and the field."""

    orders: int = 0
    positions: int = 0
    fills: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return (f"orders and positions: {self.orders} order(s) and {self.positions} position(s) checked against "
                f"{self.fills} fill(s) and the audit trail")


def check_store(store: TraderStore) -> StoreCheck:
    """Compare the ``orders`` and ``positions`` tables with the fills and the audit chain (see the module docstring)."""
    fills = store.list_fills()
    submitted, adopted = _audited(store)
    orders = store.list_orders()
    stored_positions = store.positions()
    check = StoreCheck(orders=len(orders), positions=len(stored_positions), fills=len(fills))
    check.problems += position_problems(stored_positions, expected_positions(fills, adopted, applied_actions(store)))
    check.problems += order_problems(orders, fills, submitted)
    return check


def _audited(store: TraderStore) -> tuple[dict[str, tuple[int, dict[str, Any]]], list[tuple[str, int, dict[str, Any]]]]:
    """``order_submit`` payloads by client order id (with their seq), and ``reconcile_position`` records in order."""
    submitted: dict[str, tuple[int, dict[str, Any]]] = {}
    adopted: list[tuple[str, int, dict[str, Any]]] = []
    engine = sa.create_engine(store.url)
    try:
        query = sa.select(audit.c.seq, audit.c.ts, audit.c.kind, audit.c.payload).where(
            audit.c.kind.in_([SUBMIT, ADOPT])).order_by(audit.c.seq)
        with engine.connect() as conn:
            for seq, ts, kind, payload in conn.execute(query):
                body = json.loads(payload)
                if kind == SUBMIT and isinstance(body.get("order"), dict):
                    submitted[str(body.get("client_order_id"))] = (seq, body["order"])
                elif kind == ADOPT:
                    adopted.append((ts, seq, body))
    finally:
        engine.dispose()
    return submitted, adopted


def expected_positions(fills: list[Fill], adopted: Iterable[tuple[str, int, dict[str, Any]]] = (),
                       actions: Iterable[AppliedAction] = ()) -> dict[Symbol, Position]:
    """Positions from the fills in time order, with each audited broker adoption and each applied split at its time."""
    events: list[tuple[str, int, Fill | dict[str, Any] | AppliedAction]] = [(f.ts.isoformat(), 0, f) for f in fills]
    events += [(ts, 1, body) for ts, _, body in adopted]
    events += [(a.applied_at.astimezone(dt.UTC).isoformat(), -1, a) for a in actions]  # before the cycle's fills
    out: dict[Symbol, Position] = {}
    for _, _, event in sorted(events, key=lambda e: (e[0], e[1], str(e[2].fill_id) if isinstance(e[2], Fill) else "")):
        if isinstance(event, Fill):
            symbol = Symbol(event.symbol)
            out[symbol] = out.get(symbol, Position(symbol=symbol)).apply_fill(event)
        elif isinstance(event, AppliedAction):
            mine = out.get(event.symbol, Position(symbol=event.symbol))
            out[event.symbol] = event.action.apply_to(mine) if event.share_delta else mine
        else:
            symbol = Symbol(event["symbol"])
            mine = out.get(symbol, Position(symbol=symbol))
            out[symbol] = replace(mine, qty=Decimal(event["broker_qty"]), avg_cost=Decimal(event["avg_cost"]))
    return out


def position_problems(stored: dict[Symbol, Position], expected: dict[Symbol, Position]) -> list[str]:
    """One line per position field that differs from what the fills give."""
    problems = []
    for symbol in sorted(set(stored) | set(expected)):
        have, want = stored.get(symbol), expected.get(symbol)
        if have is None:
            if want is not None and want.qty != 0:
                problems.append(f"position {symbol}: missing from the positions table; the fills give qty {want.qty}")
            continue
        want = want or Position(symbol=symbol)
        for name, exact in (("qty", True), ("fees", True), ("avg_cost", False), ("realized_pnl", False)):
            a, b = getattr(have, name), getattr(want, name)
            if (a != b) if exact else abs(a - b) > TOLERANCE:
                problems.append(f"position {symbol}: {name}: the table has {a}, the fills give {b}")
    return problems


def order_problems(orders: list[Order], fills: list[Fill], submitted: dict[str, tuple[int, dict[str, Any]]]) -> list[str]:
    """One line per order field that differs from its fills or its ``order_submit`` record."""
    by_order: dict[str, list[Fill]] = {}
    for fill in fills:
        by_order.setdefault(str(fill.client_order_id), []).append(fill)
    known = {str(o.client_order_id) for o in orders}
    problems = [f"order {cid}: submitted (audit seq {seq}) but no longer in the orders table (deleted)"
                for cid, (seq, _) in submitted.items() if cid not in known]
    for order in orders:
        cid = str(order.client_order_id)
        problems += _fill_problems(order, by_order.get(cid, []))
        if cid in submitted:
            problems += _submit_problems(order, *submitted[cid])
    return problems


def _fill_problems(order: Order, fills: list[Fill]) -> list[str]:
    filled, cost, fees = ZERO, ZERO, ZERO
    for fill in sorted(fills, key=lambda f: (f.ts, str(f.fill_id))):
        filled, cost, fees = filled + fill.qty, cost + fill.qty * fill.price, fees + fill.fee
    where = f"order {order.client_order_id} ({order.symbol})"
    out = []
    if order.filled_qty != filled:
        out.append(f"{where}: filled_qty: the table has {order.filled_qty}, its {len(fills)} fill(s) give {filled}")
    if order.fees != fees:
        out.append(f"{where}: fees: the table has {order.fees}, its fills give {fees}")
    average = cost / filled if filled else None
    have = order.avg_fill_price
    if (have is None) != (average is None) or (have is not None and average is not None and abs(have - average) > TOLERANCE):
        out.append(f"{where}: avg_fill_price: the table has {have}, its fills give {average}")
    for fill in fills:
        if fill.symbol != order.symbol or fill.side is not order.side:
            out.append(f"{where}: fill {fill.fill_id} is {fill.side.value} {fill.symbol}, the order {order.side.value} {order.symbol}")
    if filled > order.qty:
        out.append(f"{where}: qty: the table has {order.qty}, less than its fills' {filled}")
    return out


def _submit_problems(order: Order, seq: int, record: dict[str, Any]) -> list[str]:
    now = order.to_record()
    out = []
    for name in _SUBMITTED_FIELDS:
        if name not in record:
            continue
        have, want = _plain(now.get(name)), _plain(record.get(name))
        if have != want:
            out.append(f"order {order.client_order_id} ({record.get('symbol', order.symbol)}): {name}: the table has {have}, "
                       f"its order_submit record (audit seq {seq}) says {want}")
    return out


def _plain(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal) or (isinstance(value, str) and value[:1].isdigit()):
        try:
            return format(Decimal(str(value)).normalize(), "f")
        except ArithmeticError:
            return str(value)
    return str(getattr(value, "value", value))
