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

Where it lives: this module builds the client and holds the look-ups, cancels and the kill
switch; :mod:`trader.brokers.alpaca_submit` places orders (the rules above),
:mod:`trader.brokers.alpaca_events` reports fills and order ends, and
:mod:`trader.brokers.alpaca_mapping` translates between alpaca-py's models and the domain.

Example (keys from the environment, through :class:`trader.config.Secrets` only)::

    broker = AlpacaBroker(Secrets.from_env())            # paper account
    answer = broker.submit(order)                         # OrderAccepted | OrderRejected
    events = broker.poll_events()                         # fills, cancels, expiries
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderStatus as AlpacaStatus
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.models import ClosePositionResponse, TradeAccount
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from alpaca.trading.requests import CancelOrderResponse, GetOrderByIdRequest, GetOrdersRequest
from requests.adapters import HTTPAdapter

from trader.brokers.alpaca_events import _MAX_OPEN, ACTIVITY_OVERLAP, AlpacaEvents, _Tracked
from trader.brokers.alpaca_mapping import (
    TERMINAL_STATUS,
    _typed,
    account_from_alpaca,
    error_message,
    leg_of,
    order_from_alpaca,
    position_from_alpaca,
)
from trader.brokers.alpaca_submit import AlpacaOrderEntry
from trader.brokers.base import BrokerAccount, BrokerPosition
from trader.config import Mode, Secrets
from trader.domain import ClientOrderId, Order, OrderId, Symbol, leg_client_order_id, to_utc
from trader.errors import BrokerError, BrokerRejectedError, BrokerUnavailableError, DomainError

__all__ = ["ACTIVITY_OVERLAP", "AlpacaBroker"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class _TimeoutAdapter(HTTPAdapter):
    """Applies a default timeout: alpaca-py sends requests without one, so a silent server would hang us."""

    def __init__(self, timeout: float):
        super().__init__(max_retries=0)  # no transport-level resend of a POST either
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, verify: bool | str = True,
             cert: Any = None, proxies: Any = None) -> requests.Response:
        return super().send(request, stream=stream, timeout=self._timeout if timeout is None else timeout, verify=verify,
                            cert=cert, proxies=proxies)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

class AlpacaBroker(AlpacaOrderEntry, AlpacaEvents):
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
