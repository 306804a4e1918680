"""Wash sales: IRS Publication 550 and Treas. Reg. §1.1091-2 examples, the 61-day window, matching order."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from compliance_factories import fill

from trader.compliance import Ledger


def booked(*fills) -> Ledger:
    ledger = Ledger()
    ledger.apply_all(fills)
    return ledger


def lots(ledger: Ledger) -> list[tuple[str, D, D, D]]:
    return [(lot.lot_id, lot.qty, lot.cost, lot.wash_adjustment) for lot in ledger.open_lots()]


def test_pub_550_example_disallows_250_and_extends_the_replacement_holding_period():
    ledger = booked(fill("buy", "2013-01-01", "100", "10"), fill("sell", "2013-06-01", "100", "7.50"),
                    fill("buy", "2013-06-15", "100", "8", fid="R"))
    (sale,) = ledger.disposals
    assert (sale.proceeds, sale.basis, sale.disallowed, sale.gain) == (D(750), D(1000), D(250), D(0))
    (replacement,) = ledger.open_lots()
    assert (replacement.cost, replacement.wash_adjustment) == (D(1050), D(250))
    assert replacement.holding_start == dt.date(2013, 1, 15)
    (wash,) = ledger.wash_sales
    assert (wash.holding_days_added, wash.qty, wash.disallowed, wash.booked) == (151, D(100), D(250), dt.date(2013, 6, 15))


@pytest.mark.parametrize(("sold_on", "term"), [("2014-01-15", "short"), ("2014-01-16", "long")])
def test_pub_550_replacement_shares_turn_long_term_a_year_after_the_extended_start(sold_on, term):
    ledger = booked(fill("buy", "2013-01-01", "100", "10"), fill("sell", "2013-06-01", "100", "7.50"),
                    fill("buy", "2013-06-15", "100", "8"), fill("sell", sold_on, "100", "11"))
    later = ledger.disposals[-1]
    assert (later.basis, later.gain, later.term) == (D(1050), D(50), term)


@pytest.mark.parametrize(("replacement_price", "new_basis"), [("90", D(110)), ("70", D(90))])
def test_treas_reg_1_1091_2_new_basis_is_replacement_cost_plus_disallowed_loss(replacement_price, new_basis):
    ledger = booked(fill("buy", "2024-01-02", "1", "100"), fill("sell", "2024-02-01", "1", "80"),
                    fill("buy", "2024-02-10", "1", replacement_price))
    assert ledger.disposals[0].disallowed == D(20)
    assert ledger.open_lots()[0].cost == new_basis


@pytest.mark.parametrize(("bought", "washed"), [("2024-03-31", True), ("2024-04-01", False)])
def test_replacement_bought_30_days_after_is_a_wash_sale_and_31_days_after_is_not(bought, washed):
    ledger = booked(fill("buy", "2024-01-02", "10", "10"), fill("sell", "2024-03-01", "10", "8"), fill("buy", bought, "10", "8"))
    assert ledger.disposals[0].disallowed == (D(20) if washed else D(0))
    assert len(ledger.wash_sales) == int(washed)


@pytest.mark.parametrize(("bought", "washed"), [("2024-01-31", True), ("2024-01-30", False)])
def test_replacement_bought_30_days_before_is_a_wash_sale_and_31_days_before_is_not(bought, washed):
    ledger = booked(fill("buy", "2024-01-02", "10", "10", fid="L"), fill("buy", bought, "10", "9", fid="R"),
                    fill("sell", "2024-03-01", "10", "8"))  # FIFO sells L; R is held through the sale
    assert ledger.disposals[0].lot_id == "L"
    assert ledger.disposals[0].disallowed == (D(20) if washed else D(0))


def test_partial_replacement_disallows_the_loss_in_proportion():
    ledger = booked(fill("buy", "2024-01-02", "100", "10"), fill("sell", "2024-03-01", "100", "7"),
                    fill("buy", "2024-03-05", "40", "7.5", fid="R"))
    (sale,) = ledger.disposals
    assert (sale.disallowed, sale.gain) == (D(120), D(-180))
    assert lots(ledger) == [("R", D(40), D(420), D(120))]


def test_replacement_shares_are_matched_in_the_order_bought_and_the_rest_of_a_lot_stays_unadjusted():
    ledger = booked(fill("buy", "2024-01-02", "100", "10"), fill("sell", "2024-03-01", "100", "8"),
                    fill("buy", "2024-03-06", "60", "8", fid="R1"), fill("buy", "2024-03-11", "60", "8", fid="R2"))
    assert lots(ledger) == [("R1", D(60), D(600), D(120)), ("R2", D(40), D(400), D(80)), ("R2", D(20), D(160), D(0))]
    assert ledger.disposals[0].disallowed == D(200)


def test_losses_are_processed_in_sale_order_and_each_replacement_share_absorbs_one_loss():
    ledger = booked(fill("buy", "2024-01-02", "100", "10", fid="A"), fill("buy", "2024-01-03", "100", "10", fid="B"),
                    fill("sell", "2024-03-10", "100", "9", fid="S1"), fill("sell", "2024-03-12", "100", "7", fid="S2"),
                    fill("buy", "2024-03-15", "100", "8", fid="R1"), fill("buy", "2024-03-20", "50", "8", fid="R2"))
    s1, s2 = ledger.disposals
    assert (s1.disallowed, s1.gain) == (D(100), D(0))
    assert (s2.disallowed, s2.gain) == (D(150), D(-150))
    assert [(w.loss_disposal_id, w.replacement_lot_id, w.qty) for w in ledger.wash_sales] == [
        ("S1/1", "R1", D(100)), ("S2/1", "R2", D(50))]
    assert [p.disposal_id for p in ledger.pending_losses(dt.date(2024, 3, 20))] == ["S2/1"]


def test_same_day_loss_does_not_reduce_the_gain_on_another_block_sold_that_day():
    ledger = booked(fill("buy", "2024-01-02", "100", "10", fid="A"), fill("buy", "2024-01-03", "100", "20", fid="B"),
                    fill("sell", "2024-03-10", "200", "15"), fill("buy", "2024-03-20", "100", "15", fid="R"))
    gain_block, loss_block = ledger.disposals
    assert (gain_block.lot_id, gain_block.gain, gain_block.disallowed) == ("A", D(500), D(0))
    assert (loss_block.lot_id, loss_block.disallowed, loss_block.gain) == ("B", D(500), D(0))
    assert lots(ledger) == [("R", D(100), D(2000), D(500))]


def test_shares_of_the_same_purchase_are_not_replacement_shares():
    same_lot = booked(fill("buy", "2024-03-01", "100", "10"), fill("sell", "2024-03-08", "50", "8"))
    assert same_lot.disposals[0].disallowed == 0 and same_lot.open_lots()[0].wash_adjustment == 0
    split_fills = booked(fill("buy", "2024-03-01", "60", "10", order="O1"), fill("buy", "2024-03-01", "40", "10", order="O1", minute=1),
                         fill("sell", "2024-03-08", "60", "8"))
    assert split_fills.disposals[0].disallowed == 0
    other_order = booked(fill("buy", "2024-03-01", "60", "10", order="O1"), fill("buy", "2024-03-01", "40", "10", order="O2", minute=1),
                         fill("sell", "2024-03-08", "60", "8"))
    assert other_order.disposals[0].disallowed == D(80)  # 40 of the 60 loss shares are replaced: 120 × 40/60


def test_across_accounts_shares_bought_after_the_loss_shares_replace_them_and_earlier_ones_do_not():
    after = booked(fill("buy", "2024-03-01", "100", "10", account="A1"), fill("buy", "2024-03-07", "100", "9", account="IRA", fid="R"),
                   fill("sell", "2024-03-10", "100", "8", account="A1"))
    assert after.disposals[0].disallowed == D(200)
    assert [(lot.account, lot.cost) for lot in after.open_lots()] == [("IRA", D(1100))]
    before = booked(fill("buy", "2024-03-01", "100", "10", account="IRA"), fill("buy", "2024-03-05", "100", "10", account="A1"),
                    fill("sell", "2024-03-10", "100", "8", account="A1"))
    assert before.disposals[0].disallowed == 0


def test_shares_sold_before_the_loss_sale_are_not_replacement_shares():
    ledger = booked(fill("buy", "2024-03-01", "100", "10", account="A1"), fill("buy", "2024-03-02", "100", "10", account="A2"),
                    fill("sell", "2024-03-03", "100", "11", account="A2"), fill("sell", "2024-03-05", "100", "9", account="A1"))
    assert [d.disallowed for d in ledger.disposals] == [0, 0]


def test_a_gain_is_never_a_wash_sale():
    ledger = booked(fill("buy", "2024-03-01", "10", "10"), fill("sell", "2024-03-05", "10", "12"), fill("buy", "2024-03-06", "10", "11"))
    assert ledger.wash_sales == [] and ledger.pending_losses(dt.date(2024, 3, 6)) == []


def test_wash_sale_chain_carries_the_deferred_loss_through_replacement_shares():
    ledger = booked(fill("buy", "2024-01-02", "100", "10"), fill("sell", "2024-02-01", "100", "9"),   # loss 100, deferred
                    fill("buy", "2024-02-05", "100", "9"), fill("sell", "2024-02-20", "100", "8.5"),  # basis 1000: loss 150
                    fill("buy", "2024-03-01", "100", "8", fid="R"))
    assert [d.disallowed for d in ledger.disposals] == [D(100), D(150)]
    (lot,) = ledger.open_lots()
    # Holding periods add up, gaps between them do not: 30 days (Jan 2 → Feb 1) + 15 days (Feb 5 → Feb 20).
    assert (lot.cost, lot.holding_start) == (D(950), dt.date(2024, 3, 1) - dt.timedelta(days=30 + 15))


@pytest.mark.parametrize(("as_of", "open_"), [("2024-03-15", True), ("2024-03-31", True), ("2024-04-01", False)])
def test_a_loss_stays_pending_while_its_30_day_window_is_open(as_of, open_):
    ledger = booked(fill("buy", "2024-01-02", "10", "10"), fill("sell", "2024-03-01", "10", "8"))
    assert bool(ledger.pending_losses(dt.date.fromisoformat(as_of))) is open_
