"""``trader run``: the decision loop in every mode, its option checks, its summary and its exit code.

Every option, the config and (sim) the day's bars are checked before the store is touched; the
venue comes from :mod:`trader.cli_sim` (sim) or :mod:`trader.cli.venue` (dry-run, paper, live).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import click

from trader.alerts import env_urls as env_alert_urls
from trader.cli.common import _MODES, _config, store_url_for
from trader.cli.venue import _venue_session
from trader.cli_sim import RunHalted, UserError, load_replay, replace_sim_store, safe_url, sim_session
from trader.config import Mode, Secrets
from trader.corporate_actions import CorporateActionBook, InMemoryActions, WarehouseActions
from trader.domain import TradingState
from trader.monitoring import run_observers
from trader.prediction_client import HttpPredictionClient
from trader.runner import CycleReport, Runner
from trader.store import TraderStore


@click.command()
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


