"""The tax-lot suite's amount check: each 8949 row's booked side against the fill that closed its lot."""

from __future__ import annotations

from decimal import Decimal as D
from types import SimpleNamespace

from orchestration.defs.compliance.expectations import _amount_error

COVER = SimpleNamespace(fill_id="F2", price=D("52"), qty=D(100), fee=D("1.00"))


def _short(basis: str) -> SimpleNamespace:
    return SimpleNamespace(fill_id="F2", lot_id="L1", qty=D(100), direction="short", basis=D(basis), proceeds=D("5400"))


def test_a_short_cover_books_the_fill_plus_at_most_the_loss_a_wash_sale_deferred_into_its_lot():
    fills = {"F2": COVER}
    assert _amount_error(_short("5201.00"), fills) == 0  # 100 × 52 + fee 1
    assert _amount_error(_short("5701.00"), fills, {"L1": D(500)}) == 0  # + the $500 deferred from an earlier short
    assert _amount_error(_short("5701.00"), fills) == 500  # nothing deferred: the basis is $500 off
    assert _amount_error(_short("5801.00"), fills, {"L1": D(500)}) == 100  # more than was deferred
    assert _amount_error(_short("5101.00"), fills, {"L1": D(500)}) == 100  # below the fill: never


def test_a_long_sale_books_the_fill_less_its_fee():
    sale = SimpleNamespace(fill_id="F2", lot_id="L0", qty=D(100), direction="long", basis=D("4000"), proceeds=D("5199.00"))
    assert _amount_error(sale, {"F2": COVER}) == 0
    assert _amount_error(sale, {}) > 1e6  # no closing fill: far off
