"""Blocking checks of the EOD compliance assets: when one fails, nothing of that day is sealed.

On ``tax_lot_ledger`` (so a bad ledger never even reaches the reports):

* ``great_expectations_suite``: the GX suite on the day's fills, open lots and disposals
  (positive quantities, proceeds = qty × price − fees, dates in order, ...);
* ``roll_forward_closes``: opening + realised + change in unrealised = closing;
* ``fills_match_archive``: if the day was sealed before, every sealed fill is still in the
  store unchanged (the table is append-only: a change is tampering, and re-sealing would
  launder it). Added fills are fine: the re-run seals corrections.

On ``compliance_reports``: ``fees_reconcile``: our fees equal the broker's statement within
$0.01, when a statement for the day exists (without one there is nothing to reconcile and
the check says so).

On ``audit_trail_verification``: ``audit_chain_verified``: the chain verifies end to end and
still contains every head published earlier.

A weekday that is not an XNYS session passes every check with that as its description.
"""


from pathlib import Path

import dagster as dg

from orchestration.defs.compliance import eod
from orchestration.defs.compliance.assets import partition_day
from orchestration.defs.compliance.expectations import run_day_suite
from orchestration.defs.compliance.resources import ComplianceResource
from orchestration.defs.compliance.sources import is_session
from orchestration.defs.compliance.verify import compare_fills, sealed_fills, stored_day_rows
from trader.compliance import ComplianceError, reconcile_fees


def _result(passed: bool, message: str, **metadata: object) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, description=message, metadata={"message": dg.MetadataValue.text(message), **metadata})


def _skip(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult | None:
    """A result for a run that has nothing to check (no day, or not a session); None to go on."""
    # The checks are not partitioned themselves (partitioned checks are a Dagster preview):
    # they judge the day of the run they are part of.
    if not context.has_partition_key:
        return _result(False, "no trading day: run this check with its asset, in a run for one partition")
    day = partition_day(context)
    return None if is_session(day) else _result(True, f"{day} is not an XNYS session: nothing to check")


@dg.asset_check(asset="tax_lot_ledger", name="great_expectations_suite", blocking=True,
                description="Great Expectations on the day's fills, open lots and disposals: positive quantities, "
                            "proceeds = qty × price − fees, dates in order.")
def ledger_expectations(context: dg.AssetCheckExecutionContext, compliance: ComplianceResource) -> dg.AssetCheckResult:
    if (skipped := _skip(context)) is not None:
        return skipped
    try:
        close = eod.load_day_close(compliance.paths(), partition_day(context))
    except ComplianceError as err:
        return _result(False, str(err))
    outcome = run_day_suite(close, docs_dir=Path(compliance.reports_dir) / "data_docs")
    message = f"{outcome.evaluated} expectations met" if outcome.success else "; ".join(outcome.failed)
    return _result(outcome.success, message, expectations=outcome.evaluated, rows=dg.MetadataValue.json(outcome.rows),
                   failed=dg.MetadataValue.json(outcome.failed))


@dg.asset_check(asset="tax_lot_ledger", name="roll_forward_closes", blocking=True,
                description="Opening P&L + realised + change in unrealised = closing P&L (to 1e-9 dollars).")
def roll_forward_closes(context: dg.AssetCheckExecutionContext, compliance: ComplianceResource) -> dg.AssetCheckResult:
    if (skipped := _skip(context)) is not None:
        return skipped
    try:
        roll = eod.load_day_close(compliance.paths(), partition_day(context)).roll_forward
    except ComplianceError as err:
        return _result(False, str(err))
    bridge = (f"opening {eod.money(roll.opening)} + realised {eod.money(roll.realised)} + change in unrealised "
              f"{eod.money(roll.unrealised_close - roll.unrealised_open)} vs closing {eod.money(roll.closing)}")
    verdict = "closes" if roll.ok else f"does NOT close: off by {roll.difference}"
    return _result(roll.ok, f"{bridge}: {verdict}", difference=str(roll.difference))


@dg.asset_check(asset="tax_lot_ledger", name="fills_match_archive", blocking=True,
                description="A day sealed before: its sealed fills are all still in the store, unchanged.")
def fills_match_archive(context: dg.AssetCheckExecutionContext, compliance: ComplianceResource) -> dg.AssetCheckResult:
    if (skipped := _skip(context)) is not None:
        return skipped
    day, paths = partition_day(context), compliance.paths()
    try:
        archived = sealed_fills(paths, day)
        if archived is None:
            return _result(True, f"{day} was not sealed before")
        comparison = compare_fills(day, archived, stored_day_rows(paths, day))
    except ComplianceError as err:
        return _result(False, str(err))
    if comparison.altered:
        return _result(False, "; ".join(comparison.altered[:5]) + " — run `alphaline compliance verify`",
                       altered=dg.MetadataValue.json(comparison.altered))
    note = f"; {len(comparison.late)} late fill(s): the day's files will be sealed as corrections" if comparison.late else ""
    return _result(True, f"{len(archived)} sealed fill(s) unchanged{note}", late=len(comparison.late))


@dg.asset_check(asset="compliance_reports", name="fees_reconcile", blocking=True,
                description="Our fills' fees equal the broker's statement (compliance/broker_fees/<date>.csv) within "
                            "$0.01, per fill or per day; passes with a note when there is no statement.")
def fees_reconcile(context: dg.AssetCheckExecutionContext, compliance: ComplianceResource) -> dg.AssetCheckResult:
    if (skipped := _skip(context)) is not None:
        return skipped
    day, paths = partition_day(context), compliance.paths()
    try:
        statement = eod.broker_fees(paths, day)
        if statement is None:
            return _result(True, f"no broker fee statement for {day} ({paths.broker_statement(day)}): nothing to reconcile",
                           statement=False)
        fees = reconcile_fees(eod.load_day_close(paths, day).day_fills, statement[0], by=statement[1])
    except (ComplianceError, ValueError) as err:
        return _result(False, str(err))
    lines = [f"{r.key}: ours {r.ours}, broker {r.broker} ({r.note})" for r in fees.failures]
    message = f"{len(fees.rows)} {fees.by}(s) within {fees.tolerance}" if fees.ok else "; ".join(lines[:5])
    return _result(fees.ok, message, statement=True, failures=dg.MetadataValue.json(lines))


@dg.asset_check(asset="audit_trail_verification", name="audit_chain_verified", blocking=True,
                description="The audit chain verifies end to end and still holds every head published earlier.")
def audit_chain_verified(context: dg.AssetCheckExecutionContext, compliance: ComplianceResource) -> dg.AssetCheckResult:
    if (skipped := _skip(context)) is not None:
        return skipped
    try:
        verdict = eod.read_verdict(compliance.paths(), partition_day(context))
    except ComplianceError as err:
        return _result(False, str(err))
    message = (f"{verdict['records']} records verified end to end against {verdict['published_heads']} published head(s)"
               if verdict["ok"] else "; ".join(verdict["problems"][:5]))
    return _result(bool(verdict["ok"]), message, problems=dg.MetadataValue.json(verdict["problems"]))


COMPLIANCE_CHECKS = [ledger_expectations, roll_forward_closes, fills_match_archive, fees_reconcile, audit_chain_verified]
