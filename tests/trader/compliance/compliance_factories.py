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


#: The history behind ``data/checkpoint_format1.json`` (saved by the layout-1 code on 2024-03-15): gains, a loss
#: partly replaced across the year end, a loss still pending, a covered short whose loss a re-short defers, and
#: on the checkpoint day itself a sale and a replacement purchase. ``FORMAT1_NEXT_DAY`` is the session after it.
FORMAT1_DAY, FORMAT1_NEXT_DAY = dt.date(2024, 3, 15), dt.date(2024, 3, 18)
FORMAT1_MARKS = {"XYZ": "10.50", "ABC": "15.25", "SHO": "53"}


def format1_history() -> tuple[list[ComplianceFill], list[ComplianceFill]]:
    """``(fills through FORMAT1_DAY, fills of FORMAT1_NEXT_DAY)`` (a long-short ledger)."""
    spec = [  # fid, day, side, qty, price, symbol, account
        ("x1", "2023-11-01", "buy", "40", "10", "XYZ", "A2"), ("x2", "2023-12-01", "buy", "100", "10", "XYZ", "A1"),
        ("x3", "2023-12-20", "sell", "30", "8", "XYZ", "A1"), ("x4", "2024-01-05", "buy", "10", "9", "XYZ", "A1"),
        ("s1", "2024-01-10", "sell", "20", "50", "SHO", "A1"), ("s2", "2024-01-22", "buy", "20", "55", "SHO", "A1"),
        ("x5", "2024-01-25", "sell", "40", "9.5", "XYZ", "A2"), ("s3", "2024-02-01", "sell", "10", "54", "SHO", "A1"),
        ("x6", "2024-02-01", "sell", "20", "12", "XYZ", "A1"), ("a1", "2024-02-05", "buy", "50", "20", "ABC", "A2"),
        ("a2", "2024-03-01", "sell", "50", "15", "ABC", "A2"), ("x7", "2024-03-15", "sell", "10", "11", "XYZ", "A1"),
        ("a3", "2024-03-15", "buy", "10", "16", "ABC", "A2"),
        ("a4", "2024-03-18", "buy", "5", "15", "ABC", "A1"), ("x8", "2024-03-18", "sell", "25", "10.75", "XYZ", "A1"),
        ("s4", "2024-03-18", "buy", "10", "52", "SHO", "A1"),
    ]
    fills = [fill(side, day, qty, price, fee="0.35", symbol=symbol, account=account, fid=fid, minute=i)
             for i, (fid, day, side, qty, price, symbol, account) in enumerate(spec)]
    return [f for f in fills if f.trade_date <= FORMAT1_DAY], [f for f in fills if f.trade_date > FORMAT1_DAY]
