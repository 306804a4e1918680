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

import datetime as dt
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from operator import attrgetter
from typing import Literal

from trader.compliance.corporate_actions import LedgerAction, replay
from trader.compliance.errors import LedgerError
from trader.compliance.fills import ComplianceFill, load_fills
from trader.compliance.holding import Term, term
from trader.compliance.sealed import NOTHING_SEALED, SealedYear
from trader.compliance.wash_sales import WashSale, WashSaleBook

Direction = Literal["long", "short"]
ZERO = Decimal(0)
_acquired, _lot_seq = attrgetter("acquired"), attrgetter("seq")
#: Roll-forward differences below this are Decimal division residue (28 significant digits), not money.
TOLERANCE = Decimal("1e-9")


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


@dataclass(frozen=True)
class RollForward:
    """One day's P&L bridge; ``ok`` says whether it closes.

    ``opening`` and ``closing`` are total P&L since inception (cash + signed market value),
    computed independently of the lot arithmetic, so the bridge is a real check:
    ``opening + realised + (unrealised_close − unrealised_open) = closing``.
    ``realised`` is the day's change in recognised gains: the day's disposals
    (proceeds − basis) plus wash-sale losses disallowed during the day (``disallowed``,
    which moves a loss from realised into the replacement lots' basis, i.e. unrealised).
    """

    day: dt.date
    opening: Decimal
    realised_before_wash: Decimal
    disallowed: Decimal
    unrealised_open: Decimal
    unrealised_close: Decimal
    closing: Decimal
    #: Cash dividends of the day (received on long lots, paid on short ones): cash, not a gain on a lot.
    income: Decimal = ZERO

    @property
    def realised(self) -> Decimal:
        return self.realised_before_wash + self.disallowed

    @property
    def difference(self) -> Decimal:
        return self.opening + self.realised + self.income + (self.unrealised_close - self.unrealised_open) - self.closing

    @property
    def ok(self) -> bool:
        return abs(self.difference) <= TOLERANCE


@dataclass(frozen=True)
class DayClose:
    """The ledger as of the end of ``day``, that day's roll-forward, and the day's fills."""

    day: dt.date
    ledger: Ledger
    roll_forward: RollForward
    closing_marks: Mapping[str, Decimal]
    day_fills: tuple[ComplianceFill, ...] = ()


def close_day(fills: Iterable[ComplianceFill], *, day: dt.date, closing_marks: Mapping[str, Decimal],
              opening_marks: Mapping[str, Decimal] | None = None, allow_short: bool = False,
              resume: Ledger | None = None, actions: Iterable[LedgerAction] = ()) -> DayClose:
    """Replay every fill up to the end of ``day`` (or only those after a checkpoint) and bridge the day's P&L.

    Args:
        fills: the account history (any order; fills traded after ``day`` are ignored).
        day: the trading day (New York trade date) to close.
        closing_marks: symbol → closing price on ``day`` for every position open at its end.
        opening_marks: symbol → closing price of the previous trading day, for every position
            open at the end of it (may be omitted when there was none).
        allow_short: see :class:`Ledger` (ignored with ``resume``: the ledger keeps its own).
        resume: continue this ledger, restored from an earlier close
            (:func:`trader.compliance.checkpoint.restore_ledger`), instead of an empty one;
            ``fills`` are then only those after it. The ledger is changed in place.
        actions: splits and cash dividends (:mod:`trader.corporate_actions`) with ex-date after the
            resumed checkpoint (all of them without one); each is booked at its ex-date, before that
            day's fills (after the opening valuation when the ex-date is ``day``).

    Raises:
        FillError, LedgerError: an invalid fill, an oversell, a missing price, or (with
            ``resume``) a fill at or before the checkpoint's last fill.

    Example:
        >>> import datetime as dt
        >>> from trader.compliance.fills import ComplianceFill
        >>> buy = ComplianceFill(fill_id="b1", order_id="o1", client_order_id="c1", symbol="ACME", side="buy",
        ...                      qty="10", price="50", fee="1", ts=dt.datetime(2024, 5, 1, 14, tzinfo=dt.UTC),
        ...                      venue="SIM", account="A1")
        >>> result = close_day([buy], day=dt.date(2024, 5, 1), closing_marks={"ACME": Decimal("52")})
        >>> result.roll_forward.unrealised_close, result.roll_forward.ok
        (Decimal('19'), True)
    """
    ordered = [fill for fill in load_fills(fills) if fill.trade_date <= day]
    ledger = resume if resume is not None else Ledger(allow_short=allow_short)
    before = [fill for fill in ordered if fill.trade_date < day]
    due = [a for a in actions if a.ex_date <= day]
    replay(ledger, before, [a for a in due if a.ex_date < day])
    open_value, unrealised_open = ledger.valuation(opening_marks or {}, label="opening_marks")
    opening = ledger.cash + open_value
    n_disposals = len(ledger.disposals)
    todays = ordered[len(before):]
    income = replay(ledger, todays, [a for a in due if a.ex_date == day])
    close_value, unrealised_close = ledger.valuation(closing_marks, label="closing_marks")
    bridge = RollForward(
        day=day,
        opening=opening,
        realised_before_wash=sum((d.proceeds - d.basis for d in ledger.disposals[n_disposals:]), ZERO),
        disallowed=sum((w.disallowed for w in ledger.wash_sales if w.booked == day), ZERO),
        unrealised_open=unrealised_open,
        unrealised_close=unrealised_close,
        closing=ledger.cash + close_value,
        income=income,
    )
    return DayClose(day=day, ledger=ledger, roll_forward=bridge, closing_marks=dict(closing_marks), day_fills=tuple(todays))
