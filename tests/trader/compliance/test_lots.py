"""FIFO tax lots: partial lots, fees, fractional shares, short sales, the daily roll-forward."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from compliance_factories import fill

from trader.compliance import Ledger, LedgerError, close_day


def booked(*fills, allow_short=False) -> Ledger:
    ledger = Ledger(allow_short=allow_short)
    ledger.apply_all(fills)
    return ledger


def test_fifo_when_lots_entered_out_of_order_sells_oldest_first():
    ledger = booked(
        fill("buy", "2024-05-01", "6", "122.22", minute=2, fid="b3"),
        fill("buy", "2024-05-01", "4", "100.00", minute=0, fid="b1"),
        fill("buy", "2024-05-01", "5", "111.11", minute=1, fid="b2"),
        fill("sell", "2024-05-02", "7", "120.00", fid="s1"),
    )
    assert [(d.lot_id, d.qty, d.basis) for d in ledger.disposals] == [("b1", D(4), D("400.00")), ("b2", D(3), D("333.33"))]
    assert sum(d.basis for d in ledger.disposals) == D("733.33")
    assert [(lot.lot_id, lot.qty, lot.cost) for lot in ledger.open_lots()] == [("b2", D(2), D("222.22")), ("b3", D(6), D("733.32"))]


def test_selling_more_than_held_on_long_only_ledger_is_an_error_not_a_negative_lot():
    ledger = booked(fill("buy", "2024-05-01", "7", "10"))
    with pytest.raises(LedgerError, match=r"^fill S9: qty: sells 8 XYZ but account A1 holds 7 \(long-only ledger"):
        ledger.apply(fill("sell", "2024-05-02", "8", "11", fid="S9"))
    assert [(lot.direction, lot.qty) for lot in ledger.open_lots()] == [("long", D(7))]
    assert ledger.disposals == [] and ledger.cash == D(-70)


def test_selling_with_nothing_held_on_long_only_ledger_is_an_error():
    with pytest.raises(LedgerError, match="holds 0"):
        booked(fill("sell", "2024-05-02", "1", "11"))


def test_fees_are_added_to_basis_and_subtracted_from_proceeds():
    ledger = booked(fill("buy", "2024-05-01", "10", "20", fee="1"), fill("sell", "2024-05-02", "4", "25", fee="0.50"))
    (sale,) = ledger.disposals
    assert (sale.proceeds, sale.basis, sale.gain) == (D("99.50"), D("80.4"), D("19.10"))
    assert ledger.open_lots()[0].cost == D("120.6")


def test_sell_across_lots_spreads_the_fee_by_shares_and_keeps_gain_and_loss_blocks_apart():
    ledger = booked(fill("buy", "2024-05-01", "3", "10", fid="A"), fill("buy", "2024-05-01", "1", "12", fid="B", minute=1),
                    fill("sell", "2024-05-02", "4", "11", fee="2"))
    assert [(d.lot_id, d.proceeds, d.basis, d.gain) for d in ledger.disposals] == [
        ("A", D("31.5"), D(30), D("1.5")), ("B", D("10.5"), D(12), D("-1.5"))]


def test_fractional_quantities_and_partial_lots():
    ledger = booked(fill("buy", "2024-05-01", "0.5", "100.01"), fill("buy", "2024-05-01", "0.25", "99.99", minute=1),
                    fill("sell", "2024-05-03", "0.6", "101"))
    assert [(d.qty, d.basis) for d in ledger.disposals] == [(D("0.5"), D("50.005")), (D("0.1"), D("9.999"))]
    (rest,) = ledger.open_lots()
    assert (rest.qty, rest.cost) == (D("0.15"), D("14.9985"))


def test_several_buys_and_sells_in_one_day_keep_cash_and_lots_consistent():
    ledger = booked(*(fill(side, "2024-05-01", qty, price, minute=i) for i, (side, qty, price) in enumerate(
        [("buy", "5", "10"), ("sell", "2", "11"), ("buy", "3", "9"), ("sell", "4", "12"), ("buy", "1", "10")])))
    assert sum(lot.qty for lot in ledger.open_lots()) == D(3)
    assert ledger.cash == D(-50 + 22 - 27 + 48 - 10)
    assert ledger.cash == sum(d.gain for d in ledger.disposals) - sum(lot.cost for lot in ledger.open_lots())


def test_short_sale_opens_a_short_lot_and_a_buy_closes_it_fifo():
    ledger = booked(fill("sell", "2024-05-01", "10", "50", fee="1", fid="short"),
                    fill("buy", "2024-05-06", "4", "45", fee="0.40", fid="cover1"),
                    fill("buy", "2024-05-07", "10", "40", fid="cover2"), allow_short=True)
    first, second = ledger.disposals
    assert (first.direction, first.proceeds, first.basis, first.gain) == ("short", D("199.6"), D("180.40"), D("19.20"))
    assert (first.opened, first.acquired, first.sold, first.term) == (
        dt.date(2024, 5, 1), dt.date(2024, 5, 6), dt.date(2024, 5, 6), "short")
    assert (second.qty, second.proceeds, second.basis) == (D(6), D("299.4"), D(240))
    (lot,) = ledger.open_lots()
    assert (lot.direction, lot.qty, lot.cost, lot.lot_id) == ("long", D(4), D(160), "cover2")


def test_sell_beyond_long_holdings_with_shorts_allowed_closes_longs_then_opens_short():
    ledger = booked(fill("buy", "2024-05-01", "3", "10"), fill("sell", "2024-05-02", "5", "12", fee="1"), allow_short=True)
    (sale,) = ledger.disposals
    assert (sale.qty, sale.proceeds) == (D(3), D("35.4"))
    (short,) = ledger.open_lots()
    assert (short.direction, short.qty, short.cost) == ("short", D(2), D("23.6"))


def test_apply_refuses_a_fill_older_than_the_last_and_a_repeated_fill():
    ledger = Ledger()
    late = fill("buy", "2024-05-02", "1", "10", fid="late")
    ledger.apply(late)
    with pytest.raises(LedgerError, match=r"^fill early: ts: .* is before the last fill applied \(late\)$"):
        ledger.apply(fill("buy", "2024-05-01", "1", "10", fid="early"))
    with pytest.raises(LedgerError, match=r"^fill late: fill_id: already applied$"):
        ledger.apply(late)


def test_roll_forward_bridges_opening_realised_and_unrealised_to_closing():
    fills = [fill("buy", "2024-05-01", "10", "50", fee="1"), fill("sell", "2024-05-02", "4", "55", fee="1"),
             fill("buy", "2024-05-03", "100", "1")]  # after the day: ignored
    result = close_day(fills, day=dt.date(2024, 5, 2), opening_marks={"XYZ": D(52)}, closing_marks={"XYZ": D(53)})
    rf = result.roll_forward
    assert (rf.opening, rf.realised, rf.unrealised_open, rf.unrealised_close, rf.closing) == (
        D(19), D("18.6"), D(19), D("17.4"), D(36))
    assert rf.ok and rf.difference == 0
    assert sum(lot.qty for lot in result.ledger.open_lots()) == D(6)


def test_roll_forward_when_a_later_buy_turns_an_earlier_loss_into_a_wash_sale_moves_it_to_unrealised():
    fills = [fill("buy", "2024-05-01", "10", "50"), fill("sell", "2024-05-02", "10", "40"), fill("buy", "2024-05-10", "10", "41")]
    rf = close_day(fills, day=dt.date(2024, 5, 10), opening_marks={}, closing_marks={"XYZ": D(42)}).roll_forward
    assert (rf.opening, rf.realised_before_wash, rf.disallowed, rf.unrealised_close, rf.closing) == (
        D(-100), D(0), D(100), D(-90), D(-90))
    assert rf.ok


def test_roll_forward_with_missing_or_float_mark_names_the_symbol():
    fills = [fill("buy", "2024-05-01", "10", "50")]
    with pytest.raises(LedgerError, match=r"^closing_marks: XYZ: no price for an open position$"):
        close_day(fills, day=dt.date(2024, 5, 1), closing_marks={})
    with pytest.raises(LedgerError, match=r"^opening_marks: XYZ: no price for an open position$"):
        close_day(fills, day=dt.date(2024, 5, 2), closing_marks={"XYZ": D(50)})
    with pytest.raises(LedgerError, match=r"^closing_marks: XYZ: must be a Decimal or a decimal string, not float"):
        close_day(fills, day=dt.date(2024, 5, 1), closing_marks={"XYZ": 50.1})
