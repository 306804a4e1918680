"""The sealed year: the tax year's disposals and wash sales that can no longer change, kept as text.

A disposal changes after its sale in one way only: while its loss waits for replacement
shares (:meth:`~trader.compliance.wash_sales.WashSaleBook.pending`), a purchase within 30
days can disallow part of it. Everything else about it was fixed when it was booked. So at
the close of day ``D`` a disposal of ``D``'s tax year is *final* when

* it was sold before ``D`` (the day's own disposals stay objects: the day's reports and
  checks read them), and
* it is not a pending loss at ``D`` (a gain, a loss fully replaced, or one whose window has
  closed: every later purchase falls after ``D``, outside it).

A wash-sale adjustment never changes once booked; only those booked on ``D`` itself stay
objects (the day's ``wash_sales.csv`` lists them). Wash sales are booked in fill order.

Final disposals and earlier wash sales are the bulk of a year-end checkpoint (10^5 rows
each), and rebuilding, re-saving and reporting them each day was most of the EOD run.
:class:`SealedYear` keeps each as one line of CSV text (never turned into objects; one
string, not a list of fields, so there is little to parse and nothing for the garbage
collector to walk), and each final disposal also with its printed Form 8949 line and its
Form 8949 sort key, in Form 8949 order, plus each Part's totals of the printed amounts
(what Schedule D adds up). A day then only renders the disposals that became final since
its checkpoint (a few thousand), merges them in by key, writes the sealed text back
verbatim, and prints Form 8949 by merging its few live rows into the sealed lines.

The order is canonical and the totals are exact sums of cents, so the sealed year is the
same whether the ledger was resumed day after day or replayed from nothing: the checkpoint
bytes do not depend on the path (the benchmark and the tests check it).

Example:
    >>> from decimal import Decimal
    >>> zero = {part: (Decimal(0),) * 4 for part in PARTS}
    >>> sealed = NOTHING_SEALED.extended(2024, keys=["12024-03-01a/1", "22024-02-01b/1"], disposals=["a,...\\n", "b,...\\n"],
    ...                                  lines=["I,a\\n", "II,b\\n"], totals=zero)
    >>> sealed.extended(2024, keys=["12024-02-01c/1"], disposals=["c,...\\n"], lines=["I,c\\n"], totals=zero).form_8949(2024)
    ['I,c\\n', 'I,a\\n', 'II,b\\n']
"""

from __future__ import annotations

import csv
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

#: The fields of a disposal row in a checkpoint: the :class:`~trader.compliance.lots.Disposal`
#: fields, in order (the checkpoint checks this against the class).
DISPOSAL_FIELDS = ("disposal_id", "account", "symbol", "direction", "lot_id", "fill_id", "qty", "opened", "acquired",
                   "holding_start", "sold", "proceeds", "basis", "term", "disallowed", "replaced_qty", "lot_order_id", "lot_seq")
#: The fields of a wash-sale row: the :class:`~trader.compliance.wash_sales.WashSale` fields, in order.
WASH_FIELDS = ("loss_disposal_id", "symbol", "loss_account", "sold", "replacement_lot_id", "replacement_account",
               "replacement_acquired", "qty", "disallowed", "holding_days_added", "replacement_holding_start", "booked")
PARTS = ("I", "II")  # Form 8949 Part I (short-term), Part II (long-term)
#: Per Part: the sums of the printed (d) proceeds, (e) cost basis, (g) adjustment and (h) gain or loss.
Totals = Mapping[str, tuple[Decimal, ...]]

_REPLACEMENT, _DISALLOWED = WASH_FIELDS.index("replacement_lot_id"), WASH_FIELDS.index("disallowed")


class _Echo:
    """A file whose ``write`` returns its argument: ``csv.writer(_Echo()).writerow`` returns the line."""

    @staticmethod
    def write(text: str) -> str:
        return text


#: ``csv_line(values)``: the line ``csv.writer(..., lineterminator="\n")`` writes for ``values``, ``\n`` included.
csv_line = csv.writer(_Echo(), lineterminator="\n").writerow


def form_8949_key(term: str, sold: str, disposal_id: str) -> str:
    """A disposal's place on Form 8949 (Part I first, then date sold, then id) as one string.

    The Part digit and the ISO date have fixed widths, so comparing keys compares
    ``(term != "short", sold, disposal_id)``.

    Example:
        >>> form_8949_key("long", "2024-01-02", "F1/1") > form_8949_key("short", "2024-12-31", "F9/1")
        True
    """
    return ("1" if term == "short" else "2") + sold + disposal_id


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


def insertion_points(keys: Sequence[str], new: Iterable[str]) -> list[int]:
    """Where each of ``new`` (sorted) goes among ``keys`` (sorted), after equal keys."""
    points, lo = [], 0
    for key in new:
        lo = bisect_right(keys, key, lo)
        points.append(lo)
    return points


@dataclass(frozen=True)
class SealedYear:
    """What of tax year ``year`` can no longer change, as text (see the module docstring).

    ``keys``, ``disposals`` and ``lines`` run in parallel, in Form 8949 order: each final
    disposal's :func:`form_8949_key`, its :data:`DISPOSAL_FIELDS` as a CSV line and its printed
    Form 8949 line; ``totals`` are each Part's sums of the printed amounts. ``wash_sales``: the
    adjustments booked before the checkpoint's day, :data:`WASH_FIELDS` CSV lines in booking
    order. Treat all as read-only: a restored ledger and the next checkpoint share them.
    """

    year: int | None
    keys: Sequence[str]
    disposals: Sequence[str]
    lines: Sequence[str]
    totals: Totals
    wash_sales: Sequence[str] = ()

    def form_8949(self, year: int) -> Sequence[str]:
        """The printed Form 8949 lines of ``year`` (none when these are of another year)."""
        return self.lines if year == self.year else ()

    def totals_of(self, year: int) -> Totals:
        return self.totals if year == self.year else NOTHING_SEALED.totals

    def deferred(self, lot_ids: set[str]) -> dict[str, Decimal]:
        """By replacement lot (only those in ``lot_ids``): the losses its sealed wash sales disallowed."""
        out: dict[str, Decimal] = {}
        for row in csv.reader(self.wash_sales if lot_ids else ()):
            if row[_REPLACEMENT] in lot_ids:
                out[row[_REPLACEMENT]] = out.get(row[_REPLACEMENT], Decimal(0)) + Decimal(row[_DISALLOWED])
        return out

    def extended(self, year: int, *, keys: Sequence[str] = (), disposals: Sequence[str] = (), lines: Sequence[str] = (),
                 totals: Totals | None = None, wash_sales: Sequence[str] = ()) -> SealedYear:
        """These (if of ``year``) plus newly final disposals (``keys``, ``disposals``, ``lines``, sorted by key,
        printed amounts summing to ``totals``) and wash sales booked after these.

        A new tax year starts empty: nothing final of an earlier year is needed by a later day
        (Form 8949 is per year, and so are the checkpoint's wash sales).
        """
        base = self if year == self.year else NOTHING_SEALED
        if not keys and not wash_sales and base.year == year:
            return base
        points = insertion_points(base.keys, keys)
        return SealedYear(year, interleave(base.keys, keys, points), interleave(base.disposals, disposals, points),
                          interleave(base.lines, lines, points), add_totals(base.totals, totals or NOTHING_SEALED.totals),
                          [*base.wash_sales, *wash_sales] if wash_sales else base.wash_sales)


NOTHING_SEALED = SealedYear(None, (), (), (), {part: (Decimal(0),) * 4 for part in PARTS})
