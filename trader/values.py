"""Identifiers, exact money and UTC time: the validated values the domain model is built from (DESIGN.md §3.1, §3.5).

Identifiers have their own types (:data:`Symbol`, :data:`ClientOrderId`, :data:`OrderId`,
:data:`FillId`); money and quantities are :class:`~decimal.Decimal` (a float is refused, not
rounded); every timestamp is timezone-aware UTC (a naive datetime is refused). The small
enums that orders and the kill switch share live here too. This module imports nothing
else of the trader's domain, so everything may import it.

Example:
    >>> import datetime as dt
    >>> to_symbol("BRK.B"), to_decimal("0.10", "price"), Side.SELL.sign
    ('BRK.B', Decimal('0.10'), -1)
    >>> to_decimal(0.1, "price")
    Traceback (most recent call last):
    ...
    trader.errors.DomainError: price: 0.1 is a float; money and quantities must be Decimal
    >>> to_utc(dt.datetime(2024, 3, 5, 10, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "ts").isoformat()
    '2024-03-05T15:00:00+00:00'
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from enum import StrEnum
from typing import Any, NewType

from trader.errors import DomainError

Symbol = NewType("Symbol", str)
ClientOrderId = NewType("ClientOrderId", str)
OrderId = NewType("OrderId", str)
FillId = NewType("FillId", str)

_SYMBOL = re.compile(r"[A-Z0-9.\-/]{1,15}")
ZERO = Decimal(0)


def to_symbol(value: str) -> Symbol:
    """Validate a ticker against DESIGN.md §3.1 (upper case, 1–15 of ``A-Z 0-9 . - /``)."""
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value):
        raise DomainError(f"symbol: {value!r} is not 1–15 upper-case characters of A-Z 0-9 . - /")
    return Symbol(value)


def to_decimal(value: Any, name: str) -> Decimal:
    """Exact money/quantity: ``Decimal``, ``int`` or a numeric string; a float is refused (it is not exact)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise DomainError(f"{name}: {value!r} is a {type(value).__name__}; money and quantities must be Decimal")
    try:
        out = value if isinstance(value, Decimal) else Decimal(value)
    except (ArithmeticError, TypeError, ValueError):
        raise DomainError(f"{name}: {value!r} is not a number") from None
    if not out.is_finite():
        raise DomainError(f"{name}: {value!r} is not finite")
    return out


def to_utc(value: dt.datetime, name: str) -> dt.datetime:
    """A timezone-aware datetime converted to UTC; a naive datetime is refused."""
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise DomainError(f"{name}: {value!r} must be a timezone-aware datetime (UTC)")
    return value.astimezone(dt.UTC)


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    OPG = "opg"
    CLS = "cls"


class TradingState(StrEnum):
    """The kill switch: ACTIVE trades; REDUCING allows only risk-reducing orders; HALTED allows only cancels."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"
