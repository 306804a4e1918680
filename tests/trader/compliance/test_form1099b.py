"""Broker 1099-B CSV: the headers accepted, one-line errors for malformed files, matching against our 8949 rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from compliance_factories import fill

from trader.compliance import Ledger
from trader.compliance.form1099b import Form1099BError, our_rows, read_1099b, reconcile_1099b, reconciliation_rows

HEADER = "Description,Date Acquired,Date Sold,Proceeds,Cost Basis,Wash Sale Loss Disallowed,Term"


@pytest.fixture
def ours():
    ledger = Ledger()
    ledger.apply_all([fill("buy", "2026-01-02", "100", "10"), fill("sell", "2026-06-01", "100", "7.50"),
                      fill("buy", "2026-06-15", "100", "8"), fill("buy", "2026-02-02", "10", "20", symbol="ABC"),
                      fill("sell", "2026-03-02", "10", "25", symbol="ABC")])
    return our_rows(ledger.disposals)


def write(tmp_path, *lines, name="1099b.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


EXACT = (HEADER, "100 sh XYZ,01/02/2026,06/01/2026,$750.00,\"1,000.00\",250.00,Short",
         "10 sh ABC,2026-02-02,2026-03-02,250.00,200.00,,S")


def test_exact_1099b_matches_every_row(tmp_path, ours):
    result = reconcile_1099b(ours, read_1099b(write(tmp_path, *EXACT)))
    assert result.ok and len(result.matches) == 2


def test_changed_proceeds_is_a_mismatch_naming_the_field_and_both_values(tmp_path, ours):
    broker = read_1099b(write(tmp_path, EXACT[0], EXACT[1].replace("$750.00", "$755.00"), EXACT[2]))
    result = reconcile_1099b(ours, broker)
    (mismatch,) = result.mismatches
    assert mismatch[2] == [("proceeds", "750.00", "755.00")] and not result.ok
    assert [r["status"] for r in reconciliation_rows(result)] == ["match", "mismatch"]


def test_changed_date_acquired_and_missing_wash_sale_are_each_named(tmp_path, ours):
    broker = read_1099b(write(tmp_path, EXACT[0], "100 sh XYZ,01/03/2026,06/01/2026,750.00,1000.00,0,Short", EXACT[2]))
    (mismatch,) = reconcile_1099b(ours, broker).mismatches
    assert mismatch[2] == [("date_acquired", "2026-01-02", "2026-01-03"), ("wash_sale", "250.00", "0.00")]


def test_row_missing_from_the_1099b_and_a_row_we_do_not_have_are_one_sided(tmp_path, ours):
    result = reconcile_1099b(ours, read_1099b(write(tmp_path, EXACT[0], EXACT[1], "5 sh QQQ,various,2026-04-01,10,9,,long")))
    assert [(r.symbol, r.source.startswith("F")) for r in result.only_ours] == [("ABC", True)]
    assert [(r.symbol, r.date_acquired, r.source) for r in result.only_broker] == [("QQQ", None, "row 3")]


def test_common_header_spellings_and_separate_symbol_and_quantity_columns_are_accepted(tmp_path, ours):
    path = write(tmp_path, "Box 1a Description of property,Symbol,Quantity,1b Date acquired,1c Date sold or disposed,"
                           "1d Proceeds,1e Cost or other basis,1g Wash sale loss disallowed,Short/Long term",
                 "XYZ CORP COMMON,xyz,100,01/02/26,06/01/26,750,1000,250.00,A",
                 "ABC INC,ABC,10,02/02/2026,03/02/2026,250,200,,Short-term")
    rows = read_1099b(path)
    assert [(r.symbol, r.qty, r.date_acquired, r.term) for r in rows] == \
        [("XYZ", D(100), dt.date(2026, 1, 2), "short"), ("ABC", D(10), dt.date(2026, 2, 2), "short")]
    assert reconcile_1099b(ours, rows).ok


@pytest.mark.parametrize(("lines", "expected"), [
    ((HEADER, "100 sh XYZ,01/02/2026,06/01/2026,abc,1000.00,250.00,Short"), "row 2: proceeds: not an amount ('abc')"),
    ((HEADER, EXACT[1], "100 sh XYZ,01/02/2026,13/45/2026,1,1,,Short"), "row 3: date_sold: not a date ('13/45/2026'"),
    (("Description,Date Acquired,Date Sold,Cost Basis", "100 sh XYZ,01/02/2026,06/01/2026,1"), "row 1: proceeds: no such column"),
    ((HEADER, "lots of XYZ,01/02/2026,06/01/2026,1,1,,Short"), "row 2: symbol: missing"),
    ((HEADER, "100 sh XYZ,01/02/2026,06/01/2026,1,1,,sideways"), "row 2: term: not a term ('sideways'"),
])
def test_malformed_1099b_gets_one_line_naming_the_file_row_and_field(tmp_path, lines, expected):
    path = write(tmp_path, *lines)
    with pytest.raises(Form1099BError) as err:
        read_1099b(path)
    assert str(err.value).startswith(f"{path}: {expected}") and "\n" not in str(err.value)
