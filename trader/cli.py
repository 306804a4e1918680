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
can cause is one line on stderr and a non-zero exit code; a ``run`` that ends with trading HALTED
exits 3. Read commands (``status``, ``positions``, ``orders``, ``explain``) never create a store, and
``run --fresh`` moves the old sim store aside instead of deleting it. Secrets never appear in output.
"""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from trader.alerts import env_urls as env_alert_urls
from trader.api import cancel_working, create_app, plain, pnl_payload, status_payload
from trader.brokers.base import Broker, BrokerAccount, BrokerPosition
from trader.cli_sim import (
    TIMEFRAME,
    RunHalted,
    Session,
    UserError,
    alphaline_home,
    load_replay,
    replace_sim_store,
    safe_url,
    sim_session,
)
from trader.config import Mode, Secrets, StreamsConfig, TraderConfig, load_config
from trader.corporate_actions import CorporateActionBook, InMemoryActions, WarehouseActions, restated_closes
from trader.domain import ClientOrderId, Fill, Order, OrderAccepted, OrderEvent, OrderExpired, Symbol, TradingState
from trader.errors import TraderError
from trader.monitoring import run_observers
from trader.prediction_client import HttpPredictionClient
from trader.risk.record import decision_checks, decision_prediction
from trader.runner import CycleReport, Runner, last_closes, live_ticks
from trader.servers import server_store_url
from trader.store import TraderStore, default_store_url, sqlite_file
from trader.tca import NEW_YORK, approved_decision, order_tca, session_tca, summarise

if TYPE_CHECKING:
    pass

_MODES = click.Choice([m.value for m in Mode])


class _Group(click.Group):
    """Turns a :class:`TraderError` (bad config, unreachable store, ...) into a one-line error, exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TraderError as exc:
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def store_url_for(mode: Mode, config: TraderConfig | None) -> str:
    """``store_url`` from the config, else the mode's database on ``ALPHALINE_POSTGRES_URL`` (the servers profile),
    else the mode's own SQLite file (live: DESIGN.md's ``trader.db``)."""
    if config is not None and config.store_url:
        return config.store_url
    if (server := server_store_url(mode.value)) is not None:
        return server
    if mode is Mode.LIVE:
        return default_store_url()
    return f"sqlite:///{alphaline_home() / 'trader' / f'{mode.value}.db'}"


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
    """Show where the trader keeps its state (under ALPHALINE_HOME, or on ALPHALINE_POSTGRES_URL's server)."""
    for mode in (Mode.LIVE, Mode.SIM, Mode.DRY_RUN, Mode.PAPER):
        click.echo(f"{mode.value} store: {safe_url(store_url_for(mode, None)).removeprefix('sqlite:///')}")


# -- run ------------------------------------------------------------------------------------------
@main.command()
@click.option("--mode", type=_MODES, default=None, help="sim (replay), dry-run, paper or live (default: the config's).")
@click.option("--once", is_flag=True, help="Run one cycle and exit.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="sim: the day to replay (default: the latest).")
@click.option("--cash", type=str, default=None, help="sim/dry-run: starting cash (default 100000).")
@click.option("--fresh", is_flag=True, help="sim: start from an empty sim store (the old one is moved aside, not deleted).")
@click.option("--discard-sealed", "discard_sealed", default=None, metavar="DAY[,DAY...]",
              help="With --fresh: replace a store holding these days sealed into the WORM archive.")
@click.option("--i-understand-this-is-live", "live_ok", is_flag=True, help="Required with --mode live: real money.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="trader.yaml.")
def run(mode: str | None, once: bool, day: dt.datetime | None, cash: str | None, fresh: bool, discard_sealed: str | None,
        live_ok: bool, config_path: Path | None) -> None:
    """Run the decision loop: predictions → sizing → risk checks → orders → fills.

    Every option, the config and (sim) the day's bars are checked before the store is touched.
    Exit codes: 0 done; 1 a failure (config, warehouse, store, venue, reconciliation); 2 a wrong
    option; 3 the run ended with trading HALTED (kill switch, drawdown flatten-and-halt, prediction
    failures...): the reason is on stderr, and `trader resume --by NAME` clears it.
    """
    cfg = _config(config_path, required=True)
    assert cfg is not None
    chosen = Mode(mode) if mode else cfg.mode
    start_cash, discard = _check_run_options(chosen, live_ok=live_ok, day=day, fresh=fresh, cash=cash,
                                             discard_sealed=discard_sealed)
    secrets = Secrets.from_env()
    env_alert_urls()  # a bad ALPHALINE_ALERT_URLS is one line before anything is touched
    url = store_url_for(chosen, cfg)
    replay = load_replay(cfg, day.date() if day else None) if chosen is Mode.SIM else None
    venue = None if chosen is Mode.SIM else _venue_session(chosen, cfg, secrets, cash=start_cash, once=once)
    replaced = replace_sim_store(url, discard=discard) if fresh else None
    with TraderStore(url) as store, HttpPredictionClient(cfg.prediction.url, cfg.prediction.timeout_s,
                                                                     explain=cfg.prediction.explain) as predictor:
        session = sim_session(store, replay, cash=start_cash, replaced=replaced, lot_size=cfg.sizing.lot_size,
                              venue=cfg.sim) if replay is not None else venue
        assert session is not None  # every other mode built its venue above
        from trader.reconcile import reconcile as run_reconcile

        # Splits and dividends: the sim venue applies the day's ones at its first open, the store follows at each
        # ex-date's first cycle; a real venue has split its positions already, so the store follows before comparing.
        actions = CorporateActionBook(InMemoryActions(replay.actions) if replay is not None else WarehouseActions())
        if replay is None:
            actions.apply_due(store, now=session.started_at, run_id=session.run_id)
        # Refuse to trade on a book that disagrees with the venue (ReconciliationError: one line, exit 1).
        run_reconcile(store, session.broker, now=session.started_at).raise_if_blocked()
        notes: list[str] = []  # where alerts go and metrics are served: on the start line
        observers = run_observers(cfg, run_id=session.run_id, initial_state=store.trading_state().state, echo=notes.append)
        runner = Runner(config=cfg, store=store, broker=session.broker, predictor=predictor, run_id=session.run_id,
                        strict=session.strict, observers=observers, corporate_actions=actions)
        click.echo(f"{chosen.value}: store {safe_url(url)}, venue {session.broker.venue}, predictions from {predictor.url}; "
                   + "; ".join(notes))
        before_cycle = session.before_cycle
        if venue is not None and cfg.streams.reconcile_every_cycles:  # the venue's view, again during the session
            from trader.reconcile import periodic

            before_cycle = periodic(store, session.broker, every=cfg.streams.reconcile_every_cycles, then=before_cycle)
        try:
            reports = runner.run(session.ticks, before_cycle=before_cycle, limit=1 if once else None,
                                 on_report=lambda r: click.echo(r.line()))
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; state is in the store, `trader run` resumes after the last cycle") from None
        _summary(reports)
        _raise_if_halted(store)


def _check_run_options(mode: Mode, *, live_ok: bool, day: dt.datetime | None, fresh: bool, cash: str | None,
                       discard_sealed: str | None) -> tuple[Decimal | None, frozenset[dt.date]]:
    """The options that need no file: the starting cash and the sealed days ``--discard-sealed`` names."""
    if mode is Mode.LIVE and not live_ok:
        raise UserError("--mode live trades real money; add --i-understand-this-is-live to confirm")
    if mode is not Mode.SIM and (day or fresh):
        raise UserError("--date and --fresh apply to --mode sim only")
    if discard_sealed is not None and not fresh:
        raise UserError("--discard-sealed applies with --fresh only")
    try:
        start_cash = Decimal(cash) if cash is not None else None
    except ArithmeticError:
        raise UserError(f"--cash: {cash!r} is not a number") from None
    return start_cash, _days(discard_sealed)


def _days(text: str | None) -> frozenset[dt.date]:
    try:
        return frozenset(dt.date.fromisoformat(d.strip()) for d in (text or "").split(",") if d.strip())
    except ValueError:
        raise UserError(f"--discard-sealed: {text!r} is not a list of YYYY-MM-DD days") from None


def _summary(reports: list[CycleReport]) -> None:
    if not reports:
        click.echo("nothing to do: every tick of this session already ran in this store (sim: --fresh starts over)")
        return
    last = reports[-1]
    click.echo(f"done: {len(reports)} cycles, {sum(r.submitted for r in reports)} orders, {sum(r.fills for r in reports)} "
               f"fills; equity {last.equity:.2f}, state {last.state.value}")


def _raise_if_halted(store: TraderStore) -> None:
    """A run that ends HALTED fails (exit 3): a scheduler must not read it as a good day."""
    state = store.trading_state()
    if state.state is TradingState.HALTED:
        since = f" since {state.changed_at.isoformat()}" if state.changed_at else ""
        raise RunHalted(f"run ended HALTED{since} by {state.changed_by or 'unknown'}: {state.reason} "
                        "(`trader resume --by NAME` after checking)")


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


# -- state ----------------------------------------------------------------------------------------
def _read_store(url: str, mode: Mode) -> TraderStore:
    """The store of a read command, which creates nothing: a missing SQLite file is an error, not a new empty store."""
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise click.ClickException(f"no {mode.value} store at {path}: nothing has run in this mode yet (is ALPHALINE_HOME set?)")
    return TraderStore(url)


@main.command()
@_options
def status(cfg: TraderConfig | None, mode: Mode, store_url: str) -> None:
    """Trading state, the last cycle and counts."""
    with _read_store(store_url, mode) as store:
        s = status_payload(store)
    click.echo(f"store:     {safe_url(store_url)} ({mode.value})")
    click.echo(f"state:     {s['state'].upper()}" + (f" since {s['changed_at']} by {s['changed_by']}: {s['reason']}" if s["changed_at"] else ""))
    last = s["last_cycle"]
    if last:
        click.echo(f"last cycle {last['ts']}: {last['status']}")
        cents = {k: Decimal(str(last[k])).quantize(Decimal("0.01")) for k in ("equity", "cash", "positions_value")}
        click.echo(f"equity:    {cents['equity']}  cash {cents['cash']}  positions {cents['positions_value']}")  # exact in the store
    click.echo(f"orders:    {s['working_orders']} working; positions: {s['open_positions']} open; audit: {s['audit']['records']} records")


@main.command()
@click.option("--all", "show_all", is_flag=True, help="Include flat positions (they carry realised P&L).")
@_options
def positions(cfg: TraderConfig | None, mode: Mode, store_url: str, show_all: bool) -> None:
    """Positions from the store, and the P&L summary."""
    with _read_store(store_url, mode) as store:
        rows = [p for p in store.positions().values() if show_all or p.qty != 0]
        pnl = pnl_payload(store)
    _table([(p.symbol, p.qty, f"{p.avg_cost:.4f}", f"{p.realized_pnl:.2f}", f"{p.fees:.2f}") for p in rows],
           ["symbol", "qty", "avg_cost", "realized", "fees"])
    click.echo(f"realised {Decimal(pnl['realized_pnl']):.2f}, fees {Decimal(pnl['fees']):.2f}"
               + (f", unrealised {Decimal(pnl['unrealized_pnl']):.2f} at {pnl['as_of']}" if pnl["unrealized_pnl"] else ""))


@main.command("corporate-actions")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Apply actions with ex-date up to this day (default: today in New York).")
@_options
def corporate_actions(cfg: TraderConfig | None, mode: Mode, store_url: str, day: dt.datetime | None) -> None:
    """Apply the splits and cash dividends due (marts.corporate_actions) to the store, once each, and list them.

    `trader run` applies them by itself at the first cycle of each ex-date; this is for a book that is not running.
    """
    from trader.corporate_actions import applied_actions
    from trader.runner import session_start

    at = session_start(day.date()) if day else dt.datetime.now(dt.UTC)
    with _read_store(store_url, mode) as store:
        new = CorporateActionBook(WarehouseActions()).apply_due(store, now=at, run_id=f"cli-{mode.value}")
        rows = applied_actions(store)
    _table([(r.action.action_id, r.qty_before, r.qty_after, f"{r.avg_cost_after:.4f}", f"{r.cash:.2f}",
             r.applied_at.isoformat(timespec="minutes")) for r in rows],
           ["action", "qty_before", "qty_after", "avg_cost_after", "cash", "applied_at"])
    click.echo(f"{len(new)} action(s) applied now, {len(rows)} in all")


@main.command()
@click.option("--working", is_flag=True, help="Only orders that may still fill.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@_options
def orders(cfg: TraderConfig | None, mode: Mode, store_url: str, working: bool, limit: int) -> None:
    """Recent orders, oldest first."""
    with _read_store(store_url, mode) as store:
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
    uvicorn.run(create_app(store=store, token=secrets.api_token, canceller=canceller, mode=mode.value), host=host, port=port)


# -- risk -----------------------------------------------------------------------------------------
@main.command("risk")
@click.option("--market-shock", default="-0.05", show_default=True, help="Move of every name in one bar.")
@click.option("--sector-shock", default="-0.10", show_default=True, help="Move of one sector at a time.")
@click.option("--vol-multiplier", default="3", show_default=True, help="Volatility scenario: returns times this.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@_options
def risk(cfg: TraderConfig | None, mode: Mode, store_url: str, market_shock: str, sector_shock: str,
         vol_multiplier: str, as_json: bool) -> None:
    """Stress scenarios, VaR/CVaR and liquidity of the book as of the last cycle (reads only)."""
    from trader.brokers.bars import WarehouseBars
    from trader.history import MarketHistory
    from trader.risk.stress import stress_report
    from trader.warehouse import describe

    if cfg is None:
        raise UserError("risk: needs trader.yaml (sectors and limits); pass --config PATH")
    shocks = {}
    for name, text in (("--market-shock", market_shock), ("--sector-shock", sector_shock), ("--vol-multiplier", vol_multiplier)):
        try:
            shocks[name] = Decimal(text)
        except ArithmeticError:
            raise UserError(f"{name}: {text!r} is not a number") from None
    with _read_store(store_url, mode) as store:
        last, held = store.latest_audit("cycle"), {s: p.qty for s, p in store.positions().items() if p.qty}
    if last is None:
        raise click.ClickException(f"risk: no cycle in the {mode.value} store yet; `trader run` first")
    at, cash = dt.datetime.fromisoformat(last.payload["ts"]), Decimal(last.payload["cash"])
    feed = WarehouseBars(timeframe=TIMEFRAME)
    prices = last_closes(feed, sorted(held), at) if held else {}
    missing = sorted(set(held) - set(prices))
    if missing:
        raise click.ClickException(f"risk: no close by {at.isoformat()} for {', '.join(missing)} in {describe(feed.location)}")
    history = MarketHistory(feed, lookback=dt.timedelta(days=cfg.history.lookback_days), min_observations=cfg.history.min_observations)
    report = stress_report(held, prices=prices, equity=cash + sum((q * prices[s] for s, q in held.items()), Decimal(0)),
                           snapshot=history.snapshot(cfg.universe.symbols, until=at), sectors=cfg.universe.sector_map(),
                           limits=cfg.risk, market_shock=shocks["--market-shock"], sector_shock=shocks["--sector-shock"],
                           vol_multiplier=shocks["--vol-multiplier"])
    if as_json:
        click.echo(json.dumps({"as_of": at.isoformat(), "mode": mode.value} | report.to_record(), indent=2, default=str))
        return
    click.echo(f"book of the {mode.value} store as of {at.isoformat()} ({len(held)} positions)")
    for line in report.lines():
        click.echo(line)


# -- explain --------------------------------------------------------------------------------------
@main.command()
@click.argument("client_order_id")
@click.option("--json", "as_json", is_flag=True, help="The raw audit records instead of the summary.")
@_options
def explain(cfg: TraderConfig | None, mode: Mode, store_url: str, client_order_id: str, as_json: bool) -> None:
    """The decision lineage of one order: prediction, model, features' time, risk checks, fills."""
    with _read_store(store_url, mode) as store:
        order, records = store.get_order(client_order_id), store.audit_for_order(client_order_id)
        fills = store.list_fills(client_order_id=client_order_id)
    if order is None and not records:
        raise click.ClickException(f"explain: no order {client_order_id!r} in {safe_url(store_url)} (wrong --mode?)")
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
    decision = approved_decision(records)
    row = order_tca(order, decision, fills) if order is not None and decision is not None else None
    if row is not None and row.avg_price is not None:
        click.echo(f"  tca         arrival {row.arrival}, average fill {row.avg_price:.4f}: slippage {row.slippage_bps:+} bps, "
                   f"shortfall {row.shortfall:+} (fees {row.fees})")
    if order is not None and (shadow := _tracked(mode, order)) is not None:
        click.echo(f"  backtest    the same order through the backtest's costs: average fill {shadow['shadow_avg'] or '-'}, "
                   f"slippage {shadow['shadow_slippage_bps'] or '-'} bps (trader track, {order.created_at.astimezone(NEW_YORK).date()})")


def _tracked(mode: Mode, order: Any) -> dict[str, Any] | None:
    """The order's line in its session's ``trader track`` report, when one was written."""
    path = alphaline_home() / "reports" / "tracking" / f"{mode.value}-{order.created_at.astimezone(NEW_YORK).date()}.json"
    if not path.is_file():
        return None
    return next((o for o in json.loads(path.read_text())["orders"] if o["client_order_id"] == order.client_order_id), None)


# -- tca ------------------------------------------------------------------------------------------
@main.command()
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Orders decided on this New York session (default: every order in the store).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the orders and the summary.")
@_options
def tca(cfg: TraderConfig | None, mode: Mode, store_url: str, day: dt.datetime | None, as_json: bool) -> None:
    """Transaction cost analysis: each order's fills against the price it was decided at (trader/tca.py)."""
    with _read_store(store_url, mode) as store:
        rows = session_tca(store, day=day.date() if day else None, feed=_tca_bars())
    total = summarise(rows)
    if as_json:
        click.echo(json.dumps({"orders": [r.record() for r in rows], "summary": plain(total)}, indent=2))
        return
    _table(([r.client_order_id, r.symbol, r.side, r.arrival, r.avg_price.quantize(Decimal("0.0001")) if r.avg_price else "-",
             f"{r.filled}/{r.qty}", r.slippage_bps if r.slippage_bps is not None else "-", r.shortfall] for r in rows),
           ["order", "symbol", "side", "arrival", "avg fill", "filled", "slip bps", "shortfall"])
    click.echo(f"{total['orders']} orders, filled notional {total['filled_notional']}, slippage {total['slippage_bps']} bps "
               f"(notional-weighted), shortfall {total['shortfall']}, fees {total['fees']}, fill rate {total['fill_rate']}")


@main.command()
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="The New York session to track (default: the store's newest).")
@click.option("--commission-bps", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="The backtest's commission (models resource commission_bps).")
@click.option("--half-spread-bps", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="The backtest's half spread (models resource half_spread_bps).")
@_options
def track(cfg: TraderConfig | None, mode: Mode, store_url: str, day: dt.datetime | None, commission_bps: float,
          half_spread_bps: float) -> None:
    """Live against backtest for one session: its own orders through the backtest's costs (trader/tracking.py).

    Writes $ALPHALINE_HOME/reports/tracking/<mode>-<day>.md, .json and .png.
    """
    from trader.brokers.bars import WarehouseBars
    from trader.tracking import track_session, write_report

    with _read_store(store_url, mode) as store:
        report = track_session(store, WarehouseBars(), commission_bps=commission_bps, half_spread_bps=half_spread_bps,
                               day=day.date() if day else None)
    paths = write_report(report, alphaline_home() / "reports" / "tracking", mode=mode.value)
    for line in report.lines():
        click.echo(line)
    click.echo(f"report: {paths['md']}")


def _tca_bars() -> Any:
    """The warehouse's bars for the parents' market VWAP (read only when there are parents; missing: no benchmark)."""
    from trader.brokers.bars import WarehouseBars

    return WarehouseBars(timeframe=TIMEFRAME)


def _why_lines(why: dict[str, Any] | None) -> list[str]:
    """The SHAP attribution of a score: base, the top contributions, the rest."""
    if not why:
        return []
    ranked = sorted(why["contributions"].items(), key=lambda kv: -abs(kv[1]))  # the audit stores keys sorted by name
    parts = ", ".join(f"{name} {value:+.4f}" for name, value in ranked)
    lines = [f"  why         base {why['base']:+.4f}; {parts}; other features {why['other']:+.4f}"]
    if why.get("families"):
        by_family = sorted(why["families"].items(), key=lambda kv: -abs(kv[1]))
        lines.append("              by family: " + ", ".join(f"{name} {value:+.4f}" for name, value in by_family))
    return lines


def _lineage_lines(ts: str, kind: str, p: dict[str, Any]) -> list[str]:
    if kind == "risk_decision" and p.get("command") == "SubmitOrder":
        pred = decision_prediction(p)  # trader/risk/record.py: the compact format and the first one alike
        head = [f"{ts}  decision by run {p.get('run_id')}: {p['side']} {p['qty']} {p['symbol']} sized at {p['reference_price']}"]
        if pred:
            head.append(f"  prediction  model {p['model_version']}, score {pred['score']:+.4f} {pred['direction']}, "
                        f"confidence {pred['confidence']:.2f}, features at {p['feature_ts']}" + (" (STALE)" if pred["stale"] else ""))
            head += _why_lines(pred.get("explanation"))
        else:
            head.append("  prediction  none (a risk-reducing order)")
        head.append(f"  risk        {'APPROVED' if p['approved'] else 'DENIED: ' + p['reason']}")
        return head + [f"    {'ok ' if c['approved'] else 'NO '} {c['check']:<18} {c['reason']:<31} {c['message']}" for c in decision_checks(p)]
    if kind == "parent_order":  # trader/execution: the sized order, split into child slices
        slices = ", ".join(f"s{s['slice']} {s['qty']} at {s['due'][11:16]}" for s in p["schedule"])
        return [f"{ts}  parent order by run {p.get('run_id')}: {p['side']} {p['qty']} {p['symbol']} sized at {p['arrival']}, "
                f"{p['algo']} ({p['note']})", f"  schedule    {slices}",
                f"  risk        whole order {'APPROVED' if p['decision']['approved'] else 'DENIED'}"]
    if kind == "fill":
        f = p["fill"]
        return [f"{ts}  fill {f['fill_id']}: {f['side']} {f['qty']} @ {f['price']}, fee {f['fee']} ({f['venue']})"]
    details = {k: v for k, v in p.items() if k in ("venue", "order_id", "reason", "note", "cancel_reason", "parent_id", "status") and v}
    return [f"{ts}  {kind.replace('_', ' ')}" + ("".join(f", {k} {v}" for k, v in plain(details).items()))]
