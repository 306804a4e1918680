"""Reports on a book and its orders: ``trader risk``, ``explain``, ``tca`` and ``track``.

All of them only read: the store, and the warehouse's bars where a price is needed. ``explain``
prints an order's decision lineage from its audit records (:func:`_lineage_lines`).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import click

from trader.api import plain
from trader.cli.common import _options, _read_store, _table
from trader.cli_sim import TIMEFRAME, UserError, alphaline_home, safe_url
from trader.config import Mode, TraderConfig
from trader.risk.record import decision_checks, decision_prediction
from trader.runner import last_closes
from trader.tca import NEW_YORK, approved_decision, order_tca, session_tca, summarise


@click.command("risk")
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



@click.command()
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


@click.command()
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


@click.command()
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
