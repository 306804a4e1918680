"""The dry-run, paper and live side of ``trader run``: the venue session and the broker behind it.

Beside :mod:`trader.cli_sim` (the sim side). The venue is built before the store is opened; the
Alpaca brokers are imported only by the modes that trade there, and ``dry-run`` uses
:class:`DryRunBroker`, which accepts every order and fills none.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from trader.brokers.base import Broker, BrokerAccount, BrokerPosition
from trader.cli_sim import TIMEFRAME, Session
from trader.config import Mode, Secrets, StreamsConfig, TraderConfig
from trader.corporate_actions import WarehouseActions, restated_closes
from trader.domain import ClientOrderId, Fill, Order, OrderAccepted, OrderEvent, OrderExpired, Symbol
from trader.runner import live_ticks


def _venue_session(mode: Mode, cfg: TraderConfig, secrets: Secrets, *, cash: Decimal | None, once: bool) -> Session:
    """dry-run, paper and live: the current bars' closes each tick, at a venue built before the store is opened."""
    from trader.brokers.bars import WarehouseBars  # reads the warehouse read-only, one query at a time

    feed = WarehouseBars(timeframe=TIMEFRAME)
    broker: Broker = (DryRunBroker(cash or Decimal(100_000)) if mode is Mode.DRY_RUN
                      else venue_broker(mode, secrets, streams=cfg.streams))
    # A close from before an ex-date that has passed is restated (corporate actions: the warehouse may lag the split).
    ticks = live_ticks(lambda at: restated_closes(feed, cfg.universe.symbols, at, WarehouseActions()), timeframe=TIMEFRAME, once=once)
    return Session(broker=broker, ticks=ticks, run_id=mode.value, strict=False, started_at=dt.datetime.now(dt.UTC))


def venue_broker(mode: Mode, secrets: Secrets, *, streams: StreamsConfig | None = None) -> Broker:
    """The Alpaca account for ``paper``/``live`` (keys from the environment only); ``streams.trade_updates``: over the stream."""
    from trader.brokers.alpaca import AlpacaBroker  # here: alpaca-py is imported only by the modes that trade there

    if streams is not None and streams.trade_updates:
        from trader.brokers.alpaca_stream import StreamingAlpacaBroker

        return StreamingAlpacaBroker(secrets, paper=mode is not Mode.LIVE, rest_backfill_every_s=streams.rest_backfill_every_s)
    return AlpacaBroker(secrets, paper=mode is not Mode.LIVE)


class DryRunBroker:
    """The dry-run venue: accepts every order and lets it expire unfilled, so the whole decision path runs and is
    audited while nothing is ever sent anywhere. The book stays flat at ``cash``."""

    venue = "dry-run"

    def __init__(self, cash: Decimal):
        self._cash, self._events, self._seq = cash, list[OrderEvent](), 0

    def submit(self, order: Order) -> OrderAccepted:
        self._seq += 1
        self._events.append(OrderExpired(client_order_id=order.client_order_id, ts=order.created_at))
        return OrderAccepted(client_order_id=order.client_order_id, ts=order.created_at, order_id=f"dry-{self._seq}")

    def cancel(self, client_order_id: ClientOrderId) -> None:
        return None

    def get_order_by_client_id(self, client_order_id: ClientOrderId) -> Order | None:
        return None

    def list_orders(self, *, open_only: bool = True) -> list[Order]:
        return []

    def poll_events(self) -> list[OrderEvent]:
        events, self._events = self._events, []
        return events

    def fills(self, *, since: dt.datetime) -> list[Fill]:
        return []

    def positions(self) -> dict[Symbol, BrokerPosition]:
        return {}

    def account(self) -> BrokerAccount:
        return BrokerAccount(account_id="dry-run", cash=self._cash, equity=self._cash, buying_power=self._cash)

    def cancel_all(self) -> list[ClientOrderId]:
        return []

    def close_all(self) -> list[Order]:
        return []


