"""End-of-day compliance, plain Python and ``Decimal`` (DESIGN.md §3.6; issue 7).

The Dagster EOD assets call these; nothing here imports Dagster, pandas or the rest of
Alphaline except :mod:`trader.audit` (the shared audit-record format).

=====================  ====================================================================
module                 what it does
=====================  ====================================================================
``fills``              :class:`ComplianceFill`: the §3.5 ``fills`` row, validated
``holding``            short/long-term holding period (trade dates, leap years)
``lots``               :class:`Ledger`: FIFO tax lots, realised/unrealised P&L; :func:`close_day`
``checkpoint``         a ledger's state at a day's close as JSON, so the next day resumes from it
``wash_sales``         IRS Pub 550 wash sales, long and short (applied by the ledger as it books fills)
``short_sales``        short sales against the box: §1259 constructive sales, §1233(b)/(d) flags
``mtm``                the year under the default rules vs a §475(f) mark-to-market election
``form1099b``          a broker 1099-B CSV reconciled with our Form 8949 rows
``reports``            :func:`write_reports`: ``reports/<date>/*.csv``; fee reconciliation
``audit_check``        :func:`verify_audit_trail`: chain check, day head, Merkle root
``merkle``             RFC 6962 Merkle tree hash and inclusion proofs
``worm``               :class:`WormArchive`: write-once content-addressed archive
=====================  ====================================================================

Example (one day, end to end):
    >>> import datetime as dt, json, tempfile
    >>> from decimal import Decimal
    >>> from pathlib import Path
    >>> from trader.compliance import ComplianceFill, WormArchive, close_day, write_reports
    >>> buy = ComplianceFill(fill_id="F1", order_id="O1", client_order_id="C1", symbol="ACME", side="buy", qty="10",
    ...                      price="50", fee="1", ts=dt.datetime(2024, 5, 1, 14, tzinfo=dt.UTC), venue="SIM", account="A1")
    >>> home = Path(tempfile.mkdtemp())
    >>> day = dt.date(2024, 5, 1)
    >>> close = close_day([buy], day=day, closing_marks={"ACME": Decimal("52")})
    >>> reports = write_reports(close, home / "reports" / day.isoformat(), broker_fees={"F1": "1.00"})
    >>> reports.ok
    True
    >>> archive = WormArchive(home / "archive")
    >>> sealed = [archive.put_file(path, date=day) for path in reports.paths.values()]
    >>> archive.verify().ok, len(archive.entries())
    (True, 7)
"""

from trader.compliance.audit_check import AuditVerification, PublishedHead, verify_audit_trail
from trader.compliance.checkpoint import day_close_state, dumps_day_close, ledger_state, restore_day_close, restore_ledger
from trader.compliance.errors import ComplianceError, FillError, LedgerError, WormViolation
from trader.compliance.fills import ComplianceFill, load_fills, read_fills_csv
from trader.compliance.holding import term
from trader.compliance.lots import DayClose, Disposal, Ledger, RollForward, TaxLot, close_day
from trader.compliance.merkle import audit_path, merkle_root, verify_inclusion
from trader.compliance.reports import FeeReconciliation, ReportSet, reconcile_fees, write_reports
from trader.compliance.wash_sales import WashSale
from trader.compliance.worm import ArchiveEntry, ArchiveVerification, WormArchive

__all__ = [
    "ArchiveEntry",
    "ArchiveVerification",
    "AuditVerification",
    "ComplianceError",
    "ComplianceFill",
    "DayClose",
    "Disposal",
    "FeeReconciliation",
    "FillError",
    "Ledger",
    "LedgerError",
    "PublishedHead",
    "ReportSet",
    "RollForward",
    "TaxLot",
    "WashSale",
    "WormArchive",
    "WormViolation",
    "audit_path",
    "close_day",
    "day_close_state",
    "dumps_day_close",
    "ledger_state",
    "load_fills",
    "merkle_root",
    "read_fills_csv",
    "reconcile_fees",
    "restore_day_close",
    "restore_ledger",
    "term",
    "verify_audit_trail",
    "verify_inclusion",
    "write_reports",
]
