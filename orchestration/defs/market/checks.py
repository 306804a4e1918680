"""Data-quality checks on the market assets.

* ``reject_share_within_limit`` (blocking) on ``raw_bars`` and ``imported_bars``: a batch
  whose rejected share is above the limit stops everything downstream, with a message
  naming the source, the reasons and the rows; an identical re-import is judged by the
  batch it repeats, so it fails the same way (naming that batch);
* the same for corporate actions (blocking): ``reject_share_within_limit`` on ``raw_corporate_actions``,
  ``corporate_actions_reject_share_within_limit`` on ``imported_bars`` (files of actions beside the bars);
* ``calendar_gaps`` (warning) on the same: sessions where bars the calendar expects are missing;
* ``great_expectations_suite`` (blocking) on ``marts/bars``, with Data Docs under reports/.
"""


from pathlib import Path

import dagster as dg

from orchestration.market.corporate_actions import latest_action_batches
from orchestration.market.expectations import run_bars_suite
from orchestration.market.warehouse import BatchReport, batch_reports, ensure_schema, merged_reasons
from orchestration.resources import DataQualityResource
from orchestration.warehouse.resource import WarehouseResource

MARTS_BARS = dg.AssetKey(["marts", "bars"])


def _reports(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, asset: str) -> list[BatchReport]:
    with warehouse.get_connection() as con:
        ensure_schema(con)
        # Checks run in the same run as their asset; run alone, they judge the latest batch.
        return batch_reports(con, asset=asset, run_id=context.run.run_id) or batch_reports(con, asset=asset)


def reject_share_message(reports: list[BatchReport], limit: float) -> tuple[bool, str]:
    over = [r for r in reports if r.reject_share > limit]
    if not reports:
        return True, "no batch ingested yet"
    if not over:
        total = sum(r.rows_rejected for r in reports)
        return True, f"{total} rejected row(s); every batch within the {limit:.2%} limit"
    parts = [
        f"{r.source} ({_batch_label(r)}): {r.rows_rejected} of {r.rows_received} rows rejected "
        f"({r.reject_share:.2%} > {limit:.2%}): {r.describe_rejects()}"
        for r in over
    ]
    return False, " | ".join(parts) + " — see raw.bars_rejected"


def _batch_label(report: BatchReport) -> str:
    # A re-import of a blocked file appends nothing; say so, and where its rejected rows already are.
    if report.duplicate_of:
        return f"batch {report.batch_id}: identical to blocked batch {report.duplicate_of}, nothing appended"
    return f"batch {report.batch_id}"


def _reject_check(asset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="reject_share_within_limit",
        blocking=True,
        description="Fails the batch when its share of rejected rows exceeds quality.max_reject_share.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, quality: DataQualityResource) -> dg.AssetCheckResult:
        reports = _reports(context, warehouse, asset)
        passed, message = reject_share_message(reports, quality.max_reject_share)
        if not passed:
            context.log.error(message)
        return dg.AssetCheckResult(
            passed=passed,
            description=message,
            metadata={
                "limit": quality.max_reject_share,
                "reject_share": max((r.reject_share for r in reports), default=0.0),
                "rows_rejected": sum(r.rows_rejected for r in reports),
                "reasons": dg.MetadataValue.json(merged_reasons(reports)),
                "message": dg.MetadataValue.text(message),
            },
        )

    return _check


def _gap_check(asset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name="calendar_gaps", description="Warns when bars the exchange calendar expects are missing (see raw.bar_gaps).")
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        reports = _reports(context, warehouse, asset)
        missing, sessions = sum(r.missing_bars for r in reports), sum(r.gap_sessions for r in reports)
        return dg.AssetCheckResult(
            passed=missing == 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{missing} missing bar(s) in {sessions} symbol-session(s)" if missing else "no calendar gaps",
            metadata={"missing_bars": missing, "gap_sessions": sessions},
        )

    return _check


@dg.asset_check(
    asset=MARTS_BARS,
    name="great_expectations_suite",
    blocking=True,
    description="Great Expectations suite on marts.bars (keys, OHLC consistency, ranges); Data Docs under reports/data_docs/.",
)
def bars_expectations(warehouse: WarehouseResource, quality: DataQualityResource) -> dg.AssetCheckResult:
    # Read through the warehouse interface: the same frame on DuckDB and on PostgreSQL (GX validates pandas).
    with warehouse.get_connection(read_only=True) as con:
        df = con.read("select * from marts.bars").to_pandas()
    outcome = run_bars_suite(df, docs_dir=Path(quality.reports_dir) / "data_docs")
    return dg.AssetCheckResult(
        passed=outcome.success,
        description="all expectations met" if outcome.success else "; ".join(outcome.failed),
        metadata={
            "rows": len(df),
            "expectations": outcome.evaluated,
            "failed": dg.MetadataValue.json(outcome.failed),
            "data_docs": dg.MetadataValue.path(str(outcome.docs_index)) if outcome.docs_index else "not written",
        },
    )


def _actions_check(asset: str, name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=name, blocking=True,
                    description="Fails when a batch of corporate actions has a larger share of rejected rows than "
                                "quality.max_reject_share (see raw.corporate_actions_rejected).")
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, quality: DataQualityResource) -> dg.AssetCheckResult:
        with warehouse.get_connection() as con:
            ensure_schema(con)
            reports = latest_action_batches(con, asset=asset, run_id=context.run.run_id)
        over = [r for r in reports if r.received and r.rejected / r.received > quality.max_reject_share]
        message = ("; ".join(f"batch {r.batch_id}: {r.rejected} of {r.received} corporate action(s) rejected "
                             f"({', '.join(f'{k} ×{v}' for k, v in r.reasons.items())})" for r in over)
                   + " — see raw.corporate_actions_rejected") if over else (
            f"{sum(r.rejected for r in reports)} rejected corporate action(s); within the {quality.max_reject_share:.2%} limit")
        return dg.AssetCheckResult(passed=not over, description=message,
                                   metadata={"rows_rejected": sum(r.rejected for r in reports),
                                             "reasons": dg.MetadataValue.json({k: v for r in reports for k, v in r.reasons.items()})})

    return _check


def build_checks() -> list[dg.AssetChecksDefinition]:
    per_asset = [c for a in ("raw_bars", "imported_bars") for c in (_reject_check(a), _gap_check(a))]
    actions = [_actions_check("raw_corporate_actions", "reject_share_within_limit"),
               _actions_check("imported_bars", "corporate_actions_reject_share_within_limit")]
    return [*per_asset, *actions, bars_expectations]
