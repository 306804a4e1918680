"""Alpaca's trade-update stream (alpaca-py's ``TradingStream``) as the event source of :class:`StreamingAlpacaBroker`.

Fills arrive as they happen instead of at the next REST poll; REST stays the safety net:

* **Gap backfill**: alpaca-py reconnects by itself after a dropped socket, but Alpaca does
  not replay what was sent while nobody listened. After every (re)connection, the next
  :meth:`StreamingAlpacaBroker.poll_events` also reads the ``FILL`` activities and the order
  statuses over REST (:class:`~trader.brokers.alpaca.AlpacaBroker`'s path), and so does every
  ``rest_backfill_every_s`` seconds anyway.
* **One fill, once**: a trade update's ``execution_id`` and a ``FILL`` activity's id name the
  same execution the same way (:func:`~trader.brokers.alpaca_mapping.execution_id`), so a
  fill seen on the stream, again on the stream (a duplicate) and over REST is reported once.
* **Ends after fills**: a cancel, expiry or rejection is held back until the fills of the
  order it reports (its ``filled_qty``) have all been reported, whatever order the messages
  came in; while one is held, REST is read on every poll to find the missing fills.

Example (keys from the environment, through :class:`trader.config.Secrets` only)::

    broker = StreamingAlpacaBroker(Secrets.from_env(), rest_backfill_every_s=60)
    broker.submit(order)
    events = broker.poll_events()      # fills from the stream; REST after a reconnect
    broker.close()
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from alpaca.trading.stream import TradingStream

from trader.brokers.alpaca import AlpacaBroker
from trader.brokers.alpaca_mapping import dec, fill_from_trade_update, parse_time
from trader.config import Mode, Secrets
from trader.domain import ClientOrderId, OrderCanceled, OrderEvent, OrderExpired, OrderFilled, OrderRejected
from trader.errors import BrokerError, DomainError

log = logging.getLogger(__name__)

#: Trade-update events that end an order (``replaced``: we never replace, so it is a cancel).
_ENDS = {"canceled": OrderCanceled, "expired": OrderExpired, "rejected": OrderRejected, "replaced": OrderCanceled}
_FILLS = ("fill", "partial_fill")


def _one_line(record: logging.LogRecord) -> bool:
    """alpaca-py logs a full traceback on every failed reconnect; the message alone says it (and we backfill)."""
    record.exc_info, record.exc_text = None, None
    return True


class _Stream(TradingStream):
    """alpaca-py's stream, telling :class:`TradeUpdateStream` when a connection is up, and stoppable at once.

    It leans on alpaca-py 0.44's internals (``_start_ws`` after each (re)connection, ``_reconnect_min_backoff``,
    ``close``): tests/trader/test_alpaca_stream.py drives it through a real reconnect, so a change there shows.
    """

    def __init__(self, *args: Any, on_connect: Callable[[], None], min_backoff_s: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._on_connect = on_connect
        self._reconnect_min_backoff = min_backoff_s

    async def _start_ws(self) -> None:
        await super()._start_ws()
        self._on_connect()  # listening from here on: what came before is the REST backfill's

    async def _shutdown(self) -> None:
        await self.stop_ws()
        await self.close()  # wakes the 5 s receive wait of alpaca-py's loop


class TradeUpdateStream:
    """alpaca-py's ``TradingStream`` in a background thread; trade updates wait in a queue for :meth:`drain`.

    Args:
        secrets: the Alpaca keys (``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``).
        paper: the paper account's stream (default) or the live one.
        url_override: the websocket URL (a proxy, or the fake server in tests).
        min_backoff_s: first wait before a reconnection (alpaca-py doubles it, up to 30 s).

    Example::

        stream = TradeUpdateStream(Secrets.from_env()).start()
        updates, reconnected = stream.drain()   # raw ``data`` dicts, and whether a connection came up since
    """

    def __init__(self, secrets: Secrets, *, paper: bool = True, url_override: str | None = None, min_backoff_s: float = 1.0):
        key, secret = secrets.require_alpaca(Mode.PAPER if paper else Mode.LIVE)
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self.connections = 0
        self._seen_connections = 0
        self._stream = _Stream(key.get_secret_value(), secret.get_secret_value(), paper=paper, raw_data=True,
                               url_override=url_override, on_connect=self._connected_now, min_backoff_s=min_backoff_s)
        self._stream.subscribe_trade_updates(self._on_message)
        self._thread = threading.Thread(target=self._stream.run, name="alpaca-trade-updates", daemon=True)
        stream_log = logging.getLogger("alpaca.trading.stream")
        if _one_line not in stream_log.filters:
            stream_log.addFilter(_one_line)

    def start(self) -> TradeUpdateStream:
        self._thread.start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """``True`` once the stream has listened at least once (``False`` after ``timeout`` seconds)."""
        return self._connected.wait(timeout)

    def pending(self) -> int:
        """Trade updates received and not drained yet."""
        return self._queue.qsize()

    def drain(self) -> tuple[list[dict[str, Any]], bool]:
        """The trade updates received since the last call, and whether a connection came up since then."""
        with self._lock:
            reconnected, self._seen_connections = self.connections > self._seen_connections, self.connections
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out, reconnected

    def close(self, timeout: float = 5.0) -> None:
        loop = self._stream._loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._stream._shutdown(), loop).result(timeout)
        self._thread.join(timeout)

    def _connected_now(self) -> None:
        with self._lock:
            self.connections += 1
        self._connected.set()
        log.info("alpaca: trade-update stream listening (connection %d)", self.connections)

    async def _on_message(self, msg: dict[str, Any]) -> None:
        data = msg.get("data")
        if isinstance(data, dict):
            self._queue.put(data)


class StreamingAlpacaBroker(AlpacaBroker):
    """:class:`~trader.brokers.alpaca.AlpacaBroker` whose events come from the trade-update stream (module docstring).

    Args:
        secrets, paper, url_override, **kwargs: as for :class:`~trader.brokers.alpaca.AlpacaBroker`.
        stream_url: the trade-update websocket URL (default: Alpaca's for ``paper``).
        rest_backfill_every_s: read fills and statuses over REST at least this often, stream or not.
        min_backoff_s: first wait before alpaca-py reconnects the stream.
        wait_connected_s: how long the constructor waits for the first connection (0: do not wait).
    """

    def __init__(self, secrets: Secrets, *, paper: bool = True, url_override: str | None = None,
                 stream_url: str | None = None, rest_backfill_every_s: float = 60.0, min_backoff_s: float = 1.0,
                 wait_connected_s: float = 10.0, monotonic: Callable[[], float] = time.monotonic, **kwargs: Any):
        super().__init__(secrets, paper=paper, url_override=url_override, **kwargs)
        if rest_backfill_every_s <= 0:
            raise BrokerError("alpaca: rest_backfill_every_s must be > 0")
        self._every_s, self._monotonic = rest_backfill_every_s, monotonic
        self._last_backfill = monotonic()
        self._held: dict[ClientOrderId, dict[str, Any]] = {}  # ends waiting for their fills
        self.stream = TradeUpdateStream(secrets, paper=paper, url_override=stream_url, min_backoff_s=min_backoff_s).start()
        if wait_connected_s > 0 and not self.stream.wait_connected(wait_connected_s):
            log.warning("alpaca: trade-update stream not connected after %.0f s; REST backfill covers it", wait_connected_s)

    def close(self) -> None:
        """Stop the stream (its thread is a daemon: a process that exits without this loses nothing)."""
        self.stream.close()

    def poll_events(self) -> list[OrderEvent]:
        """Fills and ends from the stream, oldest fill first; plus REST after a reconnect, periodically and while an end waits."""
        updates, reconnected = self.stream.drain()
        events: list[OrderEvent] = []
        for update in updates:
            if update.get("event") in _FILLS:
                events += self._stream_fill(update)
        for update in updates:
            if update.get("event") in _ENDS:
                self._hold_end(update)
        due = reconnected or self._held_waiting() or self._monotonic() - self._last_backfill >= self._every_s
        if due:
            self._last_backfill = self._monotonic()
            events += super().poll_events()  # fills the stream missed, and ends the stream missed
        events += self._release_ends()
        # oldest fill first (a backfilled fill is older than the streamed ones beside it); every end after the fills
        fills = sorted((e for e in events if isinstance(e, OrderFilled)), key=lambda e: (e.ts, str(e.fill.fill_id)))
        return [*fills, *(e for e in events if not isinstance(e, OrderFilled))]

    def _stream_fill(self, update: dict[str, Any]) -> list[OrderEvent]:
        order = update.get("order") or {}
        cid = ClientOrderId(str(order.get("client_order_id")))
        if cid not in self._tracked:
            return []  # not ours, or already ended (a late duplicate)
        try:
            fill = fill_from_trade_update(update, client_order_id=cid, venue=self.venue, account=self._account_label())
            ordered = dec(order.get("qty") or 0, "order.qty")
        except (KeyError, DomainError) as exc:  # REST will report this execution; never guess its content
            log.error("alpaca: trade update for %s unreadable (%s): left to the REST backfill", cid, exc)
            self._last_backfill = float("-inf")
            return []
        events = self._report_fill(fill)
        if self._tracked[cid].cum_qty >= ordered > 0:
            del self._tracked[cid]  # every share reported: nothing more can come
        return events

    def _hold_end(self, update: dict[str, Any]) -> None:
        cid = ClientOrderId(str((update.get("order") or {}).get("client_order_id")))
        if cid in self._tracked:
            self._held[cid] = update

    def _held_waiting(self) -> bool:
        return any(self._missing(cid) for cid in self._held)

    def _missing(self, cid: ClientOrderId) -> bool:
        tracked = self._tracked.get(cid)
        if tracked is None:
            return False
        filled = dec(self._held[cid]["order"].get("filled_qty") or 0, "order.filled_qty")
        return filled > tracked.cum_qty

    def _release_ends(self) -> list[OrderEvent]:
        """Ends whose fills are all out; an end the REST path already reported (order no longer tracked) is dropped."""
        events: list[OrderEvent] = []
        for cid in list(self._held):
            if cid not in self._tracked:
                del self._held[cid]
            elif not self._missing(cid):
                update = self._held.pop(cid)
                del self._tracked[cid]
                events.append(_end_event(cid, update, self._clock()))
        return events


def _end_event(cid: ClientOrderId, update: dict[str, Any], now: dt.datetime) -> OrderEvent:
    kind = _ENDS[update["event"]]
    try:
        ts = parse_time(update["timestamp"], "trade_update.timestamp")
    except (KeyError, DomainError):
        ts = now
    if kind is OrderCanceled:
        return OrderCanceled(client_order_id=cid, ts=ts, reason=f"{update['event']} at Alpaca")
    if kind is OrderRejected:
        return OrderRejected(client_order_id=cid, ts=ts, reason="rejected by Alpaca")
    return OrderExpired(client_order_id=cid, ts=ts)
