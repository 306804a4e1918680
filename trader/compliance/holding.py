"""Holding periods (IRS Publication 550, "Holding Period"), on trade dates.

Short-term if held one year or less, long-term if held *more* than one year. Counting
starts on the day after acquisition and includes the day of sale. So with
``start = acquired + 1 day``, the sale is long-term from the first day of the second year
of holding, ``same month/day as start, next year``, onwards::

    long_term  ⇔  sold >= add_years(acquired + 1 day, 1)

Pub 550's own example: bought 2012-02-05, sold 2013-02-05 is not more than one year;
sold 2013-02-06 is.

Leap years: ``add_years`` keeps the month and day and, when that day does not exist in the
target year (February 29), takes March 1. Counting from the day after acquisition makes the
leap cases fall out right without special-casing the acquisition date:

* bought 2024-02-28 → counting starts 2024-02-29 → long-term from 2025-03-01;
* bought 2024-02-29 → counting starts 2024-03-01 → long-term from 2025-03-01;
* bought 2023-02-28 → counting starts 2023-03-01 → long-term from 2024-03-01 (a sale on
  2024-02-29 has held exactly one year: 2023-03-01 … 2024-02-29).

No ``dateutil``: the rule is two lines and is spelt out here on purpose.

Example:
    >>> import datetime as dt
    >>> term(dt.date(2023, 3, 15), dt.date(2024, 3, 15)), term(dt.date(2023, 3, 15), dt.date(2024, 3, 16))
    ('short', 'long')
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

Term = Literal["short", "long"]


def add_years(day: dt.date, years: int) -> dt.date:
    """Same month and day ``years`` later; February 29 becomes March 1 in a non-leap target year.

    Example:
        >>> add_years(dt.date(2024, 2, 29), 1), add_years(dt.date(2024, 2, 29), 4)
        (datetime.date(2025, 3, 1), datetime.date(2028, 2, 29))
    """
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # only Feb 29 can fail, and the day after Feb 28 is Mar 1
        return dt.date(day.year + years, 3, 1)


def long_term_from(acquired: dt.date) -> dt.date:
    """The first sale date on which shares acquired on ``acquired`` are held more than one year."""
    return add_years(acquired + dt.timedelta(days=1), 1)


def term(holding_start: dt.date, sold: dt.date) -> Term:
    """``"long"`` if held more than one year, else ``"short"``.

    Args:
        holding_start: the date the holding period counts from: the trade date of the
            purchase, or an earlier date for wash-sale replacement shares.
        sold: the trade date of the sale.
    """
    return "long" if sold >= long_term_from(holding_start) else "short"
