"""Test doubles of the run loop's outside world (imported as ``fake_venue``): a broker, a prediction service, bars.

:class:`FakeBroker` implements :class:`trader.brokers.base.Broker` in memory and fills a
market order at the open of the first bar that starts at or after the order, when the
run loop advances its clock past that bar (the simulator's rule); ``auto_fill=False``
leaves orders working. Every time is injected: no wall clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Sequence
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from trader.brokers.bars import Bar
from trader.brokers.base import BrokerAccount, BrokerPosition
from trader.config import TraderConfig
from trader.domain import (
    ZERO,
    ClientOrderId,
    Fill,
    FillId,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderFilled,
    OrderId,
    Side,
    Symbol,
)
from trader.errors import PredictionError
from trader.predictions import Prediction, PredictionBatch

SYMBOLS = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")
DAY = dt.date(2024, 3, 5)  # a regular XNYS session: 14:30–21:00 UTC
OPEN = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC)
STEP = dt.timedelta(minutes=15)


def _unit(*parts: object) -> float:
    """A deterministic number in [-1, 1) from the parts (no RNG state shared between tests)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**63 - 1


def make_bars(symbols: Sequence[str] = SYMBOLS, *, n: int = 26, start: dt.datetime = OPEN, drift: float = 0.0) -> list[Bar]:
    """``n`` 15-minute bars per symbol: a deterministic random walk around 50–100, cents exact."""
    bars = []
    for i, symbol in enumerate(symbols):
        price = 50 + 10 * i
        for k in range(n):
            open_ = price * (1 + 0.002 * _unit(symbol, k, "gap"))
            close = open_ * (1 + 0.01 * _unit(symbol, k, "ret") + drift)
            o, c = D(f"{open_:.2f}"), D(f"{close:.2f}")
            bars.append(Bar(symbol=Symbol(symbol), ts=start + k * STEP, open=o, high=max(o, c), low=min(o, c), close=c,
                            volume=D(100_000)))
            price = close
    return sorted(bars, key=lambda b: (b.ts, b.symbol))


def write_marts_bars(location: Path | str, bars: Sequence[Bar]) -> None:
    """A warehouse at ``location`` (a DuckDB file or a ``postgresql://`` database, through the warehouse interface) whose
    ``marts.bars`` holds ``bars`` as 15-minute bars (what the trader's sim reads)."""
    import polars as pl

    from orchestration.warehouse import Warehouse

    frame = pl.DataFrame(
        [(b.symbol, "15m", b.ts, float(b.open), float(b.high), float(b.low), float(b.close), float(b.volume)) for b in bars],
        schema={"symbol": pl.String, "timeframe": pl.String, "ts": pl.Datetime("us", "UTC"), "open": pl.Float64, "high": pl.Float64,
                "low": pl.Float64, "close": pl.Float64, "volume": pl.Float64}, orient="row")
    with Warehouse(location).connect() as con, con.transaction():
        con.execute("CREATE SCHEMA marts")
        con.execute("CREATE TABLE marts.bars (symbol VARCHAR, timeframe VARCHAR, ts TIMESTAMPTZ, open DOUBLE PRECISION, "
                    "high DOUBLE PRECISION, low DOUBLE PRECISION, close DOUBLE PRECISION, volume DOUBLE PRECISION)")
        con.append("marts.bars", frame)


def config(**overrides: object) -> TraderConfig:
    """Six symbols in three sectors; limits loose enough for a 2-long/2-short book to trade."""
    data: dict = {
        "universe": {"symbols": list(SYMBOLS), "sectors": {"tech": ["AAA", "BBB"], "energy": ["CCC", "DDD"], "health": ["EEE", "FFF"]}},
        "risk": {"max_position_pct": "0.30", "max_sector_pct": "0.60", "max_net_exposure_pct": "1.0", "daily_loss_limit_pct": "0.5"},
        "sizing": {"k": 2, "max_weight": "0.2", "rebalance_threshold": "0.01"},
        "prediction": {"max_consecutive_failures": 3},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return TraderConfig.model_validate(data)


class FakePredictor:
    """Answers every symbol with a score derived from (symbol, as_of); ``fail`` makes the next calls raise."""

    def __init__(self, *, model_version: str = "ens:test"):
        self.model_version = model_version
        self.calls: list[dt.datetime | None] = []
        self.failures: list[str] = []  # reasons to raise, consumed one per call

    def predict(self, symbols: Sequence[Symbol], *, as_of: dt.datetime | None = None) -> PredictionBatch:
        self.calls.append(as_of)
        if self.failures:
            raise PredictionError(f"prediction service: {self.failures.pop(0)}")
        ts = as_of or OPEN
        preds = []
        for s in symbols:
            score = _unit(s, ts.isoformat())
            preds.append(Prediction(symbol=s, score=score, direction="long" if score > 0 else "short", confidence=0.6,
                                    feature_ts=ts, stale=False, model_version=self.model_version))
        return PredictionBatch(self.model_version, tuple(preds))


class FakeBroker:
    """An in-memory venue with the simulator's fill rule; records every call for assertions."""

    venue = "fake"

    def __init__(self, *, cash: D = D(100_000), bars: Sequence[Bar] = (), auto_fill: bool = True, fee: D = D("0.35")):
        self.cash, self.fee, self.auto_fill = cash, fee, auto_fill
        self.bars = sorted(bars, key=lambda b: (b.ts, b.symbol))
        self.orders: dict[ClientOrderId, Order] = {}
        self.held: dict[Symbol, D] = {}
        self.marks: dict[Symbol, D] = {}
        self.events: list[OrderEvent] = []
        self.all_fills: list[Fill] = []
        self.submitted: list[Order] = []
        self.cancels: list[ClientOrderId] = []
        self.closed_all = 0
        self.on_submit = None  # hook: called with the order before it is accepted (may raise)
        self.now = OPEN
        self._next_bar = 0

    # -- the simulator clock ------------------------------------------------------------------
    def advance_to(self, ts: dt.datetime) -> None:
        """Process every bar that closed by ``ts``: fill working orders at its open, mark at its close."""
        self.now = ts
        while self._next_bar < len(self.bars) and self.bars[self._next_bar].ts + STEP <= ts:
            bar = self.bars[self._next_bar]
            self._next_bar += 1
            for order in list(self.orders.values()):
                if self.auto_fill and order.is_working and order.symbol == bar.symbol and bar.ts >= order.created_at:
                    self._fill(order, bar.open, bar.ts)
            self.marks[bar.symbol] = bar.close

    def _fill(self, order: Order, price: D, ts: dt.datetime) -> None:
        fill = Fill(fill_id=FillId(f"{order.client_order_id}-1"), order_id=order.order_id, client_order_id=order.client_order_id,
                    symbol=order.symbol, side=order.side, qty=order.remaining_qty, price=price, fee=self.fee, ts=ts,
                    venue=self.venue, account="test")
        event = OrderFilled(client_order_id=order.client_order_id, ts=ts, fill=fill)
        self.orders[order.client_order_id] = order.apply(event)
        self.cash -= fill.signed_qty * price + fill.fee
        self.held[order.symbol] = self.held.get(order.symbol, ZERO) + fill.signed_qty
        self.all_fills.append(fill)
        self.events.append(event)

    def held_nonzero(self) -> dict[Symbol, D]:
        return {s: q for s, q in self.held.items() if q}

    def equity_at(self, prices: dict[Symbol, D]) -> D:
        return self.cash + sum((q * prices[s] for s, q in self.held.items() if q), ZERO)

    # -- the Broker protocol ------------------------------------------------------------------
    def submit(self, order: Order) -> OrderAccepted:
        if self.on_submit is not None:
            self.on_submit(order)
        self.submitted.append(order)
        accepted = OrderAccepted(client_order_id=order.client_order_id, ts=order.created_at, order_id=OrderId(f"v-{len(self.submitted)}"))
        self.orders[order.client_order_id] = order.apply(accepted)
        return accepted

    def cancel(self, client_order_id: ClientOrderId) -> None:
        self.cancels.append(client_order_id)
        order = self.orders.get(client_order_id)
        if order is not None and order.is_working:
            event = OrderCanceled(client_order_id=client_order_id, ts=order.updated_at, reason="requested")
            self.orders[client_order_id] = order.apply(event)
            self.events.append(event)

    def get_order_by_client_id(self, client_order_id: ClientOrderId) -> Order | None:
        return self.orders.get(client_order_id)

    def list_orders(self, *, open_only: bool = True) -> list[Order]:
        return [o for o in self.orders.values() if o.is_working or not open_only]

    def poll_events(self) -> list[OrderEvent]:
        events, self.events = self.events, []
        return events

    def fills(self, *, since: dt.datetime) -> list[Fill]:
        return [f for f in self.all_fills if f.ts >= since]

    def positions(self) -> dict[Symbol, BrokerPosition]:
        return {s: BrokerPosition(symbol=s, qty=q, avg_entry_price=ZERO) for s, q in self.held.items() if q}

    def account(self) -> BrokerAccount:
        equity = self.equity_at({**self.marks})
        return BrokerAccount(account_id="test", cash=self.cash, equity=equity, buying_power=2 * equity)

    def cancel_all(self) -> list[ClientOrderId]:
        ids = [cid for cid, o in self.orders.items() if o.is_working]
        for cid in ids:
            self.cancel(cid)
        return ids

    def close_all(self) -> list[Order]:
        self.closed_all += 1
        out = []
        for symbol, qty in sorted(self.held.items()):
            if qty:
                side = Side.SELL if qty > 0 else Side.BUY
                order = Order(client_order_id=ClientOrderId(f"close-{symbol}-{self.closed_all}"), symbol=symbol, side=side,
                              qty=abs(qty), created_at=self.now)
                self.submit(order)
                out.append(self.orders[order.client_order_id])
        return out


# -- a prediction service on 127.0.0.1 -----------------------------------------------------------------
class PredictionServer:
    """``POST /predict`` on 127.0.0.1 (http.server in a thread) answering like :class:`FakePredictor`.

    ``mode``: ``"ok"``, ``"garbage"`` (HTML), ``"error"`` (HTTP 500) or ``"slow"`` (answers after
    ``delay`` seconds). ``requests`` keeps every request body.
    """

    def __init__(self, mode: str = "ok", *, delay: float = 0.5):
        self.mode, self.delay = mode, delay
        self.requests: list[dict] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PredictionServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, body: dict) -> tuple[int, bytes]:
        self.requests.append(body)
        if self.mode == "garbage":
            return 200, b"<html>502 Bad Gateway</html>"
        if self.mode == "error":
            return 500, b'{"detail": "internal"}'
        if self.mode == "slow":
            time.sleep(self.delay)
        as_of = dt.datetime.fromisoformat(body["as_of"]) if body.get("as_of") else None
        batch = FakePredictor(model_version="ens:http-fake").predict(body["symbols"], as_of=as_of)
        out = {"model_version": batch.model_version, "predictions": [
            {"symbol": p.symbol, "score": p.score, "direction": p.direction.value, "confidence": p.confidence,
             "feature_ts": p.feature_ts.isoformat(), "stale": p.stale} | self._why(p.score, body.get("explain", 0))
            for p in batch.predictions]}
        return 200, json.dumps(out).encode()

    @staticmethod
    def _why(score: float, top: int) -> dict:
        """A SHAP-shaped explanation that adds up: 60% from one feature, 30% from another, the rest ``other``."""
        if not top:
            return {}
        parts = {"xs_resid_ret_1": 0.6 * score, "ret_4": 0.3 * score}
        shown = dict(list(parts.items())[:top])
        return {"explanation": {"base": 0.0, "contributions": shown, "other": score - sum(shown.values()),
                                "families": {"xs": 0.6 * score, "ret": 0.4 * score}}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                status, payload = server.answer(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:  # the client gave up (a timeout test)
                    pass

            def log_message(self, *args: object) -> None:  # keep test output clean
                return None

        return Handler
