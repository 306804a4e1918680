"""A write-once (WORM) archive: content-addressed read-only files and a hash-chained manifest.

Layout under the root (default ``$ALPHALINE_HOME/archive/``)::

    objects/<sha256[:2]>/<sha256>   the bytes of each archived record, mode 0o444, never rewritten
    manifest.jsonl                  one trader.audit.AuditRecord per line, kind "archive", hash-chained
    manifest.lock                   serialises writers (two partitions archiving at once)

Each manifest entry's payload carries ``name``, ``date``, ``sha256``, ``size``,
``retention_until`` (``date`` + 6 years by default), ``corrects`` (the hash of the entry it
supersedes, or null) and free-form ``meta`` (e.g. the day's audit chain head and Merkle root).

Rules:

* **Write once.** An object is written to a temporary file, fsynced, made read-only and
  only then renamed into place (so the final path is never writable, even briefly), and
  the directory is fsynced. A record is identified by ``(name, date)``; archiving different
  bytes under a name and date that already exist raises :class:`WormViolation`.
* **Corrections append.** A new version is archived with ``corrects=<hash of the entry it
  supersedes>``; the original stays, and :meth:`WormArchive.latest` follows the corrections.
* **Idempotent.** Archiving the same bytes under the same name and date again returns the
  existing entry and writes nothing, not even a manifest line, so re-running a day leaves
  the archive as it was. The same bytes under another name get a new entry that points to
  the existing object (no second file).
* **No delete.** :meth:`WormArchive.delete` always refuses; retention is recorded, and
  purging expired records is left to a separate, audited procedure.

:meth:`WormArchive.verify` re-hashes every object and re-walks the manifest chain and
names each object or entry that was altered, is missing, or is out of order.

Example:
    >>> import datetime as dt, tempfile
    >>> archive = WormArchive(Path(tempfile.mkdtemp()))
    >>> entry = archive.put(b"a,b\\n1,2\\n", name="tax_lots.csv", date=dt.date(2024, 1, 2))
    >>> entry.retention_until.isoformat(), archive.put(b"a,b\\n1,2\\n", name="tax_lots.csv", date=dt.date(2024, 1, 2)) == entry
    ('2030-01-02', True)
    >>> archive.put(b"a,b\\n1,3\\n", name="tax_lots.csv", date=dt.date(2024, 1, 2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    trader.compliance.errors.WormViolation: archive: tax_lots.csv (2024-01-02) is already archived with different content ...
    >>> archive.verify().ok
    True
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from trader.audit import GENESIS, AuditRecord, verify_chain
from trader.compliance.audit_check import chain_problems
from trader.compliance.errors import ComplianceError, WormViolation
from trader.compliance.holding import add_years
from trader.compliance.names import check_name

KIND = "archive"
RETENTION_YEARS = 6
READ_ONLY = 0o444


def default_root() -> Path:
    """``$ALPHALINE_HOME/archive`` (``ALPHALINE_HOME`` defaults to ``.alphaline``), read when called."""
    return Path(os.environ.get("ALPHALINE_HOME", ".alphaline")) / "archive"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class ArchiveEntry:
    """One manifest entry: which bytes were archived, under what name and date, kept until when."""

    seq: int
    hash: str
    ts: str
    name: str
    date: dt.date
    sha256: str
    size: int
    retention_until: dt.date
    corrects: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: AuditRecord) -> ArchiveEntry:
        p = record.payload
        return cls(seq=record.seq, hash=record.hash, ts=record.ts, name=p["name"], date=dt.date.fromisoformat(p["date"]),
                   sha256=p["sha256"], size=p["size"], retention_until=dt.date.fromisoformat(p["retention_until"]),
                   corrects=p.get("corrects"), meta=p.get("meta") or {})


@dataclass(frozen=True)
class ArchiveVerification:
    """Outcome of :meth:`WormArchive.verify`: ``problems`` names every file or entry that does not check out."""

    ok: bool
    entries: int
    objects: int
    head: str
    problems: tuple[str, ...] = ()


class WormArchive:
    """The write-once archive rooted at ``root``.

    Args:
        root: the archive directory (default :func:`default_root`, resolved now, not at import).
        retention_years: how long records are kept, recorded per entry.
        clock: returns the current UTC time (injected in tests).
    """

    def __init__(self, root: Path | None = None, *, retention_years: int = RETENTION_YEARS,
                 clock: Callable[[], dt.datetime] = _utcnow):
        self.root = Path(root) if root is not None else default_root()
        self.retention_years = retention_years
        self._clock = clock

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.jsonl"

    def object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    # -- writing --------------------------------------------------------------------------

    def put(self, data: bytes, *, name: str, date: dt.date, corrects: str | None = None,
            meta: Mapping[str, Any] | None = None) -> ArchiveEntry:
        """Archive ``data`` as record ``name`` of ``date``; see the module docstring for the rules.

        Raises:
            ComplianceError: ``name`` is not a plain file name (:func:`check_name`).
            WormViolation: different bytes for an existing ``(name, date)`` without ``corrects``,
                or a correction of an entry that was already corrected.
            ComplianceError: ``corrects`` names no entry, or the manifest chain is broken.
        """
        check_name(name)
        sha = hashlib.sha256(data).hexdigest()
        with self._locked():
            entries = self._entries_for_append()
            existing = _reuse(entries, name=name, date=date, sha=sha, corrects=corrects)
            if existing is not None:
                return existing
            self._write_object(sha, data)
            payload = {"name": name, "date": date.isoformat(), "sha256": sha, "size": len(data),
                       "retention_until": add_years(date, self.retention_years).isoformat(),
                       "corrects": corrects, "meta": dict(meta or {})}
            prev = entries[-1].hash if entries else GENESIS
            record = AuditRecord.create(seq=len(entries) + 1, ts=self._clock(), kind=KIND, payload=payload, prev_hash=prev)
            self._append(record)
            return ArchiveEntry.from_record(record)

    def put_file(self, path: Path, *, date: dt.date, name: str | None = None, corrects: str | None = None,
                 meta: Mapping[str, Any] | None = None) -> ArchiveEntry:
        """Archive a file's bytes (``name`` defaults to the file name); the name is checked as in :meth:`put`."""
        path = Path(path)
        check_name(path.name if name is None else name)  # before reading: a refused name reads nothing
        return self.put(path.read_bytes(), name=path.name if name is None else name, date=date, corrects=corrects, meta=meta)

    def delete(self, key: str) -> NoReturn:
        """Always refuses: archived records are never deleted through this API.

        Raises:
            WormViolation: every time, naming the record and how long it is retained.
        """
        found = [e for e in self.entries() if key in (e.hash, e.sha256, e.name)]
        until = max((e.retention_until for e in found), default=None)
        kept = f" (retained until {until.isoformat()})" if until else ""
        raise WormViolation(f"archive: {key}: deleting an archived record is not allowed{kept}")

    # -- reading --------------------------------------------------------------------------

    def entries(self) -> list[ArchiveEntry]:
        """Every manifest entry, oldest first (unchecked: use :meth:`verify` to check)."""
        return [ArchiveEntry.from_record(record) for record in self._records()]

    def latest(self, name: str, date: dt.date) -> ArchiveEntry | None:
        """The current version of a record: the last entry of its correction chain."""
        return _latest(self.entries(), name, date)

    def head(self) -> tuple[int, str]:
        """``(entry count, hash of the last entry)``: publish it to detect a rewritten manifest later."""
        records = self._records()
        return len(records), records[-1].hash if records else GENESIS

    def read(self, sha256: str) -> bytes:
        """The archived bytes with this hash.

        Raises:
            ComplianceError: no such object, or its bytes no longer match the hash.
        """
        path = self.object_path(sha256)
        if not path.exists():
            raise ComplianceError(f"archive: object {sha256}: missing")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ComplianceError(f"archive: object {sha256}: content does not match its hash (altered)")
        return data

    def verify(self, *, expected_count: int | None = None, expected_head: str | None = None) -> ArchiveVerification:
        """Re-hash every object and re-walk the manifest chain; name every problem found.

        Args:
            expected_count, expected_head: a head published earlier (:meth:`head`); the
                manifest must still contain that entry at that position.
        """
        records, problems = self._parse_manifest()
        problems += chain_problems(records, label="manifest entry", plural="manifest entries", expected_kind=KIND,
                                   published=[(expected_count, expected_head)] if expected_count else ())
        problems += self._object_problems([ArchiveEntry.from_record(r) for r in records if _is_entry(r)])
        objects = sum(1 for _ in self._object_files())
        return ArchiveVerification(ok=not problems, entries=len(records), objects=objects,
                                   head=records[-1].hash if records else GENESIS, problems=tuple(problems))

    # -- internals ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "manifest.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _records(self) -> list[AuditRecord]:
        records, problems = self._parse_manifest()
        if problems:
            raise ComplianceError(f"archive: {problems[0]}; run verify")
        return records

    def _entries_for_append(self) -> list[ArchiveEntry]:
        records = self._records()
        # Never extend a chain that no longer checks out: the new entry would seal the tampering.
        check = verify_chain(records)
        if not check.ok:
            raise ComplianceError(f"archive: manifest chain is broken ({check.reason}); run verify")
        return [ArchiveEntry.from_record(r) for r in records]

    def _parse_manifest(self) -> tuple[list[AuditRecord], list[str]]:
        if not self.manifest_path.exists():
            return [], []
        records, problems = [], []
        for number, line in enumerate(self.manifest_path.read_text().splitlines(), start=1):
            try:
                records.append(AuditRecord(**json.loads(line)))
            except (ValueError, TypeError) as err:
                problems.append(f"manifest line {number}: unreadable ({type(err).__name__}: {str(err)[:80]})")
        return records, problems

    def _append(self, record: AuditRecord) -> None:
        line = json.dumps(asdict(record), sort_keys=True, separators=(",", ":")) + "\n"
        with self.manifest_path.open("a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def _write_object(self, sha: str, data: bytes) -> None:
        path = self.object_path(sha)
        if path.exists():  # content-addressed: the bytes there are these bytes (verify checks that)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, READ_ONLY)
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a crash
        finally:
            os.close(dir_fd)

    def _object_files(self) -> Iterator[Path]:
        base = self.root / "objects"
        if base.exists():
            yield from (p for p in sorted(base.glob("*/*")) if p.is_file() and not p.name.startswith(".tmp-"))

    def _object_problems(self, entries: list[ArchiveEntry]) -> list[str]:
        problems, seen = [], set()
        for entry in entries:
            label = f"object {entry.sha256} ({entry.name}, {entry.date.isoformat()}, entry seq {entry.seq})"
            if entry.sha256 in seen:
                continue
            seen.add(entry.sha256)
            path = self.object_path(entry.sha256)
            if not path.is_file():
                problems.append(f"{label}: missing")
                continue
            digest, size = _hash_file(path)
            if digest != entry.sha256 or size != entry.size:
                problems.append(f"{label}: altered (content now hashes to {digest}, {size} bytes)")
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o222:
                problems.append(f"{label}: writable (mode {oct(mode)}); archived files must be read-only")
        for path in self._object_files():
            if path.name not in seen:
                problems.append(f"object file {path.relative_to(self.root)}: not in the manifest")
        return problems


def _is_entry(record: AuditRecord) -> bool:
    return record.kind == KIND and {"name", "date", "sha256", "size", "retention_until"} <= record.payload.keys()


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _latest(entries: list[ArchiveEntry], name: str, date: dt.date) -> ArchiveEntry | None:
    corrected = {e.corrects for e in entries if e.corrects}
    current = [e for e in entries if e.name == name and e.date == date and e.hash not in corrected]
    return current[-1] if current else None


def _reuse(entries: list[ArchiveEntry], *, name: str, date: dt.date, sha: str, corrects: str | None) -> ArchiveEntry | None:
    """The entry to return for an idempotent repeat, or ``None`` to append; raises when the put is not allowed."""
    if corrects is None:
        current = _latest(entries, name, date)
        if current is None:
            return None
        if current.sha256 == sha:
            return current
        raise WormViolation(f"archive: {name} ({date.isoformat()}) is already archived with different content "
                            f"(sha256 {current.sha256[:12]}…); append a correction with corrects=<entry hash> instead")
    target = next((e for e in entries if e.hash == corrects), None)
    if target is None:
        raise ComplianceError(f"archive: corrects: no manifest entry has hash {corrects}")
    if (target.name, target.date) != (name, date):
        raise ComplianceError(f"archive: corrects: entry seq {target.seq} is {target.name} ({target.date.isoformat()}), "
                              f"not {name} ({date.isoformat()})")
    repeat = next((e for e in entries if e.corrects == corrects and e.sha256 == sha), None)
    if repeat is not None:
        return repeat
    successor = next((e for e in entries if e.corrects == corrects), None)
    if successor is not None:
        raise WormViolation(f"archive: entry {corrects[:12]}… was already corrected by entry seq {successor.seq}; "
                            "correct the latest version instead")
    if target.sha256 == sha:
        raise ComplianceError(f"archive: corrects: the correction of entry seq {target.seq} has the same content")
    return None
