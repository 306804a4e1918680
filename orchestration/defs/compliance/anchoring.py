"""The EOD run's anchor (:mod:`trader.compliance.anchor`) and the cross-check of every place a sealed day is known.

A sealed day is known in three places that do not depend on one another:

* the **ledger**: its checkpoint ``compliance/ledger/<day>.json``, written when the day was closed;
* the **archive**: the day's ``audit_verification.json`` entry, with the chain head and Merkle root;
* the **anchor** ``anchors/<mode>.jsonl``: the same head and root, in a separate hash-chained file.

:func:`cross_check` fails when a day known to one of them is missing from another (the archive
deleted, an anchor line deleted, the anchor file deleted) or when a head differs, and returns the
anchored heads so the audit chain is checked against them even with the archive gone.

Example:
    >>> check = cross_check(paths, archive.entries())  # doctest: +SKIP
    >>> check.problems  # doctest: +SKIP
    ['archive …/archive: missing, but the anchor has 2 sealed day(s) (2024-03-04, 2024-03-05): the archive was deleted']
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain

import sqlalchemy as sa

from orchestration.defs.compliance.paths import AUDIT_VERIFICATION, CompliancePaths
from trader.compliance import ArchiveEntry, ComplianceError, PublishedHead
from trader.compliance.anchor import Anchor, AnchorLog, anchor_urls, publish
from trader.store_schema import audit_hmac

#: ``(count, hash, merkle root)`` of a sealed day.
Seal = tuple[int, str, str]


def first_signed(store_url: str, *, through: int) -> int | None:
    """The first audit record with an HMAC, among the first ``through`` (None: none signed, or no store)."""
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.min(audit_hmac.c.seq)).where(audit_hmac.c.seq <= through)).scalar()
    except sa.exc.DBAPIError:  # a store from before audit_hmac existed (no such table): nothing signed
        return None
    finally:
        engine.dispose()


def anchor_day(paths: CompliancePaths, day: dt.date, verification: dict, *, log: Callable[[str], None]) -> Anchor | None:
    """Append the sealed day's head and Merkle root to the anchor file and send it to ``ALPHALINE_ANCHOR_URLS``.

    Nothing is sent again for a day already anchored with the same head (a re-run).

    Raises:
        ComplianceError: the anchor file no longer verifies, or an anchor URL is not one apprise can send to.
    """
    if paths.anchor_file is None:
        return None
    head = PublishedHead.from_json(verification)
    log_ = AnchorLog(paths.anchor_file)
    anchor, new = log_.append(date=day, mode=paths.anchor_file.stem, head=head,
                              merkle_root=verification["day"]["merkle_root"],
                              first_signed=first_signed(paths.store_url, through=head.count))
    urls = anchor_urls()
    if new and urls and not publish(anchor, urls=urls):
        log(f"anchor {day}: not delivered to every destination in ALPHALINE_ANCHOR_URLS (the local anchor is written)")
    return anchor


@dataclass
class CrossCheck:
    """What :func:`cross_check` found; ``heads`` are the anchored chain heads, ``required_from`` where signing began."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    heads: list[PublishedHead] = field(default_factory=list)
    required_from: int | None = None


def _days(days: Iterable[dt.date]) -> str:
    days = sorted(days)
    shown = ", ".join(d.isoformat() for d in days[:5])
    return f"{len(days)} day(s) ({shown}{', …' if len(days) > 5 else ''})"


def _archived_seals(entries: list[ArchiveEntry]) -> dict[dt.date, set[Seal]]:
    seals: dict[dt.date, set[Seal]] = {}
    for e in entries:
        if e.name == AUDIT_VERIFICATION and "audit_head" in e.meta:
            head = e.meta["audit_head"]
            seals.setdefault(e.date, set()).add((int(head["count"]), str(head["hash"]), str(e.meta.get("merkle_root", ""))))
    return seals


def ledger_days(paths: CompliancePaths) -> set[dt.date]:
    """The days whose ledger checkpoint exists (``compliance/ledger/<day>.json``)."""
    out = set()
    for path in (paths.work_dir / "ledger").glob("*.json"):
        try:
            out.add(dt.date.fromisoformat(path.stem))
        except ValueError:
            continue
    return out


def cross_check(paths: CompliancePaths, entries: list[ArchiveEntry]) -> CrossCheck:
    """Compare the days (and heads) of the ledger, the archive and the anchor (see the module docstring)."""
    check = CrossCheck()
    if paths.anchor_file is None:
        return check
    anchor_log = AnchorLog(paths.anchor_file)
    where = f"anchor {paths.anchor_file}"
    check.problems += [f"{where}: {p}" for p in anchor_log.verify()]
    anchors = anchor_log.anchors()
    anchored: dict[dt.date, set[Seal]] = {}
    for a in anchors:
        anchored.setdefault(a.date, set()).add((a.head.count, a.head.hash, a.merkle_root))
    check.heads = sorted({a.head for a in anchors}, key=lambda h: h.count)
    signed = [a.first_signed for a in anchors if a.first_signed is not None]
    check.required_from = min(signed) if signed else None
    archived = _archived_seals(entries)
    archive_days = {e.date for e in entries} | set(archived)
    check.lines.append(f"{where}: {len(anchors)} line(s), {len(anchored)} sealed day(s)")
    check.problems += _missing(paths, where, anchor_log.exists(), set(anchored), archive_days, ledger_days(paths))
    for day in sorted(set(anchored) & set(archived)):
        for count, digest, root in sorted(anchored[day] - archived[day]):
            check.problems.append(f"day {day}: the anchor has head {count}:{digest[:12]}… (Merkle root {root[:12]}…), "
                                  "the archive does not (the archive or the anchor was rewritten)")
        for count, digest, root in sorted(archived[day] - anchored[day]):
            check.problems.append(f"day {day}: the archive has head {count}:{digest[:12]}… (Merkle root {root[:12]}…), "
                                  "the anchor does not (an anchor line was removed or edited)")
    return check


def _missing(paths: CompliancePaths, where: str, exists: bool, anchored: set[dt.date], archived: set[dt.date],
             ledger: set[dt.date]) -> list[str]:
    problems = []
    if not exists and archived:
        problems.append(f"{where}: missing, but the archive has {_days(archived)} sealed: the anchor file was deleted "
                        "(a home sealed before anchors existed: `alphaline compliance adopt-anchor`, once)")
    elif archived - anchored:
        problems.append(f"{where}: {_days(archived - anchored)} sealed in the archive are not anchored "
                        "(anchor lines were removed)")
    if anchored and not paths.archive().manifest_path.exists():
        problems.append(f"archive {paths.archive_root}: missing, but the anchor has {_days(anchored)} sealed: "
                        "the archive was deleted")
    elif anchored - archived:
        problems.append(f"archive {paths.archive_root}: {_days(anchored - archived)} in the anchor are not in the archive "
                        "(archived records were removed)")
    unsealed = ledger - archived - anchored
    if unsealed:
        problems.append(f"ledger {paths.work_dir / 'ledger'}: {_days(unsealed)} closed by the ledger but neither sealed in "
                        "the archive nor anchored (deleted, or never sealed: re-run `alphaline compliance run --date <day>`)")
    return problems



def signature_problems(paths: CompliancePaths, *, required_from: int | None = None) -> tuple[str, list[str]]:
    """The HMAC check of the store's audit records (:mod:`trader.audit_hmac`): its summary line and problems."""
    from orchestration.defs.compliance import sources
    from trader.audit_hmac import audit_key, check_signatures
    from trader.store import TraderStore

    try:
        key = audit_key()
    except ValueError as err:
        return "audit HMAC: not checked", [str(err)]
    with TraderStore(paths.store_url) as store:
        macs = store.audit_hmacs()
        first = next(macs, None)
        if first is None:  # nothing signed: record by record, the check would only count them as unsigned
            macs.close()
            check = check_signatures((), (), key=key, required_from=required_from)
            check.records = check.unsigned = sources.count_audit_records(paths.store_url)
        else:
            check = check_signatures(sources.read_audit_hashes(paths.store_url), chain([first], macs), key=key,
                                     required_from=required_from)
    return check.summary(), [f"audit HMAC: {p}" for p in check.problems]


def adopt(paths: CompliancePaths) -> list[Anchor]:
    """Start the anchor of a home sealed before anchors existed: one line per archived head, oldest first.

    Only when there is no anchor file yet, the archive verifies and the audit chain still holds
    every archived head: it never papers over an edited anchor line or a rewritten chain. (It cannot
    tell a deleted anchor file from one that never existed: that is what the external copy,
    ``ALPHALINE_ANCHOR_URLS``, is for.)

    Raises:
        ComplianceError: the anchor exists, the archive does not verify, or the chain lost a head.
    """
    from orchestration.defs.compliance import sources
    from trader.compliance.audit_check import scan_chain

    if paths.anchor_file is None:
        raise ComplianceError("no anchor file configured")
    if paths.anchor_file.exists():
        raise ComplianceError(f"anchor {paths.anchor_file}: already exists; nothing adopted (it may only be extended by EOD runs)")
    archive = paths.archive()
    result = archive.verify()
    if not result.ok:
        raise ComplianceError(f"archive {paths.archive_root}: {result.problems[0]}; nothing adopted")
    sealed = [e for e in archive.entries() if e.name == AUDIT_VERIFICATION and "audit_head" in e.meta]
    heads = [PublishedHead(**e.meta["audit_head"]) for e in sealed]
    if heads:
        check = scan_chain(sources.read_audit_rows(paths.store_url), day=sealed[-1].date, published=heads, whole=True).sealed
        if check.problems or check.chain_reason:
            raise ComplianceError(f"audit chain: {(list(check.problems) or [check.chain_reason])[0]}; nothing adopted")
    log = AnchorLog(paths.anchor_file)
    return [log.append(date=e.date, mode=paths.anchor_file.stem, head=h, merkle_root=str(e.meta.get("merkle_root", "")),
                       first_signed=first_signed(paths.store_url, through=h.count))[0] for e, h in zip(sealed, heads, strict=True)]


def require_anchor_intact(paths: CompliancePaths) -> None:
    """Refuse to seal when the anchor file no longer verifies: the day would be archived but could not be anchored.

    Raises:
        ComplianceError: the first problem of the anchor file, naming it.
    """
    if paths.anchor_file is None:
        return
    problems = AnchorLog(paths.anchor_file).verify()
    if problems:
        raise ComplianceError(f"anchor {paths.anchor_file}: {problems[0]}; not sealing (run `alphaline compliance verify`)")
