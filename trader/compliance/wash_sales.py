"""Wash sales (IRC §1091, IRS Publication 550 "Wash Sales", Treas. Reg. §1.1091-1 and -2).

A loss on a sale of shares is *disallowed* when substantially identical shares (here: the
same symbol, in any account of the ledger) are acquired within 30 days before or after the
sale: a 61-day window on trade dates, both ends included. The disallowed loss is added to
the basis of the replacement shares, and their holding period is extended by that of the
shares sold, so the loss is deferred, not lost.

How the rules are applied, in the order the ledger books fills:

* **Per block.** A sale that takes several FIFO lots gives one disposal per lot; each is a
  gain or a loss on its own. A loss block never nets against a gain block sold the same day
  (Rev. Rul. 56-602): the gain stays whole and the loss is disallowed on its own shares.
* **Losses in sale order; replacements in the order bought.** Each loss disposal takes the
  earliest eligible replacement shares first. Shares bought before the sale are matched
  when the sale is booked; the loss's unreplaced remainder then waits ("pending") and is
  matched by later purchases, up to 30 days after the sale, as they arrive.
* **One loss per replacement share.** Shares that absorbed a loss are carved off into their
  own lot and never absorb another; the rest of the purchase stays available.
* **Partial replacement is proportional.** With ``r`` replacement shares for ``n`` shares
  sold, ``loss × r / n`` is disallowed and the rest is deductible. The last share to be
  replaced takes the exact remainder, so a fully replaced loss is disallowed to the cent.
* **Holding period.** The replacement shares' holding period starts
  ``(date sold − holding start of the sold shares)`` days before their own purchase.

Which shares can be replacement shares (the interpretation this module takes):

* **Not shares of the same purchase.** Shares bought by the order that bought the shares
  being sold, including the unsold rest of the lot and other fills of that order, are the
  same acquisition, not a re-acquisition: buy 100, sell 50 of them at a loss a week later,
  keep 50 → no wash sale from the kept 50.
* **Not shares acquired before the shares sold.** Stock already held before the loss shares
  were bought cannot replace them (the position of Kaye Thomas, Fairmark, in his comments on
  IRS Notice 2009-17). Under FIFO within one account this never arises; it matters across
  accounts of the same ledger.
* **Only shares still held.** Shares bought in the 30 days before the sale but already sold
  by the time of the loss sale (including the other blocks of the same sale) are not
  replacement shares: there is no basis left to carry the loss, and re-opening a closed
  sale would turn an earlier gain retroactively.
* **Only long purchases.** A buy that covers a short sale delivers its shares to the lender;
  it is not a replacement purchase. Only the part of a buy that opens a long lot counts.

**Short sales** (Pub 550 "Short sales"; Treas. Reg. §1.1091-1(g)). A loss on *closing* a
short sale (covering at a higher price) is disallowed when another short sale of the same
symbol is entered into within 30 days before or after the closing (the date of the covering
buy is the "sale" date). The same machinery applies with directions swapped: the loss block is
the covered short lot, the replacements are short lots opened in the window and still open,
matched in the order opened, one loss per replacement share, proportional for partial
quantities. The replacement short keeps its proceeds (``TaxLot.cost``, what the broker
reports in 1099-B box 1d); the disallowed loss goes into its ``wash_adjustment`` and is added
to the *basis* (the covering cost) when that short is closed, so the deferred loss comes back
as a smaller gain or a larger loss then. No holding period is tacked: gain or loss on a short
sale is short-term whatever its length (§1233(a), (b)); see :mod:`trader.compliance.short_sales`.

Worked example (short sales): short 100 XYZ at $50 on 2024-03-01 (proceeds $5,000), cover at
$55 on 2024-03-15 (basis $5,500: loss $500), short 100 again at $54 on 2024-04-01 (17 days
after the closing: inside the window). The $500 loss is disallowed (Form 8949 code W,
(g) = 500.00, (h) = 0.00) and the new short carries it: covered at $52 on 2024-05-01 its row
reads proceeds 5,400.00, basis 5,200 + 500 = 5,700.00, loss (300.00), short-term. A re-short on
2024-04-16 (32 days after) would leave the $500 deductible. Over both shorts the deductible
total is −500 + 200 = −300 either way; the wash sale only moves the loss to the second closing.

Not modelled (documented gaps): a *long sale* of the same stock within 30 days of closing a
short at a loss (§1.1091-1(g)(1)) is not treated as a replacement (there is no open position
to carry the loss); options, contracts to acquire and IRA purchases are not in the fills.

Example (Publication 550): buy 100 for $1,000, sell for $750, buy 100 for $800 within 30 days:
    >>> import datetime as dt
    >>> from trader.compliance.lots import Ledger
    >>> from trader.compliance.fills import ComplianceFill
    >>> def fill(fid, side, day, price):
    ...     ts = dt.datetime(2013, *day, 15, tzinfo=dt.UTC)
    ...     return ComplianceFill(fill_id=fid, order_id=fid, client_order_id=fid, symbol="XYZ", side=side,
    ...                           qty="100", price=price, fee="0", ts=ts, venue="SIM", account="A1")
    >>> ledger = Ledger()
    >>> ledger.apply_all([fill("b1", "buy", (1, 1), "10"), fill("s1", "sell", (6, 1), "7.50"),
    ...                   fill("b2", "buy", (6, 15), "8")])
    >>> sale = ledger.disposals[0]
    >>> sale.proceeds, sale.basis, sale.disallowed, sale.gain
    (Decimal('750.00'), Decimal('1000'), Decimal('250.00'), Decimal('0.00'))
    >>> lot = ledger.open_lots()[0]
    >>> lot.cost, lot.holding_start.isoformat()
    (Decimal('1050.00'), '2013-01-15')

Example (the short-sale worked example above):
    >>> def short(fid, side, day, price):
    ...     ts = dt.datetime(2024, *day, 15, tzinfo=dt.UTC)
    ...     return ComplianceFill(fill_id=fid, order_id=fid, client_order_id=fid, symbol="XYZ", side=side,
    ...                           qty="100", price=price, fee="0", ts=ts, venue="SIM", account="A1")
    >>> ledger = Ledger(allow_short=True)
    >>> ledger.apply_all([short("s1", "sell", (3, 1), "50"), short("c1", "buy", (3, 15), "55"),
    ...                   short("s2", "sell", (4, 1), "54"), short("c2", "buy", (5, 1), "52")])
    >>> [(d.proceeds, d.basis, d.disallowed, d.gain, d.term) for d in ledger.disposals]
    [(Decimal('5000'), Decimal('5500'), Decimal('500'), Decimal('0'), 'short'), (Decimal('5400'), Decimal('5700'), Decimal('0'), Decimal('-300'), 'short')]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from trader.compliance.tax_lots import Disposal, TaxLot  # the records only: the ledger imports this module, not the reverse

WINDOW = dt.timedelta(days=30)

#: Cut ``qty`` shares off the front of an open lot (in place in its position) and return them.
Carve = Callable[["TaxLot", Decimal], "TaxLot"]


@dataclass(frozen=True)
class WashSale:
    """One wash-sale adjustment: ``qty`` replacement shares absorbing part of one loss.

    ``booked`` is the day the adjustment became known: the later of the loss sale and the
    replacement purchase. A loss can be split over several replacement lots (several rows).
    """

    loss_disposal_id: str
    symbol: str
    loss_account: str
    sold: dt.date
    replacement_lot_id: str
    replacement_account: str
    replacement_acquired: dt.date
    qty: Decimal
    disallowed: Decimal
    holding_days_added: int
    replacement_holding_start: dt.date
    booked: dt.date


def in_window(sold: dt.date, acquired: dt.date) -> bool:
    """True if ``acquired`` falls in the 61-day window around ``sold`` (30 days each side, inclusive).

    Example:
        >>> in_window(dt.date(2024, 3, 1), dt.date(2024, 3, 31)), in_window(dt.date(2024, 3, 1), dt.date(2024, 4, 1))
        (True, False)
    """
    return abs(acquired - sold) <= WINDOW


def is_replacement(loss: Disposal, lot: TaxLot) -> bool:
    """Whether ``lot`` may absorb (part of) ``loss``: see the module docstring for each condition."""
    return (
        lot.direction == loss.direction
        and lot.replacement_for is None
        and lot.symbol == loss.symbol
        and lot.order_id != loss.lot_order_id
        and lot.seq > loss.lot_seq
        and in_window(loss.sold, lot.acquired)
    )


class WashSaleBook:
    """Applies the wash-sale rules as the ledger books fills; holds losses still waiting for replacements.

    The ledger calls :meth:`on_sale` after each sale and :meth:`on_purchase` for each new
    long lot; both mutate the lots (basis, holding start) and the loss disposals
    (``disallowed``) through ``carve``, and record a :class:`WashSale` per adjustment.
    """

    def __init__(self) -> None:
        self.adjustments: list[WashSale] = []
        self._pending: dict[str, list[Disposal]] = {}

    def on_sale(self, pieces: Iterable[Disposal], held: Callable[[str, dt.date, str], list[TaxLot]], carve: Carve) -> None:
        """Match the sale's loss blocks, in order, against shares still held; queue what stays unreplaced.

        Args:
            pieces: the disposals of one fill (a sell closing long lots, or a buy covering short
                lots), in FIFO order.
            held: ``held(symbol, since, direction)``: open lots of a symbol and direction after the
                whole fill (all accounts) opened on or after ``since``, in the order opened.
            carve: cuts shares off an open lot (see :data:`Carve`).
        """
        losses = [piece for piece in pieces if piece.loss > 0]
        if not losses:
            return
        # One candidate list per sale, not per block: a sale can close hundreds of fragmented blocks.
        sold = losses[0].sold
        first, last = sold - WINDOW, sold + WINDOW  # in_window(sold, acquired), compared directly: thousands of lots a sale
        pool = [lot for lot in held(losses[0].symbol, first, losses[0].direction)
                if lot.replacement_for is None and first <= lot.acquired <= last]
        start = 0
        for piece in losses:
            for lot in pool[start:]:
                if piece.unreplaced <= 0:
                    break
                if is_replacement(piece, lot):
                    self._absorb(piece, lot, carve, booked=piece.sold)
            while start < len(pool) and pool[start].replacement_for is not None:
                start += 1  # lots taken whole never absorb again
            if piece.unreplaced > 0:
                self._pending.setdefault(piece.symbol, []).append(piece)

    def on_purchase(self, lot: TaxLot, carve: Carve) -> None:
        """Let a new lot (a long purchase, or a short sale) absorb waiting losses of its direction, oldest first."""
        queue = self._pending.get(lot.symbol)
        if not queue:
            return
        # A loss whose window closed before this purchase can never be replaced: forget it.
        queue[:] = [piece for piece in queue if lot.acquired <= piece.sold + WINDOW]
        for piece in list(queue):
            if not is_replacement(piece, lot):
                continue
            taken = self._absorb(piece, lot, carve, booked=lot.acquired)
            if piece.unreplaced <= 0:
                queue.remove(piece)
            if taken is lot:  # the whole lot is spoken for
                break

    def pending(self, as_of: dt.date) -> list[Disposal]:
        """Loss disposals not fully replaced whose window is still open on ``as_of``: they may yet become wash sales."""
        return [piece for queue in self._pending.values() for piece in queue if as_of <= piece.sold + WINDOW and piece.unreplaced > 0]

    def _absorb(self, piece: Disposal, lot: TaxLot, carve: Carve, *, booked: dt.date) -> TaxLot:
        qty = min(piece.unreplaced, lot.qty)
        taken = carve(lot, qty)
        if piece.replaced_qty + qty == piece.qty:
            amount = piece.loss - piece.disallowed  # the exact remainder: a full replacement disallows all of it
        else:
            amount = piece.loss * qty / piece.qty
        held_days = 0
        if taken.direction == "long":  # a short's proceeds stay; its adjustment joins the covering basis later
            held_days = (piece.sold - piece.holding_start).days
            taken.cost += amount
            taken.holding_start = taken.acquired - dt.timedelta(days=held_days)
        taken.wash_adjustment += amount
        taken.replacement_for = piece.disposal_id
        piece.disallowed += amount
        piece.replaced_qty += qty
        self.adjustments.append(WashSale(
            loss_disposal_id=piece.disposal_id, symbol=piece.symbol, loss_account=piece.account, sold=piece.sold,
            replacement_lot_id=taken.lot_id, replacement_account=taken.account, replacement_acquired=taken.acquired,
            qty=qty, disallowed=amount, holding_days_added=held_days, replacement_holding_start=taken.holding_start,
            booked=booked,
        ))
        return taken
