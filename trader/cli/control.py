"""Controlling a book: ``trader kill`` and ``resume`` (the kill switch), ``reconcile`` and the ops ``api``.

``kill`` persists HALTED before it tries the venue, so a venue that cannot be reached still leaves
trading halted.
"""

from __future__ import annotations

import datetime as dt
import getpass

import click

from trader.api import cancel_working, create_app
from trader.cli.common import _options
from trader.cli.venue import venue_broker
from trader.config import Mode, Secrets, TraderConfig
from trader.domain import TradingState
from trader.errors import TraderError
from trader.store import TraderStore


@click.command()
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


@click.command()
@click.option("--by", required=True, help="Who resumes trading (kept in the audit log).")
@click.option("--reason", default="", help="Why it is safe again.")
@_options
def resume(cfg: TraderConfig | None, mode: Mode, store_url: str, by: str, reason: str) -> None:
    """Set the trading state back to ACTIVE."""
    with TraderStore(store_url) as store:
        store.set_trading_state(TradingState.ACTIVE, reason=reason or f"resumed by {by}", changed_by=by, at=dt.datetime.now(dt.UTC))
    click.echo(f"ACTIVE ({mode.value}): resumed by {by}")


@click.command()
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


@click.command()
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


