"""Alpaca (paper by default) through alpaca-py's ``TradingClient``, behind the :class:`~trader.brokers.base.Broker` protocol.

At most one live order per decision, ever:

* every order goes out under its deterministic ``client_order_id``;
* alpaca-py's own retry loop is switched off (it re-sends ``POST /v2/orders`` on 429/504,
  DESIGN.md §6): this adapter decides when to retry, and a silent server times out;
* after **any** error or timeout on submit, the order is looked up by ``client_order_id``
  before anything else; if it exists it is adopted (``OrderAccepted`` with Alpaca's id),
  never sent again. Alpaca's answer to a reused id (HTTP 422) goes the same way;
* otherwise: 403 (buying power, quantity, not fractionable) and 422 (validation) come back
  as ``OrderRejected`` with Alpaca's message; 429 is retried with a bounded exponential
  backoff, then :class:`~trader.errors.BrokerRateLimitError` (nothing was placed); a timeout
  or 5xx that the look-up cannot settle is :class:`~trader.errors.BrokerUnavailableError`.

Bracket and OCO exits (:meth:`AlpacaBroker.submit_linked`) go out as one request; Alpaca names
their legs itself, so each leg is followed under the trader's id for it
(:func:`~trader.domain.leg_client_order_id`: the parent's id plus ``-tp``/``-sl``), found in
Alpaca's answer (or, after a restart, under the parent) by its type. A leg's fills and its
cancellation (the other leg filled) then reach the run loop under that id.

Fills come from the account's ``FILL`` activities (one per execution, exact price; the
execution's uuid becomes the ``fill_id``, as on the trade-update stream of
:mod:`trader.brokers.alpaca_stream`); order statuses from polling. A cancel, expiry or rejection
is reported only once every fill of the order before it has been reported, so the run loop
never sees a fill for an order it already closed.

Example (keys from the environment, through :class:`trader.config.Secrets` only)::

    broker = AlpacaBroker(Secrets.from_env())            # paper account
    answer = broker.submit(order)                         # OrderAccepted | OrderRejected
    events = broker.poll_events()                         # fills, cancels, expiries
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderStatus as AlpacaStatus
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.models import ClosePositionResponse, TradeAccount
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from alpaca.trading.requests import CancelOrderResponse, GetOrderByIdRequest, GetOrdersRequest, OrderRequest
from requests.adapters import HTTPAdapter

from trader.brokers.alpaca_mapping import (
    TERMINAL_STATUS,
    account_from_alpaca,
    error_message,
    fill_from_activity,
    leg_of,
    linked_request,
    order_from_alpaca,
    order_request,
    parse_time,
    position_from_alpaca,
)
from trader.brokers.base import BrokerAccount, BrokerPosition, check_linked
from trader.config import Mode, Secrets
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
    OrderId,
    OrderRejected,
    OrderStatus,
    Symbol,
    leg_client_order_id,
    to_utc,
)
from trader.errors import BrokerError, BrokerRateLimitError, BrokerRejectedError, BrokerUnavailableError, DomainError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Activities are re-read from this far behind the newest one seen: Alpaca indexes them with a lag.
ACTIVITY_OVERLAP = dt.timedelta(minutes=5)
_PAGE = 100
_MAX_OPEN = 500


class _TimeoutAdapter(HTTPAdapter):
    """Applies a default timeout: alpaca-py sends requests without one, so a silent server would hang us."""

    def __init__(self, timeout: float):
        super().__init__(max_retries=0)  # no transport-level resend of a POST either
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, verify: bool | str = True,
             cert: Any = None, proxies: Any = None) -> requests.Response:
        return super().send(request, stream=stream, timeout=self._timeout if timeout is None else timeout, verify=verify,
                            cert=cert, proxies=proxies)


@dataclass(slots=True)
class _Tracked:
    """A working order this adapter reports on; ``cum_qty`` is the cumulative qty of the fills reported so far."""

    order_id: OrderId
    created_at: dt.datetime
    cum_qty: Decimal = ZERO
    reported: set[str] = field(default_factory=set)


def _typed(kind: type[T], value: object) -> T:
    """alpaca-py answers ``Model | RawData``; we never ask for raw data, so anything else is a bug worth a clear error."""
    if not isinstance(value, kind):
        raise BrokerError(f"alpaca: expected a {kind.__name__} from alpaca-py, got {type(value).__name__}")
    return value


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AlpacaBroker:
    """The Alpaca adapter; see the module docstring.

    Args:
        secrets: :class:`~trader.config.Secrets` holding ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``.
        paper: the paper account (default); ``False`` trades real money.
        url_override: base URL without ``/v2`` (a proxy, or the fake server in tests).
        timeout_s: connect/read timeout of every request.
        max_attempts: tries of one request when Alpaca answers 429.
        backoff_s: first wait after a 429; doubles each time, capped at ``max_backoff_s``.
        clock, sleep: injectable for tests.
    """

    def __init__(self, secrets: Secrets, *, paper: bool = True, url_override: str | None = None, timeout_s: float = 10.0,
                 max_attempts: int = 3, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 clock: Callable[[], dt.datetime] = _utcnow, sleep: Callable[[float], None] = time.sleep):
        key, secret = secrets.require_alpaca(Mode.PAPER if paper else Mode.LIVE)
        if max_attempts < 1 or timeout_s <= 0:
            raise BrokerError("alpaca: max_attempts must be >= 1 and timeout_s > 0")
        self.venue = "alpaca-paper" if paper else "alpaca-live"
        self._client = TradingClient(api_key=key.get_secret_value(), secret_key=secret.get_secret_value(), paper=paper,
                                     url_override=url_override)
        # alpaca-py resends POST /v2/orders on 429/504 on its own (DESIGN.md §6); TradingClient has no
        # public knob for it, and its retry_attempts=0 means "default", so set the attribute it reads.
        self._client._retry = 0
        self._client._retry_codes = []
        adapter = _TimeoutAdapter(timeout_s)
        self._client._session.mount("http://", adapter)
        self._client._session.mount("https://", adapter)
        self._max_attempts, self._backoff_s, self._max_backoff_s = max_attempts, backoff_s, max_backoff_s
        self._clock, self._sleep = clock, sleep
        self._cids: dict[str, ClientOrderId] = {}  # Alpaca order id -> client_order_id
        self._oids: dict[ClientOrderId, OrderId] = {}
        self._tracked: dict[ClientOrderId, _Tracked] = {}
        self._watermark = to_utc(clock(), "clock()") - ACTIVITY_OVERLAP
        self._account_number: str | None = None

    # -- plumbing -----------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        return min(self._backoff_s * 2 ** (attempt - 1), self._max_backoff_s)

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """One read or cancel request: 429 is retried with backoff; every failure becomes a :class:`BrokerError`."""
        for attempt in range(1, self._max_attempts + 1):
            try:
                return fn(*args)
            except APIError as exc:
                status = exc.status_code
                if status == 429 and attempt < self._max_attempts:
                    self._sleep(self._backoff(attempt))
                    continue
                if status == 429 or status is None or status >= 500:
                    raise BrokerUnavailableError(f"alpaca: {what}: HTTP {status}: {error_message(exc)}") from None
                raise BrokerRejectedError(f"alpaca: {what}: HTTP {status}: {error_message(exc)}") from None
            except requests.RequestException as exc:
                raise BrokerUnavailableError(f"alpaca: {what}: no answer ({type(exc).__name__})") from None
        raise AssertionError("unreachable")

    def _register(self, remote: Order, *, track: bool, even_if_done: bool = False) -> Order:
        """Remember the order's ids; ``track``: report its fills and end from now on (only while it works, unless told)."""
        assert remote.order_id is not None
        self._cids[str(remote.order_id)] = remote.client_order_id
        self._oids[remote.client_order_id] = remote.order_id
        if track and (remote.is_working or even_if_done) and remote.client_order_id not in self._tracked:
            self._tracked[remote.client_order_id] = _Tracked(remote.order_id, remote.created_at)
        return remote

    def _account_label(self) -> str:
        if self._account_number is None:
            self._account_number = self.account().account_id
        return self._account_number

    # -- submit -------------------------------------------------------------------------------
    def submit(self, order: Order) -> OrderAccepted | OrderRejected:
        """Place ``order`` once; see the module docstring for what each failure becomes."""
        try:
            request = order_request(order)
        except DomainError as exc:
            return OrderRejected(client_order_id=order.client_order_id, ts=self._clock(), reason=str(exc))
        return self._place(order, request)[0]

    def submit_linked(self, orders: Sequence[Order]) -> list[OrderAccepted | OrderRejected]:
        """Place a bracket (entry, take-profit, stop-loss) or an OCO pair (take-profit, stop-loss) as one Alpaca order.

        One answer per order, in order; a leg Alpaca's answer does not show gets none (it stays
        NEW for the caller and is found under its parent by :meth:`get_order_by_client_id`).
        """
        check_linked(orders)
        head, legs = orders[0], list(orders[1:])
        try:
            request = linked_request(head, legs)
        except DomainError as exc:
            return self._refuse_all(orders, str(exc), self._clock())
        answer, raw = self._place(head, request)
        if isinstance(answer, OrderRejected):
            return self._refuse_all(orders, answer.reason, answer.ts)
        if raw is None or not raw.legs:  # adopted after an error or a lost answer: ask for the legs
            raw = _typed(AlpacaOrder, self._call(f"order {head.client_order_id}", self._client.get_order_by_id,
                                                 str(answer.order_id), GetOrderByIdRequest(nested=True)))
        out: list[OrderAccepted | OrderRejected] = [answer]
        for leg in legs:
            remote = leg_of(raw, "take_profit" if leg.order_type.value == "limit" else "stop_loss")
            if remote is not None:
                mine = self._register(order_from_alpaca(remote, client_order_id=leg.client_order_id, parent_id=head.client_order_id),
                                      track=True, even_if_done=True)
                assert mine.order_id is not None
                out.append(OrderAccepted(client_order_id=leg.client_order_id, ts=mine.created_at, order_id=mine.order_id))
        return out

    @staticmethod
    def _refuse_all(orders: Sequence[Order], reason: str, ts: dt.datetime) -> list[OrderAccepted | OrderRejected]:
        return [OrderRejected(client_order_id=o.client_order_id, ts=ts, reason=reason) for o in orders]

    def _place(self, order: Order, request: OrderRequest) -> tuple[OrderAccepted | OrderRejected, AlpacaOrder | None]:
        """POST the request once (the retry and look-up rules of the module docstring); the answer and Alpaca's order."""
        cid = order.client_order_id
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                self._sleep(self._backoff(attempt - 1))
            try:
                raw = _typed(AlpacaOrder, self._client.submit_order(request))
                return self._adopt(order, raw), raw
            except APIError as exc:
                outcome = self._after_api_error(order, exc)
            except requests.RequestException as exc:
                outcome = self._after_lost_answer(order, exc)
            if outcome is not None:
                return outcome, None
        raise BrokerRateLimitError(f"alpaca: order {cid}: still HTTP 429 after {self._max_attempts} attempts; "
                                   "not placed (looked up by client_order_id)")

    def _after_api_error(self, order: Order, exc: APIError) -> OrderAccepted | OrderRejected | None:
        """Look the order up first; then the HTTP status decides. ``None`` means: back off and try again."""
        cid, status, message = order.client_order_id, exc.status_code, error_message(exc)
        found = self._lookup_after_error(cid, f"HTTP {status}")
        if found is not None:
            log.info("alpaca: order %s: HTTP %s on submit, but it exists (%s): adopted", cid, status, found.id)
            return self._adopt(order, found)
        if status == 429:
            log.warning("alpaca: order %s: rate-limited (HTTP 429); backing off", cid)
            return None
        if status in (403, 422):
            return OrderRejected(client_order_id=cid, ts=self._clock(), reason=f"alpaca HTTP {status}: {message}")
        if status is None or status >= 500:
            raise BrokerUnavailableError(f"alpaca: order {cid}: HTTP {status} on submit and not found by client_order_id "
                                         "(yet); look it up again before any resubmission")
        raise BrokerRejectedError(f"alpaca: order {cid}: HTTP {status}: {message}")

    def _after_lost_answer(self, order: Order, exc: requests.RequestException) -> OrderAccepted | OrderRejected:
        cid = order.client_order_id
        found = self._lookup_after_error(cid, type(exc).__name__)
        if found is not None:
            log.info("alpaca: order %s: the answer to submit was lost (%s), but it exists: adopted", cid, type(exc).__name__)
            return self._adopt(order, found)
        raise BrokerUnavailableError(f"alpaca: order {cid}: no answer to submit ({type(exc).__name__}) and not found by "
                                     "client_order_id (yet); look it up again before any resubmission")

    def _lookup_after_error(self, cid: ClientOrderId, why: str) -> AlpacaOrder | None:
        try:
            return _typed(AlpacaOrder, self._client.get_order_by_client_id(cid))
        except APIError as exc:
            if exc.status_code == 404:
                return None
            failure = f"HTTP {exc.status_code}"
        except requests.RequestException as exc:
            failure = type(exc).__name__
        raise BrokerUnavailableError(f"alpaca: order {cid}: submit failed ({why}) and the look-up by client_order_id "
                                     f"failed too ({failure}); its fate is unknown") from None

    def _adopt(self, order: Order, raw: AlpacaOrder) -> OrderAccepted | OrderRejected:
        remote = order_from_alpaca(raw)
        cid = order.client_order_id
        if (remote.symbol, remote.side, remote.qty) != (order.symbol, order.side, order.qty):
            return OrderRejected(client_order_id=cid, ts=self._clock(), reason=(
                f"client_order_id already used at Alpaca by {remote.side.value} {remote.qty} {remote.symbol}"))
        # Tracked even if it is already done: the caller holds it as accepted, and its fills and end
        # (or rejection) still have to reach the run loop as events.
        self._register(remote, track=True, even_if_done=remote.status is not OrderStatus.REJECTED)
        if remote.status is OrderStatus.REJECTED:
            return OrderRejected(client_order_id=cid, ts=remote.updated_at or remote.created_at, reason="rejected by Alpaca")
        assert remote.order_id is not None
        return OrderAccepted(client_order_id=cid, ts=remote.created_at, order_id=remote.order_id)

    # -- look-ups -----------------------------------------------------------------------------
    def get_order_by_client_id(self, client_order_id: ClientOrderId) -> Order | None:
        """Alpaca's view of the order (``None`` on 404); from now on its fills and status are reported by :meth:`poll_events`."""
        try:
            raw = self._client.get_order_by_client_id(client_order_id)
        except APIError as exc:
            if exc.status_code == 404:
                return self._leg_by_parent(client_order_id)
            raise BrokerUnavailableError(f"alpaca: look-up of {client_order_id}: HTTP {exc.status_code}: {error_message(exc)}") from None
        except requests.RequestException as exc:
            raise BrokerUnavailableError(f"alpaca: look-up of {client_order_id}: no answer ({type(exc).__name__})") from None
        return self._register(order_from_alpaca(_typed(AlpacaOrder, raw)), track=True)

    def _leg_by_parent(self, cid: ClientOrderId) -> Order | None:
        """A bracket/OCO leg Alpaca knows under its own id: found under its parent (``<parent>-tp`` / ``<parent>-sl``)."""
        parent, suffix = cid[:-3], cid[-3:]
        role = {"-tp": "take_profit", "-sl": "stop_loss"}.get(suffix)
        if role is None or not parent or leg_client_order_id(ClientOrderId(parent), role) != cid:
            return None
        head = self.get_order_by_client_id(ClientOrderId(parent))
        if head is None or head.order_id is None:
            return None
        raw = _typed(AlpacaOrder, self._call(f"order {parent}", self._client.get_order_by_id, str(head.order_id),
                                             GetOrderByIdRequest(nested=True)))
        leg = leg_of(raw, role)
        if leg is None:
            return None
        return self._register(order_from_alpaca(leg, client_order_id=cid, parent_id=ClientOrderId(parent)), track=True)

    def list_orders(self, *, open_only: bool = True) -> list[Order]:
        """Alpaca's orders, bracket/OCO legs under the trader's ids for them (rolled up under their parent: ``nested``)."""
        status = QueryOrderStatus.OPEN if open_only else QueryOrderStatus.ALL
        raws = self._call("list orders", self._client.get_orders, GetOrdersRequest(status=status, limit=_MAX_OPEN, nested=True))
        out = []
        for raw in (_typed(AlpacaOrder, r) for r in raws):
            parent = ClientOrderId(raw.client_order_id)
            legs = [(leg, leg_client_order_id(parent, role)) for role in ("take_profit", "stop_loss")
                    if (leg := leg_of(raw, role)) is not None]
            for item, cid, parent_id in [(raw, None, None), *((leg, cid, parent) for leg, cid in legs)]:
                if open_only and TERMINAL_STATUS.get(AlpacaStatus(item.status)) is not None:
                    continue  # a filled bracket entry rolled up with its open legs
                try:
                    out.append(self._register(order_from_alpaca(item, client_order_id=cid or self._cids.get(str(item.id)),
                                                                parent_id=parent_id), track=False))
                except DomainError as exc:  # e.g. an option or notional order placed by hand: shown in the log, not traded
                    log.warning("alpaca: order %s left out: %s", item.client_order_id, exc)
        return out

    def positions(self) -> dict[Symbol, BrokerPosition]:
        out = {}
        for raw in self._call("positions", self._client.get_all_positions):
            pos = position_from_alpaca(_typed(AlpacaPosition, raw))
            if pos.qty != 0:
                out[pos.symbol] = pos
        return out

    def account(self) -> BrokerAccount:
        acct = account_from_alpaca(_typed(TradeAccount, self._call("account", self._client.get_account)))
        self._account_number = acct.account_id
        return acct

    # -- fills and events ---------------------------------------------------------------------
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

    # -- cancels and the kill switch ----------------------------------------------------------
    def cancel(self, client_order_id: ClientOrderId) -> None:
        """Ask Alpaca to cancel; a no-op for an order that can no longer be canceled (the outcome arrives as events)."""
        order_id = self._oids.get(client_order_id)
        if order_id is None:
            found = self.get_order_by_client_id(client_order_id)
            if found is None:
                raise BrokerRejectedError(f"alpaca: cannot cancel {client_order_id}: no such order")
            order_id = found.order_id
        try:
            self._client.cancel_order_by_id(str(order_id))
        except APIError as exc:
            if exc.status_code == 422:  # already filled, canceled or expired
                return
            if exc.status_code == 404:
                raise BrokerRejectedError(f"alpaca: cannot cancel {client_order_id}: no such order") from None
            raise BrokerUnavailableError(f"alpaca: cancel {client_order_id}: HTTP {exc.status_code}: {error_message(exc)}") from None
        except requests.RequestException as exc:
            raise BrokerUnavailableError(f"alpaca: cancel {client_order_id}: no answer ({type(exc).__name__})") from None

    def cancel_all(self) -> list[ClientOrderId]:
        """Kill switch, step 1: ``DELETE /v2/orders``; returns the ids Alpaca was asked to cancel."""
        answers = self._call("cancel all orders", self._client.cancel_orders)
        return [self._cid_of(str(_typed(CancelOrderResponse, a).id)) for a in answers]

    def close_all(self) -> list[Order]:
        """Kill switch / flatten: ``DELETE /v2/positions?cancel_orders=true`` (open orders would hold the shares)."""
        answers = self._call("close all positions", self._client.close_all_positions, True)
        out = []
        for answer in (_typed(ClosePositionResponse, a) for a in answers):
            if isinstance(answer.body, AlpacaOrder):
                out.append(self._register(order_from_alpaca(answer.body), track=True))
            else:
                log.error("alpaca: could not close %s: HTTP %s: %s", answer.symbol, answer.status, answer.body.message)
        return out
