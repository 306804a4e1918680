"""The day's compliance reports: CSV files under ``reports/<date>/`` (DESIGN.md §3.6).

=========================  =====================================================================
file                       rows
=========================  =====================================================================
``tax_lots.csv``           lots open at the end of the day, marked to the close
``realized_pnl.csv``       the day's disposals (one per lot closed), with the wash-sale status
``wash_sales.csv``         wash-sale adjustments booked on the day (also for earlier loss sales)
``form_8949.csv``          every disposal of the tax year to date, columns (a)–(h), ``part`` I/II
``schedule_d.csv``         Form 8949 totals: short-term, long-term, total
``roll_forward.csv``       the day's P&L bridge and whether it closes
``fee_reconciliation.csv`` our fees vs the broker's, per fill or per day (only with broker fees)
=========================  =====================================================================

Money is written with two decimals, rounded half up, here and only here: the ledger keeps
full precision. The fee reconciliation is the exception: it shows both sides exactly as
booked, so a sub-cent difference stays visible. On Form 8949, (h) is computed from the rounded (d), (e) and (g), so every
printed row adds up (``h = d − e + g``) and Schedule D is the sum of the printed rows.
Date acquired (b) is the trade date the shares were bought; for wash-sale replacement
shares the Part (short/long-term) follows the extended holding period, shown as
``holding_period_start`` in ``realized_pnl.csv``. Files are byte-for-byte deterministic
(no timestamps, ``\\n`` line ends), so re-running a day archives nothing new.

Example:
    >>> import datetime as dt, tempfile
    >>> from pathlib import Path
    >>> from trader.compliance.fills import ComplianceFill
    >>> from trader.compliance.lots import close_day
    >>> def fill(fid, side, month, day, price):
    ...     return ComplianceFill(fill_id=fid, order_id=fid, client_order_id=fid, symbol="XYZ", side=side, qty="100",
    ...                           price=price, fee="0", ts=dt.datetime(2013, month, day, 15, tzinfo=dt.UTC),
    ...                           venue="SIM", account="A1")
    >>> fills = [fill("b1", "buy", 1, 1, "10"), fill("s1", "sell", 6, 1, "7.5"), fill("b2", "buy", 6, 14, "8")]
    >>> close = close_day(fills, day=dt.date(2013, 6, 14), closing_marks={"XYZ": Decimal("8")},
    ...                   opening_marks={})
    >>> out = write_reports(close, Path(tempfile.mkdtemp()))
    >>> print((out.directory / "form_8949.csv").read_text().splitlines()[1])
    I,100 sh XYZ,2013-01-01,2013-06-01,750.00,1000.00,W,250.00,0.00
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from trader.compliance.fills import ComplianceFill
from trader.compliance.lots import DayClose, Disposal, Ledger
from trader.compliance.memo import ISO_DATE, Memo
from trader.compliance.sealed import Totals, add_totals, csv_line, insertion_points, interleave
from trader.compliance.sealed import form_8949_key as _key

CENT = Decimal("0.01")
FEE_TOLERANCE = Decimal("0.01")
FORM_8949_COLUMNS = ("part", "a_description", "b_date_acquired", "c_date_sold", "d_proceeds", "e_cost_basis",
                     "f_code", "g_adjustment", "h_gain_loss")


def money(value: Decimal) -> Decimal:
    """Round to cents, half up (the report boundary; never used inside the ledger)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _cents() -> Any:
    """``money`` for many values: the bound ``quantize`` of the current context rounding half up.

    ``_cents()(value, CENT) == money(value)``; a bound context method skips the per-call keyword
    argument, which counts when a year of Form 8949 (10^5 rows, three amounts each) is rounded daily.
    """
    context = decimal.getcontext().copy()
    context.rounding = ROUND_HALF_UP
    return context.quantize


def _qty(value: Decimal) -> str:
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class FeeDifference:
    """One line of the fee reconciliation; ``ours``/``broker`` is ``None`` when that side has no entry."""

    key: str
    ours: Decimal | None
    broker: Decimal | None
    ok: bool
    note: str = ""

    @property
    def difference(self) -> Decimal | None:
        return None if self.ours is None or self.broker is None else self.ours - self.broker


@dataclass(frozen=True)
class FeeReconciliation:
    """Our fills' fees against the broker's; passes when every key matches within ``tolerance``."""

    by: Literal["fill", "day"]
    tolerance: Decimal
    rows: tuple[FeeDifference, ...]

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def failures(self) -> list[FeeDifference]:
        return [row for row in self.rows if not row.ok]


def reconcile_fees(fills: Iterable[ComplianceFill], broker_fees: Mapping[Any, Decimal | str], *,
                   by: Literal["fill", "day"] = "fill", tolerance: Decimal = FEE_TOLERANCE) -> FeeReconciliation:
    """Compare fees per fill (keys: fill ids) or per trade date (keys: dates or ISO strings).

    A key on only one side fails (a fee we booked that the broker never charged, or the reverse).

    Example:
        >>> import datetime as dt
        >>> f = ComplianceFill(fill_id="F1", order_id="O", client_order_id="C", symbol="X", side="buy", qty="1",
        ...                    price="10", fee="0.35", ts=dt.datetime(2024, 5, 1, 14, tzinfo=dt.UTC), venue="V", account="A")
        >>> reconcile_fees([f], {"F1": "0.355"}).ok, reconcile_fees([f], {"F1": "0.37"}).failures[0].difference
        (True, Decimal('-0.02'))
    """
    ours: dict[str, Decimal] = {}
    for fill in fills:
        key = fill.fill_id if by == "fill" else fill.trade_date.isoformat()
        ours[key] = ours.get(key, Decimal(0)) + fill.fee
    theirs: dict[str, Decimal] = {}
    for key, fee in broker_fees.items():
        if isinstance(fee, float):
            raise ValueError(f"broker fees: {key}: must be a Decimal or a decimal string, not float ({fee!r})")
        theirs[key.isoformat() if isinstance(key, dt.date) else str(key)] = Decimal(fee)
    rows = []
    for key in sorted(ours.keys() | theirs.keys()):
        mine, broker = ours.get(key), theirs.get(key)
        if mine is None or broker is None:
            note = "not reported by the broker" if broker is None else "not in our fills"
            rows.append(FeeDifference(key, mine, broker, ok=False, note=note))
        else:
            ok = abs(mine - broker) <= tolerance
            rows.append(FeeDifference(key, mine, broker, ok=ok, note="" if ok else f"differs by more than {tolerance}"))
    return FeeReconciliation(by=by, tolerance=tolerance, rows=tuple(rows))


def form_8949_key(d: Disposal) -> str:
    """A disposal's place on Form 8949: Part I before II, then date sold, then id (:func:`trader.compliance.sealed.form_8949_key`)."""
    return _key(d.term, ISO_DATE[d.sold], d.disposal_id)


def form_8949_rows(disposals: Iterable[Disposal]) -> list[dict[str, str]]:
    """Form 8949 rows (a)–(h) with ``part`` (I short-term, II long-term), ordered by part, date sold, disposal.

    (g) is the disallowed wash-sale loss as a positive amount, with code ``W`` in (f).
    """
    rows, cents, iso = [], _cents(), ISO_DATE
    for d in sorted(disposals, key=form_8949_key):
        proceeds, basis, adjustment = cents(d.proceeds, CENT), cents(d.basis, CENT), cents(d.disallowed, CENT)
        wash = d.disallowed > 0
        description = f"{_qty(d.qty)} sh {d.symbol}" + (" (short sale)" if d.direction == "short" else "")
        rows.append({
            "part": "I" if d.term == "short" else "II", "a_description": description,
            "b_date_acquired": iso[d.acquired], "c_date_sold": iso[d.sold],
            "d_proceeds": str(proceeds), "e_cost_basis": str(basis), "f_code": "W" if wash else "",
            "g_adjustment": str(adjustment) if wash else "", "h_gain_loss": str(proceeds - basis + adjustment),
        })
    return rows


def form_8949_lines(rows: Iterable[Mapping[str, str]]) -> list[str]:
    """Form 8949 rows as the lines ``form_8949.csv`` prints (CSV, each with its ``\\n``)."""
    return _printed(FORM_8949_COLUMNS, rows)[1]


def part_totals(form_8949: Iterable[Mapping[str, str]]) -> dict[str, tuple[Decimal, ...]]:
    """Per Part (``I``, ``II``): the sums of the printed (d), (e), (g), (h) amounts (exact: they are cents)."""
    columns = ("d_proceeds", "e_cost_basis", "g_adjustment", "h_gain_loss")
    by_part: dict[str, list[Mapping[str, str]]] = {"I": [], "II": []}
    for row in form_8949:
        by_part["I" if row["part"] == "I" else "II"].append(row)
    # Decimal sums of cents are exact, so summing a column at a time gives what row-by-row did.
    return {part: tuple(sum(map(Decimal, filter(None, column)), Decimal(0))
                        for column in (zip(*map(itemgetter(*columns), rows), strict=True) if rows else [()] * 4))
            for part, rows in by_part.items()}


def schedule_d_rows(form_8949: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """Totals of the printed Form 8949 rows: short-term (Part I), long-term (Part II) and both."""
    return _schedule_d(part_totals(form_8949))


def _schedule_d(totals: Totals) -> list[dict[str, str]]:
    terms = {"short_term": totals["I"], "long_term": totals["II"]}
    terms["total"] = tuple(a + b for a, b in zip(totals["I"], totals["II"], strict=True))
    return [{"term": term, "proceeds": str(money(p)), "cost_basis": str(money(b)), "adjustments": str(money(g)),
             "gain_loss": str(money(h))} for term, (p, b, g, h) in terms.items()]


def year_form_8949(ledger: Ledger, year: int) -> tuple[list[str], Totals]:
    """The ledger's Form 8949 of ``year`` as printed lines, and each Part's totals (for Schedule D).

    Sealed disposals (:mod:`trader.compliance.sealed`) come as the lines stored with them and
    their stored totals; only the ledger's live disposals are rendered, and merged in by key.
    """
    live = sorted((d for d in ledger.disposals if d.sold.year == year), key=form_8949_key)
    rows = form_8949_rows(live)
    sealed = ledger.sealed
    points = insertion_points(sealed.keys, map(form_8949_key, live)) if sealed.year == year else [0] * len(live)
    return interleave(sealed.form_8949(year), form_8949_lines(rows), points), add_totals(sealed.totals_of(year), part_totals(rows))


def year_form_8949_rows(ledger: Ledger, year: int) -> list[dict[str, str]]:
    """:func:`year_form_8949` as rows (dicts by :data:`FORM_8949_COLUMNS`), e.g. for an API."""
    return [dict(zip(FORM_8949_COLUMNS, values, strict=True)) for values in csv.reader(year_form_8949(ledger, year)[0])]


@dataclass(frozen=True)
class ReportSet:
    """What :func:`write_reports` wrote: file paths by name, and the two self-checks."""

    day: dt.date
    directory: Path
    paths: dict[str, Path] = field(default_factory=dict)
    fees: FeeReconciliation | None = None
    roll_forward_ok: bool = True

    @property
    def ok(self) -> bool:
        return self.roll_forward_ok and (self.fees is None or self.fees.ok)


def write_reports(close: DayClose, directory: Path, *, day_fills: Iterable[ComplianceFill] | None = None,
                  broker_fees: Mapping[Any, Decimal | str] | None = None,
                  fee_by: Literal["fill", "day"] = "fill") -> ReportSet:
    """Write the day's reports into ``directory`` (created if missing; files there are replaced).

    Args:
        close: the ledger closed on the day (:func:`~trader.compliance.lots.close_day`).
        directory: usually ``$ALPHALINE_HOME/reports/<YYYY-MM-DD>/``.
        day_fills: the fills to reconcile fees for (default: the day's fills, ``close.day_fills``).
        broker_fees: the broker's fees, keyed by fill id (``fee_by="fill"``) or trade date
            (``fee_by="day"``); without them no fee reconciliation is written.
        fee_by: how ``broker_fees`` is keyed.

    Returns:
        The paths written and the self-checks (roll-forward, fees).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    day, ledger = close.day, close.ledger
    pending = {id(d) for d in ledger.pending_losses(day)}
    form, totals = year_form_8949(ledger, day.year)
    tables: dict[str, tuple[Sequence[str], list[str]]] = {  # name → (header, printed lines)
        "tax_lots": (TAX_LOT_COLUMNS, list(map(csv_line, _tax_lot_values(close)))),
        "realized_pnl": _printed(*_realized(ledger.disposals, day, pending)),
        "wash_sales": _printed(*_wash_sales(close)),
        "form_8949": (FORM_8949_COLUMNS, form),
        "schedule_d": _printed(("term", "proceeds", "cost_basis", "adjustments", "gain_loss"), _schedule_d(totals)),
        "roll_forward": _printed(*_roll_forward(close)),
    }
    fees = None
    if broker_fees is not None:
        fees = reconcile_fees(close.day_fills if day_fills is None else day_fills, broker_fees, by=fee_by)
        tables["fee_reconciliation"] = _printed(*_fee_rows(fees))
    paths = {}
    for name, (columns, lines) in tables.items():
        paths[name] = directory / f"{name}.csv"
        with paths[name].open("w", newline="") as handle:
            handle.write(csv_line(columns) + "".join(lines))
    return ReportSet(day=day, directory=directory, paths=paths, fees=fees, roll_forward_ok=close.roll_forward.ok)


def _printed(columns: Sequence[str], rows: Iterable[Mapping[str, str]]) -> tuple[Sequence[str], list[str]]:
    """``(columns, lines)``: the rows as ``csv.DictWriter`` would print them, one line each."""
    values = itemgetter(*columns) if len(columns) > 1 else (lambda row: (row[columns[0]],))
    return columns, [csv_line(row) for row in map(values, rows)]


TAX_LOT_COLUMNS = ("lot_id", "account", "symbol", "direction", "date_acquired", "holding_period_start", "qty", "cost_basis",
                   "wash_adjustment", "close", "market_value", "unrealized_pnl", "replacement_for")


def tax_lot_rows(close: DayClose) -> list[dict[str, str]]:
    """The rows of ``tax_lots.csv``: lots open at the close, marked to the day's closing prices."""
    return [dict(zip(TAX_LOT_COLUMNS, values, strict=True)) for values in _tax_lot_values(close)]


def _tax_lot_values(close: DayClose) -> list[tuple[str, ...]]:
    # Tuples, not dicts: tens of thousands of open lots are printed every day. Equal quantities
    # print alike (normalised), so each distinct one is formatted once.
    cents, iso, qty = _cents(), ISO_DATE, Memo(_qty)
    marks = {symbol: (Decimal(mark), str(Decimal(mark))) for symbol, mark in close.closing_marks.items()}  # once per symbol
    values = []
    for lot in close.ledger.open_lots():
        mark, mark_text = marks[lot.symbol]
        value, unrealised = lot.valuation(mark)
        values.append((lot.lot_id, lot.account, lot.symbol, lot.direction, iso[lot.acquired], iso[lot.holding_start],
                       qty[lot.qty], str(cents(lot.cost, CENT)), str(cents(lot.wash_adjustment, CENT)), mark_text,
                       str(cents(value, CENT)), str(cents(unrealised, CENT)), lot.replacement_for or ""))
    return values


def _realized(disposals: Iterable[Disposal], day: dt.date, pending: set[int]) -> tuple[Sequence[str], list[dict[str, str]]]:
    columns = ("disposal_id", "account", "symbol", "direction", "lot_id", "fill_id", "qty", "date_opened",
               "date_acquired", "holding_period_start", "date_sold", "term", "proceeds", "cost_basis",
               "disallowed_loss", "gain_loss", "wash_sale", "wash_window_open")
    cents, iso, qty = _cents(), ISO_DATE, Memo(_qty)  # as in _tax_lot_values: thousands of disposals a day
    rows = [{
        "disposal_id": d.disposal_id, "account": d.account, "symbol": d.symbol, "direction": d.direction,
        "lot_id": d.lot_id, "fill_id": d.fill_id, "qty": qty[d.qty], "date_opened": iso[d.opened],
        "date_acquired": iso[d.acquired], "holding_period_start": iso[d.holding_start],
        "date_sold": iso[d.sold], "term": d.term, "proceeds": str(cents(d.proceeds, CENT)),
        "cost_basis": str(cents(d.basis, CENT)), "disallowed_loss": str(cents(d.disallowed, CENT)),
        "gain_loss": str(cents(d.gain, CENT)),
        "wash_sale": "W" if d.disallowed > 0 else "",
        # A loss sold in the last 30 days can still turn into a wash sale when shares are bought.
        "wash_window_open": "true" if id(d) in pending else "false",
    } for d in disposals if d.sold == day]
    return columns, rows


def _wash_sales(close: DayClose) -> tuple[Sequence[str], list[dict[str, str]]]:
    columns = ("loss_disposal_id", "symbol", "loss_account", "date_sold", "replacement_lot_id", "replacement_account",
               "replacement_acquired", "qty", "disallowed_loss", "holding_days_added", "replacement_holding_start", "booked")
    rows = [{
        "loss_disposal_id": w.loss_disposal_id, "symbol": w.symbol, "loss_account": w.loss_account,
        "date_sold": w.sold.isoformat(), "replacement_lot_id": w.replacement_lot_id,
        "replacement_account": w.replacement_account, "replacement_acquired": w.replacement_acquired.isoformat(),
        "qty": _qty(w.qty), "disallowed_loss": str(money(w.disallowed)), "holding_days_added": str(w.holding_days_added),
        "replacement_holding_start": w.replacement_holding_start.isoformat(), "booked": w.booked.isoformat(),
    } for w in close.ledger.wash_sales if w.booked == close.day]
    return columns, rows


def _roll_forward(close: DayClose) -> tuple[Sequence[str], list[dict[str, str]]]:
    rf = close.roll_forward
    row = {
        "day": rf.day.isoformat(), "opening": str(money(rf.opening)),
        "realized_before_wash": str(money(rf.realised_before_wash)), "disallowed": str(money(rf.disallowed)),
        "realized": str(money(rf.realised)), "unrealized_open": str(money(rf.unrealised_open)),
        "unrealized_close": str(money(rf.unrealised_close)),
        "change_in_unrealized": str(money(rf.unrealised_close - rf.unrealised_open)),
        "dividend_income": str(money(rf.income)), "closing": str(money(rf.closing)), "difference": str(money(rf.difference)), "ok": str(rf.ok).lower(),
    }
    return tuple(row), [row]


def _fee_rows(fees: FeeReconciliation) -> tuple[Sequence[str], list[dict[str, str]]]:
    columns = (fees.by, "our_fee", "broker_fee", "difference", "ok", "note")
    rows = [{
        fees.by: r.key, "our_fee": "" if r.ours is None else str(r.ours),
        "broker_fee": "" if r.broker is None else str(r.broker),
        "difference": "" if r.difference is None else str(r.difference), "ok": str(r.ok).lower(), "note": r.note,
    } for r in fees.rows]
    return columns, rows
