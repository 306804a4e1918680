"""The trader in the asset graph: its tables (external assets) and ``trader_session`` (what the last session did).

``trader/fills`` and ``trader/audit_log`` are written by ``trader run``, never by Dagster; they hang
from ``serving_deployment`` because every order the trader sends starts from the service's
predictions. ``trader_session`` reads the store (never writes it) and logs an observation of each
table (rows, newest entry, chain head), so both show when they last changed.
"""


import base64
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from orchestration.defs.compliance.assets import TRADER_AUDIT_LOG, TRADER_FILLS
from orchestration.defs.serving.assets import SERVING_DEPLOYMENT
from orchestration.resources import ModelsResource, TradingResource

# The keys live with their first reader (compliance), which orchestration.resources imports early: defining them
# here would make that import circular.
from orchestration.warehouse.resource import WarehouseResource
from trader.market_hours import active_profile

GROUP = "trader"


def _bar_day(at: dt.datetime) -> dt.date:
    """The trading day of a cycle or decision at ``at``, a bar's close: a 24/7 day's last bar closes at the next midnight."""
    return active_profile().trading_day(at - dt.timedelta(microseconds=1))

TRADER_TABLES = [
    dg.AssetSpec(TRADER_FILLS, group_name=GROUP, kinds={"sqlite"}, deps=[SERVING_DEPLOYMENT],
                 description="The trader's append-only fills table (DESIGN.md §3.5), written by `trader run` from the "
                             "orders it sends on the prediction service's scores."),
    dg.AssetSpec(TRADER_AUDIT_LOG, group_name=GROUP, kinds={"sqlite"}, deps=[SERVING_DEPLOYMENT],
                 description="The trader's hash-chained audit log (trader.audit): every prediction, risk decision, order, "
                             "fill and cycle, written by `trader run`."),
]


def _money(value: Any) -> float | None:
    return None if value is None else round(float(Decimal(str(value))), 2)


@dg.asset(group_name=GROUP, deps=TRADER_TABLES, kinds={"sqlite"})
def trader_session(context: dg.AssetExecutionContext, trading: TradingResource) -> dg.MaterializeResult:
    """The trader's newest session from its store: state, cycles, orders, fills, P&L and the equity curve;
    also an observation of ``trader/fills`` and ``trader/audit_log``."""
    from trader.api import pnl_payload, status_payload
    from trader.store import TraderStore

    if (problem := trading.store_problem()) is not None:
        raise dg.Failure(description=problem, allow_retries=False)
    with TraderStore(trading.store_url) as store:
        status, pnl = status_payload(store), pnl_payload(store)
        fills, orders = store.list_fills(), store.list_orders()
        cycles = [r.payload for r in store.audit_records() if r.kind == "cycle"]
        chain = store.verify_audit()
    day = _bar_day(dt.datetime.fromisoformat(cycles[-1]["ts"])) if cycles else None
    today = [c for c in cycles if _bar_day(dt.datetime.fromisoformat(c["ts"])) == day]
    day_fills = [f for f in fills if active_profile().trading_day(f.ts) == day]
    _observe_tables(context, fills, status, chain.ok)
    meta: dict[str, object] = {
        "mode": trading.mode, "session": day.isoformat() if day else "no cycle recorded yet",
        "state": status["state"], "state_reason": status["reason"] or "",
        "cycles": len(today), "orders": sum(1 for o in orders if _bar_day(o.created_at) == day),
        "denied": sum(int(c.get("denied", 0)) for c in today), "fills": len(day_fills),
        "symbols_traded": len({f.symbol for f in day_fills}), "open_positions": status["open_positions"],
        "equity": _money(pnl["equity"]), "day_pnl": _money(pnl.get("day_pnl")), "realized_pnl": _money(pnl["realized_pnl"]),
        "fees": _money(pnl["fees"]), "drawdown": round(float(pnl["drawdown"]), 4) if pnl.get("drawdown") is not None else None,
        "audit_chain": "verified" if chain.ok else f"BROKEN at seq {chain.first_bad_seq}: {chain.reason}",
    }
    if len(today) > 1:
        meta["equity_curve"] = dg.MetadataValue.md(_equity_chart(today, day))
    return dg.MaterializeResult(metadata={k: v for k, v in meta.items() if v is not None})


@dg.asset(group_name=GROUP, deps=[trader_session], kinds={"sqlite", "duckdb"})
def session_tracking(trading: TradingResource, models: ModelsResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Live against backtest for the trader's newest session: its own orders replayed through the backtest's costs
    (``trader/tracking.py``); the P&L difference is execution alone. Report under ``reports/tracking/``."""
    from trader.brokers.bars import WarehouseBars
    from trader.errors import TraderError
    from trader.store import TraderStore
    from trader.tracking import pnl_chart, track_session, write_report

    if (problem := trading.store_problem()) is not None:
        raise dg.Failure(description=problem, allow_retries=False)
    try:
        with TraderStore(trading.store_url) as store:
            report = track_session(store, WarehouseBars(warehouse.location), commission_bps=models.commission_bps,
                                   half_spread_bps=models.half_spread_bps)
    except TraderError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    paths = write_report(report, Path(models.home) / "reports" / "tracking", mode=trading.mode)
    last = report.points[-1]
    chart = base64.b64encode(pnl_chart(report)).decode()
    return dg.MaterializeResult(metadata={
        "session": report.day.isoformat(), "cycles": len(report.points), "orders": len(report.orders),
        "live_pnl": float(last.live_pnl), "backtest_pnl": float(last.shadow_pnl), "difference": float(report.difference),
        "tracking_error_per_cycle": float(report.tracking_error),
        "fills_live": report.live["fills"], "fills_backtest": report.shadow["fills"],
        "fees_live": _money(report.live["fees"]), "fees_backtest": _money(report.shadow["fees"]),
        "slippage_bps_live": _bps(report.live["slippage_bps"]), "slippage_bps_backtest": _bps(report.shadow["slippage_bps"]),
        "chart": dg.MetadataValue.md(f"![live against backtest](data:image/png;base64,{chart})"),
        "report": dg.MetadataValue.path(str(paths["md"])),
    })


def _bps(value: Any) -> float | None:
    return None if value is None else float(value)


def _observe_tables(context: dg.AssetExecutionContext, fills: list, status: dict[str, Any], chain_ok: bool) -> None:
    last = max((f.ts for f in fills), default=None)
    context.log_event(dg.AssetObservation(asset_key=TRADER_FILLS, metadata={
        "dagster/row_count": len(fills), "symbols": len({f.symbol for f in fills}),
        "last_fill": last.astimezone(dt.UTC).isoformat() if last else "none"}))
    audit = status["audit"]
    context.log_event(dg.AssetObservation(asset_key=TRADER_AUDIT_LOG, metadata={
        "dagster/row_count": int(audit["records"]), "head": str(audit["head"]), "chain_verified": chain_ok}))


def _equity_chart(cycles: list[dict[str, Any]], day: dt.date) -> str:
    """The session's equity after each cycle, as markdown with the PNG inlined (the UI shows it as is)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    zone = ZoneInfo(active_profile().zone)  # New York; crypto: UTC
    times = [dt.datetime.fromisoformat(c["ts"]).astimezone(zone) for c in cycles]
    equity = [float(c["equity"]) for c in cycles]
    fig = Figure(figsize=(9, 2.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(times, equity, lw=1.4)
    ax.axhline(equity[0], color="grey", lw=0.8)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=zone))
    ax.set_title(f"trader equity after each cycle, {day} ({'New York' if zone.key == 'America/New_York' else zone.key} time)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return f"![equity](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
