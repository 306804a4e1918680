"""Per-value conversions computed once per distinct value (dates to ISO text and back).

A year-end ledger holds a few hundred thousand lots and disposals but only ~250 distinct trade
dates; converting each date once instead of once per row is a large share of writing the
checkpoint and the reports.

Example:
    >>> import datetime as dt
    >>> ISO_DATE[dt.date(2024, 5, 6)], FROM_ISO_DATE["2024-05-06"]
    ('2024-05-06', datetime.date(2024, 5, 6))
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any


class Memo(dict):
    """A dict that fills itself: ``memo[key]`` is ``convert(key)``, computed on first use."""

    def __init__(self, convert: Callable[[Any], Any]):
        super().__init__()
        self._convert = convert

    def __missing__(self, key: Any) -> Any:
        value = self[key] = self._convert(key)
        return value


# Dates are immutable, so sharing one object per distinct date is safe. Both stay small: keys
# are calendar dates (a bad string raises and is not stored).
ISO_DATE: Memo = Memo(dt.date.isoformat)
FROM_ISO_DATE: Memo = Memo(dt.date.fromisoformat)
