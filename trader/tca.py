"""Transaction cost analysis: what each order's fills cost against the price it was decided at.

Per order (:func:`order_tca`):

* **arrival price**: the price the order was sized at when it was decided (``reference_price``
  in its ``risk_decision`` audit record: the last price the risk engine saw);
* **average fill price**: the quantity-weighted mean of its fills;
* **slippage** in basis points: ``side · (average fill − arrival) / arrival · 10⁴``; positive is a cost
  (bought higher or sold lower than decided);
* **implementation shortfall** in money: ``side · (average fill − arrival) · filled qty + fees``, the
  cost of executing the filled part against a paper trade at the arrival price. The unfilled part's
  opportunity cost needs a later price and is not charged; the unfilled quantity is reported.

**Parents** (execution algorithms, :mod:`trader.execution`): the children of a parent roll up into one row under the
parent's ``client_order_id``: arrival = the parent's decision price (its ``parent_order`` record), quantity = the
parent's, fills = every child's. Unsent slices show as the unfilled part. Given bars, a parent is also measured
against the **market VWAP** of the bars its children went out in (typical price ``(high + low + close) / 3`` weighted by
volume): ``side · (average fill − market VWAP) / market VWAP · 10⁴`` bps, the part of the cost the algorithm itself
is answerable for.

Per session (:func:`summarise`): the orders, their notional at arrival, the notional-weighted
slippage, the total shortfall and fees, and the share of the ordered quantity that filled.
This is what tells whether the backtest's cost model (commission, half spread, impact) holds.

Example:
    >>> import datetime as dt
    >>> from decimal import Decimal as D
    >>> row = OrderTca(client_order_id="al-1", symbol="AAA", side="buy", decided_at=dt.datetime(2026, 11, 25, 15, tzinfo=dt.UTC),
    ...                arrival=D("50.00"), qty=D(100), filled=D(100), avg_price=D("50.05"), fees=D("0.50"))
    >>> row.slippage_bps, row.shortfall
    (Decimal('10.00'), Decimal('5.50'))
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from trader.brokers.bars import BarFeed
from trader.domain import ZERO, ClientOrderId, Fill, Order, Side
from trader.errors import TraderError
from trader.execution.parents import parent_of

NEW_YORK = ZoneInfo("America/New_York")
BPS = Decimal(10_000)
CENT = Decimal("0.01")


@dataclass(frozen=True, kw_only=True)
class OrderTca:
    """One order against its arrival price (see the module docstring). Money is Decimal."""

    client_order_id: str
    symbol: str
    side: str
    decided_at: dt.datetime
    arrival: Decimal
    qty: Decimal
    filled: Decimal
    avg_price: Decimal | None
    fees: Decimal
    #: For a parent (execution algorithms): how many child orders it sent; 0 for an order sent whole.
    children: int = 0
    #: For a parent, given bars: the market's volume-weighted typical price over the bars its children went out in.
    market_vwap: Decimal | None = None

    @property
    def sign(self) -> int:
        return Side(self.side).sign

    @property
    def slippage_bps(self) -> Decimal | None:
        if self.avg_price is None or not self.arrival:
            return None
        return (self.sign * (self.avg_price - self.arrival) / self.arrival * BPS).quantize(CENT)

    @property
    def vwap_slippage_bps(self) -> Decimal | None:
        if self.avg_price is None or not self.market_vwap:
            return None
        return (self.sign * (self.avg_price - self.market_vwap) / self.market_vwap * BPS).quantize(CENT)

    @property
    def shortfall(self) -> Decimal:
        moved = self.sign * (self.avg_price - self.arrival) * self.filled if self.avg_price is not None else ZERO
        return (moved + self.fees).quantize(CENT)

    def record(self) -> dict[str, Any]:
        return {"client_order_id": self.client_order_id, "symbol": self.symbol, "side": self.side,
                "decided_at": self.decided_at.isoformat(), "arrival": str(self.arrival), "qty": str(self.qty),
                "filled": str(self.filled), "avg_price": None if self.avg_price is None else str(self.avg_price),
                "fees": str(self.fees), "slippage_bps": None if self.slippage_bps is None else str(self.slippage_bps),
                "shortfall": str(self.shortfall), "children": self.children,
                "market_vwap": None if self.market_vwap is None else str(self.market_vwap.quantize(Decimal("0.0001"))),
                "vwap_slippage_bps": None if self.vwap_slippage_bps is None else str(self.vwap_slippage_bps)}


def order_tca(order: Order, decision: dict[str, Any], fills: Sequence[Fill]) -> OrderTca | None:
    """The TCA row of ``order`` from its ``risk_decision`` payload and its fills; None without an arrival price."""
    arrival = decision.get("reference_price")
    if arrival in (None, "", "None"):
        return None
    filled = sum((f.qty for f in fills), ZERO)
    avg = sum((f.qty * f.price for f in fills), ZERO) / filled if filled else None
    return OrderTca(client_order_id=order.client_order_id, symbol=order.symbol, side=order.side.value,
                    decided_at=dt.datetime.fromisoformat(str(decision.get("decided_at") or order.created_at.isoformat())),
                    arrival=Decimal(str(arrival)), qty=order.qty, filled=filled, avg_price=avg,
                    fees=sum((f.fee for f in fills), ZERO))


def approved_decision(records: Iterable[Any]) -> dict[str, Any] | None:
    """The approved ``risk_decision`` payload among an order's audit records, with its time as ``decided_at``."""
    return next((r.payload | {"decided_at": r.ts} for r in records if r.kind == "risk_decision" and r.payload.get("approved")), None)


def session_tca(store: Any, *, day: dt.date | None = None, feed: BarFeed | None = None) -> list[OrderTca]:
    """Every order sent on an approved decision with an arrival price (decided on New York session ``day``, if given).

    Children of a parent roll up into the parent's row; ``feed`` (bars) adds each parent's market VWAP benchmark.
    """
    rows: list[OrderTca | ClientOrderId] = []
    parents: dict[ClientOrderId, list[Order]] = {}
    since = dt.datetime.combine(day, dt.time(), tzinfo=NEW_YORK) if day else None
    for order in store.list_orders(since=since):
        if day is not None and order.created_at.astimezone(NEW_YORK).date() != day:
            continue
        if (parent := parent_of(order.client_order_id)) is not None:
            if parent not in parents:
                rows.append(parent)  # the parent's row goes where its first child was
            parents.setdefault(parent, []).append(order)
            continue
        rows += _whole(store, [order])
    rolled = {p: [row] if (row := parent_tca(store, p, children, feed=feed)) else _whole(store, children)
              for p, children in parents.items()}  # no parent_order record: each order on its own
    return [row for r in rows for row in (rolled[r] if isinstance(r, str) else [r])]


def _whole(store: Any, orders: Iterable[Order]) -> list[OrderTca]:
    """The rows of orders measured on their own (an approved decision with an arrival price)."""
    rows = []
    for order in orders:
        decision = approved_decision(store.audit_for_order(order.client_order_id))
        row = order_tca(order, decision, store.list_fills(client_order_id=order.client_order_id)) if decision else None
        if row is not None:
            rows.append(row)
    return rows


def parent_tca(store: Any, parent_id: str, children: Sequence[Order], *, feed: BarFeed | None = None) -> OrderTca | None:
    """One row for a parent: its ``parent_order`` record's arrival and quantity, every child's fills (and market VWAP)."""
    record = next((r for r in store.audit_for_order(parent_id)
                   if r.kind == "parent_order" and r.payload.get("client_order_id") == parent_id), None)
    if record is None:
        return None
    p = record.payload
    parent = Order(client_order_id=ClientOrderId(parent_id), symbol=p["symbol"], side=Side(p["side"]), qty=Decimal(str(p["qty"])),
                   created_at=dt.datetime.fromisoformat(record.ts))
    fills = [f for child in children for f in store.list_fills(client_order_id=child.client_order_id)]
    row = order_tca(parent, {"reference_price": p.get("arrival"), "decided_at": record.ts}, fills)
    if row is None:
        return None
    # The bars the children went out in: from the decision to the last child's release (not the unsent slices').
    last = max(child.created_at for child in children)
    vwap = market_vwap(feed, parent.symbol, start=parent.created_at, last_open=last) if feed is not None else None
    return replace(row, children=len(children), market_vwap=vwap)


def market_vwap(feed: BarFeed, symbol: str, *, start: dt.datetime, last_open: dt.datetime) -> Decimal | None:
    """Volume-weighted typical price of ``symbol``'s bars opening in ``[start, last_open]``; ``None`` if unknown."""
    try:
        bars = feed.bars({symbol}, after=start - dt.timedelta(microseconds=1), until=last_open)
    except TraderError:
        return None
    volume = sum((b.volume for b in bars), ZERO)
    if not volume:
        return None
    return sum(((b.high + b.low + b.close) / 3 * b.volume for b in bars), ZERO) / volume


def summarise(rows: Iterable[OrderTca]) -> dict[str, Any]:
    """Orders, arrival notional, notional-weighted slippage (bps), total shortfall and fees, share filled."""
    rows = list(rows)
    notional = sum((r.arrival * r.filled for r in rows), ZERO)
    moved = sum((r.sign * (r.avg_price - r.arrival) * r.filled for r in rows if r.avg_price is not None), ZERO)
    ordered = sum((r.qty for r in rows), ZERO)
    return {
        "orders": len(rows),
        "filled_notional": notional.quantize(CENT),
        "slippage_bps": (moved / notional * BPS).quantize(CENT) if notional else None,
        "shortfall": sum((r.shortfall for r in rows), ZERO).quantize(CENT),
        "fees": sum((r.fees for r in rows), ZERO).quantize(CENT),
        "fill_rate": (sum((r.filled for r in rows), ZERO) / ordered).quantize(Decimal("0.0001")) if ordered else None,
    }
