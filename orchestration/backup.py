"""Backup and restore of ``ALPHALINE_HOME``: every database as a consistent snapshot, every file with its checksum.

``alphaline backup`` writes ``<dest>/alphaline-<UTC time>/`` (default ``dest``: ``<home>-backups/`` beside the home,
never inside it):

* **DuckDB** (``warehouse.duckdb``): copied while this process holds a read-only connection, which DuckDB's
  file lock grants only when no process is writing, and which keeps writers out until the copy is done. A
  warehouse busy with a writer (a Dagster run) is refused with one line: retry when the run ends;
* **SQLite** (the trader's stores, Feast's online store, Dagster's run storage — found by their file header):
  SQLite's online backup API, a transactionally consistent copy even while the trader writes (WAL included);
* **everything else** (Feast's offline Parquet and registry, the BentoML model store, reports, the WORM
  archive): copied with their permission bits, so archived objects stay read-only (``0o444``);
* **PostgreSQL** (the servers profile, ``postgres=`` the ``ALPHALINE_POSTGRES_URL`` server): every profile database
  with ``pg_dump`` in one snapshot each, with its tables' row counts (:mod:`orchestration.backup_postgres`).

Each database is consistent in itself; for one instant across all of them, back up while no run and no trader is
active. ``MANIFEST.json`` (written last; a backup without it is incomplete) lists every file with its kind, size,
mode and SHA-256. The backup is assembled under a ``.partial`` name and renamed when complete.

``alphaline restore BACKUP`` checks every file against the manifest *before* touching the home, restores into
an empty (or absent) ``ALPHALINE_HOME`` — a non-empty one is refused unless ``--replace`` moves it aside (never
deleted) — then checks each database opens and each SQLite file passes ``quick_check``; a backup with PostgreSQL
dumps needs the servers profile, and each restored database must hold the row counts the manifest recorded. The CLI then runs the
WORM archive verification (``alphaline compliance verify``) for every trader store restored.

Example:
    >>> import tempfile, pathlib, datetime as dt
    >>> home = pathlib.Path(tempfile.mkdtemp()) / "home"
    >>> (home / "reports").mkdir(parents=True)
    >>> _ = (home / "reports" / "a.csv").write_text("x\\n")
    >>> made = backup(home, home.parent / "bk", now=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    >>> made.path.name, [e.path for e in made.entries]
    ('alphaline-20260102T030405Z', ['reports/a.csv'])
    >>> restored = restore(made.path, home.parent / "home2")
    >>> (home.parent / "home2" / "reports" / "a.csv").read_text()
    'x\\n'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from orchestration import backup_postgres
from orchestration.backup_postgres import DatabaseEntry
from orchestration.errors import ConfigError

MANIFEST = "MANIFEST.json"
FORMAT = 2
READABLE_FORMATS = (1, 2)  # 1: files only (before the PostgreSQL dumps)
Kind = Literal["duckdb", "sqlite", "file"]
_SQLITE_HEADER = b"SQLite format 3\x00"
#: Side files of a live database: their content is inside the snapshot of the database itself.
_TRANSIENT_SUFFIXES = ("-wal", "-shm", "-journal", ".duckdb.wal")
_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Entry:
    path: str  # relative to the home, POSIX separators
    kind: Kind
    size: int
    mode: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class Backup:
    path: Path
    created_at: str
    entries: list[Entry]
    databases: list[DatabaseEntry] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries) + sum(d.size for d in self.databases)


def default_destination(home: Path) -> Path:
    """``<home>-backups`` beside the home."""
    return home.with_name(f"{home.name}-backups")


def _kind(path: Path) -> Kind:
    if path.suffix == ".duckdb":
        return "duckdb"
    with path.open("rb") as f:
        return "sqlite" if f.read(16) == _SQLITE_HEADER else "file"


def _files(home: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(home):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(_TRANSIENT_SUFFIXES):
                yield Path(root) / name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_duckdb(source: Path, target: Path) -> None:
    import duckdb

    try:
        con = duckdb.connect(str(source), read_only=True)  # shared lock: no writer now, none until closed
    except duckdb.IOException as exc:
        raise ConfigError(f"{source}: cannot take a consistent snapshot, a process is writing it "
                          f"(a Dagster run?); retry when it has finished ({str(exc).splitlines()[0][:160]})") from None
    try:
        shutil.copy2(source, target)
        wal = source.with_name(source.name + ".wal")
        if wal.exists():
            shutil.copy2(wal, target.with_name(target.name + ".wal"))
    finally:
        con.close()


def _copy_sqlite(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{source}: cannot back up this SQLite database ({exc})") from None
    finally:
        dst.close()
        src.close()
    os.chmod(target, stat.S_IMODE(source.stat().st_mode))


def _copy(source: Path, home: Path, into: Path) -> Entry:
    rel = source.relative_to(home)
    target = into / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    kind = _kind(source)
    {"duckdb": _copy_duckdb, "sqlite": _copy_sqlite, "file": shutil.copy2}[kind](source, target)
    return Entry(path=rel.as_posix(), kind=kind, size=target.stat().st_size, mode=stat.S_IMODE(target.stat().st_mode),
                 sha256=_sha256(target))


def backup(home: Path, destination: Path, *, now: dt.datetime, postgres: str | None = None) -> Backup:
    """Snapshot ``home`` (and the profile databases on the ``postgres`` server) into ``destination/alphaline-<now>/``.

    Raises:
        ConfigError: the home is missing or empty, the destination lies inside the home or exists, or a database
            cannot be snapshotted (one line naming it and why).
    """
    home, destination = home.resolve(), destination.resolve()
    if not home.is_dir() or not any(home.iterdir()):
        raise ConfigError(f"ALPHALINE_HOME={home}: nothing to back up (no such folder, or it is empty)")
    if destination == home or home in destination.parents:
        raise ConfigError(f"--to {destination}: inside ALPHALINE_HOME; a backup must live outside what it backs up")
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    final = destination / f"alphaline-{stamp}"
    partial = final.with_name(final.name + ".partial")
    if final.exists() or partial.exists():
        raise ConfigError(f"{final}: already exists (one backup per second)")
    partial.mkdir(parents=True)
    try:
        entries = [_copy(source, home, partial) for source in _files(home)]
        databases = backup_postgres.dump(postgres, partial, _sha256) if postgres else []
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # our own half-written copy: it must never pass for a backup
        raise
    created = now.astimezone(dt.UTC).isoformat()
    manifest = {"format": FORMAT, "created_at": created, "home": str(home), "files": [asdict(e) for e in entries],
                "databases": [asdict(d) for d in databases]}
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    partial.rename(final)
    return Backup(path=final, created_at=created, entries=entries, databases=databases)


def read_manifest(path: Path) -> Backup:
    """The backup at ``path``, every file checked against its manifest entry (``ConfigError`` names the first bad one)."""
    manifest_path = path / MANIFEST
    try:
        data = json.loads(manifest_path.read_text())
        entries = [Entry(**e) for e in data["files"]]
        databases = [DatabaseEntry(**d) for d in data.get("databases", [])]
        created = str(data["created_at"])
    except FileNotFoundError:
        raise ConfigError(f"{path}: not a complete backup (no {MANIFEST})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{manifest_path}: unreadable manifest ({type(exc).__name__}: {exc})") from None
    if data.get("format") not in READABLE_FORMATS:
        raise ConfigError(f"{manifest_path}: format {data.get('format')!r}, this version reads {READABLE_FORMATS}")
    for rel, size, digest in [(e.path, e.size, e.sha256) for e in entries] + [(d.file, d.size, d.sha256) for d in databases]:
        file = path / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ConfigError(f"{manifest_path}: entry {rel!r} points outside the backup")
        if not file.is_file():
            raise ConfigError(f"{path}: {rel}: missing from the backup")
        if file.stat().st_size != size or _sha256(file) != digest:
            raise ConfigError(f"{path}: {rel}: checksum differs from the manifest (altered or truncated)")
    return Backup(path=path, created_at=created, entries=entries, databases=databases)


def _check_databases(home: Path, entries: list[Entry]) -> list[str]:
    import duckdb

    problems = []
    for e in entries:
        path = home / e.path
        try:
            if e.kind == "sqlite":
                con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    verdict = con.execute("pragma quick_check").fetchone()[0]
                finally:
                    con.close()
                if verdict != "ok":
                    problems.append(f"{e.path}: SQLite quick_check: {verdict}")
            elif e.kind == "duckdb":
                duckdb.connect(str(path), read_only=True).close()
        except (sqlite3.Error, duckdb.Error) as exc:
            problems.append(f"{e.path}: does not open ({exc})")
    return problems


def restore(path: Path, home: Path, *, replace: bool = False, now: dt.datetime | None = None,
            postgres: str | None = None) -> tuple[Backup, list[str]]:
    """Restore the backup at ``path`` into ``home`` (its dumps onto the ``postgres`` server); returns the backup and
    the database problems found after it.

    Raises:
        ConfigError: the backup is incomplete or altered, it holds dumps and no server is given, or ``home`` (or a
            target database) holds something and ``replace`` is not set — all checked before anything is written.
    """
    made = read_manifest(path.resolve())
    backup_postgres.check_restorable(postgres, made.databases, replace=replace)
    home = home.resolve()
    if home.exists() and not home.is_dir():
        raise ConfigError(f"ALPHALINE_HOME={home}: is a file, not a folder")
    if home.exists() and any(home.iterdir()):
        if not replace:
            raise ConfigError(f"ALPHALINE_HOME={home}: not empty; restore into an empty home, or add --replace "
                              "to move the current one aside (it is kept, never deleted)")
        when = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
        home.rename(home.with_name(f"{home.name}.replaced-{when}"))
    staging = home.with_name(f"{home.name}.restoring")
    if staging.exists():
        raise ConfigError(f"{staging}: left over from an interrupted restore; look inside, then remove it")
    staging.mkdir(parents=True)
    for e in made.entries:
        target = staging / e.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(made.path / e.path, target)
        os.chmod(target, e.mode)
    if home.exists():
        home.rmdir()  # empty (checked above)
    staging.rename(home)
    problems = _check_databases(home, made.entries)
    if made.databases:
        problems += backup_postgres.load(postgres, made.path, made.databases, replace=replace)
    return made, problems
