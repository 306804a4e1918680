"""FIFO tax lots from fills: realised P&L per disposal, unrealised P&L at the close, the daily roll-forward.

Every fill that opens a position opens a *lot* (``lot_id`` = the fill id). A sell closes
long lots first in, first out; a buy closes short lots the same way. Partial fills, several
trades a day and fractional shares are all just quantities. Fees go into the numbers the
tax forms use: a buy's fee is added to the basis, a sell's fee is subtracted from the
proceeds, each spread over the lots it touches in proportion to shares.

Short selling is a per-ledger switch, ``Ledger(allow_short=True)``. A long-only ledger (the
default) refuses a sell of more shares than the account holds with a :class:`LedgerError`
instead of booking a negative lot. With shorts allowed, the excess of a sell over the long
shares held opens a short lot (its "cost" is the net proceeds received), and a buy closes
short lots FIFO before any remainder opens a long lot. A position is never long and short
at once. A closed short is reported on the date of the covering buy and is always
short-term (the shares delivered were bought that day); losses on closing shorts follow the
wash-sale rule for short sales (:mod:`trader.compliance.wash_sales`, :mod:`trader.compliance.short_sales`).

Precision: amounts keep full ``Decimal`` precision here; rounding to cents happens only
when reports are written. Pro-rata splits give the last piece the exact remainder, so a
lot's pieces always add back up to its cost.

Where it lives (this module re-exports the names):

* :mod:`trader.compliance.tax_lots`: the records, :class:`TaxLot` and :class:`Disposal`;
* :mod:`trader.compliance.ledger`: the FIFO lot book, :class:`Ledger`;
* :mod:`trader.compliance.day_close`: :func:`close_day` and its P&L bridge, :class:`RollForward`.

Example (FIFO with lots entered out of order):
    >>> import datetime as dt
    >>> from trader.compliance.fills import ComplianceFill
    >>> def fill(fid, side, hour, qty, price):
    ...     return ComplianceFill(fill_id=fid, order_id=fid, client_order_id=fid, symbol="ACME", side=side, qty=qty,
    ...                           price=price, fee="0", ts=dt.datetime(2024, 5, 1, hour, tzinfo=dt.UTC),
    ...                           venue="SIM", account="A1")
    >>> ledger = Ledger()
    >>> ledger.apply_all([fill("b3", "buy", 15, "6", "122.22"), fill("b1", "buy", 13, "4", "100.00"),
    ...                   fill("b2", "buy", 14, "5", "111.11"), fill("s1", "sell", 16, "7", "120")])
    >>> [(d.lot_id, d.qty, d.basis) for d in ledger.disposals]
    [('b1', Decimal('4'), Decimal('400.00')), ('b2', Decimal('3'), Decimal('333.33'))]
"""

from __future__ import annotations

from trader.compliance.day_close import TOLERANCE, DayClose, RollForward, close_day
from trader.compliance.ledger import Ledger
from trader.compliance.tax_lots import ZERO, Direction, Disposal, TaxLot

__all__ = ["TOLERANCE", "ZERO", "DayClose", "Direction", "Disposal", "Ledger", "RollForward", "TaxLot", "close_day"]
