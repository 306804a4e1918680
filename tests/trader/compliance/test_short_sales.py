"""Short sales: wash sales on losses from closing shorts (Treas. Reg. §1.1091-1(g)), their term, §1259/§1233 flags."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from compliance_factories import fill

from trader.compliance import Ledger
from trader.compliance.reports import form_8949_rows
from trader.compliance.short_sales import short_sale_flags


def short_book(*fills) -> Ledger:
    ledger = Ledger(allow_short=True)
    ledger.apply_all(fills)
    return ledger


def test_short_closed_at_a_loss_and_reshorted_17_days_later_is_a_wash_sale_carried_into_the_new_short():
    # Short 100 at 50 (proceeds 5,000), cover at 55 (basis 5,500: loss 500), short again at 54 17 days later.
    ledger = short_book(fill("sell", "2024-03-01", "100", "50"), fill("buy", "2024-03-15", "100", "55"),
                        fill("sell", "2024-04-01", "100", "54", fid="S2"))
    (closed,) = ledger.disposals
    assert (closed.proceeds, closed.basis, closed.disallowed, closed.gain, closed.term) == (D(5000), D(5500), D(500), D(0), "short")
    (replacement,) = ledger.open_lots()
    assert (replacement.lot_id, replacement.direction, replacement.cost, replacement.wash_adjustment) == ("S2", "short", D(5400), D(500))
    (wash,) = ledger.wash_sales
    assert (wash.qty, wash.disallowed, wash.holding_days_added, wash.booked) == (D(100), D(500), 0, dt.date(2024, 4, 1))
    (row,) = form_8949_rows(ledger.disposals)
    assert (row["a_description"], row["f_code"], row["g_adjustment"], row["h_gain_loss"]) == \
        ("100 sh XYZ (short sale)", "W", "500.00", "0.00")


def test_replacement_short_covered_later_adds_the_disallowed_loss_to_its_basis():
    ledger = short_book(fill("sell", "2024-03-01", "100", "50"), fill("buy", "2024-03-15", "100", "55"),
                        fill("sell", "2024-04-01", "100", "54"), fill("buy", "2024-05-01", "100", "52"))
    later = ledger.disposals[-1]
    # Proceeds 5,400; basis 5,200 + 500 deferred = 5,700: the 200 gain becomes a 300 loss, short-term.
    assert (later.proceeds, later.basis, later.gain, later.term) == (D(5400), D(5700), D(-300), "short")
    assert ledger.valuation({})[0] == 0 and ledger.cash == D(-300)  # all cash accounted for: -500 + 200


@pytest.mark.parametrize(("reshorted", "disallowed"), [("2024-04-14", D(500)), ("2024-04-15", D(0)), ("2024-04-16", D(0))])
def test_reshort_30_days_after_the_closing_is_a_wash_sale_and_31_or_32_days_after_is_not(reshorted, disallowed):
    ledger = short_book(fill("sell", "2024-03-01", "100", "50"), fill("buy", "2024-03-15", "100", "55"),
                        fill("sell", reshorted, "100", "54"))
    assert ledger.disposals[0].disallowed == disallowed
    assert ledger.open_lots()[0].wash_adjustment == disallowed


def test_short_opened_within_30_days_before_the_losing_cover_and_still_open_is_a_replacement():
    # Two shorts in FIFO order; the cover closes the first at a loss; the second (opened 10 days earlier) absorbs it.
    ledger = short_book(fill("sell", "2024-02-01", "100", "50", fid="S1"), fill("sell", "2024-02-20", "100", "52", fid="S2"),
                        fill("buy", "2024-03-01", "100", "56"))
    (closed,) = ledger.disposals
    assert (closed.lot_id, closed.proceeds - closed.basis, closed.disallowed, closed.gain) == ("S1", D(-600), D(600), D(0))
    assert [(lot.lot_id, lot.wash_adjustment) for lot in ledger.open_lots()] == [("S2", D(600))]


def test_partial_reshort_disallows_the_loss_in_proportion_to_the_shares_reshorted():
    # 100 covered at a 5/share loss (500); only 40 re-shorted: 40/100 × 500 = 200 disallowed, 300 deductible.
    ledger = short_book(fill("sell", "2024-03-01", "100", "50"), fill("buy", "2024-03-15", "100", "55"),
                        fill("sell", "2024-03-20", "40", "54"))
    (closed,) = ledger.disposals
    assert (closed.disallowed, closed.gain) == (D(200), D(-300))
    assert ledger.open_lots()[0].wash_adjustment == D(200)
    (row,) = form_8949_rows(ledger.disposals)
    assert (row["d_proceeds"], row["e_cost_basis"], row["f_code"], row["g_adjustment"], row["h_gain_loss"]) == \
        ("5000.00", "5500.00", "W", "200.00", "-300.00")


def test_partial_cover_of_a_replacement_short_takes_its_share_of_the_deferred_loss():
    ledger = short_book(fill("sell", "2024-03-01", "100", "50"), fill("buy", "2024-03-15", "100", "55"),
                        fill("sell", "2024-04-01", "100", "54"), fill("buy", "2024-05-01", "25", "52"))
    covered = ledger.disposals[-1]
    assert (covered.qty, covered.proceeds, covered.basis) == (D(25), D(1350), D(1300) + D(125))
    assert ledger.open_lots()[0].wash_adjustment == D(375)


def test_short_covered_at_a_gain_is_never_a_wash_sale():
    ledger = short_book(fill("sell", "2024-03-01", "100", "50"), fill("buy", "2024-03-15", "100", "45"),
                        fill("sell", "2024-03-20", "100", "46"))
    assert ledger.disposals[0].disallowed == 0 and not ledger.wash_sales


def test_long_purchase_does_not_replace_a_short_closing_loss_nor_a_short_sale_a_long_loss():
    shorts = short_book(fill("sell", "2024-03-01", "100", "50"), fill("buy", "2024-03-15", "200", "55"))  # cover + go long 100
    assert shorts.disposals[0].disallowed == 0
    longs = short_book(fill("buy", "2024-03-01", "100", "50"), fill("sell", "2024-03-15", "200", "45"))  # sell + go short 100
    assert longs.disposals[0].disallowed == 0


def test_short_open_more_than_a_year_is_still_short_term_when_covered():
    ledger = short_book(fill("sell", "2022-01-03", "10", "100"), fill("buy", "2024-06-03", "10", "60"))
    (closed,) = ledger.disposals
    assert (closed.term, closed.acquired, closed.opened, closed.gain) == ("short", dt.date(2024, 6, 3), dt.date(2022, 1, 3), D(400))
    assert form_8949_rows(ledger.disposals)[0]["part"] == "I"


def test_short_against_appreciated_long_in_another_account_is_flagged_as_a_constructive_sale_with_its_gain():
    flags = short_sale_flags([fill("buy", "2023-01-03", "100", "20", account="A1", fid="L1"),
                              fill("sell", "2024-03-01", "60", "50", account="A2", fid="S1")])
    (flag,) = flags
    # 60 of the 100 shares matched: FMV 60 × 50 = 3,000, basis 60 × 20 = 1,200 → 1,800 gain, long-term.
    assert (flag.held_lot_id, flag.held_qty, flag.held_basis, flag.fair_market_value, flag.gain) == \
        ("L1", D(60), D(1200), D(3000), D(1800))
    assert flag.constructive_sale and flag.rules == "§1259 constructive sale; §1233(d)" and flag.held_term == "long"


def test_short_against_a_long_held_at_a_loss_is_no_constructive_sale_but_flags_1233b_when_held_a_year_or_less():
    (flag,) = short_sale_flags([fill("buy", "2024-01-10", "100", "60", account="A1"),
                                fill("sell", "2024-03-01", "100", "50", account="A2")])
    assert (flag.constructive_sale, flag.rules, flag.held_term, flag.gain) == (False, "§1233(b)", "short", D(-1000))


def test_shares_bought_while_a_short_is_open_elsewhere_are_flagged_1233b():
    flags = short_sale_flags([fill("sell", "2024-03-01", "100", "50", account="A2", fid="S1"),
                              fill("buy", "2024-03-05", "100", "48", account="A1", fid="L1")])
    (flag,) = flags
    assert (flag.rules, flag.short_fill_id, flag.held_lot_id, flag.short_account) == ("§1233(b) acquired while short", "S1", "L1", "A2")


def test_a_plain_short_in_one_account_raises_no_flag():
    assert short_sale_flags([fill("sell", "2024-03-01", "100", "50"), fill("buy", "2024-03-05", "100", "48")]) == []


def test_pending_short_closing_loss_survives_a_checkpoint_and_is_washed_by_a_short_after_the_resume():
    from trader.compliance import close_day, restore_ledger
    from trader.compliance.checkpoint import dumps_day_close, loads

    first = [fill("sell", "2024-03-01", "100", "50"), fill("buy", "2024-03-15", "100", "55")]
    monday = close_day(first, day=dt.date(2024, 3, 15), closing_marks={}, opening_marks={"XYZ": D(50)}, allow_short=True)
    resumed = restore_ledger(loads(dumps_day_close(monday))["ledger"])
    later = close_day([fill("sell", "2024-04-01", "100", "54")], day=dt.date(2024, 4, 1), closing_marks={"XYZ": D(54)},
                      resume=resumed)
    assert later.ledger.disposals[0].disallowed == D(500) and later.roll_forward.ok
    assert later.roll_forward.disallowed == D(500) and later.roll_forward.unrealised_close == D(-500)
