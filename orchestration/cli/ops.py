"""``alphaline backup`` / ``alphaline restore`` (:mod:`orchestration.backup`) and ``alphaline drill``
(:mod:`orchestration.drill`).

Examples::

    alphaline backup                                   # → <home>-backups/alphaline-<UTC time>/
    alphaline backup --to /mnt/backups
    ALPHALINE_HOME=/srv/alphaline alphaline restore /mnt/backups/alphaline-20261207T040000Z
    alphaline restore BACKUP --replace                 # the current home is moved aside, never deleted
    alphaline drill                                    # scripted faults against a sandbox home
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from orchestration.settings import Settings, prepare_environment, require_folder

TRADER_STORES = {"trader.db": "live", "paper.db": "paper", "sim.db": "sim", "dry-run.db": "dry-run"}


@click.command()
@click.option("--to", "destination", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write the backup into [default: <ALPHALINE_HOME>-backups beside the home].")
def backup(destination: Path | None) -> None:
    """Snapshot ALPHALINE_HOME: DuckDB, SQLite (trader, Feast online, Dagster), Feast files, models, reports, archive."""
    from orchestration.backup import backup as take
    from orchestration.backup import default_destination

    settings = Settings()
    require_folder(settings)
    made = take(settings.home, destination or default_destination(settings.home), now=dt.datetime.now(dt.UTC),
                postgres=_server(settings))
    kinds = {k: sum(e.kind == k for e in made.entries) for k in ("duckdb", "sqlite", "file")}
    click.echo(f"backup {made.path}")
    click.echo(f"  {len(made.entries)} files, {made.size / 1e6:.1f} MB: {kinds['duckdb']} DuckDB and {kinds['sqlite']} SQLite "
               f"database snapshot(s), {kinds['file']} other file(s); SHA-256 of each in MANIFEST.json")
    if made.databases:
        click.echo(f"  {len(made.databases)} PostgreSQL database(s) dumped (pg_dump): "
                   + ", ".join(f"{d.database} ({sum(d.tables.values())} rows)" for d in made.databases))
    click.echo(f"  restore: ALPHALINE_HOME=... alphaline restore {made.path}")


@click.command()
@click.argument("backup_dir", type=click.Path(path_type=Path))
@click.option("--replace", is_flag=True, help="Move a non-empty ALPHALINE_HOME aside (kept, never deleted) and restore.")
def restore(backup_dir: Path, replace: bool) -> None:
    """Restore a backup into ALPHALINE_HOME, then verify the databases and the WORM archive (exit 1 on a problem)."""
    from orchestration.backup import restore as put_back

    settings = Settings()
    made, problems = put_back(backup_dir, settings.home, replace=replace, postgres=_server(settings))
    click.echo(f"restored {len(made.entries)} files ({made.size / 1e6:.1f} MB) taken {made.created_at} into {settings.home}")
    if made.databases:
        click.echo(f"restored {len(made.databases)} PostgreSQL database(s) (pg_restore), row counts checked: "
                   + ", ".join(d.store for d in made.databases))
    prepare_environment(settings)
    problems += _verify_archive(settings)
    if problems:
        click.secho(f"{len(problems)} problem(s) after the restore:", fg="red")
        for problem in problems:
            click.secho(f"  ✗ {problem}", fg="red")
        raise SystemExit(1)
    click.secho("OK: every file matched its checksum, every database opens, the WORM archive verifies", fg="green")


def _server(settings: Settings) -> str | None:
    """The servers profile's PostgreSQL server (its databases go into the backup), ``None`` embedded."""
    from orchestration.deployment import check, servers

    check(settings)
    found = servers(settings)
    return found.postgres if found else None


def _verify_archive(settings: Settings) -> list[str]:
    """``alphaline compliance verify`` for every trader store in the home (the live one when there is none)."""
    from orchestration.defs.compliance.resources import ComplianceResource
    from orchestration.defs.compliance.verify import verify_everything
    from trader.compliance import ComplianceError

    stores = [name for name in TRADER_STORES if (settings.home / "trader" / name).is_file()] or ["trader.db"]
    problems: list[str] = []
    for name in stores:
        paths = ComplianceResource.for_home(settings.home, store_url=f"sqlite:///{settings.home / 'trader' / name}",
                                            mode=TRADER_STORES[name]).paths()  # its own anchor file
        try:
            report = verify_everything(paths)
        except ComplianceError as err:
            problems.append(f"compliance verify --trader {TRADER_STORES[name]}: {err}")
            continue
        click.echo(f"compliance verify --trader {TRADER_STORES[name]}:")
        for line in report.lines:
            click.echo(f"  {line}")
        problems += [f"compliance verify --trader {TRADER_STORES[name]}: {p}" for p in report.problems]
    return problems



@click.command()
@click.option("--only", default=None, metavar="NAME[,NAME...]", help="Run only these drills (default: all).")
@click.option("--keep", "keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build the sandbox homes in this (new) folder and keep them [default: a temporary folder, removed].")
def drill(only: str | None, keep: Path | None) -> None:
    """Scripted faults against sandbox homes (never ALPHALINE_HOME); prints what was survived, exit 1 if anything was not."""
    import shutil
    import tempfile

    from orchestration.drill import DRILLS, DrillResult, run_drills
    from orchestration.errors import ConfigError

    known = [d.name for d in DRILLS]
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    if unknown := sorted(set(names or ()) - set(known)):
        raise ConfigError(f"--only {only!r}: unknown drill(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise ConfigError(f"--keep {keep}: not empty; name a new folder")
    root = keep.resolve() if keep else Path(tempfile.mkdtemp(prefix="alphaline-drill-"))
    root.mkdir(parents=True, exist_ok=True)
    faults = {d.name: d.fault for d in DRILLS}

    def show(result: DrillResult) -> None:
        verdict = click.style("survived", fg="green") if result.survived else click.style("NOT survived", fg="red")
        click.echo(f"{result.name:<18} {verdict}  — {faults[result.name]}")
        for fact in result.facts:
            click.echo(f"{'':<20}{fact}")

    click.echo(f"drills in {root}")
    try:
        results = run_drills(root, names, on_result=show)
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    failed = [r.name for r in results if not r.survived]
    click.echo(f"{len(results) - len(failed)} of {len(results)} drills survived" + (f"; not: {', '.join(failed)}" if failed else ""))
    if failed:
        raise SystemExit(1)


__all__ = ["backup", "drill", "restore"]
