"""Reconcile a broker's Form 1099-B (as CSV) with our Form 8949 rows.

Columns accepted (header names are matched case-insensitively, ignoring punctuation, spaces, a
leading ``box`` and a leading box number, so ``Box 1d Proceeds`` and ``1d`` both work; any other
column is ignored):

=====================  ==========================================================================
field                  accepted headers
=====================  ==========================================================================
description (1a)       description, description of property, security description, security, 1a
symbol                 symbol, ticker, security symbol
quantity               quantity, qty, shares, quantity sold, number of shares
date acquired (1b)     date acquired, acquired, acquisition date, open date, 1b
date sold (1c)         date sold, date sold or disposed, sold, sale date, close date, 1c
proceeds (1d)          proceeds, gross proceeds, sales price, 1d
cost basis (1e)        cost basis, cost or other basis, cost, basis, 1e
wash sale (1g)         wash sale loss disallowed, wash sale, wash sale disallowed, disallowed loss, 1g
term                   term, short long term, short or long term, holding period, gain type, type
=====================  ==========================================================================

Required: date sold, proceeds, cost basis, and the symbol and quantity, either in their own
columns or at the start of the description as ``"<qty> [sh|shares] <SYMBOL> ..."`` (our own
8949 format, ``"100 sh XYZ"``). Dates are ``YYYY-MM-DD``, ``MM/DD/YYYY`` or ``MM/DD/YY``; a date
acquired of ``VARIOUS`` (or empty) matches any date. Money may carry ``$``, thousands commas
and ``(…)`` for negatives; an empty wash-sale cell is 0. Term: ``short``/``long`` (or
``S``/``L``, ``ST``/``LT``, or the 8949 box ``A``–``C`` short / ``D``–``F`` long); empty: not
compared.

Matching: each 1099-B row (in file order) pairs with an unpaired 8949 row of the same symbol,
date sold and quantity, preferring the same date acquired and then the fewest differing fields.
A pair agrees when date acquired, proceeds, cost basis, wash sale (our (g) with code W) and
term agree to the cent; otherwise each differing field is reported with both values. Rows left
unpaired are reported as only on one side.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "1099b.csv"
    >>> _ = path.write_text("Description,Date Acquired,Date Sold,Proceeds,Cost Basis,Wash Sale Loss Disallowed,Term\\n"
    ...                     "100 sh XYZ,01/01/2013,06/01/2013,$750.00,\\"1,000.00\\",250.00,Short\\n")
    >>> (row,) = read_1099b(path)
    >>> row.symbol, row.qty, row.date_sold.isoformat(), row.cost_basis, row.wash_sale, row.term
    ('XYZ', Decimal('100'), '2013-06-01', Decimal('1000.00'), Decimal('250.00'), 'short')
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from trader.compliance.errors import ComplianceError
from trader.compliance.lots import Disposal
from trader.compliance.reports import money

ZERO = Decimal(0)
HEADERS: dict[str, tuple[str, ...]] = {
    "description": ("description", "description of property", "security description", "security", "1a"),
    "symbol": ("symbol", "ticker", "security symbol"),
    "quantity": ("quantity", "qty", "shares", "quantity sold", "number of shares"),
    "date_acquired": ("date acquired", "acquired", "acquisition date", "open date", "1b"),
    "date_sold": ("date sold", "date sold or disposed", "sold", "sale date", "close date", "1c"),
    "proceeds": ("proceeds", "gross proceeds", "sales price", "1d"),
    "cost_basis": ("cost basis", "cost or other basis", "cost", "basis", "1e"),
    "wash_sale": ("wash sale loss disallowed", "wash sale", "wash sale disallowed", "disallowed loss", "1g"),
    "term": ("term", "short long term", "short or long term", "holding period", "gain type", "type"),
}
_DESCRIPTION = re.compile(r"^\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s+(?:sh(?:ares?|s)?\.?\s+)?([A-Za-z][A-Za-z0-9.\-/]*)")
_TERMS = {"short": "short", "s": "short", "st": "short", "short term": "short", "a": "short", "b": "short", "c": "short",
          "long": "long", "l": "long", "lt": "long", "long term": "long", "d": "long", "e": "long", "f": "long"}


class Form1099BError(ComplianceError):
    """A 1099-B file that cannot be read: ``"<file>: row <n>: <field>: <reason>"`` (one line)."""


@dataclass(frozen=True)
class TaxRow:
    """One sale on either side, as compared: money in cents; ``date_acquired`` None means "various"."""

    symbol: str
    qty: Decimal
    date_acquired: dt.date | None
    date_sold: dt.date
    proceeds: Decimal
    cost_basis: Decimal
    wash_sale: Decimal
    term: str  # "short", "long" or "" (not given)
    source: str  # "row 7" in the 1099-B file, or our disposal id

    def differences(self, other: TaxRow) -> list[tuple[str, str, str]]:
        """``(field, our value, broker value)`` for each field that differs (``self`` ours, ``other`` the broker's)."""
        diffs = []
        if other.date_acquired is not None and self.date_acquired != other.date_acquired:
            diffs.append(("date_acquired", _text(self.date_acquired), _text(other.date_acquired)))
        for name in ("proceeds", "cost_basis", "wash_sale"):
            if getattr(self, name) != getattr(other, name):
                diffs.append((name, str(getattr(self, name)), str(getattr(other, name))))
        if other.term and self.term != other.term:
            diffs.append(("term", self.term, other.term))
        return diffs


def _text(day: dt.date | None) -> str:
    return "various" if day is None else day.isoformat()


def _normal(header: str) -> str:
    words = re.sub(r"[^a-z0-9]+", " ", header.lower()).split()
    if words[:1] == ["box"]:
        words = words[1:]
    if len(words) > 1 and re.fullmatch(r"[0-9][a-z]?", words[0]):  # "1c Date sold": the box number, then its name
        words = words[1:]
    return " ".join(words)


def _columns(path: Path, header: list[str]) -> dict[str, str]:
    """Field → the file's column name for it."""
    found = {}
    for column in header:
        for name, spellings in HEADERS.items():
            if _normal(column) in spellings and name not in found:
                found[name] = column
    for name in ("date_sold", "proceeds", "cost_basis"):
        if name not in found:
            raise Form1099BError(f"{path}: row 1: {name}: no such column (accepted: {', '.join(HEADERS[name])})")
    if ("symbol" not in found or "quantity" not in found) and "description" not in found:
        raise Form1099BError(f"{path}: row 1: symbol: no symbol and quantity columns and no description to read them from")
    return found


def _date(value: str) -> dt.date | None:
    value = value.strip()
    if value.lower() in ("", "various"):
        return None
    for layout in ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y"):
        try:
            return dt.datetime.strptime(value, layout).date()
        except ValueError:
            continue
    raise ValueError(f"not a date ({value!r}; use YYYY-MM-DD or MM/DD/YYYY)")


def _money(value: str, *, blank_zero: bool = False) -> Decimal:
    text = value.strip().replace("$", "").replace(",", "")
    negative = text.startswith("(") and text.endswith(")")
    text = text.strip("()")
    if not text and blank_zero:
        return ZERO
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not an amount ({value!r})") from None
    if not amount.is_finite():
        raise ValueError(f"not an amount ({value!r})")
    return money(-amount if negative else amount)


def _term(value: str) -> str:
    key = _normal(value)
    if not key:
        return ""
    if key not in _TERMS:
        raise ValueError(f"not a term ({value!r}; use short or long)")
    return _TERMS[key]


def _parse_row(row: Mapping[str, str | None], columns: Mapping[str, str], source: str) -> TaxRow:
    """One 1099-B row; raises ``(field, ValueError)`` pairs as a Form1099BError in :func:`read_1099b`."""
    cell = {name: (row.get(column) or "") for name, column in columns.items()}
    described = _DESCRIPTION.match(cell.get("description", ""))
    symbol = cell.get("symbol", "").strip() or (described.group(2) if described else "")
    qty_text = cell.get("quantity", "").strip() or (described.group(1) if described else "")
    values: dict[str, object] = {}
    parsers = {
        "symbol": lambda: symbol.upper() if symbol else _raise("missing (no symbol column or '<qty> sh <SYMBOL>' description)"),
        "quantity": lambda: _quantity(qty_text),
        "date_acquired": lambda: _date(cell.get("date_acquired", "")),
        "date_sold": lambda: _date(cell["date_sold"]) or _raise("missing"),
        "proceeds": lambda: _money(cell["proceeds"]),
        "cost_basis": lambda: _money(cell["cost_basis"]),
        "wash_sale": lambda: abs(_money(cell.get("wash_sale", ""), blank_zero=True)),
        "term": lambda: _term(cell.get("term", "")),
    }
    for name, parse in parsers.items():
        try:
            values[name] = parse()
        except ValueError as err:
            raise _FieldError(name, str(err)) from None
    return TaxRow(symbol=values["symbol"], qty=values["quantity"], date_acquired=values["date_acquired"],  # type: ignore[arg-type]
                  date_sold=values["date_sold"], proceeds=values["proceeds"], cost_basis=values["cost_basis"],  # type: ignore[arg-type]
                  wash_sale=values["wash_sale"], term=values["term"], source=source)  # type: ignore[arg-type]


class _FieldError(Exception):
    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")


def _raise(reason: str) -> object:
    raise ValueError(reason)


def _quantity(text: str) -> Decimal:
    try:
        qty = Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"not a quantity ({text!r})" if text else "missing") from None
    if not qty.is_finite() or qty <= 0:
        raise ValueError(f"must be > 0 (got {text!r})")
    return _canonical(qty)


def _canonical(qty: Decimal) -> Decimal:
    """``100``, not ``1E+2`` nor ``100.000``: equal quantities compare and print alike."""
    return Decimal(format(qty.normalize(), "f"))


def read_1099b(path: Path) -> list[TaxRow]:
    """The rows of a broker 1099-B CSV file (see the module docstring for the columns).

    Raises:
        Form1099BError: the file is missing, has no usable header, or a row has a bad value;
            the message names the file, the row (1 = the header) and the field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise Form1099BError(f"{path}: cannot read ({err.__class__.__name__}: {err})") from None
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames:
        raise Form1099BError(f"{path}: row 1: header: the file is empty")
    columns = _columns(path, list(reader.fieldnames))
    rows = []
    for row in reader:
        line = reader.line_num
        if None in row:
            raise Form1099BError(f"{path}: row {line}: {columns.get('description', 'row')}: more cells than header columns")
        if not any((value or "").strip() for value in row.values()):
            continue
        try:
            rows.append(_parse_row(row, columns, f"row {line}"))
        except _FieldError as err:
            raise Form1099BError(f"{path}: row {line}: {err}") from None
    return rows


def our_rows(disposals: Iterable[Disposal]) -> list[TaxRow]:
    """Our Form 8949 rows as :class:`TaxRow` (money rounded to cents as on the form)."""
    return [TaxRow(symbol=d.symbol, qty=_canonical(d.qty), date_acquired=d.acquired, date_sold=d.sold,
                   proceeds=money(d.proceeds), cost_basis=money(d.basis), wash_sale=money(d.disallowed), term=d.term,
                   source=d.disposal_id) for d in sorted(disposals, key=lambda d: (d.sold, d.disposal_id))]


@dataclass(frozen=True)
class Reconciliation:
    """Pairs that agree, pairs that differ (with each field), and rows on one side only."""

    matches: list[tuple[TaxRow, TaxRow]] = field(default_factory=list)
    mismatches: list[tuple[TaxRow, TaxRow, list[tuple[str, str, str]]]] = field(default_factory=list)
    only_ours: list[TaxRow] = field(default_factory=list)
    only_broker: list[TaxRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.mismatches or self.only_ours or self.only_broker)


def reconcile_1099b(ours: Iterable[TaxRow], broker: Iterable[TaxRow]) -> Reconciliation:
    """Pair the broker's rows with ours (see the module docstring) and compare them field by field."""
    left = list(ours)
    result = Reconciliation()
    for theirs in broker:
        candidates = [row for row in left if (row.symbol, row.date_sold, row.qty) == (theirs.symbol, theirs.date_sold, theirs.qty)]
        if not candidates:
            result.only_broker.append(theirs)
            continue
        best = min(candidates, key=lambda row: (theirs.date_acquired not in (None, row.date_acquired),
                                                len(row.differences(theirs))))
        left.remove(best)
        diffs = best.differences(theirs)
        if diffs:
            result.mismatches.append((best, theirs, diffs))
        else:
            result.matches.append((best, theirs))
    result.only_ours.extend(left)
    return result


RECON_COLUMNS = ("status", "symbol", "quantity", "date_acquired", "date_sold", "field", "ours", "broker", "our_row", "broker_row")


def reconciliation_rows(result: Reconciliation) -> list[dict[str, str]]:
    """The lines of ``reconcile_1099b.csv``: one per match, per differing field, per one-sided row."""
    def line(status: str, row: TaxRow, ours: TaxRow | None, theirs: TaxRow | None, name: str = "", a: str = "",
             b: str = "") -> dict[str, str]:
        return {"status": status, "symbol": row.symbol, "quantity": format(row.qty, "f"),
                "date_acquired": _text(row.date_acquired), "date_sold": row.date_sold.isoformat(), "field": name,
                "ours": a, "broker": b, "our_row": ours.source if ours else "", "broker_row": theirs.source if theirs else ""}

    rows = [line("match", ours, ours, theirs) for ours, theirs in result.matches]
    rows += [line("mismatch", ours, ours, theirs, *diff) for ours, theirs, diffs in result.mismatches for diff in diffs]
    rows += [line("only_ours", row, row, None) for row in result.only_ours]
    rows += [line("only_broker", row, None, row) for row in result.only_broker]
    return rows


def write_reconciliation(result: Reconciliation, path: Path) -> Path:
    """Write ``reconcile_1099b.csv`` (see :func:`reconciliation_rows`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, RECON_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(reconciliation_rows(result))
    return path
