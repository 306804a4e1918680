"""What the year-level tax commands read: the year's fills, its year-end marks, its reports folder.

``alphaline compliance mtm-analysis``, ``reconcile-1099b`` and ``short-sales`` work on a whole tax
year rather than a session. They replay the trader's fills from the start (a lot bought years
ago can be sold this year) through 30 days after the year's end (a January purchase can still
make a December loss a wash sale), always on a long-short ledger (a long-only book books the
same numbers on it). Their files go to ``reports/<YYYY>/`` beside the daily ``reports/<date>/``
folders; they are analyses, not sealed into the WORM archive.

Year-end marks are the close of the year's last XNYS session in ``marts.bars`` (for the current
year: the last session up to today), or a ``symbol,price`` CSV given by the user.
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal, InvalidOperation
from pathlib import Path

from orchestration.defs.compliance import sources
from trader.compliance import ComplianceError, ComplianceFill, Disposal, Ledger
from trader.compliance.corporate_actions import LedgerAction, replay

WASH_TAIL = dt.timedelta(days=30)


def year_dir(reports_dir: Path, year: int) -> Path:
    """``reports/<YYYY>/``: the year's tax analyses."""
    return reports_dir / f"{year:04d}"


def year_inputs(store_url: str, year: int) -> tuple[list[ComplianceFill], list[LedgerAction]]:
    """Every fill and corporate action through 30 days after ``year`` (see the module docstring)."""
    through = dt.date(year, 12, 31) + WASH_TAIL
    return sources.read_fills(store_url, through=through), sources.read_corporate_actions(store_url, through=through)


def year_disposals(fills: list[ComplianceFill], actions: list[LedgerAction], year: int) -> list[Disposal]:
    """The disposals of ``year`` (its Form 8949 rows), with wash sales decided by fills up to 30 days after it."""
    ledger = Ledger(allow_short=True)
    replay(ledger, fills, actions)
    return [d for d in ledger.disposals if d.sold.year == year]


def last_session(on_or_before: dt.date) -> dt.date:
    """The market profile's last session (XNYS, or any day for crypto) on or before ``on_or_before``."""
    from orchestration.market.calendars import sessions
    from trader.market_hours import active_profile

    days = sessions(active_profile().calendar, on_or_before - dt.timedelta(days=21), on_or_before)["session"]
    return days[-1]


def warehouse_marks(warehouse: str, year: int, *, today: dt.date) -> tuple[dt.date, dict[str, Decimal]]:
    """``(session, symbol → close)`` for the year's last session (up to ``today``), from ``marts.bars``.

    Raises:
        ComplianceError: the year has not started, or the warehouse/``marts.bars`` is missing.
    """
    if dt.date(year, 1, 1) > today:
        raise ComplianceError(f"--year {year}: in the future")
    day = last_session(min(dt.date(year, 12, 31), today))
    return day, sources.closing_marks(warehouse, day)


def read_marks_csv(path: Path) -> dict[str, Decimal]:
    """Symbol → price from a CSV with columns ``symbol,price`` (a provided year-end price map).

    Raises:
        ComplianceError: one line naming the file, the row and the field.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ComplianceError(f"{path}: cannot read ({err.__class__.__name__})") from None
    reader = csv.DictReader(lines)
    header = [name.strip().lower() for name in reader.fieldnames or []]
    for name in ("symbol", "price"):
        if name not in header:
            raise ComplianceError(f"{path}: row 1: {name}: no such column (expected symbol,price)")
    marks = {}
    for row in reader:
        cells = {key.strip().lower(): (value or "").strip() for key, value in row.items() if key is not None}
        if not cells["symbol"]:
            raise ComplianceError(f"{path}: row {reader.line_num}: symbol: missing")
        try:
            price = Decimal(cells["price"])
        except InvalidOperation:
            price = Decimal("NaN")
        if not price.is_finite() or price <= 0:
            raise ComplianceError(f"{path}: row {reader.line_num}: price: not a positive number ({cells['price']!r})")
        marks[cells["symbol"].upper()] = price
    return marks
