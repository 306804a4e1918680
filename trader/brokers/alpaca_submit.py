"""Placing an order exactly once at Alpaca, whatever the network does (the rules in :mod:`trader.brokers.alpaca`'s docstring).

:class:`AlpacaOrderEntry` is the half of :class:`~trader.brokers.alpaca.AlpacaBroker` that
sends orders: one ``POST /v2/orders`` under the deterministic ``client_order_id``; after any
error or lost answer, a look-up by that id first (an order found is adopted, never sent
again); then the HTTP status decides between a rejection, a bounded backoff on 429, and
:class:`~trader.errors.BrokerUnavailableError`. Brackets and OCO pairs go out as one request
and their legs are followed under the trader's ids for them. It keeps no state of its own:
:class:`~trader.brokers.alpaca.AlpacaBroker` sets up the attributes annotated on the class
and provides ``_call``, ``_backoff`` and ``_register``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.requests import GetOrderByIdRequest, OrderRequest

from trader.brokers.alpaca_mapping import _typed, error_message, leg_of, linked_request, order_from_alpaca, order_request
from trader.brokers.base import check_linked
from trader.domain import ClientOrderId, Order, OrderAccepted, OrderRejected, OrderStatus
from trader.errors import BrokerRateLimitError, BrokerRejectedError, BrokerUnavailableError, DomainError

log = logging.getLogger("trader.brokers.alpaca")  # the adapter's one logger, as before the split


class AlpacaOrderEntry:
    """Submit and submit_linked with the exactly-once rules (base of :class:`~trader.brokers.alpaca.AlpacaBroker`)."""

    # Set by AlpacaBroker.__init__; listed here so this half reads on its own.
    _client: TradingClient
    _clock: Callable[[], dt.datetime]
    _sleep: Callable[[float], None]
    _max_attempts: int

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
