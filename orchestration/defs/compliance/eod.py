"""The end-of-day compliance steps in plain Python; the Dagster assets, the CLI and the benchmark call these.

One day ``D`` (an XNYS session) goes through four steps, each an asset:

1. :func:`close_ledger`: resume the tax-lot ledger from the last *sealed* checkpoint before
   ``D`` (or replay every fill when there is none, or when the store gained fills for the
   checkpoint's days since), apply the fills up to ``D``, mark to ``marts.bars`` closes and
   save the day close to ``$ALPHALINE_HOME/compliance/ledger/<D>.json``;
2. :func:`write_day_reports`: the reports of :func:`trader.compliance.write_reports` plus the
   day's fills (``fills.csv``) under ``reports/<D>/``;
3. :func:`verify_day_audit`: the whole audit chain against every head published so far,
   writing ``audit_verification.json`` and the day's records (``audit_records.jsonl``);
4. :func:`seal_day`: every file above into the WORM archive. The checkpoint is sealed last
   and is the only one the next day resumes from, read back through the archive (so its
   bytes are checked against their hash first). The day's head and Merkle root are then
   anchored outside the archive (:mod:`orchestration.defs.compliance.anchoring`).

Re-running a day rebuilds the same bytes (every file is deterministic), so sealing archives
nothing new; a file that did change (a late fill) is appended as a correction that names
the entry it supersedes. Nothing archived is ever rewritten.
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _quote  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, Literal

from orchestration.defs.compliance import sources
from orchestration.defs.compliance.anchoring import anchor_day, require_anchor_intact, signature_problems
from orchestration.defs.compliance.paths import (
    AUDIT_RECORDS,
    AUDIT_VERIFICATION,
    FEES,
    FILLS,
    LEDGER_STATE,
    SEALED,
    CompliancePaths,
    current_entries,
    published_heads,
    write_atomic,
)
from trader.compliance import (
    ArchiveEntry,
    AuditVerification,
    ComplianceError,
    ComplianceFill,
    DayClose,
    Ledger,
    LedgerError,
    ReportSet,
    close_day,
    dumps_day_close,
    restore_day_close,
    restore_ledger,
    write_reports,
)
from trader.compliance.audit_check import StoredRecord, scan_chain
from trader.compliance.checkpoint import loads, paused_gc, pruned_day_close
from trader.compliance.fills import COLUMNS as FILL_COLUMNS

# -- 1. the ledger -------------------------------------------------------------------------

@dataclass(frozen=True)
class LedgerRun:
    """What :func:`close_ledger` did: the close, and whether it resumed from a checkpoint or replayed."""

    close: DayClose
    resumed_from: dt.date | None
    note: str
    fills_applied: int
    fills_through: int
    path: Path


@dataclass(frozen=True)
class _Start:
    """Where a close starts: after a sealed checkpoint (``since``, its ledger and fill count) or from nothing."""

    note: str
    since: dt.date | None = None
    ledger: Ledger | None = None
    fills_before: int = 0


def _checkpoint_before(paths: CompliancePaths, day: dt.date) -> _Start:
    """The last sealed checkpoint before ``day`` that still matches the store, or a replay and why."""
    if not paths.resume:
        return _Start("checkpoints turned off: replaying every fill")
    archive = paths.archive()
    sealed = [e for (name, date), e in current_entries(archive).items() if name == LEDGER_STATE and date < day]
    if not sealed:
        return _Start(f"no sealed checkpoint before {day}: replaying every fill")
    entry = max(sealed, key=lambda e: e.date)
    state = loads(archive.read(entry.sha256))  # read back through the archive: its bytes are checked first
    now = sources.count_fills(paths.store_url, through=entry.date)
    if now != state["fills_through"]:
        return _Start(f"the store has {now} fills through {entry.date}, its checkpoint {state['fills_through']} "
                      "(late fills): replaying every fill")
    if state["ledger"]["allow_short"] != paths.allow_short:
        return _Start(f"allow_short changed since the {entry.date} checkpoint: replaying every fill")
    return _Start(f"resumed from the {entry.date} checkpoint", entry.date, restore_ledger(state["ledger"]), now)


def close_ledger(paths: CompliancePaths, *, day: dt.date, warehouse: str) -> LedgerRun:
    """Close ``day``: resume or replay the ledger, mark it, save the checkpoint (see the module docstring).

    Raises:
        ComplianceError: a fill is invalid, an account is oversold, a price is missing in marts.bars.
    """
    with paused_gc():  # see paused_gc: a year of lots and disposals is rebuilt here
        return _close_ledger(paths, day, warehouse)


def _close_ledger(paths: CompliancePaths, day: dt.date, warehouse: str) -> LedgerRun:
    start = _checkpoint_before(paths, day)
    fills = sources.read_fills(paths.store_url, after=start.since, through=day)
    opening = sources.closing_marks(warehouse, sources.previous_session(day))
    actions = sources.read_corporate_actions(paths.store_url, after=start.since, through=day)
    try:
        close = close_day(fills, day=day, closing_marks=sources.closing_marks(warehouse, day), opening_marks=opening,
                          allow_short=paths.allow_short, resume=start.ledger, actions=actions)
    except LedgerError as err:
        hint = " (prices come from marts.bars: ingest that session first)" if "_marks" in str(err) else ""
        raise LedgerError(f"{day}: {err}{hint}") from None
    # Counted from what was applied, not queried again: a fill landing meanwhile must not be
    # counted as booked (the next day would then trust this checkpoint without it).
    through = start.fills_before + len(fills)
    path = paths.checkpoint(day)
    pruned = pruned_day_close(close)  # what reading the file back would give; saving it gives the same bytes, faster
    write_atomic(path, dumps_day_close(pruned, fills_through=through))
    _remember(path, pruned)
    return LedgerRun(close=close, resumed_from=start.since, note=start.note, fills_applied=len(fills), fills_through=through,
                     path=path)


def load_day_close(paths: CompliancePaths, day: dt.date) -> DayClose:
    """The day close that :func:`close_ledger` saved; treat it as read-only (it is shared, see below).

    Raises:
        ComplianceError: there is none (the ledger step has not run for ``day``).
    """
    path = paths.checkpoint(day)
    if not path.exists():
        raise ComplianceError(f"{path}: missing (materialize tax_lot_ledger for {day} first)")
    key, version = str(path), path.stat().st_mtime_ns
    cached = _CLOSES.get(key)
    if cached is None or cached[0] != version:
        # The reports step and four checks each need the day close; at year end it holds a few
        # hundred thousand lots and disposals, so it is parsed and rebuilt once per file version
        # per process (the in-process executor runs them all in one), not five times; the
        # ledger step leaves the close it saved here, so the same process never reads it back.
        with paused_gc():
            cached = _remember(path, restore_day_close(loads(path.read_bytes())), version)
    return cached[1]


_CLOSES: dict[str, tuple[int, DayClose]] = {}


def forget_day_closes() -> None:
    """Drop the day close kept in memory (see :func:`load_day_close`); the next load reads its file."""
    _CLOSES.clear()
    gc.unfreeze()


def _remember(path: Path, close: DayClose, version: int | None = None) -> tuple[int, DayClose]:
    """Keep ``close`` (one at a time: each holds a year of lots), out of the cyclic collector's way.

    The close is ~10^5 long-lived objects without reference cycles (lots, disposals, fills). Left
    to the collector, every collection of the older generations walks them all again (~0.1 s each
    at year end), while the reports, the checks and the audit step run. ``gc.freeze()`` moves every
    object alive now out of the collector's reach (reference counting still frees them); the
    previous freeze is undone first, so what was frozen with an earlier close is collectable again.
    """
    _CLOSES.clear()
    gc.unfreeze()
    _CLOSES[str(path)] = entry = (path.stat().st_mtime_ns if version is None else version, close)
    gc.freeze()
    return entry


# -- 2. reports ----------------------------------------------------------------------------

def broker_fees(paths: CompliancePaths, day: dt.date) -> tuple[dict[str, str], Literal["fill", "day"]] | None:
    """The broker's fee statement for ``day`` (``compliance/broker_fees/<day>.csv``), or None when there is none.

    The file has a ``fee`` column and either ``fill_id`` (per fill) or ``date`` (one total per day).

    Raises:
        ComplianceError: the file has neither key column.
    """
    path = paths.broker_statement(day)
    if not path.exists():
        return None
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or ()
        by: Literal["fill", "day"] | None = "fill" if "fill_id" in header else "day" if "date" in header else None
        if by is None or "fee" not in header:
            raise ComplianceError(f"{path}: header: needs a fee column and a fill_id or date column")
        key = "fill_id" if by == "fill" else "date"
        fees = {}
        for line, row in enumerate(reader, start=2):
            try:
                fees[row[key]] = str(Decimal((row["fee"] or "").strip()))
            except ArithmeticError:
                raise ComplianceError(f"{path}:{line}: fee: not a decimal number ({row['fee']!r})") from None
        return fees, by


def fills_csv(fills: Iterable[ComplianceFill]) -> bytes:
    """The day's fills as CSV with the §3.5 columns, exactly as stored (deterministic bytes)."""
    lines = [",".join(FILL_COLUMNS)]
    for fill in fills:
        values = fill.texts  # in FILL_COLUMNS order
        line = ",".join(values)
        if '"' in line or "\n" in line or line.count(",") != len(FILL_COLUMNS) - 1:  # a field needs quoting
            line = ",".join(map(_csv_field, values))
        lines.append(line)
    return ("\n".join(lines) + "\n").encode()


def _csv_field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(ch in value for ch in ',"\n') else value


def read_fills_csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(data.decode().splitlines()))


def write_day_reports(paths: CompliancePaths, day: dt.date) -> ReportSet:
    """Write ``reports/<day>/``: the compliance reports and ``fills.csv``, from the saved day close."""
    with paused_gc():  # Form 8949 is year to date: a few hundred thousand rows at year end
        return _write_day_reports(paths, day)


def _write_day_reports(paths: CompliancePaths, day: dt.date) -> ReportSet:
    close = load_day_close(paths, day)
    statement = broker_fees(paths, day)
    directory = paths.day_dir(day)
    if statement is None:
        (directory / FEES).unlink(missing_ok=True)  # a stale reconciliation must not be sealed as today's
        reports = write_reports(close, directory)
    else:
        reports = write_reports(close, directory, broker_fees=statement[0], fee_by=statement[1])
    write_atomic(directory / FILLS, fills_csv(close.day_fills))
    return reports


# -- 3. the audit trail --------------------------------------------------------------------

@dataclass(frozen=True)
class DayAudit:
    """The day's audit check: ``sealed`` is what the archive keeps, ``problems`` the verdict on the whole chain.

    ``sealed`` covers the chain *through the day* against the heads published on *earlier*
    days, so it depends only on history up to the day: re-running the day later (after
    more records and more published heads) rebuilds the same file and archives nothing. The
    verdict covers everything: the records after the day and every published head, the
    day's own earlier one included (a forged record with recomputed hashes fails there).
    """

    sealed: AuditVerification
    problems: list[str]
    records: int
    heads: int

    @property
    def ok(self) -> bool:
        return not self.problems

    def verdict(self) -> dict[str, Any]:
        return {"day": self.sealed.day.isoformat(), "ok": self.ok, "problems": self.problems, "records": self.records,
                "published_heads": self.heads}


def verify_day_audit(paths: CompliancePaths, day: dt.date) -> DayAudit:
    """Verify the chain end to end; write the sealed verification, the day's records and the verdict.

    One streaming pass over the stored chain (read in chunks, each record hashed once, the
    day's Merkle leaves collected on the way): memory holds the day's records, not the chain.
    The HMAC check then reads only ``(seq, hash)`` again.
    """
    # Rows and hashes only (no reference cycles); with the collector running, the day close
    # kept for the checks (a year of lots) was walked again and again (measured: ~0.3 s at year end).
    with paused_gc():
        return _verify_day_audit(paths, day)


def _verify_day_audit(paths: CompliancePaths, day: dt.date) -> DayAudit:
    heads = published_heads(paths.archive())
    lines: list[str] = []

    def keep(row: StoredRecord) -> None:  # the record as JSON with sorted keys, its payload as stored (canonical)
        seq, ts, kind, payload, prev_hash, digest = row
        lines.append(f'{{"hash":{_quote(digest)},"kind":{_quote(kind)},"payload":{payload},"prev_hash":{_quote(prev_hash)},'
                     f'"seq":{seq},"ts":{_quote(ts)}}}\n')

    scan = scan_chain(sources.read_audit_rows(paths.store_url), day=day, published=[h for date, h in heads if date < day],
                      later=[(date, h) for date, h in heads if date >= day], on_day_record=keep)
    sealed = scan.sealed
    problems = list(sealed.problems) or ([sealed.chain_reason] if sealed.chain_reason else [])
    if scan.after_day:
        problems.append(f"after {day}: {scan.after_day}")
    problems += scan.later_heads
    problems += signature_problems(paths)[1]  # a record forged without ALPHALINE_AUDIT_KEY is never sealed
    directory = paths.day_dir(day)
    write_atomic(directory / AUDIT_RECORDS, "".join(lines).encode())
    write_atomic(directory / AUDIT_VERIFICATION, sealed.dumps())
    audit = DayAudit(sealed=sealed, problems=problems, records=scan.records, heads=len(heads))
    write_atomic(paths.audit_verdict(day), (json.dumps(audit.verdict(), indent=2) + "\n").encode())
    return audit


def read_verdict(paths: CompliancePaths, day: dt.date) -> dict[str, Any]:
    """The verdict :func:`verify_day_audit` wrote for ``day``."""
    path = paths.audit_verdict(day)
    if not path.exists():
        raise ComplianceError(f"{path}: missing (materialize audit_trail_verification for {day} first)")
    return json.loads(path.read_text())


def read_verification(paths: CompliancePaths, day: dt.date) -> dict[str, Any]:
    """The day's sealed ``audit_verification.json``."""
    path = paths.day_dir(day) / AUDIT_VERIFICATION
    if not path.exists():
        raise ComplianceError(f"{path}: missing (materialize audit_trail_verification for {day} first)")
    return json.loads(path.read_text())


# -- 4. sealing ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Sealed:
    """One file of the day and what sealing did: ``new``, ``unchanged`` (nothing written) or ``correction``."""

    name: str
    status: Literal["new", "unchanged", "correction"]
    entry: ArchiveEntry


def seal_day(paths: CompliancePaths, day: dt.date, *, log: Callable[[str], None] = lambda _msg: None) -> list[Sealed]:
    """Seal the day's files (those that exist, in :data:`SEALED` order) into the WORM archive.

    Raises:
        ComplianceError: the checkpoint or the audit verification is missing, or the archive's
            manifest or the anchor file no longer verifies (nothing is appended to a tampered chain).
    """
    require_anchor_intact(paths)  # before anything is archived: a sealed day must also be anchored
    archive = paths.archive()
    if not read_verdict(paths, day)["ok"]:  # the blocking check stops a run first; this guards direct calls
        raise ComplianceError(f"{day}: the audit chain did not verify: not sealing (run `alphaline compliance verify`)")
    verification = read_verification(paths, day)
    meta = {AUDIT_VERIFICATION: {"audit_head": verification["head"], "merkle_root": verification["day"]["merkle_root"],
                                 "ok": verification["ok"]}}
    files = {name: paths.day_dir(day) / name for name in SEALED if name != LEDGER_STATE}
    files[LEDGER_STATE] = paths.checkpoint(day)
    if not files[LEDGER_STATE].exists():
        raise ComplianceError(f"{files[LEDGER_STATE]}: missing (materialize tax_lot_ledger for {day} first)")
    current = current_entries(archive)
    sealed = []
    for name, path in files.items():
        if not path.exists():
            continue
        data = path.read_bytes()
        prior = current.get((name, day))
        if prior is not None and prior.sha256 == hashlib.sha256(data).hexdigest():
            sealed.append(Sealed(name, "unchanged", prior))
            continue
        entry = archive.put(data, name=name, date=day, corrects=prior.hash if prior else None, meta=meta.get(name))
        if prior is not None:
            log(f"{name} ({day}) changed since entry seq {prior.seq}: appended correction seq {entry.seq}")
        sealed.append(Sealed(name, "correction" if prior else "new", entry))
    anchor_day(paths, day, verification, log=log)  # last: an anchored day is a completely sealed day
    return sealed


def money(value: Decimal) -> str:
    """Cents for metadata and CLI output."""
    return f"{value.quantize(Decimal('0.01')):,}"
