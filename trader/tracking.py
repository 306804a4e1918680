"""Live against backtest, for one session: the same decisions filled by the backtest's cost model.

A paper (or live) session and its backtest differ in two ways: what was decided and how it was
filled. The first is the model's business (and identical by construction: the trader decides on
the bar that has just closed, as the replay does); this module measures the second. It replays
the session's own orders (:func:`track_session`) through a :class:`~trader.brokers.sim.SimBroker`
whose costs are the backtest's (:func:`shadow_config`: half spread as slippage, commission as a
fee), from the book the session opened with, and marks both books at the same prices each
cycle. So the **P&L difference** is purely execution: fill prices, fees, fills missed or late.

Reported per session (:class:`SessionTracking`): per cycle the live and shadow P&L since the first
cycle; the final difference and the tracking error (standard deviation of the per-cycle P&L
differences' increments); fills, filled notional, fees and notional-weighted slippage against the
arrival price on both sides (:mod:`trader.tca`); per order the live and the shadow average fill.

Example:
    >>> cfg = shadow_config(commission_bps=0.5, half_spread_bps=1.0, cash=Decimal(100_000))
    >>> cfg.slippage_bps, cfg.fees.bps
    (Decimal('1.0'), Decimal('0.5'))
"""

from __future__ import annotations

import datetime as dt
import io
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from trader.brokers.bars import BarFeed
from trader.brokers.sim import FeeModel, SimBroker, SimConfig
from trader.domain import ZERO, Fill, Order, OrderFilled, OrderStatus
from trader.errors import TraderError
from trader.runner import last_closes
from trader.tca import CENT, OrderTca, approved_decision, order_tca, summarise

NEW_YORK = ZoneInfo("America/New_York")


def shadow_config(*, commission_bps: float, half_spread_bps: float, cash: Decimal) -> SimConfig:
    """The simulator set to the backtest's cost model (``models.backtest.Costs``): fill at the open ± half spread, fee = commission."""
    return SimConfig(slippage_bps=Decimal(str(half_spread_bps)), fees=FeeModel(bps=Decimal(str(commission_bps))),
                     initial_cash=cash, account="shadow", venue="shadow")


@dataclass(frozen=True, kw_only=True)
class TrackingPoint:
    """P&L of both books since the session's first cycle, at one cycle."""

    ts: dt.datetime
    live_pnl: Decimal
    shadow_pnl: Decimal

    @property
    def difference(self) -> Decimal:
        return self.live_pnl - self.shadow_pnl


@dataclass(frozen=True, kw_only=True)
class SessionTracking:
    """One session, live against its shadow backtest (see the module docstring)."""

    day: dt.date
    points: tuple[TrackingPoint, ...]
    live: dict[str, Any]
    shadow: dict[str, Any]
    orders: tuple[dict[str, Any], ...]

    @property
    def difference(self) -> Decimal:
        return self.points[-1].difference if self.points else ZERO

    @property
    def tracking_error(self) -> Decimal:
        steps = [b.difference - a.difference for a, b in zip(self.points, self.points[1:], strict=False)]
        return Decimal(str(statistics.pstdev(float(s) for s in steps))).quantize(CENT) if len(steps) > 1 else ZERO

    def record(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "cycles": len(self.points), "difference": str(self.difference.quantize(CENT)),
                "tracking_error": str(self.tracking_error),
                "live": {k: _plain(v) for k, v in self.live.items()}, "shadow": {k: _plain(v) for k, v in self.shadow.items()},
                "points": [{"ts": p.ts.isoformat(), "live_pnl": str(p.live_pnl), "shadow_pnl": str(p.shadow_pnl)}
                           for p in self.points],
                "orders": list(self.orders)}

    def lines(self) -> list[str]:
        live, shadow = self.live, self.shadow
        return [
            f"session {self.day}: {len(self.points)} cycles, {len(self.orders)} orders",
            f"  P&L      live {self.points[-1].live_pnl:+.2f}  backtest {self.points[-1].shadow_pnl:+.2f}  "
            f"difference {self.difference:+.2f}  tracking error {self.tracking_error} per cycle",
            f"  fills    live {live['fills']}  backtest {shadow['fills']}",
            f"  fees     live {live['fees']}  backtest {shadow['fees']}",
            f"  slippage live {live['slippage_bps']} bps  backtest {shadow['slippage_bps']} bps (vs arrival, notional-weighted)",
        ]


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _day_cycles(store: Any, day: dt.date | None) -> tuple[dt.date, list[dict[str, Any]]]:
    cycles = [r.payload for r in store.audit_records() if r.kind == "cycle"]
    if not cycles:
        raise TraderError("tracking: the store has no cycle yet; run a session first")
    days = sorted({dt.datetime.fromisoformat(str(c["ts"])).astimezone(NEW_YORK).date() for c in cycles})
    day = day or days[-1]
    if day not in days:
        raise TraderError(f"tracking: no cycle on {day} (sessions in the store: {days[0]} .. {days[-1]})")
    today = sorted((c for c in cycles if dt.datetime.fromisoformat(str(c["ts"])).astimezone(NEW_YORK).date() == day),
                   key=lambda c: str(c["ts"]))
    return day, today


def _fresh(order: Order, *, qty: Decimal, at: dt.datetime) -> Order:
    """The order as it left the trader (NEW), for the shadow venue; a carried-in order keeps only what was left at ``at``."""
    return replace(order, qty=qty, created_at=at, status=OrderStatus.NEW, order_id=None, filled_qty=ZERO,
                   avg_fill_price=None, fees=ZERO, status_reason="", updated_at=None)


def track_session(store: Any, feed: BarFeed, *, commission_bps: float, half_spread_bps: float,
                  day: dt.date | None = None) -> SessionTracking:
    """Replay session ``day`` (default: the newest) of ``store`` through the backtest's fill model; see the module docstring."""
    day, cycles = _day_cycles(store, day)
    times = [dt.datetime.fromisoformat(str(c["ts"])) for c in cycles]
    t0, fills = times[0], store.list_fills()
    by_order: dict[str, list[Fill]] = {}
    for fill in fills:
        by_order.setdefault(fill.client_order_id, []).append(fill)
    opening = [f for f in fills if f.ts < t0]  # a fill at t0 itself comes from an order of that cycle (an open fill)
    cash0 = Decimal(str(cycles[0]["cash"])) + sum((f.signed_qty * f.price + f.fee for f in opening), ZERO)
    shadow = SimBroker(feed, config=shadow_config(commission_bps=commission_bps, half_spread_bps=half_spread_bps, cash=cash0))
    shadow.restore(orders=[], fills=opening)
    by_time = _orders_by_cycle(store, by_order, t0, times[-1])
    orders = [o for batch in by_time.values() for o in batch]
    symbols = sorted({f.symbol for f in fills} | {o.symbol for o in orders})
    shadow_fills: list[Fill] = []
    points, base = [], None
    for ts, cycle in zip(times, cycles, strict=True):
        shadow.advance_to(ts)
        shadow_fills += [e.fill for e in shadow.poll_events() if isinstance(e, OrderFilled)]
        prices = last_closes(feed, symbols, ts)
        account = shadow.account()
        equity = account.cash + sum((p.qty * prices[s] for s, p in shadow.positions().items() if s in prices), ZERO)
        base = base if base is not None else (Decimal(str(cycle["equity"])), equity)
        points.append(TrackingPoint(ts=ts, live_pnl=(Decimal(str(cycle["equity"])) - base[0]).quantize(CENT),
                                    shadow_pnl=(equity - base[1]).quantize(CENT)))
        for order in by_time.get(ts, ()):
            shadow.submit(order)
    return _tracking(store, day, points, orders, by_order, shadow_fills, t0)


def _orders_by_cycle(store: Any, by_order: dict[str, list[Fill]], t0: dt.datetime,
                     last: dt.datetime) -> dict[dt.datetime, list[Order]]:
    """The session's orders at the cycle that sent them; orders still working at ``t0`` enter at ``t0`` with what was left."""
    out: dict[dt.datetime, list[Order]] = {}
    for order in store.list_orders(since=t0 - dt.timedelta(days=7)):
        if order.order_id is None and order.status is OrderStatus.NEW:
            continue  # never reached the venue
        if t0 <= order.created_at <= last:
            out.setdefault(order.created_at, []).append(_fresh(order, qty=order.qty, at=order.created_at))
        elif order.created_at < t0:
            mine = by_order.get(order.client_order_id, [])
            done = sum((f.qty for f in mine if f.ts < t0), ZERO)
            later = any(f.ts >= t0 for f in mine)
            if later and order.qty > done:
                out.setdefault(t0, []).append(_fresh(order, qty=order.qty - done, at=t0))
    return out


def _tracking(store: Any, day: dt.date, points: list[TrackingPoint], orders: list[Order], by_order: dict[str, list[Fill]],
              shadow_fills: Sequence[Fill], t0: dt.datetime) -> SessionTracking:
    live_rows, shadow_rows, per_order, live_fills = [], [], [], 0
    for order in orders:
        decision = approved_decision(store.audit_for_order(order.client_order_id)) or {}
        mine = [f for f in by_order.get(order.client_order_id, []) if f.ts >= t0]
        theirs = [f for f in shadow_fills if f.client_order_id == order.client_order_id]
        live_fills += len(mine)
        live, shadow = order_tca(order, decision, mine), order_tca(order, decision, theirs)
        if live is not None and shadow is not None:
            live_rows.append(live)
            shadow_rows.append(shadow)
            per_order.append(_order_line(live, shadow))
    return SessionTracking(day=day, points=tuple(points), orders=tuple(per_order),
                           live=summarise(live_rows) | {"fills": live_fills},
                           shadow=summarise(shadow_rows) | {"fills": len(shadow_fills)})


def _order_line(live: OrderTca, shadow: OrderTca) -> dict[str, Any]:
    return {"client_order_id": live.client_order_id, "symbol": live.symbol, "side": live.side, "arrival": str(live.arrival),
            "live_avg": None if live.avg_price is None else str(live.avg_price.quantize(Decimal("0.0001"))),
            "shadow_avg": None if shadow.avg_price is None else str(shadow.avg_price.quantize(Decimal("0.0001"))),
            "live_filled": str(live.filled), "shadow_filled": str(shadow.filled),
            "live_slippage_bps": None if live.slippage_bps is None else str(live.slippage_bps),
            "shadow_slippage_bps": None if shadow.slippage_bps is None else str(shadow.slippage_bps)}


def write_report(tracking: SessionTracking, directory: Path, *, mode: str) -> dict[str, Path]:
    """``<mode>-<day>.json`` (the record), ``.md`` (the summary and per-order table) and ``.png`` (both P&L curves)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"{mode}-{tracking.day}"
    paths = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md"), "png": stem.with_suffix(".png")}
    paths["json"].write_text(json.dumps(tracking.record(), indent=2))
    paths["png"].write_bytes(pnl_chart(tracking))
    rows = ["| order | symbol | side | arrival | live fill | backtest fill | live bps | backtest bps |", "|---|---|---|---|---|---|---|---|"]
    rows += [f"| {o['client_order_id']} | {o['symbol']} | {o['side']} | {o['arrival']} | {o['live_avg'] or '-'} | "
             f"{o['shadow_avg'] or '-'} | {o['live_slippage_bps'] or '-'} | {o['shadow_slippage_bps'] or '-'} |" for o in tracking.orders]
    body = [f"# {mode} session {tracking.day}: live against backtest", "", "```", *tracking.lines(), "```", "",
            f"![P&L]({paths['png'].name})", "", *rows, ""]
    paths["md"].write_text("\n".join(body))
    return paths


def pnl_chart(tracking: SessionTracking) -> bytes:
    """PNG: the session's P&L after each cycle, live and backtest, and their difference."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    times = [p.ts.astimezone(NEW_YORK) for p in tracking.points]
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(times, [float(p.live_pnl) for p in tracking.points], lw=1.5, label="live")
    ax.plot(times, [float(p.shadow_pnl) for p in tracking.points], lw=1.2, ls="--", label="backtest (same orders)")
    ax.fill_between(times, [float(p.difference) for p in tracking.points], 0, alpha=0.25, color="tab:red", label="difference")
    ax.axhline(0, color="grey", lw=0.8)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=NEW_YORK))
    ax.set_title(f"session {tracking.day}: P&L since the first cycle, live against backtest (New York time)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
