"""ComplianceFill: the §3.5 fills row, validated with one-line errors naming fill, field and reason."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from trader.compliance import ComplianceFill, FillError, load_fills, read_fills_csv
from trader.compliance.fills import COLUMNS

ROW = {"fill_id": "F7", "order_id": "O7", "client_order_id": "C7", "symbol": "ACME", "side": "buy", "qty": "1.5",
       "price": "100.10", "fee": "0.35", "ts": "2024-03-04T15:00:00+00:00", "venue": "SIM", "account": "A1"}


def test_fill_from_row_converts_text_to_decimal_and_utc():
    fill = ComplianceFill.from_row({**ROW, "ts": "2024-03-04T10:00:00-05:00"})
    assert (fill.qty, fill.price, fill.fee) == (Decimal("1.5"), Decimal("100.10"), Decimal("0.35"))
    assert fill.ts == dt.datetime(2024, 3, 4, 15, tzinfo=dt.UTC) and fill.ts.tzinfo == dt.UTC
    assert fill.gross == Decimal("150.150")


def test_fill_round_trips_through_to_row():
    fill = ComplianceFill.from_row(ROW)
    assert ComplianceFill.from_row(fill.to_row()) == fill


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("qty", "0", "fill F7: qty: must be > 0 (got 0)"),
        ("qty", "-2", "fill F7: qty: must be > 0 (got -2)"),
        ("price", "0", "fill F7: price: must be > 0 (got 0)"),
        ("fee", "-0.01", "fill F7: fee: must be >= 0 (got -0.01)"),
        ("qty", "abc", "fill F7: qty: not a number ('abc')"),
        ("price", "NaN", "fill F7: price: must be finite (got NaN)"),
        ("qty", 1.5, "fill F7: qty: must be a Decimal or a decimal string, not float (1.5)"),
        ("side", "hold", "fill F7: side: must be 'buy' or 'sell' (got 'hold')"),
        ("ts", "2024-03-04T15:00:00", "fill F7: ts: must be timezone-aware UTC (got naive 2024-03-04T15:00:00)"),
        ("ts", "yesterday", "fill F7: ts: not an ISO 8601 timestamp ('yesterday')"),
        ("symbol", "", "fill F7: symbol: must be a non-empty string"),
    ],
)
def test_fill_when_field_invalid_names_fill_field_and_reason(field, value, message):
    with pytest.raises(FillError) as err:
        ComplianceFill.from_row({**ROW, field: value})
    assert str(err.value) == message
    assert (err.value.fill_id, err.value.field) == ("F7", field)


def test_fill_when_column_missing_says_which():
    row = {k: v for k, v in ROW.items() if k != "venue"}
    with pytest.raises(FillError, match=r"^fill F7: venue: missing$"):
        ComplianceFill.from_row(row)


def test_fill_side_is_case_insensitive():
    assert ComplianceFill.from_row({**ROW, "side": "SELL"}).side == "sell"


def test_trade_date_is_the_new_york_date_even_after_midnight_utc():
    after_hours = ComplianceFill.from_row({**ROW, "ts": "2024-03-05T01:30:00+00:00"})  # 20:30 ET on the 4th
    assert after_hours.trade_date == dt.date(2024, 3, 4)


def test_load_fills_sorts_by_time_and_refuses_duplicate_ids():
    late = {**ROW, "fill_id": "F2", "ts": "2024-03-04T16:00:00+00:00"}
    early = {**ROW, "fill_id": "F9", "ts": "2024-03-04T14:00:00+00:00"}
    assert [f.fill_id for f in load_fills([late, early])] == ["F9", "F2"]
    with pytest.raises(FillError, match=r"^fill F2: fill_id: duplicate$"):
        load_fills([late, late])


def test_read_fills_csv_reads_the_fills_columns(tmp_path: Path):
    path = tmp_path / "fills.csv"
    path.write_text(",".join(COLUMNS) + "\n" + ",".join(ROW[c] for c in COLUMNS) + "\n")
    assert read_fills_csv(path) == [ComplianceFill.from_row(ROW)]


def test_a_fill_as_a_row_has_every_field_as_text_and_reads_back_the_same():
    from dataclasses import fields

    original = ComplianceFill(fill_id="F1", order_id="O1", client_order_id="C1", symbol="ACME", side="buy", qty="1.50",
                              price="10.25", fee="0.01", ts=dt.datetime(2024, 5, 1, 14, 30, tzinfo=dt.UTC), venue="V", account="A")
    row = original.to_row()
    assert list(row) == [f.name for f in fields(ComplianceFill)] and row["ts"] == "2024-05-01T14:30:00+00:00"
    assert row["qty"] == "1.50" and ComplianceFill.from_row(row) == original
