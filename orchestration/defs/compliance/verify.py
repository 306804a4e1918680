"""``alphaline compliance verify``: re-check everything sealed so far against itself and against the trader's store.

Independent checks, each naming exactly what was altered or is missing:

* **the archive** (:meth:`WormArchive.verify`): every object re-hashed, every manifest entry
  re-chained; an edited, missing or writable file, or an edited manifest line, is named;
* **the fills**: each sealed day's ``fills.csv`` against the day's rows in the store, field
  by field. The ``fills`` table is append-only, so a changed or missing fill is tampering;
  a fill that is in the store but not sealed is a late fill whose day must be re-run;
* **the audit chain**: verified end to end (:func:`~trader.compliance.audit_check.scan_chain`, as stored) and against every
  head ever published in the archive, so a rewritten history, a truncation or a forged
  tail with recomputed hashes is caught;
* **the anchor** (:mod:`~orchestration.defs.compliance.anchoring`): every sealed day known to the
  ledger, the archive or the anchor file is in the others with the same head, and the audit chain
  holds every anchored head (so deleting the archive no longer deletes the evidence);
* **the HMACs** (:mod:`trader.audit_hmac`): with ``ALPHALINE_AUDIT_KEY`` set, a record forged or
  appended without the key fails at once, not at the next published head;
* **orders and positions** (:mod:`trader.compliance.store_check`): rebuilt from the fills and the
  ``order_submit`` records, so a hand edit of an order's or a position's quantity is named.

Plain Python, no Dagster: it runs in a second or two on a year of records.

Example:
    >>> report = verify_everything(paths)  # doctest: +SKIP
    >>> report.ok, report.problems[:1]  # doctest: +SKIP
    (False, ['fills 2024-03-05: fill F2: price: archived 101.50, the store now has 102.50'])
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from orchestration.defs.compliance import sources
from orchestration.defs.compliance.anchoring import cross_check, signature_problems
from orchestration.defs.compliance.eod import read_fills_csv_rows
from orchestration.defs.compliance.paths import FILLS, CompliancePaths, current_entries, published_heads
from trader.compliance import ComplianceError
from trader.compliance.audit_check import PublishedHead, scan_chain


@dataclass(frozen=True)
class FillsComparison:
    """A sealed day's fills against the store: ``altered`` (changed or removed) and ``late`` (added since)."""

    day: dt.date
    altered: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)


def compare_fills(day: dt.date, archived: list[dict[str, str]], stored: list[dict[str, str]]) -> FillsComparison:
    """Compare rows of ``fills.csv`` (as sealed) with the same day's rows now in the store, by ``fill_id``."""
    now = {row["fill_id"]: row for row in stored}
    sealed = {row["fill_id"]: row for row in archived}
    altered = []
    for fill_id, row in sealed.items():
        if fill_id not in now:
            altered.append(f"fill {fill_id}: sealed, but no longer in the store (deleted)")
            continue
        altered += [f"fill {fill_id}: {name}: archived {value}, the store now has {now[fill_id].get(name)}"
                    for name, value in row.items() if now[fill_id].get(name) != value]
    late = [f"fill {fill_id}: in the store but not sealed (a late fill)" for fill_id in now if fill_id not in sealed]
    return FillsComparison(day=day, altered=altered, late=late)


def stored_day_rows(paths: CompliancePaths, day: dt.date) -> list[dict[str, str]]:
    previous = day - dt.timedelta(days=1)
    return [fill.to_row() for fill in sources.read_fills(paths.store_url, after=previous, through=day)]


def sealed_fills(paths: CompliancePaths, day: dt.date) -> list[dict[str, str]] | None:
    """The current sealed ``fills.csv`` of ``day``, or None if the day was never sealed."""
    archive = paths.archive()
    entry = current_entries(archive).get((FILLS, day))
    return None if entry is None else read_fills_csv_rows(archive.read(entry.sha256))


@dataclass(frozen=True)
class Verification:
    """Everything :func:`verify_everything` found; ``lines`` is the human summary, ``problems`` what is wrong."""

    lines: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_everything(paths: CompliancePaths) -> Verification:
    """Re-check the archive, the anchor, every sealed day's fills, the orders and positions and the whole audit chain.

    See the module docstring; every problem is one line naming what was altered or is missing.
    """
    lines, problems = [], []
    archive = paths.archive()
    result = archive.verify()
    lines.append(f"archive {paths.archive_root}: {result.entries} manifest entries, {result.objects} objects")
    problems += [f"archive: {p}" for p in result.problems]
    try:
        entries = archive.entries()
        current = current_entries(archive)
    except ComplianceError as err:  # an unreadable manifest: already reported above, nothing more to compare
        return Verification(lines, problems or [str(err)])
    cross = cross_check(paths, entries)
    lines += cross.lines
    problems += cross.problems
    days = sorted({date for name, date in current if name == FILLS})
    lines.append(f"fills: {len(days)} sealed day(s) compared with {paths.store_url}")
    for day in days:
        try:
            comparison = compare_fills(day, read_fills_csv_rows(archive.read(current[FILLS, day].sha256)), stored_day_rows(paths, day))
        except ComplianceError as err:
            problems.append(f"fills {day}: {err}")
            continue
        problems += [f"fills {day}: {p}" for p in comparison.altered]
        problems += [f"fills {day}: {p}; re-run `alphaline compliance run --date {day}`" for p in comparison.late]
    problems += _audit_problems(paths, days, lines, anchored=cross.heads, sealed=bool(cross.heads))
    problems += _store_problems(paths, lines, required_from=cross.required_from)
    return Verification(lines, problems)


def _audit_problems(paths: CompliancePaths, days: list[dt.date], lines: list[str], *, anchored: list[PublishedHead],
                    sealed: bool) -> list[str]:
    try:
        archived = [head for _, head in published_heads(paths.archive())]
        heads = sorted(set(archived) | set(anchored), key=lambda h: (h.count, h.hash))
        last = days[-1] if days else dt.date.today()  # only the problems are used; the day just names the head
        # One streaming pass over the chain as stored (each record hashed once), as the EOD check does.
        check = scan_chain(sources.read_audit_rows(paths.store_url), day=last, published=heads, whole=True).sealed
    except ComplianceError as err:
        if not days and not sealed:  # a fresh home: nothing traded, nothing sealed, nothing to compare
            lines.append(f"audit chain: {err}; nothing sealed yet")
            return []
        return [f"audit chain: {err}"]
    lines.append(f"audit chain: {check.records} records, checked against {len(heads)} published head(s) "
                 f"({len(archived)} in the archive, {len(anchored)} anchored)")
    problems = [f"audit chain: {p}" for p in check.problems]
    if check.chain_reason and not problems:
        problems.append(f"audit chain: {check.chain_reason}")
    return problems


def _store_problems(paths: CompliancePaths, lines: list[str], *, required_from: int | None) -> list[str]:
    """The HMACs of the audit records, and the orders and positions tables against the fills and the audit trail."""
    from trader.compliance.store_check import check_store
    from trader.store import TraderStore

    if sources.sqlite_store_missing(paths.store_url):
        return []  # reported by the audit chain check (or a fresh home)
    summary, problems = signature_problems(paths, required_from=required_from)
    with TraderStore(paths.store_url) as store:
        integrity = check_store(store)
    lines += [summary, integrity.summary()]
    return problems + [f"store: {p}" for p in integrity.problems]
