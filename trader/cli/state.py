"""Reading the store: ``trader paths``, ``status``, ``positions``, ``orders``, and ``corporate-actions``.

Read commands never create a store (:func:`~trader.cli.common._read_store`); ``corporate-actions``
applies the splits and dividends due to a book that is not running.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import click

from trader.api import pnl_payload, status_payload
from trader.cli.common import _options, _read_store, _table, store_url_for
from trader.cli_sim import safe_url
from trader.config import Mode, TraderConfig
from trader.corporate_actions import CorporateActionBook, WarehouseActions


@click.command()
def paths() -> None:
    """Show where the trader keeps its state (under ALPHALINE_HOME, or on ALPHALINE_POSTGRES_URL's server)."""
    for mode in (Mode.LIVE, Mode.SIM, Mode.DRY_RUN, Mode.PAPER):
        click.echo(f"{mode.value} store: {safe_url(store_url_for(mode, None)).removeprefix('sqlite:///')}")



@click.command()
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


@click.command()
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


@click.command("corporate-actions")
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


@click.command()
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


