"""Short sales against stock already held: §1233 holding-period flags and §1259 constructive sales.

The ledger (:mod:`trader.compliance.lots`) applies the *general rule* for short sales (IRS
Pub 550 "Short sales", IRC §1233(a)): gain or loss on closing a short sale is a capital item
reported on the date of the covering purchase, and it is **short-term however long the short
was open**, because the shares delivered were bought that day. Wash sales on losses from
closing shorts are in :mod:`trader.compliance.wash_sales`.

Within one account a position is never long and short at once, but the ledger is one
taxpayer over several accounts: a short in one account while the same symbol is held long in
another is a *short sale against the box*. This module finds those cases and flags them; it
does not change the ledger's numbers (the special rules depend on facts the fills do not
carry, such as which shares are delivered to close the short, and need a person to decide):

* ``§1259`` **constructive sale**: the long shares matched to the short (oldest first, up to
  the short quantity) have a gain at the short sale price (an *appreciated financial
  position*). §1259 treats them as sold at fair market value on the short sale date:
  ``gain = short price × qty − basis of the matched shares`` (fees left out; FMV is the
  short sale price). The flag shows the gain that would be recognised and its term; the
  matched shares then get a new basis (that FMV) and a new holding period.
* ``§1233(b)``: the matched shares were held **one year or less** on the short sale date
  (or were acquired while the short was open): a gain on closing the short is short-term,
  and the held shares' holding period starts again on the closing date (or on their sale,
  if earlier).
* ``§1233(d)``: the matched shares were held **more than one year** on the short sale date:
  a loss on closing the short is long-term.

Worked example: buy 100 XYZ at $20 on 2023-01-03 in account A1, then short 100 XYZ at $50 on
2024-03-01 in account A2. The A1 shares have a gain of 100 × 50 − 2,000 = $3,000 and were
held more than one year: flagged ``§1259`` (constructive sale, $3,000 long-term gain) and
``§1233(d)``.

    >>> import datetime as dt
    >>> from trader.compliance.fills import ComplianceFill
    >>> def fill(fid, side, day, price, account):
    ...     return ComplianceFill(fill_id=fid, order_id=fid, client_order_id=fid, symbol="XYZ", side=side, qty="100",
    ...                           price=price, fee="0", ts=dt.datetime(*day, 15, tzinfo=dt.UTC), venue="SIM", account=account)
    >>> (flag,) = short_sale_flags([fill("b1", "buy", (2023, 1, 3), "20", "A1"), fill("s1", "sell", (2024, 3, 1), "50", "A2")])
    >>> flag.rules, flag.gain, flag.held_term
    ('§1259 constructive sale; §1233(d)', Decimal('3000'), 'long')
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from trader.compliance.corporate_actions import LedgerAction, replay
from trader.compliance.fills import ComplianceFill, load_fills
from trader.compliance.holding import Term, term
from trader.compliance.lots import Ledger, TaxLot

ZERO = Decimal(0)
CENT = Decimal("0.01")
COLUMNS = ("rules", "symbol", "short_account", "short_fill_id", "short_date", "short_qty", "short_price", "held_account",
           "held_lot_id", "held_acquired", "held_qty", "held_basis", "held_term", "fair_market_value", "gain")


@dataclass(frozen=True)
class ShortSaleFlag:
    """Long shares held in one account while the same symbol is sold short in another.

    ``gain`` is ``fair_market_value − held_basis`` of the matched shares (negative: not an
    appreciated position, so no §1259 constructive sale). ``held_term`` is their holding term
    on ``short_date``.
    """

    rules: str
    symbol: str
    short_account: str
    short_fill_id: str
    short_date: dt.date
    short_qty: Decimal
    short_price: Decimal
    held_account: str
    held_lot_id: str
    held_acquired: dt.date
    held_qty: Decimal
    held_basis: Decimal
    held_term: Term
    fair_market_value: Decimal

    @property
    def gain(self) -> Decimal:
        return self.fair_market_value - self.held_basis

    @property
    def constructive_sale(self) -> bool:
        return self.gain > 0


class _WatchedLedger(Ledger):
    """A ledger that looks at the other accounts' lots before each fill it books."""

    def __init__(self) -> None:
        super().__init__(allow_short=True)
        self.flags: list[ShortSaleFlag] = []

    def apply(self, fill: ComplianceFill) -> None:
        mine = [lot for lot in self.open_lots(fill.symbol) if lot.account == fill.account]
        others = [lot for lot in self.open_lots(fill.symbol) if lot.account != fill.account]
        if fill.side == "sell":
            held_here = sum((lot.qty for lot in mine if lot.direction == "long"), ZERO)
            opened_short = fill.qty - held_here
            if opened_short > 0:
                longs = sorted((lot for lot in others if lot.direction == "long"), key=lambda lot: lot.seq)
                self._flag_short(fill, opened_short, longs)
        super().apply(fill)
        shorts = [lot for lot in others if lot.direction == "short"]
        if fill.side == "buy" and shorts:
            bought = [lot for lot in self.open_lots(fill.symbol) if lot.lot_id == fill.fill_id and lot.direction == "long"]
            for lot in bought:  # §1233(b)(1): substantially identical property acquired while a short is open
                flag = _flag("§1233(b) acquired while short", fill, lot, lot.qty)
                self.flags.append(ShortSaleFlag(**{**flag.__dict__, "short_account": shorts[0].account,
                                                   "short_fill_id": shorts[0].lot_id,
                                                   "short_qty": sum((s.qty for s in shorts), ZERO)}))

    def _flag_short(self, fill: ComplianceFill, short_qty: Decimal, longs: list[TaxLot]) -> None:
        left = short_qty
        for lot in longs:
            if left <= 0:
                break
            qty = min(left, lot.qty)
            left -= qty
            held = term(lot.holding_start, fill.trade_date)
            flag = _flag("", fill, lot, qty, short_qty=short_qty)
            rules = ["§1259 constructive sale"] if flag.gain > 0 else []
            rules.append("§1233(d)" if held == "long" else "§1233(b)")
            self.flags.append(ShortSaleFlag(**{**flag.__dict__, "rules": "; ".join(rules)}))


def _flag(rules: str, fill: ComplianceFill, lot: TaxLot, qty: Decimal, *, short_qty: Decimal = ZERO) -> ShortSaleFlag:
    """A flag for ``qty`` shares of ``lot`` at ``fill`` (the short sale, or a purchase while short), valued at its price."""
    basis = lot.cost if qty == lot.qty else lot.cost * qty / lot.qty
    return ShortSaleFlag(
        rules=rules, symbol=fill.symbol, short_account=fill.account, short_fill_id=fill.fill_id, short_date=fill.trade_date,
        short_qty=short_qty, short_price=fill.price, held_account=lot.account, held_lot_id=lot.lot_id,
        held_acquired=lot.acquired, held_qty=qty, held_basis=basis, held_term=term(lot.holding_start, fill.trade_date),
        fair_market_value=fill.price * qty,
    )


def short_sale_flags(fills: Iterable[ComplianceFill], actions: Iterable[LedgerAction] = (), *,
                     year: int | None = None) -> list[ShortSaleFlag]:
    """Replay ``fills`` (and splits/dividends) and flag short sales against long shares held in another account.

    Args:
        fills: the whole history up to the period of interest (lots bought years ago count).
        actions: splits and dividends, as for :func:`~trader.compliance.lots.close_day`.
        year: keep only flags whose short sale (or purchase) date is in this year.

    Returns:
        One flag per matched long lot, in booking order (see the module docstring for the rules).
    """
    ledger = _WatchedLedger()
    replay(ledger, load_fills(fills), actions)
    return [f for f in ledger.flags if year is None or f.short_date.year == year]


def write_short_sale_flags(flags: Iterable[ShortSaleFlag], path: Path) -> Path:
    """``short_sale_flags.csv``: one row per flag, money rounded to cents (half up) here only."""
    from trader.compliance.reports import money

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for f in flags:
            writer.writerow([f.rules, f.symbol, f.short_account, f.short_fill_id, f.short_date.isoformat(),
                             format(f.short_qty.normalize(), "f"), str(f.short_price), f.held_account, f.held_lot_id,
                             f.held_acquired.isoformat(), format(f.held_qty.normalize(), "f"), str(money(f.held_basis)),
                             f.held_term, str(money(f.fair_market_value)), str(money(f.gain))])
    return path
