"""A small fake of Alpaca's trading API on 127.0.0.1, for driving alpaca-py (and so :class:`AlpacaBroker`) in tests.

It keeps orders, FILL activities, positions and cash like the venue does, and speaks the
paths and JSON shapes alpaca-py 0.44 reads (``alpaca/trading/client.py`` and ``models.py``):
``POST/GET/DELETE /v2/orders``, ``GET /v2/orders:by_client_order_id``, ``GET/DELETE
/v2/orders/{id}``, ``GET/DELETE /v2/positions``, ``GET /v2/account`` and ``GET
/v2/account/activities/FILL``. A reused ``client_order_id`` gets HTTP 422, like Alpaca.

Tests script misbehaviour per route (``"POST /v2/orders"``):

* ``fail_next(route, status, message, create_first=...)`` answers an error (optionally after
  creating the order: a 504 from a gateway that did pass the order on);
* ``lose_next_answer(route, sleep_s=...)`` creates the order and then drops the connection
  (``sleep_s=None``) or answers only after ``sleep_s`` (past the client's timeout).

And act as the venue: ``fill(cid, qty, price)``, ``cancel_at_venue(cid, status=...)``, ``publish()`` (for
fills recorded with ``publish=False``, i.e. activities that lag behind the order status).
``listeners`` hear every fill and end (fake_alpaca_ws.py pushes them as trade updates), and
``minute_bars`` are served at ``GET /v2/stocks/bars`` (the data API, for the bar stream's backfill).

Order types ``market``, ``limit``, ``stop``, ``stop_limit``, ``trailing_stop`` are stored as sent
(nothing triggers by itself: tests fill). ``order_class`` ``bracket`` and ``oco`` create legs
like Alpaca: separate orders with Alpaca's own ``client_order_id``, shown under the parent's
``legs`` (single-order answers, and lists with ``nested=true``). A bracket's legs are ``held``
until the entry fills; a leg's fill cancels the other leg. ``leg(parent_cid, type)`` finds one.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

from trader.config import Secrets

API_KEY, SECRET_KEY = "PKFAKEKEY123", "fake-secret-value-never-logged"
#: The keys the fake accepts, as the trader's settings hold them.
SECRETS = Secrets(alpaca_api_key=SecretStr(API_KEY), alpaca_secret_key=SecretStr(SECRET_KEY))
OPEN = {"new", "accepted", "partially_filled", "pending_new", "held"}
_DROP = object()


@dataclass
class _Scripted:
    status: int
    message: str = ""
    create_first: bool = False
    drop: bool = False
    sleep_s: float | None = None


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _num(value: Any) -> str:
    """Alpaca's way of writing a number it was sent as a JSON float: ``10.0`` comes back as ``"10"``."""
    return format(Decimal(str(value)).normalize(), "f")


def _error(status: int, message: str) -> tuple[int, Any]:
    return status, {"code": status * 100_000 + 1, "message": message}


class FakeAlpaca:
    """The fake venue and its HTTP server; use as a context manager (``with FakeAlpaca() as fake``)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.orders: dict[str, dict[str, Any]] = {}
        self.activities: list[dict[str, Any]] = []
        self.hidden: list[dict[str, Any]] = []
        self.positions: dict[str, dict[str, Decimal]] = {}
        self.cash = Decimal(100_000)
        self.requests: list[str] = []
        self.created = 0
        #: Called as ``listener(event, order, activity)`` on each fill and cancel (the websocket fake pushes them).
        self.listeners: list[Callable[[str, dict[str, Any], dict[str, Any] | None], None]] = []
        #: Minute bars served at ``GET /v2/stocks/bars``: symbol -> Alpaca-shaped bars (``t`` RFC 3339).
        self.minute_bars: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.legs_of: dict[str, list[str]] = {}  # parent's id -> its legs' ids
        self._script: dict[str, deque[_Scripted]] = defaultdict(deque)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeAlpaca:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self, route: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r == route)

    # -- scripting ----------------------------------------------------------------------------
    def fail_next(self, route: str, status: int, message: str = "error", *, times: int = 1, create_first: bool = False) -> None:
        for _ in range(times):
            self._script[route].append(_Scripted(status, message, create_first=create_first))

    def lose_next_answer(self, route: str = "POST /v2/orders", *, sleep_s: float | None = None) -> None:
        self._script[route].append(_Scripted(200, create_first=True, drop=sleep_s is None, sleep_s=sleep_s))

    # -- the venue ----------------------------------------------------------------------------
    def order(self, cid: str) -> dict[str, Any]:
        with self.lock:
            return next(o for o in self.orders.values() if o["client_order_id"] == cid)

    def leg(self, parent_cid: str, order_type: str) -> dict[str, Any]:
        """The leg of type ``order_type`` (``limit``, ``stop``) of the bracket or OCO placed as ``parent_cid``."""
        with self.lock:
            parent = self.order(parent_cid)
            return next(self.orders[i] for i in self.legs_of[parent["id"]] if self.orders[i]["type"] == order_type)

    def fill(self, cid: str, qty: str, price: str, *, publish: bool = True, at: dt.datetime | None = None) -> None:
        with self.lock:
            o, q, p = self.order(cid), Decimal(qty), Decimal(price)
            done = Decimal(o["filled_qty"])
            avg = Decimal(o["filled_avg_price"] or 0)
            o["filled_avg_price"] = str((done * avg + q * p) / (done + q))
            o["filled_qty"] = str(done + q)
            o["status"] = "filled" if done + q == Decimal(o["qty"]) else "partially_filled"
            ts = at or dt.datetime.now(dt.UTC)
            o["updated_at"] = _iso(ts)
            act = {"id": f"{ts:%Y%m%d%H%M%S%f}::{uuid.uuid4()}", "activity_type": "FILL", "transaction_time": _iso(ts),
                   "type": "fill" if o["status"] == "filled" else "partial_fill", "price": price, "qty": qty,
                   "side": o["side"], "symbol": o["symbol"], "leaves_qty": str(Decimal(o["qty"]) - done - q),
                   "order_id": o["id"], "cum_qty": o["filled_qty"], "order_status": o["status"]}
            (self.activities if publish else self.hidden).append(act)
            self._move_position(o["symbol"], q if o["side"] == "buy" else -q, p)
            self._notify(act["type"], o, act)
            self._after_fill(o)

    def _after_fill(self, o: dict[str, Any]) -> None:
        """A filled bracket entry releases its legs; a filled leg cancels the other one (OCO)."""
        if o["status"] == "filled" and o["order_class"] == "bracket":
            for leg_id in self.legs_of.get(o["id"], []):
                if self.orders[leg_id]["status"] == "held":
                    self.orders[leg_id]["status"] = "new"
        group = next((p for p, legs in self.legs_of.items() if o["id"] in legs), None)
        if group is not None or (o["order_class"] == "oco" and o["id"] in self.legs_of):
            primary = group or o["id"]
            members = self.legs_of[primary] + ([primary] if self.orders[primary]["order_class"] == "oco" else [])
            for other in members:
                if other != o["id"] and self.orders[other]["status"] in OPEN:
                    self.cancel_at_venue(self.orders[other]["client_order_id"])

    def backdate(self, cid: str, delta: dt.timedelta) -> None:
        """Pretend the order was placed ``delta`` earlier (e.g. before a trader restart)."""
        with self.lock:
            o = self.order(cid)
            for key in ("created_at", "submitted_at", "updated_at"):
                o[key] = _iso(dt.datetime.fromisoformat(o[key]) - delta)

    def publish(self) -> None:
        with self.lock:
            self.activities += self.hidden
            self.activities.sort(key=lambda a: a["transaction_time"])
            self.hidden = []

    def cancel_at_venue(self, cid: str, *, status: str = "canceled") -> None:
        """End the order at the venue: ``canceled`` (default), ``expired`` or ``rejected``."""
        with self.lock:
            o = self.order(cid)
            o["status"], o["updated_at"] = status, _iso(dt.datetime.now(dt.UTC))
            o[{"canceled": "canceled_at", "expired": "expired_at"}.get(status, "failed_at")] = o["updated_at"]
            self._notify(status, o, None)
            if o["order_class"] == "bracket" and o["filled_qty"] == "0":  # an entry that never filled takes its legs along
                for leg_id in self.legs_of.get(o["id"], []):
                    if self.orders[leg_id]["status"] in OPEN:
                        self.cancel_at_venue(self.orders[leg_id]["client_order_id"])

    def _notify(self, event: str, order: dict[str, Any], act: dict[str, Any] | None) -> None:
        for listener in self.listeners:
            listener(event, dict(order), act)

    def _move_position(self, symbol: str, signed: Decimal, price: Decimal) -> None:
        pos = self.positions.setdefault(symbol, {"qty": Decimal(0), "avg": Decimal(0)})
        qty = pos["qty"] + signed
        if pos["qty"] == 0 or (pos["qty"] > 0) == (signed > 0):
            pos["avg"] = (abs(pos["qty"]) * pos["avg"] + abs(signed) * price) / abs(qty)
        elif qty == 0 or (qty > 0) != (pos["qty"] > 0):
            pos["avg"] = price
        pos["qty"] = qty
        self.cash -= signed * price
        if qty == 0:
            del self.positions[symbol]

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        now = _iso(dt.datetime.now(dt.UTC))
        kind = body.get("order_class") or "simple"
        take, stop = body.get("take_profit") or {}, body.get("stop_loss") or {}
        limit = take.get("limit_price") if kind == "oco" else body.get("limit_price")  # an OCO's head is its take-profit
        order = {"id": str(uuid.uuid4()), "client_order_id": body.get("client_order_id") or str(uuid.uuid4()),
                 "created_at": now, "updated_at": now, "submitted_at": now, "asset_id": str(uuid.uuid4()),
                 "symbol": body["symbol"], "asset_class": "crypto" if "/" in body["symbol"] else "us_equity", "qty": _num(body["qty"]), "filled_qty": "0",
                 "filled_avg_price": None, "order_class": kind, "order_type": body["type"], "type": body["type"],
                 "side": body["side"], "time_in_force": body["time_in_force"],
                 **{k: _num(v) if v is not None else None for k, v in (("limit_price", limit), ("stop_price", body.get("stop_price")),
                    ("trail_percent", body.get("trail_percent")), ("trail_price", body.get("trail_price")))},
                 "status": body.get("status", "accepted"), "extended_hours": False}
        self.orders[order["id"]] = order
        self.created += 1
        if kind in ("bracket", "oco") and not body.get("is_leg"):
            side = body["side"] if kind == "oco" else ("sell" if body["side"] == "buy" else "buy")
            leg = {"symbol": body["symbol"], "qty": body["qty"], "side": side, "time_in_force": body["time_in_force"],
                   "order_class": kind, "status": "held" if kind == "bracket" else "new", "is_leg": True}
            legs = [] if kind == "oco" else [self._create({**leg, "type": "limit", "limit_price": take["limit_price"]})]
            legs.append(self._create({**leg, "type": "stop_limit" if stop.get("limit_price") else "stop", **stop}))
            self.legs_of[order["id"]] = [x["id"] for x in legs]
        return order

    def _view(self, o: dict[str, Any]) -> dict[str, Any]:
        """An order as Alpaca shows one order (or a list with ``nested=true``): its legs rolled up under it."""
        legs = self.legs_of.get(o["id"])
        return {**o, "legs": [self.orders[i] for i in legs] if legs else None}

    # -- routes -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        route = f"{method} {'/v2/orders/{id}' if path.startswith('/v2/orders/') else path}"
        with self.lock:
            self.requests.append(route)
            scripted = self._script[route].popleft() if self._script[route] else None
            if scripted is not None:
                created = self._create(body) if scripted.create_first else None
                if scripted.drop:
                    return _DROP
                if scripted.sleep_s is not None:
                    return ("sleep", scripted.sleep_s, (200, created))
                return _error(scripted.status, scripted.message)
            return self._route(method, path, query, body)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        if (method, path) == ("POST", "/v2/orders"):
            if any(o["client_order_id"] == body.get("client_order_id") for o in self.orders.values()):
                return _error(422, "client_order_id must be unique")
            if "/" in body.get("symbol", "") and body.get("time_in_force") not in ("gtc", "ioc"):  # like Alpaca: crypto is 24/7
                return _error(422, "invalid crypto time_in_force")
            return 200, self._view(self._create(body))
        if (method, path) == ("GET", "/v2/orders"):
            return 200, self._list(query)
        if (method, path) == ("GET", "/v2/orders:by_client_order_id"):
            found = [o for o in self.orders.values() if o["client_order_id"] == query.get("client_order_id")]
            return (200, self._view(found[0])) if found else _error(404, "order not found")
        if path.startswith("/v2/orders/"):
            return self._one_order(method, path.rsplit("/", 1)[1])
        if (method, path) == ("DELETE", "/v2/orders"):
            working = [o for o in self.orders.values() if o["status"] in OPEN]
            for o in working:
                self.cancel_at_venue(o["client_order_id"])
            return 207, [{"id": o["id"], "status": 200, "body": None} for o in working]
        if path == "/v2/positions":
            return self._positions(method, query)
        if (method, path) == ("GET", "/v2/account"):
            return 200, {"id": str(uuid.uuid4()), "account_number": "PA-FAKE-1", "status": "ACTIVE", "currency": "USD",
                         "cash": str(self.cash), "equity": str(self.cash), "buying_power": str(self.cash)}
        if (method, path) == ("GET", "/v2/account/activities/FILL"):
            return 200, self._activities(query)
        if (method, path) == ("GET", "/v2/stocks/bars"):
            start, end = (dt.datetime.fromisoformat(query[k].replace("Z", "+00:00")) for k in ("start", "end"))
            bars = {s: [b for b in self.minute_bars.get(s, []) if start <= dt.datetime.fromisoformat(b["t"]) < end]
                    for s in query["symbols"].split(",")}
            return 200, {"bars": {s: b for s, b in bars.items() if b}, "next_page_token": None}
        return _error(404, f"no route {method} {path}")

    def _list(self, query: dict[str, str]) -> list[dict[str, Any]]:
        status, nested = query.get("status", "open"), query.get("nested") in ("true", "True")
        legs = {i for ids in self.legs_of.values() for i in ids}
        chosen = [o for o in self.orders.values() if status == "all" or (o["status"] in OPEN) == (status == "open")
                  or (nested and any(self.orders[i]["status"] in OPEN for i in self.legs_of.get(o["id"], [])))]
        rows = [self._view(o) for o in chosen if o["id"] not in legs] if nested else chosen
        return rows[: int(query.get("limit", 50))]

    def _one_order(self, method: str, order_id: str) -> Any:
        o = self.orders.get(order_id)
        if o is None:
            return _error(404, "order not found")
        if method == "GET":
            return 200, self._view(o)
        if o["status"] not in OPEN:
            return _error(422, f"order is already in \"{o['status']}\" state")
        self.cancel_at_venue(o["client_order_id"])
        return 204, None

    def _positions(self, method: str, query: dict[str, str]) -> Any:
        # like Alpaca, a crypto position is listed without its slash (BTC/USD → BTCUSD)
        rows = [{"asset_id": str(uuid.uuid4()), "symbol": s.replace("/", ""), "exchange": "CRYPTO" if "/" in s else "NASDAQ",
                 "asset_class": "crypto" if "/" in s else "us_equity",
                 "avg_entry_price": str(p["avg"]), "qty": str(p["qty"]), "side": "long" if p["qty"] > 0 else "short",
                 "cost_basis": str(p["qty"] * p["avg"])} for s, p in sorted(self.positions.items())]
        if method == "GET":
            return 200, rows
        if query.get("cancel_orders") in ("true", "True"):
            for o in [o for o in self.orders.values() if o["status"] in OPEN]:
                self.cancel_at_venue(o["client_order_id"])
        out = []
        for row in rows:
            qty = Decimal(row["qty"])
            order = self._create({"symbol": row["symbol"], "qty": str(abs(qty)), "side": "sell" if qty > 0 else "buy",
                                  "type": "market", "time_in_force": "day"})
            out.append({"symbol": row["symbol"], "status": 200, "order_id": order["id"], "body": order})
        return 207, out

    def _activities(self, query: dict[str, str]) -> list[dict[str, Any]]:
        after = dt.datetime.fromisoformat(query["after"]) if "after" in query else None
        rows = [a for a in self.activities if after is None or dt.datetime.fromisoformat(a["transaction_time"]) > after]
        if "page_token" in query:
            ids = [a["id"] for a in rows]
            rows = rows[ids.index(query["page_token"]) + 1:] if query["page_token"] in ids else []
        return rows[: int(query.get("page_size", 100))]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _serve(self, method: str) -> None:
        fake: FakeAlpaca = self.server.fake  # type: ignore[attr-defined]
        if self.headers.get("APCA-API-KEY-ID") != API_KEY or self.headers.get("APCA-API-SECRET-KEY") != SECRET_KEY:
            return self._send(*_error(401, "request is not authorized"))
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        answer = fake.handle(method, url.path, query, body)
        if answer is _DROP:
            self.close_connection = True  # the order exists, the answer never leaves
            return
        if isinstance(answer, tuple) and answer[0] == "sleep":
            time.sleep(answer[1])  # past the client's timeout: it has given up by now
            answer = answer[2]
        try:
            self._send(*answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting, which is the point of the scenario

    def _send(self, status: int, payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
