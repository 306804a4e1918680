"""The sealed year: the tax year's disposals and wash sales that can no longer change, kept as checkpoint rows.

A disposal changes after its sale in one way only: while its loss waits for replacement
shares (:meth:`~trader.compliance.wash_sales.WashSaleBook.pending`), a purchase within 30
days can disallow part of it. Everything else about it was fixed when it was booked. So at
the close of day ``D`` a disposal of ``D``'s tax year is *final* when

* it was sold before ``D`` (the day's own disposals stay objects: the day's reports and
  checks read them), and
* it is not a pending loss at ``D`` (a gain, a loss fully replaced, or one whose window has
  closed: every later purchase falls after ``D``, outside it).

A wash-sale adjustment never changes once booked; only those booked on ``D`` itself stay
objects (the day's ``wash_sales.csv`` lists them). Wash sales are booked in fill order, so in
a checkpoint's table those of earlier days are a prefix.

Final disposals and earlier wash sales are the bulk of a year-end checkpoint (10^5 rows each),
and resuming, re-saving and reporting them each day was most of the EOD run. :class:`SealedYear` keeps them as
the rows they were read from (never turned into objects), each with its printed Form 8949
line, in Form 8949 order (Part I then II, date sold, disposal id), plus each Part's totals of
the printed amounts (what Schedule D adds up). A day then only renders and merges in the
disposals that became final since the checkpoint (a few thousand), writes the sealed rows
back verbatim, and prints Form 8949 by merging its few live rows into the sealed lines. The
sealed wash sales are rows in booking order, written back first, then the objects booked since.

The order is canonical and the totals are exact sums of cents, so the rows and totals are
the same whether the ledger was resumed day after day or replayed from nothing: the
checkpoint bytes do not depend on the path (the benchmark and the tests check it).

Example (rows shortened to the three key columns and the line):
    >>> from decimal import Decimal
    >>> def row(term, sold, disposal_id):
    ...     values = dict.fromkeys(DISPOSAL_FIELDS, "")
    ...     values.update(term=term, sold=sold, disposal_id=disposal_id, form_8949=f"{disposal_id}\\n")
    ...     return [values[name] for name in SEALED_COLUMNS]
    >>> zero = {part: (Decimal(0),) * 4 for part in PARTS}
    >>> sealed = NOTHING_SEALED.extended(2024, [row("long", "2024-02-01", "b/1"), row("short", "2024-03-01", "a/1")], zero)
    >>> sealed.extended(2024, [row("short", "2024-02-01", "c/1")], zero).lines(2024)
    ['c/1\\n', 'a/1\\n', 'b/1\\n']
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

#: The columns of a disposal row in a checkpoint: the :class:`~trader.compliance.lots.Disposal`
#: fields, in order (the checkpoint checks this against the class).
DISPOSAL_FIELDS = ("disposal_id", "account", "symbol", "direction", "lot_id", "fill_id", "qty", "opened", "acquired",
                   "holding_start", "sold", "proceeds", "basis", "term", "disallowed", "replaced_qty", "lot_order_id", "lot_seq")
#: A sealed row: the disposal row, then its Form 8949 line as printed (CSV, with its line end).
SEALED_COLUMNS = (*DISPOSAL_FIELDS, "form_8949")
#: The columns of a wash-sale row: the :class:`~trader.compliance.wash_sales.WashSale` fields, in order.
WASH_FIELDS = ("loss_disposal_id", "symbol", "loss_account", "sold", "replacement_lot_id", "replacement_account",
               "replacement_acquired", "qty", "disallowed", "holding_days_added", "replacement_holding_start", "booked")
PARTS = ("I", "II")  # Form 8949 Part I (short-term), Part II (long-term)
#: Per Part: the sums of the printed (d) proceeds, (e) cost basis, (g) adjustment and (h) gain or loss.
Totals = Mapping[str, tuple[Decimal, ...]]

_ID, _SOLD, _TERM, _LINE = (SEALED_COLUMNS.index(name) for name in ("disposal_id", "sold", "term", "form_8949"))
_REPLACEMENT, _DISALLOWED, BOOKED = (WASH_FIELDS.index(name) for name in ("replacement_lot_id", "disallowed", "booked"))


def row_key(row: Sequence[Any]) -> tuple[bool, str, str]:
    """A sealed row's place on Form 8949: ``(long-term?, date sold, disposal id)`` (ISO dates sort as dates)."""
    return row[_TERM] != "short", row[_SOLD], row[_ID]


def add_totals(a: Totals, b: Totals) -> dict[str, tuple[Decimal, ...]]:
    """Part by part, column by column sums (exact: the amounts are cents)."""
    return {part: tuple(x + y for x, y in zip(a[part], b[part], strict=True)) for part in PARTS}


def interleave(old: Sequence[Any], new: Sequence[Any], points: Sequence[int]) -> list[Any]:
    """``old`` with ``new[i]`` inserted before ``old[points[i]]`` (``points`` non-decreasing); O(len(old) + len(new))."""
    out: list[Any] = []
    start = 0
    for item, point in zip(new, points, strict=True):
        out += old[start:point]
        out.append(item)
        start = point
    out += old[start:]
    return out


def insertion_points(rows: Sequence[Any], keys: Sequence[Any]) -> list[int]:
    """Where each of ``keys`` (sorted) goes among ``rows`` (sorted by :func:`row_key`), after equal keys."""
    points, lo = [], 0
    for key in keys:
        lo = bisect_right(rows, key, lo=lo, key=row_key)
        points.append(lo)
    return points


@dataclass(frozen=True)
class SealedYear:
    """What of tax year ``year`` can no longer change, as checkpoint rows.

    ``disposals``: the final disposals as :data:`SEALED_COLUMNS` rows in Form 8949 order, with
    ``totals`` (per Part, the sums of their printed amounts); ``wash_sales``: the adjustments
    booked before the checkpoint's day, :data:`WASH_FIELDS` rows in booking order. Treat the
    rows as read-only: they are shared between a restored ledger and the next checkpoint,
    which writes them back as they were read.
    """

    year: int | None
    disposals: Sequence[list[Any]]
    totals: Totals
    wash_sales: Sequence[list[Any]] = ()

    def lines(self, year: int) -> list[str]:
        """The printed Form 8949 lines of ``year`` (none when these rows are of another year)."""
        return [row[_LINE] for row in self.disposals] if year == self.year else []

    def totals_of(self, year: int) -> Totals:
        return self.totals if year == self.year else NOTHING_SEALED.totals

    def deferred(self, lot_ids: set[str]) -> dict[str, Decimal]:
        """By replacement lot (only those in ``lot_ids``): the losses its sealed wash sales disallowed."""
        out: dict[str, Decimal] = {}
        for row in self.wash_sales if lot_ids else ():
            if row[_REPLACEMENT] in lot_ids:
                out[row[_REPLACEMENT]] = out.get(row[_REPLACEMENT], Decimal(0)) + Decimal(row[_DISALLOWED])
        return out

    def extended(self, year: int, disposals: Sequence[list[Any]], totals: Totals,
                 wash_sales: Sequence[list[Any]] = ()) -> SealedYear:
        """These rows (if of ``year``) plus newly final ``disposals`` (printed amounts summing to ``totals``)
        and newly sealed ``wash_sales`` (booked after these).

        A new tax year starts empty: nothing final of an earlier year is needed by a later day
        (Form 8949 is per year, and so are the checkpoint's wash sales).
        """
        base = self if year == self.year else NOTHING_SEALED
        if not disposals and not wash_sales and base.year == year:
            return base
        new = sorted(disposals, key=row_key)
        return SealedYear(year, interleave(base.disposals, new, insertion_points(base.disposals, [row_key(r) for r in new])),
                          add_totals(base.totals, totals), [*base.wash_sales, *wash_sales] if wash_sales else base.wash_sales)


NOTHING_SEALED = SealedYear(None, (), {part: (Decimal(0),) * 4 for part in PARTS})
