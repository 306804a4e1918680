"""Property tests: for random fill sequences the ledger reconciles with cash, never goes negative, and bridges daily."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal as D

from compliance_factories import fill
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.compliance import ComplianceFill, Ledger, close_day
from trader.compliance.lots import TOLERANCE

START = dt.date(2024, 1, 2)
SYMBOLS, ACCOUNTS = ("XYZ", "ABC"), ("A1", "A2")
cents = st.integers(1, 20_000).map(lambda n: D(n) / 100)
quantities = st.one_of(st.integers(1, 50).map(D), st.integers(1, 500).map(lambda n: D(n) / 100))
fees = st.integers(0, 200).map(lambda n: D(n) / 100)


@st.composite
def fill_sequences(draw, *, allow_short: bool, flatten: bool = False) -> list[ComplianceFill]:
    """Random fills over ~3 months; long-only sequences never sell more than held (that case is an error)."""
    held: dict[tuple[str, str], D] = defaultdict(D)
    fills, day = [], START
    for i in range(draw(st.integers(1, 30))):
        day += dt.timedelta(days=draw(st.sampled_from([0, 0, 1, 3, 20, 31])))
        symbol, account = draw(st.sampled_from(SYMBOLS)), draw(st.sampled_from(ACCOUNTS))
        side, qty = draw(st.sampled_from(["buy", "sell"])), draw(quantities)
        if side == "sell" and not allow_short:
            if held[symbol, account] <= 0:
                side = "buy"
            else:
                qty = min(qty, held[symbol, account])
        held[symbol, account] += qty if side == "buy" else -qty
        fills.append(fill(side, day, str(qty), str(draw(cents)), fee=str(draw(fees)), symbol=symbol, account=account,
                          fid=f"F{i:03d}", minute=i))
    if flatten:
        day += dt.timedelta(days=1)
        for n, ((symbol, account), qty) in enumerate(sorted(held.items())):
            if qty:
                fills.append(fill("sell" if qty > 0 else "buy", day, str(abs(qty)), str(draw(cents)), symbol=symbol,
                                  account=account, fid=f"Z{n:03d}", minute=n))
    return fills


def cash_flow(fills: list[ComplianceFill]) -> D:
    return sum((f.gross - f.fee if f.side == "sell" else -(f.gross + f.fee) for f in fills), D(0))


def assert_reconciles_with_cash(ledger: Ledger, fills: list[ComplianceFill]) -> None:
    realised = sum((d.proceeds - d.basis for d in ledger.disposals), D(0))
    disallowed = sum((d.disallowed for d in ledger.disposals), D(0))
    open_long = sum((lot.cost for lot in ledger.open_lots() if lot.direction == "long"), D(0))
    # A short lot's wash adjustment (a loss deferred from an earlier short) is owed back when it is covered.
    open_short = sum((lot.cost - lot.wash_adjustment for lot in ledger.open_lots() if lot.direction == "short"), D(0))
    # Every dollar paid or received is either realised, deferred by a wash sale into an open lot, or still open.
    assert abs(cash_flow(fills) - (realised + disallowed - open_long + open_short)) <= TOLERANCE
    assert abs(ledger.cash - cash_flow(fills)) <= TOLERANCE
    assert abs(disallowed - sum((w.disallowed for w in ledger.wash_sales), D(0))) <= TOLERANCE


def assert_positions_match_fills(ledger: Ledger, fills: list[ComplianceFill]) -> None:
    net: dict[tuple[str, str], D] = defaultdict(D)
    for f in fills:
        net[f.symbol, f.account] += f.qty if f.side == "buy" else -f.qty
    booked: dict[tuple[str, str], D] = defaultdict(D)
    for lot in ledger.open_lots():
        assert lot.qty > 0 and lot.cost.is_finite()
        booked[lot.symbol, lot.account] += lot.qty if lot.direction == "long" else -lot.qty
    assert {k: v for k, v in net.items() if v} == dict(booked)
    for symbol in SYMBOLS:
        for account in ACCOUNTS:
            directions = {lot.direction for lot in ledger.open_lots(symbol) if lot.account == account}
            assert len(directions) <= 1  # never long and short at once


def assert_wash_sales_are_sane(ledger: Ledger, fills: list[ComplianceFill]) -> None:
    bought = {f.fill_id: f.qty for f in fills}
    absorbed: dict[str, D] = defaultdict(D)
    for wash in ledger.wash_sales:
        absorbed[wash.replacement_lot_id] += wash.qty
    assert all(absorbed[lot_id] <= bought[lot_id] for lot_id in absorbed)  # one loss per replacement share
    for d in ledger.disposals:
        assert D(0) <= d.disallowed <= d.loss + TOLERANCE and d.replaced_qty <= d.qty


@settings(max_examples=150, deadline=None)
@given(fill_sequences(allow_short=False))
def test_long_only_ledger_reconciles_with_cash_and_lots_never_go_negative(fills):
    ledger = Ledger()
    ledger.apply_all(fills)
    assert all(lot.direction == "long" for lot in ledger.open_lots())
    assert_positions_match_fills(ledger, fills)
    assert_reconciles_with_cash(ledger, fills)
    assert_wash_sales_are_sane(ledger, fills)


@settings(max_examples=150, deadline=None)
@given(fill_sequences(allow_short=True))
def test_ledger_with_short_sales_reconciles_with_cash(fills):
    ledger = Ledger(allow_short=True)
    ledger.apply_all(fills)
    assert_positions_match_fills(ledger, fills)
    assert_reconciles_with_cash(ledger, fills)
    assert_wash_sales_are_sane(ledger, fills)


@settings(max_examples=100, deadline=None)
@given(fill_sequences(allow_short=True, flatten=True))
def test_once_flat_reported_gains_equal_cash_exactly(fills):
    ledger = Ledger(allow_short=True)
    ledger.apply_all(fills)
    assert ledger.open_lots() == []
    # Form 8949 (h) = proceeds − basis + disallowed: every deferred loss has come back through its replacement.
    assert abs(sum((d.gain for d in ledger.disposals), D(0)) - cash_flow(fills)) <= TOLERANCE


@settings(max_examples=60, deadline=None)
@given(fill_sequences(allow_short=True), st.data())
def test_roll_forward_closes_on_every_trading_day(fills, data):
    days = sorted({f.trade_date for f in fills})
    marks = {day: {s: data.draw(cents, label=f"{s} {day}") for s in SYMBOLS} for day in days}
    previous: dict[str, D] = {}
    for day in days:
        result = close_day(fills, day=day, opening_marks=previous, closing_marks=marks[day], allow_short=True)
        assert result.roll_forward.ok, result.roll_forward
        previous = marks[day]
