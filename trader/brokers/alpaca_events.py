"""Fills and order events of the REST adapter: read from the account's ``FILL`` activities and by polling statuses.

:class:`AlpacaEvents` is the half of :class:`~trader.brokers.alpaca.AlpacaBroker` that
reports what happened to the orders it follows (:class:`_Tracked`): each execution once
(its uuid is the ``fill_id``), then the order's cancel, expiry or late rejection, and only
once every fill before it is out, so the run loop never sees a fill for an order it closed.
Activities are re-read from :data:`ACTIVITY_OVERLAP` behind the newest seen (Alpaca indexes
them with a lag). It keeps no state of its own: :class:`~trader.brokers.alpaca.AlpacaBroker`
sets up the attributes annotated on the class and provides ``_call`` and ``_account_label``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.requests import GetOrdersRequest

from trader.brokers.alpaca_mapping import _typed, fill_from_activity, order_from_alpaca, parse_time
from trader.domain import (
    ZERO,
    ClientOrderId,
    Fill,
    Order,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderId,
    OrderRejected,
    OrderStatus,
    to_utc,
)

#: Activities are re-read from this far behind the newest one seen: Alpaca indexes them with a lag.
ACTIVITY_OVERLAP = dt.timedelta(minutes=5)
_PAGE = 100
_MAX_OPEN = 500


@dataclass(slots=True)
class _Tracked:
    """A working order this adapter reports on; ``cum_qty`` is the cumulative qty of the fills reported so far."""

    order_id: OrderId
    created_at: dt.datetime
    cum_qty: Decimal = ZERO
    reported: set[str] = field(default_factory=set)


class AlpacaEvents:
    """Fills and order ends by polling (base of :class:`~trader.brokers.alpaca.AlpacaBroker`)."""

    # Set by AlpacaBroker.__init__; listed here so this half reads on its own.
    venue: str
    _client: TradingClient
    _clock: Callable[[], dt.datetime]
    _cids: dict[str, ClientOrderId]
    _tracked: dict[ClientOrderId, _Tracked]
    _watermark: dt.datetime

    def _activities(self, after: dt.datetime) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"after": after.isoformat(), "direction": "asc", "page_size": _PAGE}
        while True:
            page = self._call("fill activities", self._client.get, "/account/activities/FILL", params)
            out.extend(page or [])
            if not page or len(page) < _PAGE:
                return out
            params = {**params, "page_token": page[-1]["id"]}

    def _cid_of(self, order_id: str) -> ClientOrderId:
        if order_id not in self._cids:
            raw = _typed(AlpacaOrder, self._call(f"order {order_id}", self._client.get_order_by_id, order_id))
            self._cids[order_id] = ClientOrderId(raw.client_order_id)
        return self._cids[order_id]

    def fills(self, *, since: dt.datetime) -> list[Fill]:
        """Every fill (``FILL`` activity) at or after ``since``, oldest first."""
        since, account = to_utc(since, "since"), self._account_label()
        out = [fill_from_activity(a, client_order_id=self._cid_of(str(a["order_id"])), venue=self.venue, account=account)
               for a in self._activities(since - dt.timedelta(microseconds=1))]
        return sorted((f for f in out if f.ts >= since), key=lambda f: (f.ts, str(f.fill_id)))

    def poll_events(self) -> list[OrderEvent]:
        """New fills of the orders this adapter follows, then their cancels, expiries and late rejections."""
        if not self._tracked:  # nothing to report on: move the watermark so the next read stays short
            self._watermark = max(self._watermark, to_utc(self._clock(), "clock()") - ACTIVITY_OVERLAP)
            return []
        activities = self._activities(self._watermark)
        events = self._fill_events(activities)
        if activities:
            newest = max(parse_time(a["transaction_time"], "transaction_time") for a in activities)
            self._watermark = max(self._watermark, newest - ACTIVITY_OVERLAP)
        return events + self._status_events()

    def _fill_events(self, activities: list[dict[str, Any]]) -> list[OrderEvent]:
        events: list[OrderEvent] = []
        for act in activities:
            cid = self._cids.get(str(act["order_id"]))
            if cid is None or cid not in self._tracked:
                continue  # not an order we follow
            fill = fill_from_activity(act, client_order_id=cid, venue=self.venue, account=self._account_label())
            events += self._report_fill(fill)
        return events

    def _report_fill(self, fill: Fill) -> list[OrderEvent]:
        """The fill's event, once: activities are re-read with an overlap (and a stream may repeat an execution)."""
        tracked = self._tracked.get(fill.client_order_id)
        if tracked is None or fill.fill_id in tracked.reported:
            return []
        tracked.reported.add(fill.fill_id)
        tracked.cum_qty += fill.qty  # a sum, not Alpaca's cum_qty: executions may arrive out of order
        return [OrderFilled(client_order_id=fill.client_order_id, ts=fill.ts, fill=fill)]

    def _status_events(self) -> list[OrderEvent]:
        if not self._tracked:
            return []
        raws = self._call("open orders", self._client.get_orders, GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=_MAX_OPEN))
        still_open = {str(_typed(AlpacaOrder, raw).id) for raw in raws}  # by Alpaca's id: legs carry Alpaca's own names
        events: list[OrderEvent] = []
        for cid, tracked in list(self._tracked.items()):
            if str(tracked.order_id) not in still_open:
                raw = self._call(f"order {cid}", self._client.get_order_by_id, tracked.order_id)
                remote = order_from_alpaca(_typed(AlpacaOrder, raw))
                if not remote.is_working:
                    events += self._finish(cid, tracked, remote)
        return events

    def _finish(self, cid: ClientOrderId, tracked: _Tracked, remote: Order) -> list[OrderEvent]:
        """The order's last fills (read back if missed, e.g. across a restart) and, once all are out, its end."""
        events: list[OrderEvent] = []
        if remote.filled_qty > tracked.cum_qty:
            mine = [a for a in self._activities(tracked.created_at - ACTIVITY_OVERLAP) if str(a["order_id"]) == tracked.order_id]
            events += self._fill_events(mine)
        if remote.filled_qty > tracked.cum_qty:
            return events  # Alpaca has not published every fill yet: report the end on a later poll
        del self._tracked[cid]
        ts = remote.updated_at or self._clock()
        if remote.status is OrderStatus.CANCELED:
            events.append(OrderCanceled(client_order_id=cid, ts=ts, reason="canceled at Alpaca"))
        elif remote.status is OrderStatus.EXPIRED:
            events.append(OrderExpired(client_order_id=cid, ts=ts))
        elif remote.status is OrderStatus.REJECTED:
            events.append(OrderRejected(client_order_id=cid, ts=ts, reason="rejected by Alpaca"))
        return events
