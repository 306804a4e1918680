"""The year under the default rules vs a §475(f) mark-to-market election: an analysis, not an election.

**Default rules** (a trader without the election, an individual): the year's Form 8949 rows
(realised gains and losses after wash-sale disallowances), netted on Schedule D. A net
capital loss offsets ordinary income only up to ``loss_limit`` ($3,000; $1,500 married filing
separately, IRC §1211(b)); the rest carries over to next year (§1212(b)). A capital loss carried
in from earlier years (``carryover_in``) joins the year's net first. Unrealised gains and
losses of positions still open at year end are not taxed, and losses disallowed by wash sales
are deferred into the replacement lots.

**Mark-to-market** (IRC §475(f)(1)): every position open at year end is treated as sold at its
fair market value on the last business day; all gains and losses are ordinary, wash sales do
not apply (§475(d)), and there is no $3,000 cap. The year's ordinary gain is therefore the
whole economic P&L of the year, which needs no lot arithmetic at all::

    mtm_ordinary = (cash + market value at year end) − (cash + market value at the start of the year)
                   − dividends received in the year

(positions held at the start are marked to the previous year's last close, as they would have
been under an election already in force). Dividends are ordinary income under both regimes and
are left out of both columns. A capital loss carried in stays capital and is still limited to
``loss_limit`` a year under the election (there are no capital gains to absorb it).

Wash sales of December losses are decided by purchases up to 30 days later: pass the fills of
the following January too; the year-end valuation only uses fills traded in the year.

Worked example (2026, ``carryover_in`` 0): buy 100 XYZ at $50 on 03-02, sell at $40 on 03-16
(loss $1,000), buy 100 at $42 on 03-20 (a wash sale: the $1,000 is disallowed, the new lot's
basis is $5,200); buy 100 ABC at $100 on 05-01, sell at $50 on 06-01 (loss $5,000). XYZ closes
the year at $45.

* default: short-term net −5,000.00 (XYZ 0.00 with code W, ABC −5,000.00), wash sales
  disallowed 1,000.00; deducted against ordinary income −3,000.00, carried over 2,000.00;
  unrealised at year end 4,500 − 5,200 = −700.00;
* mark-to-market: cash −5,000 + 4,000 − 4,200 − 10,000 + 5,000 = −10,200, plus 100 × 45 at
  year end: ordinary −5,700.00 (= −1,000 − 5,000 + 300), nothing carried over;
* difference: −5,700 − (−3,000) = −2,700.00 more deducted this year under the election.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from trader.compliance.corporate_actions import LedgerAction, replay
from trader.compliance.errors import LedgerError
from trader.compliance.fills import ComplianceFill, load_fills
from trader.compliance.lots import Ledger
from trader.compliance.reports import form_8949_rows, money, schedule_d_rows

ZERO = Decimal(0)
LOSS_LIMIT = Decimal(3000)
MTM_CSV, MTM_MARKDOWN = "mtm_analysis.csv", "mtm_analysis.md"


@dataclass(frozen=True)
class MtmAnalysis:
    """Both regimes' numbers for one year, in dollars rounded to cents (see the module docstring)."""

    year: int
    short_term: Decimal
    long_term: Decimal
    wash_disallowed: Decimal
    carryover_in: Decimal
    loss_limit: Decimal
    unrealised: Decimal
    mtm_ordinary: Decimal

    @property
    def capital_net(self) -> Decimal:
        """The year's net capital gain (loss) under the default rules, after the carryover in."""
        return self.short_term + self.long_term - self.carryover_in

    @property
    def default_recognised(self) -> Decimal:
        """What enters this year's income: the net gain, or the net loss capped at ``loss_limit``."""
        return self.capital_net if self.capital_net >= 0 else max(self.capital_net, -self.loss_limit)

    @property
    def default_carryover_out(self) -> Decimal:
        return max(-self.capital_net - self.loss_limit, ZERO)

    @property
    def mtm_carryover_used(self) -> Decimal:
        return min(self.carryover_in, self.loss_limit)

    @property
    def mtm_recognised(self) -> Decimal:
        return self.mtm_ordinary - self.mtm_carryover_used

    @property
    def mtm_carryover_out(self) -> Decimal:
        return self.carryover_in - self.mtm_carryover_used

    @property
    def difference(self) -> Decimal:
        """Mark-to-market minus default: negative means less income (more deductions) under the election."""
        return self.mtm_recognised - self.default_recognised

    def rows(self) -> list[tuple[str, Decimal, Decimal]]:
        """``(item, default rules, mark-to-market)`` lines of the report."""
        rows = [
            ("short-term capital gain (loss), Form 8949 Part I", self.short_term, ZERO),
            ("long-term capital gain (loss), Form 8949 Part II", self.long_term, ZERO),
            ("wash-sale losses disallowed (deferred)", self.wash_disallowed, ZERO),
            ("ordinary gain (loss) from trading, marked at year end", ZERO, self.mtm_ordinary),
            ("capital loss carryover from earlier years", -self.carryover_in, -self.mtm_carryover_used),
            ("net amount in this year's income", self.default_recognised, self.mtm_recognised),
            ("capital loss carried over to next year", self.default_carryover_out, self.mtm_carryover_out),
            ("unrealised gain (loss) at year end, not taxed", self.unrealised, ZERO),
        ]
        return [(item, money(default), money(mtm)) for item, default, mtm in rows]


def mtm_analysis(fills: Iterable[ComplianceFill], *, year: int, year_end_marks: Mapping[str, Decimal],
                 opening_marks: Mapping[str, Decimal] | None = None, actions: Iterable[LedgerAction] = (),
                 carryover_in: Decimal = ZERO, loss_limit: Decimal = LOSS_LIMIT) -> MtmAnalysis:
    """Compare ``year`` under the default rules and under a mark-to-market election.

    Args:
        fills: every fill up to the end of ``year`` (earlier years open the lots carried in; fills
            up to 30 days after the year decide December wash sales; later ones are ignored).
        year: the tax year.
        year_end_marks: symbol → price on the year's last session, for every position open then.
        opening_marks: symbol → the previous year's last close, for every position open at the
            start of ``year`` (may be omitted when there was none).
        actions: splits and cash dividends (:mod:`trader.corporate_actions`).
        carryover_in: capital loss carried in from earlier years (a positive amount).
        loss_limit: the yearly cap on a net capital loss against ordinary income.

    Raises:
        LedgerError: a position open at the start or end of the year has no price; a money
            argument is a float.

    Example:
        >>> from trader.compliance.fills import ComplianceFill
        >>> def f(fid, side, month, day, price):
        ...     return ComplianceFill(fill_id=fid, order_id=fid, client_order_id=fid, symbol="XYZ", side=side, qty="100",
        ...                           price=price, fee="0", ts=dt.datetime(2026, month, day, 15, tzinfo=dt.UTC),
        ...                           venue="SIM", account="A1")
        >>> a = mtm_analysis([f("b1", "buy", 3, 2, "50"), f("s1", "sell", 3, 16, "40"), f("b2", "buy", 3, 20, "42")],
        ...                  year=2026, year_end_marks={"XYZ": Decimal("45")})
        >>> a.short_term, a.wash_disallowed, a.unrealised, a.mtm_ordinary, a.difference
        (Decimal('0.00'), Decimal('1000.00'), Decimal('-700.00'), Decimal('-700.00'), Decimal('-700.00'))
    """
    for label, value in (("carryover_in", carryover_in), ("loss_limit", loss_limit)):
        if isinstance(value, float) or Decimal(value) < 0:
            raise LedgerError(f"mtm analysis: {label}: must be a non-negative Decimal (got {value!r})")
    start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    ordered = [fill for fill in load_fills(fills) if fill.trade_date <= end + dt.timedelta(days=30)]
    actions = sorted(actions, key=lambda a: a.ex_date)
    ledger = Ledger(allow_short=True)
    replay(ledger, [f for f in ordered if f.trade_date < start], [a for a in actions if a.ex_date < start])
    open_value, _ = ledger.valuation(opening_marks or {}, label=f"opening marks ({year - 1} close)")
    opening = ledger.cash + open_value
    income = replay(ledger, [f for f in ordered if start <= f.trade_date <= end],
                    [a for a in actions if start <= a.ex_date <= end])
    close_value, unrealised = ledger.valuation(year_end_marks, label=f"year-end marks ({year})")
    mtm = ledger.cash + close_value - opening - income
    for fill in ordered:  # January purchases can still turn December losses into wash sales
        if fill.trade_date > end:
            ledger.apply(fill)
    form = form_8949_rows(d for d in ledger.disposals if d.sold.year == year)
    totals = {row["term"]: row for row in schedule_d_rows(form)}
    return MtmAnalysis(
        year=year, short_term=Decimal(totals["short_term"]["gain_loss"]), long_term=Decimal(totals["long_term"]["gain_loss"]),
        wash_disallowed=Decimal(totals["total"]["adjustments"]), carryover_in=money(Decimal(carryover_in)),
        loss_limit=Decimal(loss_limit), unrealised=money(unrealised), mtm_ordinary=money(mtm),
    )


def write_mtm_analysis(analysis: MtmAnalysis, directory: Path) -> tuple[Path, Path]:
    """Write ``mtm_analysis.csv`` and ``mtm_analysis.md`` into ``directory`` (the year's reports)."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = analysis.rows()
    csv_path, md_path = directory / MTM_CSV, directory / MTM_MARKDOWN
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("item", "default_rules", "mark_to_market", "difference"))
        writer.writerows((item, str(d), str(m), str(m - d)) for item, d, m in rows)
    lines = [f"# {analysis.year}: default rules vs §475(f) mark-to-market (analysis only)", "",
             "| | default rules | mark-to-market | difference |", "|---|---:|---:|---:|"]
    lines += [f"| {item} | {d:,.2f} | {m:,.2f} | {m - d:,.2f} |" for item, d, m in rows]
    lines += ["", f"Under the election this year's income would be {abs(analysis.difference):,.2f} "
              f"{'lower' if analysis.difference < 0 else 'higher'} (net capital loss cap {analysis.loss_limit:,.2f}; "
              "wash sales do not apply under §475(d)). Dividends are ordinary under both and left out.", ""]
    md_path.write_text("\n".join(lines))
    return csv_path, md_path
