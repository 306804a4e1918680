"""``alphaline drill``: scripted faults against a sandbox home, and what was survived.

Every drill builds its own home under a sandbox folder (never ``ALPHALINE_HOME``): a warehouse with one
session of 15-minute bars for six symbols, a ``trader.yaml``, a stand-in prediction service on 127.0.0.1
(deterministic scores, the §3.4 contract) and a webhook receiver for the alerts. The trader runs as a real
``trader run --mode sim`` process where the fault is about processes; the checks afterwards read the store.

=====================  ========================================================================================
drill                  fault → what counts as survived
=====================  ========================================================================================
``service_down``       the prediction service refuses connections → no order sent, HALTED after the configured
                       failures (exit 3), exactly one alert delivered, the audit chain intact
``broker_5xx``         the venue answers 503, sometimes after placing the order → lost answers found by
                       ``client_order_id``, never a second order for one id, every venue order in the store
``disk_full``          the store's disk fills mid-session (``RLIMIT_FSIZE``: SQLite's writes fail) → the
                       trader stops; after space returns a rerun finishes the day, one order per id, chain intact
``killed_trader``      ``kill -9`` mid-session → the rerun resumes after the last recorded cycle, every tick
                       decided once, one order per id, fills add up to positions, chain intact
``corrupt_bar_batch``  a CSV with broken rows → ``alphaline ingest`` refuses the batch (blocking check), the
                       rows sit in ``raw.bars_rejected`` with reasons, nothing reaches ``marts.bars``
=====================  ========================================================================================

Example:
    >>> [d.name for d in DRILLS]
    ['service_down', 'broker_5xx', 'disk_full', 'killed_trader', 'corrupt_bar_batch']
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

SYMBOLS = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")
SESSION = dt.date(2024, 3, 5)  # a Tuesday: a regular XNYS session, pinned (never today's date)
OPEN = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC)
BARS = 26
STEP = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class DrillResult:
    name: str
    survived: bool
    facts: list[str]


@dataclass(frozen=True)
class Drill:
    name: str
    fault: str
    run: Callable[[Path], DrillResult]


# -- the sandbox ------------------------------------------------------------------------------------------------
class _Http:
    """A small HTTP server on 127.0.0.1 in a thread: ``handle(path, body) -> (status, json)``; keeps every request."""

    def __init__(self, handle: Callable[[str, dict[str, Any]], tuple[int, Any]]):
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                outer.requests.append(body)
                status, answer = handle(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _unit(*parts: object) -> float:
    """A deterministic number in [-1, 1) from ``parts``."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**63 - 1


def _predict(delay: float) -> Callable[[str, dict[str, Any]], tuple[int, Any]]:
    def handle(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if delay:
            threading.Event().wait(delay)
        as_of = dt.datetime.fromisoformat(body["as_of"])
        preds = [{"symbol": s, "score": round(_unit(s, as_of), 4), "direction": "long" if _unit(s, as_of) > 0 else "short",
                  "confidence": 0.6, "feature_ts": as_of.isoformat(), "stale": False} for s in body["symbols"]]
        return 200, {"model_version": "drill:stand-in", "predictions": preds}
    return handle


def _write_warehouse(path: Path) -> None:
    import polars as pl

    from orchestration.warehouse import Warehouse

    rows = []
    for i, symbol in enumerate(SYMBOLS):
        price = 50.0 + 10 * i
        for k in range(BARS):
            open_ = round(price, 2)
            close = round(open_ * (1 + 0.01 * _unit(symbol, k)), 2)
            rows.append((symbol, OPEN + k * STEP, open_, max(open_, close), min(open_, close), close, 100_000.0))
            price = close
    frame = pl.DataFrame(rows, schema=["symbol", "ts", "open", "high", "low", "close", "volume"], orient="row")
    with Warehouse(path).connect() as con:
        con.execute("create schema marts; create table marts.bars (symbol varchar, timeframe varchar, ts timestamptz, "
                    "open double precision, high double precision, low double precision, close double precision, "
                    "volume double precision)")
        con.append("marts.bars", frame.with_columns(pl.lit("15m").alias("timeframe")))


@contextmanager
def trading_home(root: Path, name: str, *, delay: float = 0.0, service: bool = True) -> Iterator[dict[str, Any]]:
    """A home under ``root/name`` with bars, ``trader.yaml``, a stand-in service (or a dead port) and an alert receiver."""
    home = root / name
    (home / "trader").mkdir(parents=True)
    _write_warehouse(home / "warehouse.duckdb")
    alerts = _Http(lambda path, body: (200, {}))
    predictor = _Http(_predict(delay)) if service else None
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    url = predictor.url if predictor else f"http://127.0.0.1:{dead.getsockname()[1]}"
    config = {"universe": {"symbols": list(SYMBOLS), "sectors": {"tech": ["AAA", "BBB"], "energy": ["CCC", "DDD"],
                                                                   "health": ["EEE", "FFF"]}},
              "risk": {"max_position_pct": "0.30", "max_sector_pct": "0.60", "max_net_exposure_pct": "1.0",
                       "daily_loss_limit_pct": "0.5"},
              "sizing": {"k": 2, "max_weight": "0.2", "rebalance_threshold": "0.01"},
              "prediction": {"url": url, "timeout_s": 2, "max_consecutive_failures": 3},
              "alerts": {"urls": [alerts.url.replace("http://", "json://") + "/drill"]}}
    (home / "trader.yaml").write_text(yaml.safe_dump(config))
    try:
        yield {"home": home, "alerts": alerts, "predictor": predictor, "config": home / "trader.yaml"}
    finally:
        alerts.close()
        if predictor:
            predictor.close()
        dead.close()


def _env(home: Path) -> dict[str, str]:
    drop = ("ALPHALINE_ALERT_URLS", "ALPACA_API_KEY", "ALPACA_SECRET_KEY", "TRADER_API_TOKEN", "DAGSTER_HOME",
            "DBT_TARGET_PATH", "DBT_LOG_PATH", "ALPHALINE_WAREHOUSE", "BENTOML_HOME",
            # a drill's home is embedded and its own: never the servers profile's databases
            "ALPHALINE_POSTGRES_URL", "ALPHALINE_REDIS_URL", "ALPHALINE_WAREHOUSE_URL", "ALPHALINE_DBT_TARGET")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "ALPHALINE_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def _trader_cmd(config: Path) -> list[str]:
    return [sys.executable, "-c", "from trader.cli import main; main()", "run", "--mode", "sim", "--config", str(config)]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


# -- what the store says afterwards ---------------------------------------------------------------------------------
@dataclass
class _Book:
    state: str
    orders: int
    fills: int
    cycles: list[str]
    submits: dict[str, int]
    audit_ok: bool
    audit_records: int
    positions_match_fills: bool
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def one_order_per_id(self) -> bool:
        return all(n == 1 for n in self.submits.values())


def _book(home: Path) -> _Book:
    from trader.domain import positions_from_fills
    from trader.store import TraderStore

    with TraderStore(f"sqlite:///{home / 'trader' / 'sim.db'}") as store:
        records = list(store.audit_records())
        submits: dict[str, int] = {}
        for r in records:
            if r.kind == "order_submit":
                submits[r.payload["client_order_id"]] = submits.get(r.payload["client_order_id"], 0) + 1
        fills = store.list_fills()
        held = {s: p.qty for s, p in store.positions().items() if p.qty}
        from_fills = {s: p.qty for s, p in positions_from_fills(fills).items() if p.qty}
        verdict, state = store.verify_audit(), store.trading_state()
        return _Book(state=state.state.value, orders=len(store.list_orders()), fills=len(fills),
                     cycles=[r.payload["ts"] for r in records if r.kind == "cycle"], submits=submits, audit_ok=verdict.ok,
                     audit_records=verdict.count, positions_match_fills=held == from_fills, reason=state.reason or "")


def _book_facts(book: _Book) -> list[str]:
    dupes = sum(1 for n in book.submits.values() if n > 1)
    return [f"{len(book.cycles)} cycles, {book.orders} orders, {book.fills} fills; state {book.state}",
            f"one order per client_order_id: {'yes' if not dupes else f'NO ({dupes} sent twice)'}",
            f"fills add up to positions: {'yes' if book.positions_match_fills else 'NO'}",
            f"audit chain: {'intact' if book.audit_ok else 'BROKEN'} ({book.audit_records} records)"]


def _every_tick_once(book: _Book) -> bool:
    return len(book.cycles) == BARS and len(set(book.cycles)) == BARS


# -- the drills ---------------------------------------------------------------------------------------------------
def service_down(root: Path) -> DrillResult:
    with trading_home(root, "service_down", service=False) as h:
        proc = subprocess.run(_trader_cmd(h["config"]), env=_env(h["home"]), capture_output=True, text=True, timeout=180)
        alerts = list(h["alerts"].requests)
    book = _book(h["home"])
    survived = (proc.returncode == 3 and book.orders == 0 and book.state == "halted" and len(alerts) == 1
                and book.audit_ok and "prediction" in book.reason)
    return DrillResult("service_down", survived, [
        f"trader run exit {proc.returncode}: {_last_line(proc.stderr)}",
        f"orders sent: {book.orders}; alerts delivered: {len(alerts)}" + (f" ({alerts[0].get('title')})" if alerts else ""),
        *_book_facts(book)[2:]])


class _FlakyVenue:
    """A sim venue behind a gateway that answers 503: every 3rd order *after* placing it, every 5th before."""

    def __init__(self, inner: Any):
        self.inner, self.venue, self.seen, self.lost, self.refused = inner, "sim", 0, 0, 0

    def submit(self, order: Any) -> Any:
        from trader.errors import BrokerUnavailableError

        self.seen += 1
        if self.seen % 5 == 0:
            self.refused += 1
            raise BrokerUnavailableError("HTTP 503 Service Unavailable (the order never reached the venue)")
        answer = self.inner.submit(order)
        if self.seen % 3 == 0:
            self.lost += 1
            raise BrokerUnavailableError("HTTP 503 Service Unavailable (the answer was lost; the order was placed)")
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def broker_5xx(root: Path) -> DrillResult:
    from trader.brokers.bars import WarehouseBars
    from trader.brokers.sim import SimBroker
    from trader.config import load_config
    from trader.prediction_client import HttpPredictionClient
    from trader.runner import Runner, replay_ticks
    from trader.store import TraderStore

    with trading_home(root, "broker_5xx") as h:
        cfg = load_config(h["config"])
        feed = WarehouseBars(h["home"] / "warehouse.duckdb", timeframe="15m")
        bars = feed.bars(list(SYMBOLS), after=OPEN - STEP, until=OPEN + BARS * STEP)
        venue = _FlakyVenue(SimBroker(feed, start=OPEN))
        with TraderStore(f"sqlite:///{h['home'] / 'trader' / 'sim.db'}") as store, \
                HttpPredictionClient(cfg.prediction.url, cfg.prediction.timeout_s) as predictor:
            Runner(config=cfg, store=store, broker=venue, predictor=predictor, run_id="drill", strict=False).run(
                replay_ticks(bars), before_cycle=lambda tick: venue.inner.advance_to(tick.ts))
            stored = {o.client_order_id: o for o in store.list_orders()}
        at_venue = [o.client_order_id for o in venue.inner.list_orders(open_only=False)]
    book = _book(h["home"])
    unknown = sum(1 for o in stored.values() if o.status.value == "new")
    survived = (venue.lost > 0 and venue.refused > 0 and len(at_venue) == len(set(at_venue))
                and set(at_venue) <= set(stored) and book.one_order_per_id and book.audit_ok)
    return DrillResult("broker_5xx", survived, [
        f"{venue.seen} submits: {venue.lost} answers lost after placing, {venue.refused} refused before placing",
        f"venue holds {len(at_venue)} orders, {len(set(at_venue))} distinct ids, all in the store: "
        f"{'yes' if set(at_venue) <= set(stored) else 'NO'}",
        f"{unknown} order(s) of unknown fate left working for reconciliation (never resent)", *_book_facts(book)])


def disk_full(root: Path) -> DrillResult:
    from trader.store import TraderStore

    with trading_home(root, "disk_full") as h:
        db = h["home"] / "trader" / "sim.db"
        TraderStore(f"sqlite:///{db}").close()  # the store exists before the disk fills
        limit = db.stat().st_size + 512 * 1024

        def small_disk() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        full = subprocess.run(_trader_cmd(h["config"]), env=_env(h["home"]), capture_output=True, text=True, timeout=180,
                              preexec_fn=small_disk)
        cut = len(_book(h["home"]).cycles)
        again = subprocess.run(_trader_cmd(h["config"]), env=_env(h["home"]), capture_output=True, text=True, timeout=180)
    book = _book(h["home"])
    survived = (full.returncode != 0 and cut < BARS and again.returncode == 0 and _every_tick_once(book)
                and book.one_order_per_id and book.positions_match_fills and book.audit_ok)
    return DrillResult("disk_full", survived, [
        f"with a full disk: exit {full.returncode} after {cut} of {BARS} cycles: {_last_line(full.stderr)}",
        f"after space returned: exit {again.returncode}, {len(book.cycles) - cut} more cycles", *_book_facts(book)])


def killed_trader(root: Path) -> DrillResult:
    with trading_home(root, "killed_trader", delay=0.05) as h:
        proc = subprocess.Popen(_trader_cmd(h["config"]), env=_env(h["home"]), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        seen = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            seen += line.startswith("2024-")
            if seen == 10:
                proc.kill()  # SIGKILL: no cleanup, no last commit
                break
        proc.wait(timeout=30)
        cut = len(_book(h["home"]).cycles)
        again = subprocess.run(_trader_cmd(h["config"]), env=_env(h["home"]), capture_output=True, text=True, timeout=180)
    book = _book(h["home"])
    survived = (proc.returncode == -signal.SIGKILL and again.returncode == 0 and _every_tick_once(book)
                and book.one_order_per_id and book.positions_match_fills and book.audit_ok)
    return DrillResult("killed_trader", survived, [
        f"kill -9 after {cut} recorded cycles (exit {proc.returncode}); the rerun: exit {again.returncode}, "
        f"{len(book.cycles) - cut} more cycles, every tick decided once: {'yes' if _every_tick_once(book) else 'NO'}",
        *_book_facts(book)])


def corrupt_bar_batch(root: Path) -> DrillResult:
    from orchestration.warehouse import Warehouse

    home = root / "corrupt_bar_batch"
    home.mkdir(parents=True)
    lines = ["Date,Open,High,Low,Close,Volume"]
    day = dt.date(2024, 1, 2)
    for i in range(60):
        while day.weekday() >= 5:
            day += dt.timedelta(days=1)
        o = 100 + i
        row = [day.isoformat(), f"{o}", f"{o + 2}", f"{o - 1}", f"{o + 1}", "1000"]
        if i % 10 == 3:
            row[2], row[3] = f"{o - 2}", f"{o + 3}"  # high below low
        if i % 10 == 7:
            row[4] = "-5"  # a negative price
        lines.append(",".join(row))
        day += dt.timedelta(days=1)
    bad = root / "bad_batch.csv"
    bad.write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-c", "from orchestration.cli import run; run()", "ingest", "--csv", str(bad), "--symbol", "XYZ"]
    proc = subprocess.run(cmd, env=_env(home), capture_output=True, text=True, timeout=600, cwd=root)
    with Warehouse(home / "warehouse.duckdb").connect(read_only=True) as con:
        rejected = con.fetchall("select reason, count(*) from raw.bars_rejected group by 1 order by 1")
        kept = con.scalar("select count(*) from raw.bars")
        in_marts = con.scalar("select count(*) from marts.bars") if con.table_exists("marts", "bars") else 0
    # 12 rows are broken on purpose; the generator's days also hit two exchange holidays (outside_session).
    survived = proc.returncode != 0 and sum(n for _, n in rejected) >= 12 and in_marts == 0 and "Traceback" not in proc.stderr
    return DrillResult("corrupt_bar_batch", survived, [
        f"alphaline ingest exit {proc.returncode}: {_last_line(proc.stderr)}",
        "quarantined in raw.bars_rejected: " + ", ".join(f"{n} × {r}" for r, n in rejected),
        f"raw.bars keeps {kept} row(s) as received; marts.bars rows from the batch: {in_marts}"])


DRILLS = (
    Drill("service_down", "prediction service refuses connections", service_down),
    Drill("broker_5xx", "the venue answers 503, sometimes after placing the order", broker_5xx),
    Drill("disk_full", "the trader store's disk fills mid-session", disk_full),
    Drill("killed_trader", "kill -9 of trader run mid-session", killed_trader),
    Drill("corrupt_bar_batch", "a CSV batch with broken rows", corrupt_bar_batch),
)


def run_drills(root: Path, names: list[str] | None = None, *, on_result: Callable[[DrillResult], object] | None = None) -> list[DrillResult]:
    """Run the named drills (default: all) in sandboxes under ``root``."""
    results = []
    for drill in DRILLS:
        if names and drill.name not in names:
            continue
        result = drill.run(root)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


__all__ = ["DRILLS", "DrillResult", "run_drills"]
