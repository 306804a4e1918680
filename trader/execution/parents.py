"""Parent orders and their children's identities: what the ``parent_orders`` table holds, and how to read it back.

A child's ``client_order_id`` is its parent's plus ``-s<slice>`` (``al-<32 hex>-s2``): deterministic, so a
restart re-derives the same ids and the risk engine's duplicate check stops a slice from going out twice; and
self-describing, so TCA and the audit trail find the parent of any child without a lookup.

Example:
    >>> child_id("al-" + "0" * 32, 2)
    'al-00000000000000000000000000000000-s2'
    >>> parent_of(child_id("al-" + "0" * 32, 2)), parent_of("al-" + "0" * 32)
    ('al-00000000000000000000000000000000', None)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from trader.domain import ZERO, ClientOrderId, Order, Side, Symbol, to_utc
from trader.execution.algos import Slice

_CHILD = re.compile(r"^(?P<parent>al-[0-9a-f]{32}(?:-l\d+)?)-s(?P<index>\d+)$")


def child_id(parent_id: str, index: int) -> ClientOrderId:
    """The ``client_order_id`` of slice ``index`` of ``parent_id``."""
    return ClientOrderId(f"{parent_id}-s{index}")


def parent_of(client_order_id: str) -> ClientOrderId | None:
    """The parent's ``client_order_id`` of a child order; ``None`` for an order sent whole."""
    match = _CHILD.fullmatch(client_order_id)
    return ClientOrderId(match["parent"]) if match else None


def lineage(client_order_id: str) -> dict[str, Any]:
    """``{"parent_id", "slice"}`` for a child (what its ``order_submit`` record names), ``{}`` otherwise."""
    match = _CHILD.fullmatch(client_order_id)
    return {"parent_id": match["parent"], "slice": int(match["index"])} if match else {}


def state_key(state: Any) -> str:
    """One trading-state record (:class:`~trader.store.TradingStateRecord`) as text: any change gives another key.

    Compared as a whole rather than by time: a kill switch set from the wall clock must stop a parent of a
    replayed (simulated) session too.
    """
    changed = state.changed_at.isoformat() if state.changed_at is not None else ""
    return f"{state.state.value}|{changed}|{state.changed_by}|{state.reason}"


class ParentStatus(StrEnum):
    """ACTIVE releases slices; DONE released them all; SUPERSEDED by a new decision; STOPPED (halt, denial, close)."""

    ACTIVE = "active"
    DONE = "done"
    SUPERSEDED = "superseded"
    STOPPED = "stopped"


@dataclass(frozen=True, kw_only=True)
class ParentOrder:
    """A sized order split into child slices; ``arrival`` is the price it was decided at (the TCA benchmark)."""

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    qty: Decimal
    algo: str
    arrival: Decimal | None
    slices: tuple[Slice, ...]
    created_at: dt.datetime
    status: ParentStatus = ParentStatus.ACTIVE
    status_reason: str = ""
    updated_at: dt.datetime | None = None
    #: The trading state record in force when it was scheduled (:func:`state_key`); a different one stops it.
    state_seen: str = ""

    def child_id(self, index: int) -> ClientOrderId:
        return child_id(self.client_order_id, index)

    def unsent(self, released: Collection[str]) -> list[Slice]:
        """Slices whose child is not in the store yet (``released``: the stored ``client_order_id`` values)."""
        return [s for s in self.slices if self.child_id(s.index) not in released]

    def unsent_signed(self, released: Collection[str]) -> Decimal:
        return sum((s.qty for s in self.unsent(released)), ZERO) * self.side.sign

    def child(self, part: Slice, *, now: dt.datetime) -> Order:
        """Slice ``part`` as a market day order created at its release time ``now``."""
        return Order(client_order_id=self.child_id(part.index), symbol=self.symbol, side=self.side, qty=part.qty, created_at=now)

    def ended(self, status: ParentStatus, reason: str, *, at: dt.datetime) -> ParentOrder:
        return replace(self, status=status, status_reason=reason, updated_at=to_utc(at, "at"))

    def to_row(self) -> dict[str, Any]:
        """The ``parent_orders`` row (slices as exact JSON text)."""
        return {"client_order_id": self.client_order_id, "symbol": self.symbol, "side": self.side.value, "qty": self.qty,
                "algo": self.algo, "arrival": self.arrival, "status": self.status.value, "status_reason": self.status_reason,
                "slices": json.dumps([[s.due.isoformat(), str(s.qty)] for s in self.slices]),
                "state_seen": self.state_seen, "created_at": self.created_at, "updated_at": self.updated_at or self.created_at}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ParentOrder:
        slices = tuple(Slice(index=i, due=dt.datetime.fromisoformat(due), qty=Decimal(qty))
                       for i, (due, qty) in enumerate(json.loads(row["slices"])))
        return cls(client_order_id=ClientOrderId(row["client_order_id"]), symbol=Symbol(row["symbol"]), side=Side(row["side"]),
                   qty=row["qty"], algo=row["algo"], arrival=row["arrival"], slices=slices, created_at=row["created_at"],
                   status=ParentStatus(row["status"]), status_reason=row["status_reason"], updated_at=row["updated_at"],
                   state_seen=row["state_seen"])

    def schedule_record(self) -> list[dict[str, Any]]:
        return [{"slice": s.index, "client_order_id": self.child_id(s.index), "due": s.due, "qty": s.qty} for s in self.slices]
