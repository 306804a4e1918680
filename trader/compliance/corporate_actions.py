"""Splits and cash dividends in the tax-lot ledger (IRS Publication 550, "Stock Splits" and "Dividends").

* **Split** (``ratio`` new shares per old share, 2-for-1: ``2``; 1-for-10 reverse: ``0.1``): every open
  lot of the symbol, long or short, in every account, keeps its total basis (``cost``), its
  acquisition date and its holding start; its shares are multiplied by the ratio, so the basis
  per share is divided by it. A later sale's gain is therefore the same as without the split,
  and its holding period counts from the original purchase.
* **Cash dividend** (``amount`` per share): a long lot's account receives ``qty × amount``; a short
  lot's account pays it (a payment in lieu of the dividend). Cash moves; no lot changes (an
  ordinary dividend is income, not a return of basis). Each payment is a :class:`DividendEntry`
  in ``ledger.dividends`` (not kept in the checkpoint: a resumed ledger lists the days after it).
* **When**: at the ex-date, before that day's fills (which trade in post-split shares) and after
  the opening valuation (the previous close is a pre-split price), see :func:`replay`.

Not modelled (documented gaps): a wash-sale loss still waiting for replacement shares when a
split happens is matched share for share as traded (not split-adjusted); cash in lieu of
fractional shares; qualified/non-qualified dividend classification (Form 1099-DIV).

Example (2-for-1 split: basis per share halves, total basis and holding period stay):
    >>> import datetime as dt
    >>> from decimal import Decimal as D
    >>> from trader.compliance.fills import ComplianceFill
    >>> from trader.compliance.lots import Ledger
    >>> buy = ComplianceFill(fill_id="b1", order_id="o1", client_order_id="c1", symbol="ACME", side="buy", qty="100",
    ...                      price="50", fee="0", ts=dt.datetime(2023, 1, 3, 15, tzinfo=dt.UTC), venue="SIM", account="A1")
    >>> ledger = Ledger()
    >>> ledger.apply(buy)
    >>> book_action(ledger, LedgerAction(symbol="ACME", ex_date=dt.date(2024, 3, 4), kind="split", ratio=D(2)))
    Decimal('0')
    >>> lot = ledger.open_lots()[0]
    >>> lot.qty, lot.cost, lot.cost / lot.qty, lot.acquired.isoformat()
    (Decimal('200'), Decimal('5000'), Decimal('25'), '2023-01-03')
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from trader.compliance.fills import ComplianceFill
from trader.corporate_actions import CorporateAction

ZERO = Decimal(0)


class Book(Protocol):
    """What this module needs of :class:`~trader.compliance.lots.Ledger` (which imports this module, not the reverse)."""

    cash: Decimal
    dividends: list[Any]

    def open_lots(self, symbol: str | None = None) -> list[Any]: ...

    def split(self, symbol: str, ratio: Decimal) -> None: ...

    def apply(self, fill: ComplianceFill) -> None: ...


#: The ledger books the actions the trader applied (its store's ``corporate_actions`` rows), as the same type.
LedgerAction = CorporateAction


@dataclass(frozen=True)
class DividendEntry:
    """One account's dividend (positive: received on a long lot; negative: paid in lieu on a short lot)."""

    action_id: str
    account: str
    symbol: str
    ex_date: dt.date
    qty: Decimal
    per_share: Decimal
    cash: Decimal


def book_action(ledger: Book, action: LedgerAction) -> Decimal:
    """Apply ``action`` to the open lots (split) or to the cash (dividend); returns the dividend cash booked."""
    lots = ledger.open_lots(action.symbol)
    if action.kind == "split":
        assert action.ratio is not None
        ledger.split(action.symbol, action.ratio)
        return ZERO
    assert action.amount is not None
    total = ZERO
    for lot in lots:
        sign = 1 if lot.direction == "long" else -1
        cash = sign * lot.qty * action.amount
        ledger.dividends.append(DividendEntry(action.action_id, lot.account, lot.symbol, action.ex_date, sign * lot.qty,
                                              action.amount, cash))
        total += cash
    ledger.cash += total
    return total


def replay(ledger: Book, fills: Sequence[ComplianceFill], actions: Iterable[LedgerAction]) -> Decimal:
    """Apply ``fills`` (in order) and ``actions``, each action before the first fill traded on or after its ex-date.

    Returns the dividend cash booked.
    """
    pending = sorted(actions, key=lambda a: (a.ex_date, a.symbol, a.kind))
    income, i = ZERO, 0
    for fill in fills:
        while i < len(pending) and pending[i].ex_date <= fill.trade_date:
            income += book_action(ledger, pending[i])
            i += 1
        ledger.apply(fill)
    for action in pending[i:]:
        income += book_action(ledger, action)
    return income
