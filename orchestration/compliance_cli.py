"""``alphaline compliance``: close a trading day and re-check everything ever sealed.

Examples::

    alphaline compliance run --date 2024-03-05   # ledger, reports, audit check, WORM archive for that session
    alphaline compliance verify --trader sim     # archive, anchor, fills, orders, positions, audit chain and HMACs;
                                                 # exit 1 naming what was altered or is missing
    alphaline compliance adopt-anchor            # once, for a home sealed before anchors/<mode>.jsonl existed

``run`` goes through Dagster (the ``eod_compliance_job``, one partition), so the run, its
checks and its metadata show up in ``make ui``; ``verify`` is plain Python and reads only.
"""

from __future__ import annotations

import datetime as dt
import json

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
    """End-of-day compliance: tax lots, wash sales, Form 8949, audit trail, WORM archive."""


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
    from trader.compliance import ComplianceError

    try:
        marks = closing_marks(str(settings.warehouse_path), day)
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
    from orchestration.defs.compliance.eod import SEALED, current_entries

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
