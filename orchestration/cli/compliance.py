"""``alphaline compliance``: close a trading day and re-check everything ever sealed.

Examples::

    alphaline compliance run --date 2024-03-05   # ledger, reports, audit check, WORM archive for that session
    alphaline compliance verify --trader sim     # archive, anchor, fills, orders, positions, audit chain and HMACs;
                                                 # exit 1 naming what was altered or is missing
    alphaline compliance adopt-anchor            # once, for a home sealed before anchors/<mode>.jsonl existed
    alphaline compliance mtm-analysis --year 2026 --trader sim        # default rules vs §475(f) mark-to-market
    alphaline compliance reconcile-1099b 1099b.csv --year 2026        # broker 1099-B vs our Form 8949; exit 1 on a difference
    alphaline compliance short-sales --year 2026                      # §1259 constructive sales, §1233 flags

The three tax-year commands write ``reports/<YYYY>/`` (analyses, not sealed).

``run`` goes through Dagster (the ``eod_compliance_job``, one partition), so the run, its
checks and its metadata show up in ``make ui``; ``verify`` is plain Python and reads only.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from orchestration.errors import ConfigError
from orchestration.runner import fail, run_job
from orchestration.settings import Settings, prepare_environment

TRADER_STORES = ("live", "paper", "sim", "dry-run")
_TRADER_OPTION = click.option(
    "--trader", "trader_mode", type=click.Choice(TRADER_STORES), default="live", show_default=True,
    help="Whose fills: the trader keeps one store per mode (live: trader/trader.db, others: trader/<mode>.db).",
)


def _store_url(settings: Settings, trader_mode: str) -> str:
    from trader.servers import server_store_url

    name = "trader.db" if trader_mode == "live" else f"{trader_mode}.db"
    return server_store_url(trader_mode) or f"sqlite:///{settings.home / 'trader' / name}"


def _resource(settings: Settings, trader_mode: str = "live", **overrides: object):
    """The compliance locations of ``trader_mode``: its store and its anchor file (``anchors/<mode>.jsonl``)."""
    from orchestration.defs.compliance.resources import ComplianceResource

    return ComplianceResource.for_home(settings.home, store_url=_store_url(settings, trader_mode), mode=trader_mode, **overrides)


def _paths(settings: Settings, trader_mode: str = "live"):
    return _resource(settings, trader_mode).paths()


@click.group()
def compliance() -> None:
    """End-of-day compliance (tax lots, wash sales, Form 8949, audit trail, WORM archive) and tax-year analyses."""


@compliance.command()
@click.option("--date", "date_", required=True, type=click.DateTime(formats=["%Y-%m-%d"]), help="The session to close (YYYY-MM-DD).")
@_TRADER_OPTION
@click.option("--allow-short", is_flag=True, help="Sells beyond the shares held open short lots (a long-short book).")
def run(date_: dt.datetime, trader_mode: str, allow_short: bool) -> None:
    """Run the EOD compliance job for one session, then show what was written, verified and sealed."""
    from orchestration.defs.compliance.schedules import EOD_JOB
    from orchestration.defs.compliance.sources import is_session

    day = date_.date()
    settings = prepare_environment(Settings())
    if day < settings.first_partition:
        raise ConfigError(f"--date {day}: before the first partition {settings.first_partition} (no bars ingested before it; "
                          "ALPHALINE_PARTITIONS_START moves it)")
    if day > settings.profile.trading_day(dt.datetime.now(dt.UTC)):
        raise ConfigError(f"--date {day}: in the future")
    if not is_session(day):
        calendar = settings.profile.calendar
        raise ConfigError(f"--date {day}: not {'an' if calendar == 'XNYS' else 'a'} {calendar} session (weekend or exchange holiday): "
                          "nothing to close")
    _require_session_data(settings, day, trader_mode)
    click.echo(f"EOD compliance for {day} (ALPHALINE_HOME={settings.home})")
    resource = _resource(settings, trader_mode, allow_short=allow_short)
    run_job(EOD_JOB, tags={"dagster/partition": day.isoformat()},
            run_config={"resources": {"compliance": {"config": resource.model_dump()}}})
    from trader.compliance import ComplianceError

    try:
        _print_day(settings, day)
    except ComplianceError as err:  # e.g. a manifest tampered with since the run: say so, no traceback
        fail(f"{err} (run `alphaline compliance verify`)")


def _require_session_data(settings: Settings, day: dt.date, trader_mode: str) -> None:
    """Refuse, before anything is written or sealed, a day the warehouse has no bars for or a trader store that is not there.

    Sealing is for keeps (six years, never rewritten): an empty day sealed by a typo could not be taken back.
    """
    from orchestration.defs.compliance.sources import closing_marks
    from orchestration.warehouse import warehouse_location
    from trader.compliance import ComplianceError

    try:
        marks = closing_marks(warehouse_location(settings), day)
    except ComplianceError as err:
        raise ConfigError(f"--date {day}: {err}") from None
    if not marks:
        raise ConfigError(f"--date {day}: marts.bars has no bars in that session (no closing prices): nothing to close; "
                          "ingest the session first")
    from trader.store import sqlite_file

    store = sqlite_file(_store_url(settings, trader_mode))
    if store is not None and not store.exists():
        raise ConfigError(f"--trader {trader_mode}: no trader store at {store} (no fills: run the trader first)")


def _print_day(settings: Settings, day: dt.date) -> None:
    from orchestration.defs.compliance.paths import SEALED, current_entries

    paths = _paths(settings)
    directory = paths.day_dir(day)
    click.echo(f"\nReports  {directory}")
    for name in SEALED[:-1]:
        path = directory / name
        if path.exists():
            rows = len(path.read_bytes().splitlines()) - (0 if name.endswith(".jsonl") else 1)
            click.echo(f"  {name:<24} {f'{rows} row(s)' if name.endswith(('.csv', '.jsonl')) else ''}".rstrip())
    verification = json.loads((directory / "audit_verification.json").read_text())
    head = verification["head"]
    click.echo(f"\nAudit trail  {'verified' if verification['ok'] else 'NOT VERIFIED'}: {verification['chain']['records']} "
               f"records; day head {head['count']}:{head['hash'][:16]}…; Merkle root {verification['day']['merkle_root'][:16]}…")
    for problem in verification["problems"][:5]:
        click.secho(f"  ! {problem}", fg="red")
    entries = [e for (_, date), e in current_entries(paths.archive()).items() if date == day]
    click.echo(f"\nArchive  {paths.archive_root}: {len(entries)} record(s) sealed for {day}")
    for entry in sorted(entries, key=lambda e: e.seq):
        corrects = f", corrects {entry.corrects[:12]}…" if entry.corrects else ""
        click.echo(f"  seq {entry.seq:<5} {entry.name:<24} sha256 {entry.sha256[:16]}…  kept until {entry.retention_until}{corrects}")


@compliance.command()
@_TRADER_OPTION
def verify(trader_mode: str) -> None:
    """Re-check the archive, the anchor, the sealed fills, orders and positions, the audit chain and its HMACs; exit 1 if
    anything was altered or is missing (one line each)."""
    from orchestration.defs.compliance.verify import verify_everything
    from trader.compliance import ComplianceError

    settings = prepare_environment(Settings())
    try:
        report = verify_everything(_paths(settings, trader_mode))
    except ComplianceError as err:
        fail(str(err))
        return
    for line in report.lines:
        click.echo(line)
    if report.ok:
        click.secho("OK: nothing was altered", fg="green")
        return
    click.secho(f"{len(report.problems)} problem(s):", fg="red")
    for problem in report.problems:
        click.secho(f"  ✗ {problem}", fg="red")
    raise SystemExit(1)


@compliance.command("adopt-anchor")
@_TRADER_OPTION
def adopt_anchor(trader_mode: str) -> None:
    """Start anchors/<mode>.jsonl for a home sealed before anchors existed (refused once the anchor exists)."""
    from orchestration.defs.compliance.anchoring import adopt
    from trader.compliance import ComplianceError

    settings = prepare_environment(Settings())
    paths = _paths(settings, trader_mode)
    try:
        anchors = adopt(paths)
    except ComplianceError as err:
        fail(str(err))
        return
    click.echo(f"anchored {len(anchors)} sealed head(s) into {paths.anchor_file}")


# -- the tax year: analyses written to reports/<YYYY>/ (not sealed) ------------------------------------------------

_YEAR_OPTION = click.option("--year", type=click.IntRange(1900, 9999), required=True, help="The tax year (YYYY).")


def _year_context(trader_mode: str, year: int):
    """``(paths, fills, actions)`` of ``trader_mode``'s store through 30 days after ``year``."""
    from orchestration.defs.compliance.tax_year import year_inputs

    settings = prepare_environment(Settings())
    paths = _paths(settings, trader_mode)
    fills, actions = year_inputs(paths.store_url, year)
    return settings, paths, fills, actions


@compliance.command("mtm-analysis")
@_YEAR_OPTION
@_TRADER_OPTION
@click.option("--marks", "marks_file", type=click.Path(path_type=Path), default=None,
              help="Year-end prices as a symbol,price CSV (default: marts.bars close of the year's last session).")
@click.option("--opening-marks", "opening_file", type=click.Path(path_type=Path), default=None,
              help="Prices at the previous year's last close, symbol,price CSV (default: marts.bars; needed only "
                   "for positions open on January 1).")
@click.option("--carryover", default="0", show_default=True, help="Capital loss carried in from earlier years (dollars).")
def mtm_analysis_command(year: int, trader_mode: str, marks_file: Path | None, opening_file: Path | None, carryover: str) -> None:
    """Compare the year under the default rules (wash sales, $3,000 capital-loss cap, carryover) with a §475(f)
    mark-to-market election; writes reports/<YYYY>/mtm_analysis.csv and .md (an analysis, not an election)."""
    from decimal import Decimal, InvalidOperation

    from orchestration.defs.compliance.tax_year import read_marks_csv, warehouse_marks, year_dir
    from orchestration.warehouse import warehouse_location
    from trader.compliance import ComplianceError
    from trader.compliance.mtm import mtm_analysis, write_mtm_analysis

    try:
        try:
            carried = Decimal(carryover.replace(",", "").replace("$", ""))
        except InvalidOperation:
            raise ComplianceError(f"--carryover: not an amount ({carryover!r})") from None
        settings, paths, fills, actions = _year_context(trader_mode, year)
        today = dt.datetime.now(dt.UTC).date()
        marks = read_marks_csv(marks_file) if marks_file else warehouse_marks(warehouse_location(settings), year, today=today)[1]
        opening = read_marks_csv(opening_file) if opening_file else _opening_marks(settings, fills, year, today)
        analysis = mtm_analysis(fills, year=year, year_end_marks=marks, opening_marks=opening, actions=actions,
                                carryover_in=carried)
    except ComplianceError as err:
        fail(str(err))
        return
    csv_path, md_path = write_mtm_analysis(analysis, year_dir(paths.reports_dir, year))
    click.echo(f"{'':<56} {'default':>14} {'mark-to-market':>15}")
    for item, default, mtm in analysis.rows():
        click.echo(f"{item:<56} {default:>14,.2f} {mtm:>15,.2f}")
    click.echo(f"difference (mark-to-market − default) in this year's income: {analysis.difference:,.2f}")
    click.echo(f"wrote {csv_path}\n      {md_path}")


def _opening_marks(settings: Settings, fills, year: int, today: dt.date) -> dict:
    """The previous year's closing prices from the warehouse, only when some fill predates ``year`` (else none needed)."""
    from orchestration.defs.compliance.tax_year import warehouse_marks
    from orchestration.warehouse import warehouse_location

    if not any(fill.trade_date.year < year for fill in fills):
        return {}
    return warehouse_marks(warehouse_location(settings), year - 1, today=today)[1]


@compliance.command("reconcile-1099b")
@click.argument("file", type=click.Path(path_type=Path))
@_YEAR_OPTION
@_TRADER_OPTION
def reconcile_1099b_command(file: Path, year: int, trader_mode: str) -> None:
    """Match a broker 1099-B CSV to our Form 8949 rows of the year; exit 1 on any mismatch or one-sided row.

    Writes reports/<YYYY>/reconcile_1099b.csv. Columns accepted: see trader/compliance/form1099b.py.
    """
    from orchestration.defs.compliance.tax_year import year_dir, year_disposals
    from trader.compliance import ComplianceError
    from trader.compliance.form1099b import our_rows, read_1099b, reconcile_1099b, write_reconciliation

    try:
        broker = read_1099b(file)
        _, paths, fills, actions = _year_context(trader_mode, year)
        result = reconcile_1099b(our_rows(year_disposals(fills, actions, year)), broker)
    except ComplianceError as err:
        fail(str(err))
        return
    path = write_reconciliation(result, year_dir(paths.reports_dir, year) / "reconcile_1099b.csv")
    click.echo(f"1099-B {file} vs Form 8949 {year}: {len(result.matches)} match(es), {len(result.mismatches)} mismatch(es), "
               f"{len(result.only_ours)} only in ours, {len(result.only_broker)} only on the 1099-B")
    for ours, theirs, diffs in result.mismatches:
        for name, mine, broker_value in diffs:
            click.secho(f"  ✗ {ours.symbol} {ours.qty} sold {ours.date_sold} ({theirs.source}, ours {ours.source}): "
                        f"{name}: ours {mine}, 1099-B {broker_value}", fg="red")
    for row in result.only_ours:
        click.secho(f"  ✗ {row.symbol} {row.qty} sold {row.date_sold} ({row.source}): not on the 1099-B", fg="red")
    for row in result.only_broker:
        click.secho(f"  ✗ {row.symbol} {row.qty} sold {row.date_sold} ({row.source}): not in our Form 8949", fg="red")
    click.echo(f"wrote {path}")
    if not result.ok:
        raise SystemExit(1)


@compliance.command("short-sales")
@_YEAR_OPTION
@_TRADER_OPTION
def short_sales_command(year: int, trader_mode: str) -> None:
    """Flag short sales against long shares held in another account: §1259 constructive sales (with the gain that
    would be recognised) and §1233(b)/(d); writes reports/<YYYY>/short_sale_flags.csv."""
    from orchestration.defs.compliance.tax_year import year_dir
    from trader.compliance import ComplianceError
    from trader.compliance.short_sales import short_sale_flags, write_short_sale_flags

    try:
        _, paths, fills, actions = _year_context(trader_mode, year)
    except ComplianceError as err:
        fail(str(err))
        return
    flags = short_sale_flags(fills, actions, year=year)
    path = write_short_sale_flags(flags, year_dir(paths.reports_dir, year) / "short_sale_flags.csv")
    for flag in flags:
        click.echo(f"  {flag.short_date} {flag.symbol}: short {flag.short_qty} in {flag.short_account} vs {flag.held_qty} held in "
                   f"{flag.held_account} ({flag.held_term}-term, gain {flag.gain:,.2f}): {flag.rules}")
    click.echo(f"{len(flags)} flag(s); wrote {path}")
