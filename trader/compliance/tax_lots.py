"""Tax-lot records: an open lot (:class:`TaxLot`) and a closed piece of one (:class:`Disposal`, a Form 8949 row).

The :class:`~trader.compliance.ledger.Ledger` opens, carves and closes these; the wash-sale
book (:mod:`trader.compliance.wash_sales`) adjusts them. Both import this module, which
imports neither, so the arrows run one way. Amounts keep full ``Decimal`` precision.

Example:
    >>> import datetime as dt
    >>> lot = TaxLot(lot_id="b1", account="A1", symbol="ACME", direction="long", order_id="o1", seq=1,
    ...              acquired=dt.date(2024, 5, 1), holding_start=dt.date(2024, 5, 1), qty=Decimal(10), cost=Decimal(501))
    >>> part = lot.carve(Decimal(4))
    >>> (part.qty, part.cost), (lot.qty, lot.cost)
    ((Decimal('4'), Decimal('200.4')), (Decimal('6'), Decimal('300.6')))
    >>> lot.valuation(Decimal(52))
    (Decimal('312'), Decimal('11.4'))
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal

from trader.compliance.holding import Term

Direction = Literal["long", "short"]
ZERO = Decimal(0)


@dataclass(eq=False)  # identity equality: two lots with equal fields are still two lots
class TaxLot:
    """Shares of one opening fill still open (a wash sale may carve a lot into several rows).

    ``cost`` is the tax basis of a long lot (price × qty + fee + wash-sale adjustments) or
    the net proceeds received for a short lot; a short lot's ``wash_adjustment`` (a disallowed
    loss on closing an earlier short) is not in ``cost`` but added to the basis when it is covered. ``holding_start`` is the trade date the
    holding period counts from: ``acquired``, or earlier for wash-sale replacement shares.
    """

    lot_id: str
    account: str
    symbol: str
    direction: Direction
    order_id: str
    seq: int
    acquired: dt.date
    holding_start: dt.date
    qty: Decimal
    cost: Decimal
    wash_adjustment: Decimal = ZERO
    replacement_for: str | None = None

    def carve(self, qty: Decimal) -> TaxLot:
        """Cut ``qty`` shares (with their pro-rata cost) off this lot and return them; ``self`` keeps the rest."""
        if not ZERO < qty < self.qty:
            raise ValueError(f"lot {self.lot_id}: cannot carve {qty} of {self.qty} shares")
        cost, adjustment = self.cost * qty / self.qty, self.wash_adjustment * qty / self.qty
        part = replace(self, qty=qty, cost=cost, wash_adjustment=adjustment)
        self.qty, self.cost, self.wash_adjustment = self.qty - qty, self.cost - cost, self.wash_adjustment - adjustment
        return part

    def valuation(self, mark: Decimal) -> tuple[Decimal, Decimal]:
        """``(signed market value, unrealised P&L)`` at ``mark``."""
        value = self.qty * mark
        if self.direction == "long":
            return value, value - self.cost
        return -value, self.cost - self.wash_adjustment - value


@dataclass(eq=False)
class Disposal:
    """One lot (or part of one) closed by one fill: a Form 8949 row.

    ``gain`` is column (h): ``proceeds − basis + disallowed``. ``disallowed`` can grow after
    the sale, when replacement shares are bought within the following 30 days.
    """

    disposal_id: str
    account: str
    symbol: str
    direction: Direction
    lot_id: str
    fill_id: str
    qty: Decimal
    opened: dt.date
    acquired: dt.date
    holding_start: dt.date
    sold: dt.date
    proceeds: Decimal
    basis: Decimal
    term: Term
    disallowed: Decimal = ZERO
    replaced_qty: Decimal = ZERO
    lot_order_id: str = field(default="", repr=False)
    lot_seq: int = field(default=0, repr=False)
    #: The loss before any wash-sale disallowance (0 for a gain); proceeds and basis never change after the sale.
    loss: Decimal = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.loss = max(self.basis - self.proceeds, ZERO)

    @property
    def unreplaced(self) -> Decimal:
        """Shares of a loss still without replacement shares (0 for a gain)."""
        return self.qty - self.replaced_qty if self.loss > 0 else ZERO

    @property
    def gain(self) -> Decimal:
        return self.proceeds - self.basis + self.disallowed
