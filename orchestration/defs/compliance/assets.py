"""EOD compliance assets, one partition per trading day: ledger → reports, audit verification → sealed records.

::

    trader/fills ─────► tax_lot_ledger ──► compliance_reports ───┐
    trader/audit_log ─► audit_trail_verification ─────────────────┴─► sealed_compliance_records
                        (blocking checks on each step before the archive)

``trader/fills`` and ``trader/audit_log`` are the trader's tables (external assets defined in
``orchestration.defs.trader``: the trader writes them, Dagster only reads). The ledger also reads closing prices from
``marts.bars`` (read-only), but that is deliberately *not* drawn as a dependency: the market
jobs select everything downstream of ``raw_bars`` (daily partitions, and every 15 minutes
intraday), and an edge would pull the EOD run into them. The steps themselves are plain
Python in :mod:`orchestration.defs.compliance.eod`. A partition that is not an XNYS session
(a holiday on a weekday) materializes as a no-op that says so.
"""


import datetime as dt
import time

import dagster as dg

from orchestration.defs.compliance import eod
from orchestration.defs.compliance.resources import ComplianceResource
from orchestration.defs.compliance.sources import is_session
from orchestration.warehouse.resource import WarehouseResource
from trader.compliance import ComplianceError

GROUP = "compliance"
TRADER_FILLS = dg.AssetKey(["trader", "fills"])
TRADER_AUDIT_LOG = dg.AssetKey(["trader", "audit_log"])


def partition_day(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def not_a_session(day: dt.date) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"skipped": f"{day} is not an XNYS session: nothing to close"})


def _failure(err: ComplianceError) -> dg.Failure:
    return dg.Failure(description=str(err), allow_retries=False)


def build_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The four EOD assets on ``partitions`` (one key per weekday; see ``__init__``)."""
    return [_ledger_asset(partitions), _reports_asset(partitions), _audit_asset(partitions), _sealed_asset(partitions)]


def _ledger_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(name="tax_lot_ledger", group_name=GROUP, partitions_def=partitions, deps=[TRADER_FILLS],
              kinds={"python", "json"},
              description="FIFO tax lots, realised and unrealised P&L, wash sales and the roll-forward at the day's close "
                          "(marked to marts.bars closes); resumed from the last sealed checkpoint, saved to "
                          "compliance/ledger/<date>.json.")
    def tax_lot_ledger(context: dg.AssetExecutionContext, compliance: ComplianceResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        day = partition_day(context)
        if not is_session(day):
            return not_a_session(day)
        started = time.monotonic()
        try:
            run = eod.close_ledger(compliance.paths(), day=day, warehouse=warehouse.location)
        except ComplianceError as err:
            raise _failure(err) from None
        context.log.info(f"{day}: {run.note}; {run.fills_applied} fill(s) applied")
        close, roll = run.close, run.close.roll_forward
        return dg.MaterializeResult(metadata={
            "ledger": run.note,
            "fills_today": len(close.day_fills),
            "fills_applied": run.fills_applied,
            "open_lots": len(close.ledger.open_lots()),
            "disposals_today": sum(1 for d in close.ledger.disposals if d.sold == day),
            "realised": eod.money(roll.realised),
            "unrealised_close": eod.money(roll.unrealised_close),
            "roll_forward_difference": str(roll.difference),
            "checkpoint": dg.MetadataValue.path(str(run.path)),
            "seconds": round(time.monotonic() - started, 3),
        })

    return tax_lot_ledger


def _reports_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(name="compliance_reports", group_name=GROUP, partitions_def=partitions, deps=["tax_lot_ledger"],
              kinds={"csv"},
              description="reports/<date>/: tax_lots, realized_pnl, wash_sales, form_8949 (Parts I/II, code W), "
                          "schedule_d, roll_forward, fee_reconciliation (with a broker statement) and the day's fills.")
    def compliance_reports(context: dg.AssetExecutionContext, compliance: ComplianceResource) -> dg.MaterializeResult:
        day = partition_day(context)
        if not is_session(day):
            return not_a_session(day)
        try:
            reports = eod.write_day_reports(compliance.paths(), day)
        except ComplianceError as err:
            raise _failure(err) from None
        rows = {name: max(0, len(path.read_bytes().splitlines()) - 1) for name, path in reports.paths.items()}
        return dg.MaterializeResult(metadata={
            "directory": dg.MetadataValue.path(str(reports.directory)),
            "rows": dg.MetadataValue.json(rows),
            "fee_reconciliation": "no broker statement" if reports.fees is None else ("ok" if reports.fees.ok else "FAILED"),
        })

    return compliance_reports


def _audit_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(name="audit_trail_verification", group_name=GROUP, partitions_def=partitions, deps=[TRADER_AUDIT_LOG],
              kinds={"json"},
              description="The trader's audit chain verified end to end and against every head published in the archive; "
                          "the day's head and RFC 6962 Merkle root in reports/<date>/audit_verification.json.")
    def audit_trail_verification(context: dg.AssetExecutionContext, compliance: ComplianceResource) -> dg.MaterializeResult:
        day = partition_day(context)
        if not is_session(day):
            return not_a_session(day)
        try:
            audit = eod.verify_day_audit(compliance.paths(), day)
        except ComplianceError as err:
            raise _failure(err) from None
        if not audit.ok:
            context.log.error(f"{day}: audit chain: " + "; ".join(audit.problems[:3]))
        sealed = audit.sealed
        return dg.MaterializeResult(metadata={
            "ok": audit.ok,
            "records": audit.records,
            "day_records": sealed.day_records,
            "head": f"{sealed.head.count}:{sealed.head.hash}",
            "merkle_root": sealed.merkle_root,
            "published_heads": audit.heads,
        })

    return audit_trail_verification


def _sealed_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(name="sealed_compliance_records", group_name=GROUP, partitions_def=partitions,
              deps=["compliance_reports", "audit_trail_verification"], kinds={"json"},
              description="The day's reports, fills, audit records, verification and ledger checkpoint sealed in the WORM "
                          "archive: read-only, content-addressed, hash-chained manifest; a re-run adds nothing, a changed "
                          "file is appended as a correction of the original.")
    def sealed_compliance_records(context: dg.AssetExecutionContext, compliance: ComplianceResource) -> dg.MaterializeResult:
        day = partition_day(context)
        if not is_session(day):
            return not_a_session(day)
        try:
            sealed = eod.seal_day(compliance.paths(), day, log=context.log.warning)
        except ComplianceError as err:
            raise _failure(err) from None
        counts = {status: sum(1 for s in sealed if s.status == status) for status in ("new", "unchanged", "correction")}
        head = compliance.paths().archive().head()
        return dg.MaterializeResult(metadata={
            **counts,
            "entries": dg.MetadataValue.json({s.name: f"seq {s.entry.seq} ({s.status}) {s.entry.sha256[:12]}" for s in sealed}),
            "manifest_head": f"{head[0]}:{head[1]}",
        })

    return sealed_compliance_records
