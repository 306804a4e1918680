"""§475(f) mark-to-market analysis vs the default rules, on a small hand-checked year (see trader/compliance/mtm.py)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from compliance_factories import fill

from trader.compliance import LedgerError
from trader.compliance.mtm import mtm_analysis, write_mtm_analysis


def year_2026(*extra):
    return [fill("buy", "2026-03-02", "100", "50", symbol="XYZ"), fill("sell", "2026-03-16", "100", "40", symbol="XYZ"),
            fill("buy", "2026-03-20", "100", "42", symbol="XYZ"),  # wash sale: 1,000 disallowed, basis 5,200
            fill("buy", "2026-05-01", "100", "100", symbol="ABC"), fill("sell", "2026-06-01", "100", "50", symbol="ABC"),
            *extra]


def test_mtm_analysis_caps_the_default_loss_at_3000_and_allows_the_wash_sale_loss_under_the_election():
    a = mtm_analysis(year_2026(), year=2026, year_end_marks={"XYZ": D("45")})
    assert (a.short_term, a.long_term, a.wash_disallowed) == (D("-5000.00"), D("0.00"), D("1000.00"))
    assert (a.default_recognised, a.default_carryover_out, a.unrealised) == (D(-3000), D(2000), D("-700.00"))
    # cash -5,000 + 4,000 - 4,200 - 10,000 + 5,000 = -10,200; + 100 × 45 marked = -5,700 ordinary, no cap.
    assert (a.mtm_ordinary, a.mtm_recognised, a.mtm_carryover_out) == (D("-5700.00"), D("-5700.00"), D(0))
    assert a.difference == D("-2700.00")


def test_mtm_analysis_carryover_in_joins_the_default_net_and_stays_capped_under_the_election():
    a = mtm_analysis(year_2026(), year=2026, year_end_marks={"XYZ": D("45")}, carryover_in=D(4000))
    assert (a.capital_net, a.default_recognised, a.default_carryover_out) == (D(-9000), D(-3000), D(6000))
    assert (a.mtm_carryover_used, a.mtm_recognised, a.mtm_carryover_out) == (D(3000), D("-8700.00"), D(1000))


def test_mtm_analysis_counts_a_january_repurchase_as_a_wash_sale_of_a_december_loss_but_not_in_the_year_end_marks():
    fills = [fill("buy", "2026-11-02", "10", "100"), fill("sell", "2026-12-15", "10", "90"), fill("buy", "2027-01-05", "10", "80")]
    a = mtm_analysis(fills, year=2026, year_end_marks={})
    assert (a.short_term, a.wash_disallowed, a.mtm_ordinary, a.default_recognised) == (D("0.00"), D("100.00"), D("-100.00"), D(0))


def test_mtm_analysis_marks_positions_carried_in_from_the_previous_year_close():
    fills = [fill("buy", "2025-06-02", "10", "100"), fill("sell", "2026-02-02", "10", "130")]
    a = mtm_analysis(fills, year=2026, year_end_marks={}, opening_marks={"XYZ": D("120")})
    assert (a.long_term, a.short_term, a.mtm_ordinary) == (D(0), D("300.00"), D("100.00"))  # only 120 → 130 is this year's
    with pytest.raises(LedgerError, match=r"opening marks \(2025 close\): XYZ: no price"):
        mtm_analysis(fills, year=2026, year_end_marks={})


def test_mtm_analysis_report_files_hold_both_totals_and_the_difference(tmp_path):
    csv_path, md_path = write_mtm_analysis(mtm_analysis(year_2026(), year=2026, year_end_marks={"XYZ": D("45")}), tmp_path)
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "item,default_rules,mark_to_market,difference"
    assert "net amount in this year's income,-3000.00,-5700.00,-2700.00" in lines
    assert "| net amount in this year's income | -3,000.00 | -5,700.00 | -2,700.00 |" in md_path.read_text()
