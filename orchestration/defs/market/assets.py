"""Raw ingestion assets: scheduled market bars (daily partitions) and file imports."""


import datetime as dt

import dagster as dg

from orchestration.defs.partitions import trading_day_partitions
from orchestration.errors import AlphalineError
from orchestration.market.bars import SourceBatch
from orchestration.market.corporate_actions import ActionsReport, actions_files, ingest_actions, is_actions_file, read_actions_file
from orchestration.market.files import FileSource
from orchestration.market.warehouse import BatchReport, ingest_batch, merged_reasons
from orchestration.resources import MarketSourceResource
from orchestration.settings import Settings
from orchestration.warehouse.resource import WarehouseResource

GROUP = "market"
EXCHANGE_TZ = "America/New_York"


def report_metadata(reports: list[BatchReport]) -> dict[str, dg.MetadataValue]:
    """What a user looks at in the UI for an ingestion."""
    received = sum(r.rows_received for r in reports)
    rejected = sum(r.rows_rejected for r in reports)
    firsts = [r.first_ts for r in reports if r.first_ts]
    lasts = [r.last_ts for r in reports if r.last_ts]
    return {
        "batch_ids": dg.MetadataValue.text(", ".join(r.batch_id for r in reports)),
        "sources": dg.MetadataValue.text(", ".join(sorted({r.source for r in reports}))),
        "rows_received": dg.MetadataValue.int(received),
        "dagster/row_count": dg.MetadataValue.int(sum(r.rows_accepted for r in reports)),
        "rows_rejected": dg.MetadataValue.int(rejected),
        "reject_share": dg.MetadataValue.float(round(rejected / received, 6) if received else 0.0),
        "reject_reasons": dg.MetadataValue.json(merged_reasons(reports)),
        "symbols": dg.MetadataValue.int(max((r.symbols for r in reports), default=0)),
        "first_bar": dg.MetadataValue.text(min(firsts).isoformat() if firsts else "-"),
        "last_bar": dg.MetadataValue.text(max(lasts).isoformat() if lasts else "-"),
        "calendar_gap_sessions": dg.MetadataValue.int(sum(r.gap_sessions for r in reports)),
        "missing_bars": dg.MetadataValue.int(sum(r.missing_bars for r in reports)),
        "duplicate_batches": dg.MetadataValue.int(sum(1 for r in reports if r.duplicate_of)),
    }


def _ingest(context: dg.AssetExecutionContext, warehouse: WarehouseResource, batches: list[SourceBatch], asset: str) -> list[BatchReport]:
    reports = []
    with warehouse.get_connection() as con:
        for batch in batches:
            report = ingest_batch(con, batch, asset=asset, run_id=context.run_id)
            note = f" (identical to batch {report.duplicate_of}: nothing appended)" if report.duplicate_of else ""
            context.log.info(
                f"{report.source}: {report.rows_accepted}/{report.rows_received} rows accepted, "
                f"{report.rows_rejected} rejected{note}"
            )
            reports.append(report)
    return reports


def build_raw_assets(settings: Settings) -> dg.AssetsDefinition:
    # One key per weekday from where this home's data begins; today's exists, so the 17:00 schedule ingests the
    # session that just closed rather than the one before (bars not closed yet are never fetched).
    partitions = trading_day_partitions(settings.first_partition, settings.market)

    @dg.asset(
        name="raw_bars",
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb", "polars"},
        description=(
            "Bars from the market source (synthetic by default, Alpaca in prod), validated with pandera and "
            "appended to raw.bars; bad rows go to raw.bars_rejected with their reason. One partition per "
            "weekday (America/New_York), from the first session ingested; a range of partitions runs as one batch. Also maintains "
            "raw.symbols, raw.sessions and raw.synthetic_oracle."
        ),
    )
    def raw_bars(context: dg.AssetExecutionContext, market: MarketSourceResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        window = context.partition_time_window
        start, end = window.start.astimezone(dt.UTC), window.end.astimezone(dt.UTC)
        try:
            batch = market.source().fetch(start, end)
        except AlphalineError as err:
            raise dg.Failure(description=str(err), allow_retries=False) from None
        reports = _ingest(context, warehouse, [batch], "raw_bars")
        return dg.MaterializeResult(metadata=report_metadata(reports))

    return raw_bars


class ImportConfig(dg.Config):
    """Files to import; with no paths, everything in ``$ALPHALINE_HOME/imports/``."""

    paths: list[str] = []  # noqa: RUF012 - dagster.Config copies defaults per instance (pydantic)
    symbol: str | None = None
    timeframe: str | None = None
    tz: str | None = None


def build_import_asset(settings: Settings) -> dg.AssetsDefinition:
    imports_dir = settings.imports_dir

    @dg.asset(
        group_name=GROUP,
        kinds={"duckdb", "polars"},
        description=(
            "Bars imported from CSV/Parquet files (`alphaline ingest --csv` or files dropped in "
            "$ALPHALINE_HOME/imports/), validated and appended to raw.bars like raw_bars. Identical files are "
            "recorded as no-op batches. Corporate actions in *corporate_actions.csv/parquet files beside them go to "
            "raw.corporate_actions."
        ),
    )
    def imported_bars(context: dg.AssetExecutionContext, config: ImportConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
        paths = config.paths or [str(imports_dir)]
        try:
            # Corporate actions (*corporate_actions.csv) travel beside the bars: in the folder, or named directly.
            action_files = [f for p in paths for f in actions_files(p)]
            bar_paths = [p for p in paths if not is_actions_file(p)]
            batches = [FileSource(p, symbol=config.symbol, timeframe=config.timeframe, tz=config.tz).read() for p in bar_paths]
            actions = [(f"csv:{f.name}", read_actions_file(f)) for f in action_files]
        except AlphalineError as err:
            raise dg.Failure(description=str(err), allow_retries=False) from None
        reports = _ingest(context, warehouse, batches, "imported_bars")
        _ingest_actions(context, warehouse, actions, "imported_bars")
        return dg.MaterializeResult(metadata=report_metadata(reports))

    return imported_bars


#: Ex-dates asked past a partition's end: actions are announced ahead, and the trader applies one at the first
#: cycle of its ex-date, before that day's bars are ingested.
ACTIONS_LOOKAHEAD = dt.timedelta(days=7)


def build_actions_asset(raw_bars: dg.AssetsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name="raw_corporate_actions",
        group_name=GROUP,
        partitions_def=raw_bars.partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb", "polars"},
        description=(
            "Splits and cash dividends with ex-date in the partition's days (and the week after: they are announced "
            "ahead), from the market source (Alpaca's corporate-actions API; the synthetic market's planted ones), "
            "validated and appended to raw.corporate_actions; bad rows go to raw.corporate_actions_rejected with their "
            "reason. Files of actions (*corporate_actions.csv beside the bars) come in through imported_bars."
        ),
    )
    def raw_corporate_actions(context: dg.AssetExecutionContext, market: MarketSourceResource,
                              warehouse: WarehouseResource) -> dg.MaterializeResult:
        # Partitioned like raw_bars so that one ingest job runs both.
        window = context.partition_time_window
        start, end = window.start.date(), (window.end + ACTIONS_LOOKAHEAD).date()
        try:
            source = market.actions_source()
            frames = [(source.name, source.corporate_actions(start, end))]
        except AlphalineError as err:
            raise dg.Failure(description=str(err), allow_retries=False) from None
        reports = _ingest_actions(context, warehouse, frames, "raw_corporate_actions")
        return dg.MaterializeResult(metadata={
            "rows_received": dg.MetadataValue.int(sum(r.received for r in reports)),
            "dagster/row_count": dg.MetadataValue.int(sum(r.appended for r in reports)),
            "rows_rejected": dg.MetadataValue.int(sum(r.rejected for r in reports)),
            "reject_reasons": dg.MetadataValue.json({k: v for r in reports for k, v in r.reasons.items()}),
        })

    return raw_corporate_actions


def _ingest_actions(context: dg.AssetExecutionContext, warehouse: WarehouseResource, frames: list, asset: str) -> list[ActionsReport]:
    reports = []
    with warehouse.get_connection() as con:
        for label, frame in frames:
            report = ingest_actions(con, frame, asset=asset, label=label, run_id=context.run_id)
            context.log.info(f"{label}: {report.accepted}/{report.received} corporate action(s) accepted, {report.appended} new, "
                             f"{report.rejected} rejected {report.reasons or ''}")
            reports.append(report)
    return reports
