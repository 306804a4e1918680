"""Holding period: more than one year is long-term, counting from the day after acquisition; leap years."""

from __future__ import annotations

import datetime as dt

import pytest
from compliance_factories import fill

from trader.compliance import Ledger
from trader.compliance.holding import add_years, long_term_from, term

d = dt.date.fromisoformat


@pytest.mark.parametrize(
    ("acquired", "sold", "expected"),
    [
        ("2012-02-05", "2013-02-05", "short"),  # Publication 550's example: exactly one year is not more than one
        ("2012-02-05", "2013-02-06", "long"),
        ("2023-03-15", "2024-03-15", "short"),
        ("2023-03-15", "2024-03-16", "long"),
        ("2024-02-29", "2025-02-28", "short"),  # acquired on a leap day
        ("2024-02-29", "2025-03-01", "long"),
        ("2024-02-28", "2025-02-28", "short"),  # counting starts on the leap day
        ("2024-02-28", "2025-03-01", "long"),
        ("2023-02-28", "2024-02-29", "short"),  # Mar 1 2023 … Feb 29 2024 is exactly one year
        ("2023-02-28", "2024-03-01", "long"),
        ("2023-12-31", "2024-12-31", "short"),
        ("2023-12-31", "2025-01-01", "long"),
    ],
)
def test_term_at_the_one_year_boundary(acquired, sold, expected):
    assert term(d(acquired), d(sold)) == expected


def test_add_years_maps_february_29_to_march_1_only_in_non_leap_years():
    assert add_years(d("2024-02-29"), 1) == d("2025-03-01")
    assert add_years(d("2024-02-29"), 4) == d("2028-02-29")
    assert add_years(d("2024-01-31"), 6) == d("2030-01-31")
    assert long_term_from(d("2024-02-28")) == d("2025-03-01")


@pytest.mark.parametrize(("sold", "expected"), [("2024-03-15", "short"), ("2024-03-16", "long")])
def test_ledger_disposal_term_follows_trade_dates_at_the_boundary(sold, expected):
    ledger = Ledger()
    ledger.apply_all([fill("buy", "2023-03-15", "1", "10"), fill("sell", sold, "1", "12")])
    assert ledger.disposals[0].term == expected


def test_trade_date_not_utc_date_decides_the_boundary():
    # 2024-03-16 01:00 UTC is still 2024-03-15 in New York: one year exactly, short-term.
    late = fill("sell", "2024-03-15", "1", "12", minute=10 * 60)
    assert late.ts.date() == d("2024-03-16") and late.trade_date == d("2024-03-15")
    ledger = Ledger()
    ledger.apply_all([fill("buy", "2023-03-15", "1", "10"), late])
    assert ledger.disposals[0].term == "short"
