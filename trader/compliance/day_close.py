"""Closing a day: replay the fills into a :class:`~trader.compliance.ledger.Ledger` and bridge the day's P&L.

:func:`close_day` books every fill up to the day's end (or only those after a checkpoint),
values the open lots at the previous and the day's closing marks, and checks the
roll-forward (:class:`RollForward`): opening + realised + income + change in unrealised = closing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from trader.compliance.corporate_actions import LedgerAction, replay
from trader.compliance.fills import ComplianceFill, load_fills
from trader.compliance.ledger import Ledger
from trader.compliance.tax_lots import ZERO

#: Roll-forward differences below this are Decimal division residue (28 significant digits), not money.
TOLERANCE = Decimal("1e-9")


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
