"""Where an EOD compliance run reads and writes, the names of the files it seals, and the archive as it sees it.

The steps themselves are in :mod:`orchestration.defs.compliance.eod`; this module is what they
and the commands beside them (``verify``, ``anchoring``, the CLI) share.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from trader.compliance import ArchiveEntry, PublishedHead, WormArchive

LEDGER_STATE, FILLS, AUDIT_RECORDS, AUDIT_VERIFICATION, FEES = (
    "ledger_state.json", "fills.csv", "audit_records.jsonl", "audit_verification.json", "fee_reconciliation.csv")
REPORTS = ("tax_lots.csv", "realized_pnl.csv", "wash_sales.csv", "form_8949.csv", "schedule_d.csv", "roll_forward.csv", FEES)
#: What is sealed each day, in order; the checkpoint goes last: a sealed checkpoint means a complete day.
SEALED = (*REPORTS, FILLS, AUDIT_RECORDS, AUDIT_VERIFICATION, LEDGER_STATE)


@dataclass(frozen=True)
class CompliancePaths:
    """Where a run reads and writes (built by ``ComplianceResource.paths()``)."""

    store_url: str
    reports_dir: Path
    archive_root: Path
    work_dir: Path
    allow_short: bool = False
    retention_years: int = 6
    resume: bool = True
    anchor_file: Path | None = None  # anchors/<mode>.jsonl (trader.compliance.anchor); None: no anchor

    def day_dir(self, day: dt.date) -> Path:
        """``reports/<day>/``: what a user reads, and what is sealed."""
        return self.reports_dir / day.isoformat()

    def checkpoint(self, day: dt.date) -> Path:
        """The working copy of the day's ledger checkpoint (the sealed copy is the one resumed from)."""
        return self.work_dir / "ledger" / f"{day.isoformat()}.json"

    def audit_verdict(self, day: dt.date) -> Path:
        """The end-to-end audit verdict of the day's run (what the blocking check reads)."""
        return self.work_dir / "audit" / f"{day.isoformat()}.json"

    def broker_statement(self, day: dt.date) -> Path:
        return self.work_dir / "broker_fees" / f"{day.isoformat()}.csv"

    def archive(self) -> WormArchive:
        return WormArchive(self.archive_root, retention_years=self.retention_years)


def current_entries(archive: WormArchive) -> dict[tuple[str, dt.date], ArchiveEntry]:
    """The current version of every ``(name, date)``: corrections replace what they correct."""
    entries = archive.entries()
    corrected = {e.corrects for e in entries if e.corrects}
    return {(e.name, e.date): e for e in entries if e.hash not in corrected}


def published_heads(archive: WormArchive) -> list[tuple[dt.date, PublishedHead]]:
    """Every audit chain head ever sealed, with its day (superseded ones too: each was a public commitment)."""
    heads = {(e.date, PublishedHead(**e.meta["audit_head"])) for e in archive.entries()
             if e.name == AUDIT_VERIFICATION and "audit_head" in e.meta}
    return sorted(heads, key=lambda pair: (pair[1].count, pair[0]))


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
