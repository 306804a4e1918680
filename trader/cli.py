"""``trader``: the trading CLI (DESIGN.md §3.5).

Typical session::

    trader run --mode sim --date 2026-11-20 --config trader.yaml   # replay a day from the warehouse
    trader status                                                   # state, last cycle, counts
    trader positions ; trader orders --working
    trader explain al-0123...                                       # one order's decision lineage
    trader kill --reason "feed looks wrong" --by alice              # HALTED + cancel working orders
    trader resume --by alice
    TRADER_API_TOKEN=... trader api --port 8080                     # the ops API

Each mode keeps its own state store under ``$ALPHALINE_HOME/trader/`` (``sim.db``,
``dry-run.db``, ``paper.db``; live uses ``trader.db``) unless ``trader.yaml`` sets
``store_url``, so simulated fills never mix with an account's. Read commands take
``--mode`` (default: the config's mode, else ``sim``) to pick the store. Every error a user
can cause is one line on stderr and a non-zero exit code; secrets never appear in output.
"""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import sqlalchemy as sa

from trader.api import cancel_working, create_app, plain, pnl_payload, status_payload
from trader.brokers.base import Broker, BrokerAccount, BrokerPosition
from trader.config import Mode, Secrets, TraderConfig, load_config
from trader.domain import ClientOrderId, Fill, Order, OrderAccepted, OrderEvent, OrderExpired, Symbol, TradingState
from trader.errors import TraderError
from trader.prediction_client import HttpPredictionClient
from trader.runner import Runner, Tick, last_closes, live_ticks, replay_ticks, session_start
from trader.store import TraderStore, default_store_url

TIMEFRAME = "15m"
_MODES = click.Choice([m.value for m in Mode])


class UserError(click.ClickException):
    """A wrong combination of options: one line (no usage block), exit code 2 like click's own usage errors."""

    exit_code = 2


class _Group(click.Group):
    """Turns a :class:`TraderError` (bad config, unreachable store, ...) into a one-line error, exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TraderError as exc:
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _home() -> Path:
    return Path(os.environ.get("ALPHALINE_HOME", ".alphaline")).resolve()


def store_url_for(mode: Mode, config: TraderConfig | None) -> str:
    """``store_url`` from the config, else the mode's own SQLite file (live: DESIGN.md's ``trader.db``)."""
    if config is not None and config.store_url:
        return config.store_url
    if mode is Mode.LIVE:
        return default_store_url()
    return f"sqlite:///{_home() / 'trader' / f'{mode.value}.db'}"


def _config(path: Path | None, *, required: bool) -> TraderConfig | None:
    if path is None and Path("trader.yaml").is_file():
        path = Path("trader.yaml")
    if path is None:
        if required:
            raise UserError("no trader.yaml here; pass --config PATH (see trader/trader.example.yaml)")
        return None
    return load_config(path)


def _options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` and ``--mode`` for the commands that read a store; passes ``cfg``, ``mode`` and ``store_url``."""

    @click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="trader.yaml (default: ./trader.yaml when present).")
    @click.option("--mode", type=_MODES, default=None, help="Whose store to read (default: the config's mode, else sim).")
    @functools.wraps(func)
    def wrapper(config_path: Path | None, mode: str | None, **kwargs: Any) -> Any:
        cfg = _config(config_path, required=False)
        chosen = Mode(mode) if mode else (cfg.mode if cfg else Mode.SIM)
        return func(cfg=cfg, mode=chosen, store_url=store_url_for(chosen, cfg), **kwargs)

    return wrapper


def _safe(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def _table(rows: Iterable[Iterable[Any]], headers: list[str]) -> None:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="alphaline")
def main() -> None:
    """Alphaline trader: risk engine, sizing and order routing."""


@main.command()
def paths() -> None:
    """Show where the trader keeps its state (under ALPHALINE_HOME)."""
    click.echo(f"live store: {_home() / 'trader' / 'trader.db'}")
    for mode in (Mode.SIM, Mode.DRY_RUN, Mode.PAPER):
        click.echo(f"{mode.value} store: {_home() / 'trader' / f'{mode.value}.db'}")


# -- run ------------------------------------------------------------------------------------------
@dataclass
class Session:
    """What one mode brings to the run loop: the venue, the ticks and how the clock advances."""

    broker: Broker
    ticks: Iterable[Tick]
    run_id: str
    strict: bool
    started_at: dt.datetime
    before_cycle: Callable[[Tick], object] | None = None


@main.command()
@click.option("--mode", type=_MODES, default=None, help="sim (replay), dry-run, paper or live (default: the config's).")
@click.option("--once", is_flag=True, help="Run one cycle and exit.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="sim: the day to replay (default: the latest).")
@click.option("--cash", type=str, default=None, help="sim/dry-run: starting cash (default 100000).")
@click.option("--fresh", is_flag=True, help="sim: start from an empty sim store.")
@click.option("--i-understand-this-is-live", "live_ok", is_flag=True, help="Required with --mode live: real money.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="trader.yaml.")
def run(mode: str | None, once: bool, day: dt.datetime | None, cash: str | None, fresh: bool, live_ok: bool,
        config_path: Path | None) -> None:
    """Run the decision loop: predictions → sizing → risk checks → orders → fills."""
    cfg = _config(config_path, required=True)
    assert cfg is not None
    chosen = Mode(mode) if mode else cfg.mode
    if chosen is Mode.LIVE and not live_ok:
        raise UserError("--mode live trades real money; add --i-understand-this-is-live to confirm")
    if chosen is not Mode.SIM and (day or fresh):
        raise UserError("--date and --fresh apply to --mode sim only")
    try:
        start_cash = Decimal(cash) if cash is not None else None
    except ArithmeticError:
        raise UserError(f"--cash: {cash!r} is not a number") from None
    secrets = Secrets.from_env()
    url = store_url_for(chosen, cfg)
    if fresh:
        _remove_sqlite(url)
    with TraderStore(url) as store, HttpPredictionClient(cfg.prediction.url, cfg.prediction.timeout_s) as predictor:
        session = _session(chosen, cfg, store, secrets, day=day.date() if day else None, cash=start_cash, once=once)
        from trader.reconcile import reconcile as run_reconcile

        # Refuse to trade on a book that disagrees with the venue (ReconciliationError: one line, exit 1).
        run_reconcile(store, session.broker, now=session.started_at).raise_if_blocked()
        runner = Runner(config=cfg, store=store, broker=session.broker, predictor=predictor, run_id=session.run_id,
                        strict=session.strict)
        click.echo(f"{chosen.value}: store {_safe(url)}, venue {session.broker.venue}, predictions from {predictor.url}")
        try:
            reports = runner.run(session.ticks, before_cycle=session.before_cycle, limit=1 if once else None,
                                 on_report=lambda r: click.echo(r.line()))
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; state is in the store, `trader run` resumes after the last cycle") from None
        if not reports:
            click.echo("nothing to do: every tick of this session already ran in this store (sim: --fresh starts over)")
            return
        last = reports[-1]
        click.echo(f"done: {len(reports)} cycles, {sum(r.submitted for r in reports)} orders, {sum(r.fills for r in reports)} "
                   f"fills; equity {last.equity:.2f}, state {last.state.value}")


def _remove_sqlite(url: str) -> None:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise UserError("--fresh only removes a SQLite sim store")
    for suffix in ("", "-wal", "-shm"):
        Path(parsed.database + suffix).unlink(missing_ok=True)


def _session(mode: Mode, cfg: TraderConfig, store: TraderStore, secrets: Secrets, *, day: dt.date | None,
             cash: Decimal | None, once: bool) -> Session:
    from trader.brokers.bars import DuckDBBars  # reads the warehouse read-only, one query at a time

    feed = DuckDBBars(timeframe=TIMEFRAME)
    if mode is Mode.SIM:
        return _sim_session(cfg, store, feed, day=day, cash=cash)
    broker: Broker = DryRunBroker(cash or Decimal(100_000)) if mode is Mode.DRY_RUN else venue_broker(mode, secrets)
    ticks = live_ticks(lambda at: last_closes(feed, cfg.universe.symbols, at), timeframe=TIMEFRAME, once=once)
    return Session(broker=broker, ticks=ticks, run_id=mode.value, strict=False, started_at=dt.datetime.now(dt.UTC))


def _sim_session(cfg: TraderConfig, store: TraderStore, feed: Any, *, day: dt.date | None, cash: Decimal | None) -> Session:
    from trader.brokers.bars import InMemoryBars
    from trader.brokers.sim import SimBroker, SimConfig

    day = day or _latest_day(feed.path)
    start = session_start(day)
    bars = feed.bars(cfg.universe.symbols, after=start, until=start + dt.timedelta(days=1))
    if not bars:
        raise TraderError(f"{feed.path}: marts.bars has no {TIMEFRAME} bars on {day} for the configured universe")
    opened = store.latest_audit("sim_session")
    if opened is None:  # remembered, so that a resumed session rebuilds the same venue
        cash = cash or Decimal(100_000)
        store.append_audit("sim_session", {"cash": cash, "first_day": day}, ts=start)
    elif cash is not None and cash != Decimal(opened.payload["cash"]):
        raise UserError(f"this sim store started with cash {opened.payload['cash']}; drop --cash or add --fresh")
    else:
        cash = Decimal(opened.payload["cash"])
    last = store.latest_audit("cycle")
    resume_at = dt.datetime.fromisoformat(last.payload["ts"]) if last else None
    broker = SimBroker(InMemoryBars(bars, timeframe=feed.timeframe), config=SimConfig(initial_cash=cash),
                       start=resume_at or bars[0].ts)
    if resume_at is not None:  # the simulator keeps no state: rebuild it from the store
        broker.restore(orders=store.list_orders(), fills=store.list_fills())
    return Session(broker=broker, ticks=replay_ticks(bars, timeframe=TIMEFRAME), run_id=f"sim-{day}", strict=True,
                   started_at=resume_at or bars[0].ts, before_cycle=lambda tick: broker.advance_to(tick.ts))


def _latest_day(path: Path) -> dt.date:
    import duckdb

    if not path.is_file():
        raise TraderError(f"{path}: no warehouse here; build marts.bars first (or set ALPHALINE_HOME)")
    try:
        with duckdb.connect(str(path), read_only=True) as conn:
            (latest,) = conn.execute("SELECT max(ts) FROM marts.bars WHERE timeframe = ?", [TIMEFRAME]).fetchone()
    except duckdb.Error as exc:
        raise TraderError(f"{path}: cannot read marts.bars ({str(exc).splitlines()[0]})") from None
    if latest is None:
        raise TraderError(f"{path}: marts.bars has no {TIMEFRAME} bars")
    return latest.astimezone(ZoneInfo("America/New_York")).date()


def venue_broker(mode: Mode, secrets: Secrets) -> Broker:
    """The Alpaca account for ``paper``/``live`` (keys from the environment only)."""
    from trader.brokers.alpaca import AlpacaBroker  # here: alpaca-py is imported only by the modes that trade there

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


# -- state ----------------------------------------------------------------------------------------
@main.command()
@_options
def status(cfg: TraderConfig | None, mode: Mode, store_url: str) -> None:
    """Trading state, the last cycle and counts."""
    with TraderStore(store_url) as store:
        s = status_payload(store)
    click.echo(f"store:     {_safe(store_url)} ({mode.value})")
    click.echo(f"state:     {s['state'].upper()}" + (f" since {s['changed_at']} by {s['changed_by']}: {s['reason']}" if s["changed_at"] else ""))
    last = s["last_cycle"]
    if last:
        click.echo(f"last cycle {last['ts']}: {last['status']}")
        click.echo(f"equity:    {last['equity']}  cash {last['cash']}  positions {last['positions_value']}")
    click.echo(f"orders:    {s['working_orders']} working; positions: {s['open_positions']} open; audit: {s['audit']['records']} records")


@main.command()
@click.option("--all", "show_all", is_flag=True, help="Include flat positions (they carry realised P&L).")
@_options
def positions(cfg: TraderConfig | None, mode: Mode, store_url: str, show_all: bool) -> None:
    """Positions from the store, and the P&L summary."""
    with TraderStore(store_url) as store:
        rows = [p for p in store.positions().values() if show_all or p.qty != 0]
        pnl = pnl_payload(store)
    _table([(p.symbol, p.qty, f"{p.avg_cost:.4f}", f"{p.realized_pnl:.2f}", f"{p.fees:.2f}") for p in rows],
           ["symbol", "qty", "avg_cost", "realized", "fees"])
    click.echo(f"realised {Decimal(pnl['realized_pnl']):.2f}, fees {Decimal(pnl['fees']):.2f}"
               + (f", unrealised {Decimal(pnl['unrealized_pnl']):.2f} at {pnl['as_of']}" if pnl["unrealized_pnl"] else ""))


@main.command()
@click.option("--working", is_flag=True, help="Only orders that may still fill.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@_options
def orders(cfg: TraderConfig | None, mode: Mode, store_url: str, working: bool, limit: int) -> None:
    """Recent orders, oldest first."""
    with TraderStore(store_url) as store:
        rows = (store.working_orders() if working else store.list_orders())[-limit:]
    _table([(o.created_at.isoformat(timespec="minutes"), o.client_order_id, o.symbol, o.side.value, o.qty, o.filled_qty,
             f"{o.avg_fill_price:.4f}" if o.avg_fill_price else "", o.status.value, o.status_reason) for o in rows],
           ["created", "client_order_id", "symbol", "side", "qty", "filled", "avg_price", "status", "reason"])


@main.command()
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--by", default=None, help="Who (default: the login name).")
@_options
def kill(cfg: TraderConfig | None, mode: Mode, store_url: str, reason: str, by: str | None) -> None:
    """HALT trading (persisted: survives restarts) and cancel working orders."""
    with TraderStore(store_url) as store:
        # HALTED first and whatever happens next: reaching the venue is the part that can fail.
        store.set_trading_state(TradingState.HALTED, reason=reason, changed_by=by or getpass.getuser(), at=dt.datetime.now(dt.UTC))
        try:
            canceller = venue_broker(mode, Secrets.from_env()).cancel_all if mode in (Mode.PAPER, Mode.LIVE) else None
        except TraderError as exc:
            raise click.ClickException(f"HALTED ({mode.value}), but the venue cannot be reached to cancel working orders: {exc}") from None
        result = cancel_working(store, canceller)
    click.echo(f"HALTED ({mode.value}): {reason}. {result['note']}")


@main.command()
@click.option("--by", required=True, help="Who resumes trading (kept in the audit log).")
@click.option("--reason", default="", help="Why it is safe again.")
@_options
def resume(cfg: TraderConfig | None, mode: Mode, store_url: str, by: str, reason: str) -> None:
    """Set the trading state back to ACTIVE."""
    with TraderStore(store_url) as store:
        store.set_trading_state(TradingState.ACTIVE, reason=reason or f"resumed by {by}", changed_by=by, at=dt.datetime.now(dt.UTC))
    click.echo(f"ACTIVE ({mode.value}): resumed by {by}")


@main.command()
@click.option("--cancel-unknown", is_flag=True, help="Cancel working orders at the venue that the store does not know.")
@click.option("--adopt-positions", is_flag=True, help="Overwrite local positions that still differ with the venue's.")
@_options
def reconcile(cfg: TraderConfig | None, mode: Mode, store_url: str, cancel_unknown: bool, adopt_positions: bool) -> None:
    """Compare the store's orders, fills and positions with the venue's; resolve what is safe to resolve."""
    if mode not in (Mode.PAPER, Mode.LIVE):
        raise click.ClickException(f"--mode {mode.value}: the venue lives inside `trader run`, which reconciles at start-up")
    from trader.reconcile import reconcile as run_reconcile

    with TraderStore(store_url) as store:
        report = run_reconcile(store, venue_broker(mode, Secrets.from_env()), cancel_unknown=cancel_unknown,
                               adopt_positions=adopt_positions)
    if not report.can_trade:
        raise click.ClickException(report.summary())
    click.echo(report.summary())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@_options
def api(cfg: TraderConfig | None, mode: Mode, store_url: str, host: str, port: int) -> None:
    """Serve the ops API (kill/resume need TRADER_API_TOKEN)."""
    import uvicorn

    secrets = Secrets.from_env()
    canceller = venue_broker(mode, secrets).cancel_all if mode in (Mode.PAPER, Mode.LIVE) else None
    if secrets.api_token is None:
        click.echo("warning: TRADER_API_TOKEN is not set: kill/resume answer 503", err=True)
    store = TraderStore(store_url)
    uvicorn.run(create_app(store=store, token=secrets.api_token, canceller=canceller), host=host, port=port)


# -- explain --------------------------------------------------------------------------------------
@main.command()
@click.argument("client_order_id")
@click.option("--json", "as_json", is_flag=True, help="The raw audit records instead of the summary.")
@_options
def explain(cfg: TraderConfig | None, mode: Mode, store_url: str, client_order_id: str, as_json: bool) -> None:
    """The decision lineage of one order: prediction, model, features' time, risk checks, fills."""
    with TraderStore(store_url) as store:
        order, records = store.get_order(client_order_id), store.audit_for_order(client_order_id)
    if order is None and not records:
        raise click.ClickException(f"explain: no order {client_order_id!r} in {_safe(store_url)} (wrong --mode?)")
    if as_json:
        click.echo(json.dumps([{"seq": r.seq, "ts": r.ts, "kind": r.kind, "payload": r.payload} for r in records], indent=2))
        return
    if order is not None:
        done = f": {order.filled_qty} @ {order.avg_fill_price:.4f}, fees {order.fees}" if order.avg_fill_price else ""
        click.echo(f"order {order.client_order_id}: {order.side.value} {order.qty} {order.symbol} "
                   f"({order.order_type.value}, {order.time_in_force.value}) — {order.status.value}{done}"
                   + (f" ({order.status_reason})" if order.status_reason else ""))
    for record in records:
        for line in _lineage_lines(record.ts, record.kind, record.payload):
            click.echo(line)


def _lineage_lines(ts: str, kind: str, p: dict[str, Any]) -> list[str]:
    if kind == "risk_decision" and p.get("command") == "SubmitOrder":
        pred = p.get("prediction")
        head = [f"{ts}  decision by run {p.get('run_id')}: {p['side']} {p['qty']} {p['symbol']} sized at {p['reference_price']}"]
        if pred:
            head.append(f"  prediction  model {p['model_version']}, score {pred['score']:+.4f} {pred['direction']}, "
                        f"confidence {pred['confidence']:.2f}, features at {p['feature_ts']}" + (" (STALE)" if pred["stale"] else ""))
        else:
            head.append("  prediction  none (a risk-reducing order)")
        head.append(f"  risk        {'APPROVED' if p['approved'] else 'DENIED: ' + p['reason']}")
        return head + [f"    {'ok ' if c['approved'] else 'NO '} {c['check']:<18} {c['reason']:<31} {c['message']}" for c in p["checks"]]
    if kind == "fill":
        f = p["fill"]
        return [f"{ts}  fill {f['fill_id']}: {f['side']} {f['qty']} @ {f['price']}, fee {f['fee']} ({f['venue']})"]
    details = {k: v for k, v in p.items() if k in ("venue", "order_id", "reason", "note", "cancel_reason") and v}
    return [f"{ts}  {kind.replace('_', ' ')}" + ("".join(f", {k} {v}" for k, v in plain(details).items()))]
