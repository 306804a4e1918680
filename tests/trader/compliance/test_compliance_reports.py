"""The day's report files: Form 8949 (a)–(h) by Part, Schedule D totals, rounding, fee reconciliation."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal as D
from pathlib import Path

from compliance_factories import fill

from trader.compliance import close_day, reconcile_fees, write_reports


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def reports_for(tmp_path: Path, fills, day: str, marks=None, **kwargs):
    close = close_day(fills, day=dt.date.fromisoformat(day), closing_marks=marks or {}, opening_marks=kwargs.pop("opening", None))
    return write_reports(close, tmp_path / day, **kwargs)


PUB_550 = [fill("buy", "2013-01-01", "100", "10", fid="b1"), fill("sell", "2013-06-01", "100", "7.50", fid="s1"),
           fill("buy", "2013-06-15", "100", "8", fid="b2")]


def test_form_8949_pub_550_row_has_code_w_and_the_disallowed_loss_as_a_positive_adjustment(tmp_path):
    out = reports_for(tmp_path, PUB_550, "2013-06-15", marks={"XYZ": D(8)})
    assert read(out.paths["form_8949"]) == [{
        "part": "I", "a_description": "100 sh XYZ", "b_date_acquired": "2013-01-01", "c_date_sold": "2013-06-01",
        "d_proceeds": "750.00", "e_cost_basis": "1000.00", "f_code": "W", "g_adjustment": "250.00", "h_gain_loss": "0.00"}]
    (wash,) = read(out.paths["wash_sales"])
    assert (wash["loss_disposal_id"], wash["disallowed_loss"], wash["replacement_holding_start"]) == ("s1/1", "250.00", "2013-01-15")
    (lot,) = read(out.paths["tax_lots"])
    assert (lot["cost_basis"], lot["wash_adjustment"], lot["holding_period_start"], lot["unrealized_pnl"]) == (
        "1050.00", "250.00", "2013-01-15", "-250.00")


def test_form_8949_splits_part_i_and_part_ii_and_schedule_d_totals_them(tmp_path):
    fills = [fill("buy", "2022-01-03", "10", "10", fid="old"), fill("buy", "2023-06-01", "10", "20", fid="new"),
             fill("sell", "2023-09-01", "20", "15")]
    out = reports_for(tmp_path, fills, "2023-09-01", opening={"XYZ": D(15)})
    form = read(out.paths["form_8949"])
    assert [(r["part"], r["b_date_acquired"], r["h_gain_loss"]) for r in form] == [("I", "2023-06-01", "-50.00"), ("II", "2022-01-03", "50.00")]
    assert read(out.paths["schedule_d"]) == [
        {"term": "short_term", "proceeds": "150.00", "cost_basis": "200.00", "adjustments": "0.00", "gain_loss": "-50.00"},
        {"term": "long_term", "proceeds": "150.00", "cost_basis": "100.00", "adjustments": "0.00", "gain_loss": "50.00"},
        {"term": "total", "proceeds": "300.00", "cost_basis": "300.00", "adjustments": "0.00", "gain_loss": "0.00"}]
    realized = read(out.paths["realized_pnl"])
    assert [(r["lot_id"], r["term"], r["wash_window_open"]) for r in realized] == [("old", "long", "false"), ("new", "short", "true")]


def test_money_is_rounded_half_up_only_at_the_report_and_each_8949_row_adds_up(tmp_path):
    fills = [fill("buy", "2024-05-01", "3", "0.335"), fill("sell", "2024-05-02", "3", "1.001")]
    out = reports_for(tmp_path, fills, "2024-05-02", opening={"XYZ": D(1)})
    (row,) = read(out.paths["form_8949"])
    assert (row["d_proceeds"], row["e_cost_basis"], row["h_gain_loss"]) == ("3.00", "1.01", "1.99")
    (realized,) = read(out.paths["realized_pnl"])
    assert realized["gain_loss"] == "2.00"  # 1.998 in full precision: the ledger never rounded
    assert close_day(fills, day=dt.date(2024, 5, 2), closing_marks={}, opening_marks={"XYZ": D(1)}).ledger.disposals[0].basis == D("1.005")


def test_form_8949_covers_the_tax_year_to_date_and_realized_pnl_only_the_day(tmp_path):
    fills = [fill("buy", "2023-12-01", "2", "10"), fill("sell", "2023-12-29", "1", "11"), fill("sell", "2024-01-03", "1", "12"),
             fill("buy", "2024-01-04", "1", "10"), fill("sell", "2024-01-05", "1", "13")]
    out = reports_for(tmp_path, fills, "2024-01-05", opening={"XYZ": D(12)})
    assert [r["c_date_sold"] for r in read(out.paths["form_8949"])] == ["2024-01-03", "2024-01-05"]
    assert [r["date_sold"] for r in read(out.paths["realized_pnl"])] == ["2024-01-05"]


def test_roll_forward_file_says_whether_the_bridge_closes(tmp_path):
    fills = [fill("buy", "2024-05-01", "10", "50", fee="1"), fill("sell", "2024-05-02", "4", "55", fee="1")]
    out = reports_for(tmp_path, fills, "2024-05-02", marks={"XYZ": D(53)}, opening={"XYZ": D(52)})
    (row,) = read(out.paths["roll_forward"])
    assert (row["opening"], row["realized"], row["change_in_unrealized"], row["closing"], row["ok"]) == (
        "19.00", "18.60", "-1.60", "36.00", "true")


def test_reports_are_byte_for_byte_deterministic(tmp_path):
    first = reports_for(tmp_path / "a", PUB_550, "2013-06-15", marks={"XYZ": D(8)}, day_fills=PUB_550[2:], broker_fees={"b2": "0"})
    second = reports_for(tmp_path / "b", PUB_550, "2013-06-15", marks={"XYZ": D(8)}, day_fills=PUB_550[2:], broker_fees={"b2": "0"})
    assert {n: p.read_bytes() for n, p in first.paths.items()} == {n: p.read_bytes() for n, p in second.paths.items()}
    assert set(first.paths) == {"tax_lots", "realized_pnl", "wash_sales", "form_8949", "schedule_d", "roll_forward", "fee_reconciliation"}


def test_fee_reconciliation_per_fill_passes_within_a_cent_and_lists_the_differences(tmp_path):
    fills = [fill("buy", "2024-05-01", "1", "10", fee="0.35", fid="F1"), fill("buy", "2024-05-01", "1", "10", fee="1.00", fid="F2"),
             fill("buy", "2024-05-01", "1", "10", fee="0.10", fid="F3"), fill("buy", "2024-05-01", "1", "10", fee="0.20", fid="F4")]
    result = reconcile_fees(fills, {"F1": D("0.355"), "F2": "0.98", "F3": "0.11", "F9": "0.01"})
    assert not result.ok
    assert [(r.key, r.ok, r.difference, r.note) for r in result.rows] == [
        ("F1", True, D("-0.005"), ""), ("F2", False, D("0.02"), "differs by more than 0.01"),
        ("F3", True, D("-0.01"), ""), ("F4", False, None, "not reported by the broker"),
        ("F9", False, None, "not in our fills")]
    out = reports_for(tmp_path, fills, "2024-05-01", marks={"XYZ": D(10)}, broker_fees={"F1": "0.35"})
    assert not out.ok and out.roll_forward_ok
    assert [r["ok"] for r in read(out.paths["fee_reconciliation"])] == ["true", "false", "false", "false"]


def test_fee_reconciliation_per_day_sums_our_fees_by_trade_date():
    fills = [fill("buy", "2024-05-01", "1", "10", fee="0.35"), fill("buy", "2024-05-01", "1", "10", fee="0.65", minute=1)]
    assert reconcile_fees(fills, {dt.date(2024, 5, 1): "1.00"}, by="day").ok
    assert not reconcile_fees(fills, {"2024-05-01": "1.02"}, by="day").ok


def test_without_broker_fees_no_fee_reconciliation_is_written(tmp_path):
    out = reports_for(tmp_path, PUB_550, "2013-06-15", marks={"XYZ": D(8)})
    assert "fee_reconciliation" not in out.paths and out.fees is None and out.ok
