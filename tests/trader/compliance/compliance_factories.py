"""Test helpers: fills in one line (a module, not a conftest, so tests can import it by name)."""

from __future__ import annotations

import datetime as dt
import itertools

from trader.compliance import ComplianceFill

_ids = itertools.count(1)


def fill(side: str, day: str | dt.date, qty: str, price: str, *, fee: str = "0", symbol: str = "XYZ",
         account: str = "A1", fid: str | None = None, order: str | None = None, minute: int = 0) -> ComplianceFill:
    """A fill at 15:00 UTC (10:00/11:00 New York, same trade date) plus ``minute`` minutes."""
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    fid = fid or f"F{next(_ids):05d}"
    ts = dt.datetime.combine(day, dt.time(15), tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
    return ComplianceFill(fill_id=fid, order_id=order or f"O-{fid}", client_order_id=f"C-{fid}", symbol=symbol,
                          side=side, qty=qty, price=price, fee=fee, ts=ts, venue="SIM", account=account)
