"""The fill record that compliance reads: the ``fills`` columns of DESIGN.md §3.5, validated.

Money and quantities are :class:`~decimal.Decimal` (a ``float`` is refused: ``0.1`` has no
exact binary form, and a tax report must add up to the cent). Timestamps are timezone-aware
and kept in UTC. Each fill's *trade date* is its date in New York (the exchange's calendar),
so an after-hours fill at 20:30 ET, which is already the next day in UTC, belongs to the day
it traded.

Example:
    >>> import datetime as dt
    >>> fill = ComplianceFill(fill_id="F1", order_id="O1", client_order_id="C1", symbol="ACME",
    ...                       side="buy", qty="4", price="100.00", fee="0.35",
    ...                       ts=dt.datetime(2024, 1, 3, 1, 30, tzinfo=dt.UTC), venue="SIM", account="A1")
    >>> fill.qty, fill.trade_date.isoformat()
    (Decimal('4'), '2024-01-02')
    >>> ComplianceFill.from_row({**fill.to_row(), "qty": "-1"})
    Traceback (most recent call last):
    ...
    trader.compliance.errors.FillError: fill F1: qty: must be > 0 (got -1)
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from trader.compliance.errors import FillError
from trader.market_hours import active_profile

Side = Literal["buy", "sell"]
EXCHANGE_TZ = ZoneInfo("America/New_York")
COLUMNS = ("fill_id", "order_id", "client_order_id", "symbol", "side", "qty", "price", "fee", "ts", "venue", "account")


def _decimal(fill_id: str, field: str, value: Any) -> Decimal:
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, float | bool):
        raise FillError(fill_id, field, f"must be a Decimal or a decimal string, not {type(value).__name__} ({value!r})")
    else:
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise FillError(fill_id, field, f"not a number ({value!r})") from None
    if not number.is_finite():
        raise FillError(fill_id, field, f"must be finite (got {number})")
    return number


def _timestamp(fill_id: str, value: Any) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise FillError(fill_id, "ts", f"not an ISO 8601 timestamp ({value!r})") from None
    if not isinstance(value, dt.datetime):
        raise FillError(fill_id, "ts", f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise FillError(fill_id, "ts", f"must be timezone-aware UTC (got naive {value.isoformat()})")
    return value.astimezone(dt.UTC)


@dataclass(frozen=True)
class ComplianceFill:
    """One execution, as the trader's ``fills`` table stores it; validated on construction.

    Strings are accepted for the numbers and the timestamp (that is how SQLite TEXT and CSV
    hand them over) and converted; the stored attributes are always ``Decimal`` and an
    aware UTC ``datetime``.

    Raises:
        FillError: a field is missing, malformed or out of range (``qty > 0``, ``price > 0``,
            ``fee >= 0``, ``side`` in buy/sell, aware ``ts``).
    """

    fill_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    ts: dt.datetime
    venue: str
    account: str

    def __post_init__(self) -> None:
        fid = self.fill_id if isinstance(self.fill_id, str) and self.fill_id.strip() else "?"
        if fid == "?":
            raise FillError(fid, "fill_id", "must be a non-empty string")
        for name in ("order_id", "symbol", "account"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise FillError(fid, name, "must be a non-empty string")
        for name in ("client_order_id", "venue"):
            if not isinstance(getattr(self, name), str):
                raise FillError(fid, name, "must be a string")
        side = self.side.lower() if isinstance(self.side, str) else self.side
        if side not in ("buy", "sell"):
            raise FillError(fid, "side", f"must be 'buy' or 'sell' (got {self.side!r})")
        qty, price, fee = (_decimal(fid, name, getattr(self, name)) for name in ("qty", "price", "fee"))
        if qty <= 0:
            raise FillError(fid, "qty", f"must be > 0 (got {qty})")
        if price <= 0:
            raise FillError(fid, "price", f"must be > 0 (got {price})")
        if fee < 0:
            raise FillError(fid, "fee", f"must be >= 0 (got {fee})")
        # Frozen dataclass: normalised values go in through object.__setattr__, once, here.
        for name, value in (("side", side), ("qty", qty), ("price", price), ("fee", fee), ("ts", _timestamp(fid, self.ts))):
            object.__setattr__(self, name, value)

    @cached_property  # sorting and day filters ask for it often; the fill is immutable
    def trade_date(self) -> dt.date:
        """The exchange (New York) calendar date of the execution: the date tax rules count with."""
        return active_profile().trading_day(self.ts)

    @property
    def gross(self) -> Decimal:
        """``qty × price``, before fees."""
        return self.qty * self.price

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ComplianceFill:
        """Build a fill from a mapping with the §3.5 columns (a DB row or a CSV line); extra keys are ignored.

        Raises:
            FillError: a column is missing or invalid.
        """
        fid = str(row.get("fill_id") or "?")
        missing = [name for name in COLUMNS if name not in row or row[name] is None]
        if missing:
            raise FillError(fid, missing[0], "missing")
        return cls(**{name: row[name] for name in COLUMNS})

    def to_row(self) -> dict[str, str]:
        """The fill as strings, exactly (Decimals as written, ``ts`` as ISO 8601 UTC)."""
        return dict(zip(COLUMNS, self.texts, strict=True))

    @cached_property  # the checkpoint and fills.csv both print the day's fills; the fill is immutable
    def texts(self) -> tuple[str, ...]:
        """The values of :meth:`to_row`, in :data:`COLUMNS` order."""
        values = list(map(str, _values(self)))  # COLUMNS are the fields, in order
        values[_TS] = self.ts.isoformat()
        return tuple(values)


_values, _TS = attrgetter(*COLUMNS), COLUMNS.index("ts")


def load_fills(rows: Iterable[Mapping[str, Any] | ComplianceFill]) -> list[ComplianceFill]:
    """Validate rows into fills, refusing duplicate ``fill_id``s, sorted by ``(ts, fill_id)``.

    The sort is what FIFO means: lots are consumed in execution order, whatever order the
    rows arrived in. Ties on ``ts`` break on ``fill_id`` so a replay is deterministic.

    Raises:
        FillError: a row is invalid, or a ``fill_id`` appears twice.
    """
    fills: list[ComplianceFill] = []
    seen: set[str] = set()
    profile = active_profile()  # once, not once per fill (a day is 10^4 fills): every trade date is asked for
    for row in rows:
        fill = row if isinstance(row, ComplianceFill) else ComplianceFill.from_row(row)
        if fill.fill_id in seen:
            raise FillError(fill.fill_id, "fill_id", "duplicate")
        seen.add(fill.fill_id)
        if "trade_date" not in fill.__dict__:  # what the cached property would store on first use
            fill.__dict__["trade_date"] = profile.trading_day(fill.ts)
        fills.append(fill)
    return sorted(fills, key=lambda f: (f.ts, f.fill_id))


def read_fills_csv(path: Path) -> list[ComplianceFill]:
    """Read fills from a CSV file with the §3.5 header (see :func:`load_fills`)."""
    with Path(path).open(newline="") as handle:
        return load_fills(csv.DictReader(handle))
