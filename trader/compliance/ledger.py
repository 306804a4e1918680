"""The FIFO lot book: :class:`Ledger` books fills into tax lots, disposals and wash sales (rules in :mod:`trader.compliance.lots`).

Example:
    >>> import datetime as dt
    >>> from trader.compliance.fills import ComplianceFill
    >>> def fill(fid, side, qty, price):
    ...     return ComplianceFill(fill_id=fid, order_id=fid, client_order_id=fid, symbol="ACME", side=side, qty=qty,
    ...                           price=price, fee="1", ts=dt.datetime(2024, 5, 1, 14, tzinfo=dt.UTC), venue="SIM", account="A1")
    >>> ledger = Ledger()
    >>> ledger.apply_all([fill("b1", "buy", "10", "50"), fill("s1", "sell", "4", "55")])
    >>> [(lot.lot_id, lot.qty, lot.cost) for lot in ledger.open_lots()], ledger.disposals[0].gain
    ([('b1', Decimal('6'), Decimal('300.6'))], Decimal('18.6'))
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from decimal import Decimal
from operator import attrgetter

from trader.compliance.errors import LedgerError
from trader.compliance.fills import ComplianceFill, load_fills
from trader.compliance.holding import term
from trader.compliance.sealed import NOTHING_SEALED, SealedYear
from trader.compliance.tax_lots import ZERO, Direction, Disposal, TaxLot
from trader.compliance.wash_sales import WashSale, WashSaleBook

_acquired, _lot_seq = attrgetter("acquired"), attrgetter("seq")


def _price(label: str, symbol: str, value: Decimal | str) -> Decimal:
    if isinstance(value, float):  # a binary float would leak rounding error into every unrealised figure
        raise LedgerError(f"{label}: {symbol}: must be a Decimal or a decimal string, not float ({value!r})")
    return Decimal(value)


class _ProRata:
    """Spreads an amount over shares; the piece that takes the last shares takes the exact remainder."""

    def __init__(self, amount: Decimal, qty: Decimal):
        self._amount, self._qty = amount, qty
        self._left_amount, self._left_qty = amount, qty

    def take(self, qty: Decimal) -> Decimal:
        part = self._left_amount if qty == self._left_qty else self._amount * qty / self._qty
        self._left_amount -= part
        self._left_qty -= qty
        return part


class Ledger:
    """The tax-lot ledger of one taxpayer: FIFO lots per (account, symbol), wash sales across accounts.

    Args:
        allow_short: let a sell beyond the long shares held open a short lot; otherwise such
            a sell raises :class:`LedgerError`.

    Fills must be applied in time order (:meth:`apply_all` sorts them for you).

    ``disposals`` are the disposals booked by this ledger. A ledger restored from a checkpoint
    also carries ``sealed``: the tax year's disposals and wash sales that can no longer change,
    as rows (:mod:`trader.compliance.sealed`); its ``disposals`` and ``wash_sales`` are then
    those that still can (or are the checkpoint day's own), plus the new ones. Form 8949 of
    the year is both (:func:`trader.compliance.reports.year_form_8949`).
    """

    def __init__(self, *, allow_short: bool = False):
        self.allow_short = allow_short
        self.cash = ZERO
        self.disposals: list[Disposal] = []
        self.sealed: SealedYear = NOTHING_SEALED
        self._positions: dict[str, dict[str, list[TaxLot]]] = {}  # symbol → account → lots, FIFO order
        self._long_qty: dict[tuple[str, str], Decimal] = {}  # (symbol, account) → long shares held, kept as lots move
        self._wash = WashSaleBook()
        self._seen: set[str] = set()
        self._last: tuple[dt.datetime, str] | None = None
        self._seq = 0
        self.dividends: list = []  # DividendEntry rows (trader.compliance.corporate_actions), since the last checkpoint

    @property
    def wash_sales(self) -> list[WashSale]:
        return self._wash.adjustments

    def apply_all(self, fills: Iterable[ComplianceFill]) -> None:
        """Apply fills in ``(ts, fill_id)`` order (see :func:`~trader.compliance.fills.load_fills`)."""
        for fill in load_fills(fills):
            self.apply(fill)

    def apply(self, fill: ComplianceFill) -> None:
        """Book one fill.

        Raises:
            LedgerError: the fill repeats an id, is older than the last fill applied, or
                sells more than a long-only account holds.
        """
        key = (fill.ts, fill.fill_id)
        if fill.fill_id in self._seen:
            raise LedgerError(f"fill {fill.fill_id}: fill_id: already applied")
        if self._last is not None and key < self._last:
            raise LedgerError(f"fill {fill.fill_id}: ts: {fill.ts.isoformat()} is before the last fill applied ({self._last[1]})")
        lots = self._positions.setdefault(fill.symbol, {}).setdefault(fill.account, [])
        if fill.side == "buy":
            self._buy(fill, lots)
        else:
            self._sell(fill, lots)
        self._seen.add(fill.fill_id)
        self._last = key

    def split(self, symbol: str, ratio: Decimal) -> None:
        """A stock split: every open lot's shares × ``ratio``; total basis, acquisition date and holding start stay."""
        for lot in self.open_lots(symbol):
            lot.qty *= ratio
        for key in [k for k in self._long_qty if k[0] == symbol]:
            self._long_qty[key] *= ratio

    def open_lots(self, symbol: str | None = None) -> list[TaxLot]:
        """Open lots (all symbols, or one), by symbol, then account, then FIFO order."""
        symbols = [symbol] if symbol is not None else sorted(self._positions)
        return [lot for sym in symbols for acct in sorted(self._positions.get(sym, {})) for lot in self._positions[sym][acct]]

    def pending_losses(self, as_of: dt.date) -> list[Disposal]:
        """Losses whose 30-day window after the sale is still open on ``as_of`` and not fully replaced yet."""
        return self._wash.pending(as_of)

    def valuation(self, marks: Mapping[str, Decimal], *, label: str = "marks") -> tuple[Decimal, Decimal]:
        """``(signed market value, unrealised P&L)`` of the open lots at ``marks`` (symbol → price).

        ``label`` names ``marks`` in the error message (e.g. ``opening_marks``).

        Raises:
            LedgerError: an open position has no price in ``marks``.
        """
        value = unrealised = ZERO
        for lot in self.open_lots():
            if lot.symbol not in marks:
                raise LedgerError(f"{label}: {lot.symbol}: no price for an open position")
            lot_value, lot_unrealised = lot.valuation(_price(label, lot.symbol, marks[lot.symbol]))
            value += lot_value
            unrealised += lot_unrealised
        return value, unrealised

    # -- booking --------------------------------------------------------------------------

    def _held(self, fill: ComplianceFill, lots: list[TaxLot]) -> Decimal:
        """Long shares the fill's account holds in its symbol (summed once, then kept up to date by the booking)."""
        key = (fill.symbol, fill.account)
        held = self._long_qty.get(key)
        if held is None:
            held = self._long_qty[key] = sum((lot.qty for lot in lots if lot.direction == "long"), ZERO)
        return held

    def _sell(self, fill: ComplianceFill, lots: list[TaxLot]) -> None:
        held = self._held(fill, lots)
        if fill.qty > held and not self.allow_short:
            raise LedgerError(
                f"fill {fill.fill_id}: qty: sells {fill.qty} {fill.symbol} but account {fill.account} holds {held} "
                "(long-only ledger; use Ledger(allow_short=True) to open short lots)"
            )
        proceeds = _ProRata(fill.gross - fill.fee, fill.qty)
        pieces = []
        remaining = fill.qty
        while remaining > 0 and lots and lots[0].direction == "long":
            lot = self._take(lots, remaining)
            pieces.append(self._dispose(lot, fill, len(pieces) + 1, proceeds=proceeds.take(lot.qty), basis=lot.cost))
            remaining -= lot.qty
        self._long_qty[fill.symbol, fill.account] = held - (fill.qty - remaining)
        if remaining > 0:
            lots.append(short := self._open(fill, "short", remaining, proceeds.take(remaining)))
            self._wash.on_purchase(short, self._carve)  # a new short sale can replace a short closed at a loss
        self.cash += fill.gross - fill.fee
        self._wash.on_sale(pieces, self._held_lots, self._carve)

    def _buy(self, fill: ComplianceFill, lots: list[TaxLot]) -> None:
        cost = _ProRata(fill.gross + fill.fee, fill.qty)
        remaining, pieces = fill.qty, []
        while remaining > 0 and lots and lots[0].direction == "short":
            lot = self._take(lots, remaining)
            basis = cost.take(lot.qty) + lot.wash_adjustment  # a loss deferred from an earlier short closes here
            pieces.append(self._dispose(lot, fill, len(pieces) + 1, proceeds=lot.cost, basis=basis))
            remaining -= lot.qty
        self._wash.on_sale(pieces, self._held_lots, self._carve)
        if remaining > 0:
            held = self._held(fill, lots)
            lot = self._open(fill, "long", remaining, cost.take(remaining))
            lots.append(lot)
            self._long_qty[fill.symbol, fill.account] = held + remaining
            self._wash.on_purchase(lot, self._carve)
        self.cash -= fill.gross + fill.fee

    @staticmethod
    def _take(lots: list[TaxLot], qty: Decimal) -> TaxLot:
        """Remove up to ``qty`` shares from the front lot and return them as a lot."""
        if qty >= lots[0].qty:
            return lots.pop(0)
        return lots[0].carve(qty)

    def _open(self, fill: ComplianceFill, direction: Direction, qty: Decimal, cost: Decimal) -> TaxLot:
        self._seq += 1
        return TaxLot(lot_id=fill.fill_id, account=fill.account, symbol=fill.symbol, direction=direction,
                      order_id=fill.order_id, seq=self._seq, acquired=fill.trade_date, holding_start=fill.trade_date,
                      qty=qty, cost=cost)

    def _dispose(self, lot: TaxLot, fill: ComplianceFill, n: int, *, proceeds: Decimal, basis: Decimal) -> Disposal:
        day = fill.trade_date
        # A short is closed by shares bought today: acquired = sold = the covering date, short-term.
        acquired, start = (lot.acquired, lot.holding_start) if lot.direction == "long" else (day, day)
        disposal = Disposal(
            disposal_id=f"{fill.fill_id}/{n}", account=lot.account, symbol=lot.symbol, direction=lot.direction,
            lot_id=lot.lot_id, fill_id=fill.fill_id, qty=lot.qty, opened=lot.acquired, acquired=acquired,
            holding_start=start, sold=day, proceeds=proceeds, basis=basis, term=term(start, day),
            lot_order_id=lot.order_id, lot_seq=lot.seq,
        )
        self.disposals.append(disposal)
        return disposal

    def _held_lots(self, symbol: str, since: dt.date, direction: Direction = "long") -> list[TaxLot]:
        """Open ``direction`` lots of ``symbol`` (all accounts) opened on or after ``since``, in the order opened.

        Each account's lots are in FIFO order, so their acquisition dates never decrease: the
        lots since a date are a tail, found by bisection rather than by walking the whole book.
        """
        lots = []
        for acct_lots in self._positions.get(symbol, {}).values():
            if acct_lots and acct_lots[0].direction == direction:  # an account is never long and short at once
                lots += acct_lots[bisect_left(acct_lots, since, key=_acquired):]
        return sorted(lots, key=_lot_seq)  # stable: a carved part stays ahead of its rest

    def _carve(self, lot: TaxLot, qty: Decimal) -> TaxLot:
        if qty >= lot.qty:
            return lot
        lots = self._positions[lot.symbol][lot.account]
        # Wash sales carve recent lots (within 30 days), which sit at the end of the FIFO list.
        index = next(i for i in range(len(lots) - 1, -1, -1) if lots[i] is lot)
        part = lot.carve(qty)
        lots.insert(index, part)  # the carved shares go first: within a lot, replacement shares are sold first
        return part
