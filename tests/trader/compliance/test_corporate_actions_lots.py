"""Tax lots through a 2-for-1 split and cash dividends: basis per share, holding period, later gains, the P&L bridge."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from compliance_factories import fill

from trader.compliance import close_day, day_close_state, restore_day_close
from trader.compliance.corporate_actions import LedgerAction, book_action
from trader.compliance.errors import LedgerError
from trader.compliance.lots import Ledger

SPLIT = LedgerAction(symbol="XYZ", ex_date=dt.date(2024, 3, 4), kind="split", ratio=D(2))


def test_split_when_a_lot_is_open_halves_basis_per_share_keeps_total_basis_and_acquisition_date():
    ledger = Ledger()
    ledger.apply_all([fill("buy", "2023-01-03", "100", "50", fee="1"), fill("buy", "2024-01-10", "10", "60")])
    book_action(ledger, SPLIT)
    first, second = ledger.open_lots()
    assert (first.qty, first.cost, first.cost / first.qty) == (D(200), D(5001), D("25.005"))
    assert (first.acquired, first.holding_start) == (dt.date(2023, 1, 3), dt.date(2023, 1, 3))
    assert (second.qty, second.cost) == (D(20), D(600))


def test_split_when_the_shares_are_sold_later_the_gain_and_term_are_those_of_the_original_purchase():
    ledger = Ledger()
    ledger.apply_all([fill("buy", "2023-01-03", "100", "50")])
    book_action(ledger, SPLIT)
    ledger.apply_all([fill("sell", "2024-03-05", "150", "30"), fill("sell", "2024-03-06", "50", "20")])
    first, second = ledger.disposals
    assert (first.qty, first.proceeds, first.basis, first.gain, first.term) == (D(150), D(4500), D(3750), D(750), "long")
    assert (second.qty, second.basis, second.gain, second.acquired) == (D(50), D(1250), D(-250), dt.date(2023, 1, 3))
    assert ledger.open_lots() == []


def test_split_when_a_long_only_account_sells_the_new_shares_does_not_call_it_an_oversell():
    ledger = Ledger()
    ledger.apply_all([fill("buy", "2024-01-03", "100", "50")])
    with pytest.raises(LedgerError, match="holds 100"):
        Ledger().apply_all([fill("buy", "2024-01-03", "100", "50"), fill("sell", "2024-03-05", "200", "25")])
    book_action(ledger, SPLIT)
    ledger.apply(fill("sell", "2024-03-05", "200", "25"))
    assert ledger.disposals[0].gain == D(0)


def test_cash_dividend_when_long_and_short_credits_the_long_and_debits_the_short():
    ledger = Ledger(allow_short=True)
    ledger.apply_all([fill("buy", "2024-01-03", "100", "50", account="A1"), fill("sell", "2024-01-03", "40", "50", account="B1")])
    cash = book_action(ledger, LedgerAction(symbol="XYZ", ex_date=dt.date(2024, 3, 4), kind="cash_dividend", amount=D("0.25")))
    assert cash == D(15)
    assert [(d.account, d.qty, d.cash) for d in ledger.dividends] == [("A1", D(100), D(25)), ("B1", D(-40), D(-10))]
    assert [lot.cost for lot in ledger.open_lots()] == [D(5000), D(2000)]  # income, not a return of basis


def test_close_day_when_the_ex_date_is_the_day_closed_bridges_the_pnl_across_the_split_and_dividend():
    fills = [fill("buy", "2024-03-01", "100", "50"), fill("buy", "2024-03-04", "10", "26")]
    dividend = LedgerAction(symbol="XYZ", ex_date=dt.date(2024, 3, 4), kind="cash_dividend", amount=D("0.40"))
    close = close_day(fills, day=dt.date(2024, 3, 4), opening_marks={"XYZ": D("52")}, closing_marks={"XYZ": D("26.50")},
                      actions=[SPLIT, dividend])
    rf = close.roll_forward
    # Opening at the pre-split close (100 × 52), closing at the post-split one ((200 + 10) × 26.50).
    assert (rf.unrealised_open, rf.unrealised_close) == (D(200), D(210 * D("26.50") - 5000 - 260))
    assert rf.income == D(40) and rf.ok  # the dividend per pre-split share: 100 × 0.40
    assert [lot.qty for lot in close.ledger.open_lots()] == [D(200), D(10)]
    restored = restore_day_close(day_close_state(close))
    assert restored.roll_forward.income == D(40) and restored.roll_forward.ok


def test_close_day_when_actions_fall_between_fills_books_each_at_its_ex_date():
    fills = [fill("buy", "2024-03-01", "100", "50"), fill("sell", "2024-03-05", "200", "27")]
    close = close_day(fills, day=dt.date(2024, 3, 5), opening_marks={"XYZ": D("26")}, closing_marks={}, actions=[SPLIT])
    (sale,) = close.ledger.disposals
    assert (sale.qty, sale.basis, sale.gain) == (D(200), D(5000), D(400))
    assert close.roll_forward.ok


def test_split_when_a_wash_sale_replacement_lot_is_open_keeps_its_deferred_loss_and_holding_start():
    ledger = Ledger()
    ledger.apply_all([fill("buy", "2024-01-02", "100", "10"), fill("sell", "2024-02-01", "100", "8"),
                      fill("buy", "2024-02-10", "100", "8.5")])
    (replacement,) = ledger.open_lots()
    start = replacement.holding_start
    assert (replacement.cost, replacement.wash_adjustment) == (D(1050), D(200))
    book_action(ledger, SPLIT)
    assert (replacement.qty, replacement.cost, replacement.holding_start) == (D(200), D(1050), start)
    ledger.apply(fill("sell", "2024-03-05", "200", "5"))
    assert ledger.disposals[-1].gain == D(-50) and ledger.disposals[-1].holding_start == start
