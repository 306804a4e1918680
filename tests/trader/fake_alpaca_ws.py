"""Alpaca's two websocket streams, faked on 127.0.0.1 for alpaca-py's ``TradingStream`` and ``StockDataStream``.

* ``/stream`` speaks the trading stream (JSON): ``authenticate`` → ``authorization``,
  ``listen`` → ``listening``, then ``trade_updates`` messages;
* ``/v2/iex`` speaks the market-data stream (msgpack): ``connected``, ``auth`` →
  ``authenticated``, ``subscribe`` → ``subscription``, then bars (``T: "b"``).

Like Alpaca, a message goes only to the clients connected at that moment: what is sent
during an outage is lost (the trader must backfill over REST).

Test controls: ``drop_connections()`` (forced disconnect; the client reconnects),
``outage()`` (drop, and refuse reconnects while inside), ``duplicate_next()``,
``hold()`` / ``release(reverse=True)`` (delay messages, then send them out of order).

:func:`alpaca_venue` starts the REST fake (:class:`fake_alpaca.FakeAlpaca`) and these
streams together; ``venue.fill(...)`` at the REST fake also pushes its trade update::

    with alpaca_venue() as venue:
        broker = StreamingAlpacaBroker(SECRETS, url_override=venue.url, stream_url=venue.trading_ws_url)
        venue.rest.fill("cid-1", "4", "100.25")   # a FILL activity and a trade update
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgpack
from fake_alpaca import API_KEY, SECRET_KEY, FakeAlpaca
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

TRADING, DATA = "/stream", "/v2/iex"


class FakeAlpacaStreams:
    """The websocket server; use as a context manager. ``connections[path]`` counts authenticated sessions."""

    def __init__(self) -> None:
        self.connections = {TRADING: 0, DATA: 0}
        self.sent: list[Any] = []
        self._clients: dict[ServerConnection, tuple[str, set[str]]] = {}  # connection -> (path, bar symbols)
        self._refuse = False
        self._duplicate = 0
        self._held: list[tuple[str, Any]] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Any = None

    @property
    def trading_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}{TRADING}"

    @property
    def data_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}{DATA}"

    def __enter__(self) -> FakeAlpacaStreams:
        self._thread.start()
        async def start() -> Any:
            return await serve(self._session, "127.0.0.1", 0, process_request=self._gate)
        self._server = self._run(start())
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        with contextlib.suppress(TimeoutError):
            self._run(self._server.wait_closed(), timeout=2)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2)

    def _run(self, coro: Any, timeout: float = 5) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- controls -----------------------------------------------------------------------------
    def drop_connections(self) -> None:
        """Close every client's socket abruptly (no close handshake): alpaca-py sees a websocket error and reconnects."""
        async def drop() -> None:
            for ws in list(self._clients):
                ws.transport.abort()
            self._clients.clear()
        self._run(drop())

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Drop every client and refuse reconnects (HTTP 503) while inside."""
        self._refuse = True
        self.drop_connections()
        try:
            yield
        finally:
            self._refuse = False

    def duplicate_next(self, times: int = 1) -> None:
        """Send each of the next ``times`` messages twice."""
        self._duplicate += times

    def hold(self) -> None:
        """Keep messages back until :meth:`release`."""
        self._held = []

    def release(self, *, reverse: bool = False) -> None:
        held, self._held = self._held or [], None
        for path, payload in reversed(held) if reverse else held:
            self._send(path, payload)

    def wait_for(self, path: str, connections: int, timeout: float = 5.0) -> None:
        """Block until ``path`` has had ``connections`` authenticated sessions that are listening/subscribed."""
        deadline = time.monotonic() + timeout
        while self.connections[path] < connections or not any(p == path for p, _ in self._clients.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path}: {self.connections[path]} of {connections} connections after {timeout} s")
            time.sleep(0.01)

    # -- what the venue sends -----------------------------------------------------------------
    def trade_update(self, event: str, order: dict[str, Any], *, execution: dict[str, Any] | None = None,
                     at: str | None = None) -> None:
        """Push one ``trade_updates`` message (``execution``: the FILL activity of a fill event)."""
        data: dict[str, Any] = {"event": event, "order": order, "timestamp": at or order["updated_at"]}
        if execution is not None:
            data |= {"execution_id": execution["id"].rsplit("::", 1)[-1], "price": execution["price"],
                     "qty": execution["qty"], "timestamp": execution["transaction_time"]}
        self._send(TRADING, {"stream": "trade_updates", "data": data})

    def bar(self, symbol: str, ts: dt.datetime, o: Any, h: Any, low: Any, c: Any, v: Any, *, n: int = 10,
            vw: Any = None) -> None:
        """Push one minute bar (``T: "b"``) to the clients subscribed to ``symbol``; ``None`` leaves a field out."""
        fields = {"o": o, "h": h, "l": low, "c": c, "v": v, "n": n, "vw": vw if vw is not None else c}
        msg = {"T": "b", "S": symbol, "t": msgpack.Timestamp.from_datetime(ts)} | {k: x for k, x in fields.items() if x is not None}
        self._send(DATA, msg)

    def _send(self, path: str, payload: Any) -> None:
        if self._held is not None:
            self._held.append((path, payload))
            return
        copies = 2 if self._duplicate > 0 else 1
        self._duplicate = max(0, self._duplicate - 1)
        for _ in range(copies):
            self.sent.append(payload)
            self._run(self._broadcast(path, payload))

    async def _broadcast(self, path: str, payload: Any) -> None:
        for ws, (p, symbols) in list(self._clients.items()):
            if p != path or (path == DATA and payload["S"] not in symbols and "*" not in symbols):
                continue
            frame = json.dumps(payload).encode() if path == TRADING else msgpack.packb([payload], datetime=False)
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)

    # -- the protocol -------------------------------------------------------------------------
    def _gate(self, ws: ServerConnection, request: Request) -> Response | None:
        if self._refuse or request.path not in (TRADING, DATA):
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "down for the test\n")
        return None

    async def _session(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        try:
            if path == TRADING:
                await self._trading(ws)
            else:
                await self._data(ws)
            async for _ in ws:  # keep the session open until the client leaves
                pass
        except ConnectionClosed:
            pass
        finally:
            self._clients.pop(ws, None)

    async def _trading(self, ws: ServerConnection) -> None:
        auth = json.loads(await ws.recv())["data"]
        ok = (auth.get("key_id"), auth.get("secret_key")) == (API_KEY, SECRET_KEY)
        await ws.send(json.dumps({"stream": "authorization", "data": {
            "status": "authorized" if ok else "unauthorized", "action": "authenticate"}}).encode())
        if not ok:
            await ws.close()
            return
        listen = json.loads(await ws.recv())
        streams = listen["data"]["streams"]
        await ws.send(json.dumps({"stream": "listening", "data": {"streams": streams}}).encode())
        self.connections[TRADING] += 1
        self._clients[ws] = (TRADING, set())

    async def _data(self, ws: ServerConnection) -> None:
        await ws.send(msgpack.packb([{"T": "success", "msg": "connected"}]))
        auth = msgpack.unpackb(await ws.recv())
        if (auth.get("key"), auth.get("secret")) != (API_KEY, SECRET_KEY):
            await ws.send(msgpack.packb([{"T": "error", "code": 402, "msg": "auth failed"}]))
            await ws.close()
            return
        await ws.send(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
        sub = msgpack.unpackb(await ws.recv())
        symbols = set(sub.get("bars", []))
        await ws.send(msgpack.packb([{"T": "subscription", "trades": [], "quotes": [], "bars": sorted(symbols)}]))
        self.connections[DATA] += 1
        self._clients[ws] = (DATA, symbols)


@dataclass
class FakeVenue:
    """The REST fake and the streams of one test: ``url`` (REST), ``trading_ws_url``, ``data_ws_url``."""

    rest: FakeAlpaca
    ws: FakeAlpacaStreams

    @property
    def url(self) -> str:
        return self.rest.url

    @property
    def trading_ws_url(self) -> str:
        return self.ws.trading_url

    @property
    def data_ws_url(self) -> str:
        return self.ws.data_url


@contextlib.contextmanager
def alpaca_venue() -> Iterator[FakeVenue]:
    """REST and both streams on 127.0.0.1; the REST fake's fills and cancels are pushed as trade updates."""
    with FakeAlpaca() as rest, FakeAlpacaStreams() as ws:
        rest.listeners.append(lambda event, order, act: ws.trade_update(event, order, execution=act))
        yield FakeVenue(rest, ws)

