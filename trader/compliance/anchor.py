"""Anchors: each sealed day's audit-chain head and Merkle root, kept outside the WORM archive.

The archive holds the heads it publishes, so deleting the archive used to delete the evidence
as well. The EOD run therefore also appends each sealed day to an append-only, hash-chained
anchor file, one per trader mode (``$ALPHALINE_HOME/anchors/<mode>.jsonl``), and, when
``ALPHALINE_ANCHOR_URLS`` names apprise URLs (a webhook, an e-mail address: see
:mod:`trader.alerts`), sends the same line there, off the machine.

Each line is a :class:`trader.audit.AuditRecord` of kind ``"anchor"`` chained to the line
before it; its payload::

    {"date": "2024-03-05", "mode": "sim", "audit_head": {"count": 412, "hash": "…"},
     "merkle_root": "…", "first_signed": 17}

``first_signed`` is the first audit record carrying an HMAC (:mod:`trader.audit_hmac`), or
null: once anchored, removing every HMAC from the store is caught.

What it protects against: deleting or rewriting the archive (the anchor still names every
sealed day and head), editing or deleting an anchor line (the chain breaks, or a day sealed in
the archive is missing from the anchor), deleting the anchor file (the archive's days are not
anchored). An attacker who can rewrite both the archive and the anchor file consistently is
caught only by the external copy.

Example:
    >>> import datetime as dt, tempfile
    >>> from pathlib import Path
    >>> log = AnchorLog(Path(tempfile.mkdtemp()) / "anchors" / "sim.jsonl")
    >>> anchor, new = log.append(date=dt.date(2024, 3, 5), mode="sim", head=(3, "ab" * 32), merkle_root="cd" * 32)
    >>> new, anchor.seq, log.append(date=dt.date(2024, 3, 5), mode="sim", head=(3, "ab" * 32), merkle_root="cd" * 32)[1]
    (True, 1, False)
    >>> log.verify()
    []
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from trader.audit import GENESIS, AuditRecord, verify_chain
from trader.compliance.audit_check import PublishedHead, chain_problems
from trader.compliance.errors import ComplianceError

KIND = "anchor"
URLS_ENV = "ALPHALINE_ANCHOR_URLS"


def anchor_file(home: Path, mode: str) -> Path:
    """``<home>/anchors/<mode>.jsonl``: the anchor of one trader mode's store."""
    return Path(home) / "anchors" / f"{mode}.jsonl"


@dataclass(frozen=True)
class Anchor:
    """One anchor line: the day, whose store, the day's audit head and Merkle root."""

    line: int
    seq: int
    hash: str
    date: dt.date
    mode: str
    head: PublishedHead
    merkle_root: str
    first_signed: int | None

    @classmethod
    def from_record(cls, line: int, record: AuditRecord) -> Anchor:
        p = record.payload
        return cls(line=line, seq=record.seq, hash=record.hash, date=dt.date.fromisoformat(p["date"]), mode=str(p["mode"]),
                   head=PublishedHead(int(p["audit_head"]["count"]), str(p["audit_head"]["hash"])),
                   merkle_root=str(p["merkle_root"]), first_signed=p.get("first_signed"))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AnchorLog:
    """The append-only anchor file at ``path`` (created with its directory on the first append)."""

    def __init__(self, path: Path, *, clock: Callable[[], dt.datetime] = _utcnow):
        self.path = Path(path)
        self._clock = clock

    def exists(self) -> bool:
        return self.path.exists()

    def records(self) -> tuple[list[tuple[int, AuditRecord]], list[str]]:
        """``(line number, record)`` of every readable line, and one problem per unreadable line."""
        if not self.path.exists():
            return [], []
        records, problems = [], []
        for number, text in enumerate(self.path.read_text().splitlines(), start=1):
            try:
                records.append((number, AuditRecord(**json.loads(text))))
            except (ValueError, TypeError) as err:
                problems.append(f"line {number}: unreadable ({type(err).__name__}: {str(err)[:80]})")
        return records, problems

    def anchors(self) -> list[Anchor]:
        """Every well-formed anchor line, oldest first (unchecked: :meth:`verify` checks)."""
        out = []
        for number, record in self.records()[0]:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                out.append(Anchor.from_record(number, record))
        return out

    def verify(self) -> list[str]:
        """Every line that is unreadable, altered, missing, out of order or not an anchor, by line and seq."""
        numbered, problems = self.records()
        records = [r for _, r in numbered]
        problems += chain_problems(records, label="anchor line", plural="anchor lines", expected_kind=KIND)
        for number, record in numbered:
            try:
                Anchor.from_record(number, record)
            except (KeyError, TypeError, ValueError) as err:
                problems.append(f"line {number}: not an anchor ({type(err).__name__}: {err})")
        return problems

    def append(self, *, date: dt.date, mode: str, head: PublishedHead | tuple[int, str], merkle_root: str,
               first_signed: int | None = None) -> tuple[Anchor, bool]:
        """Anchor a sealed day; ``(anchor, True)`` if a line was written, ``(existing, False)`` if it was already there.

        A day sealed again with another head (a correction) gets a new line; the old one stays.

        Raises:
            ComplianceError: the anchor file no longer verifies (nothing is appended to it).
        """
        count, digest = (head.count, head.hash) if isinstance(head, PublishedHead) else (int(head[0]), str(head[1]))
        payload = {"date": date.isoformat(), "mode": mode, "audit_head": {"count": count, "hash": digest},
                   "merkle_root": merkle_root, "first_signed": first_signed}
        with self._locked():
            numbered, problems = self.records()
            records = [r for _, r in numbered]
            check = verify_chain(records)
            if problems or not check.ok:
                raise ComplianceError(f"anchor {self.path}: {(problems or [check.reason])[0]}; not appending "
                                      "(run `alphaline compliance verify`)")
            for number, record in numbered:
                if record.payload == payload:
                    return Anchor.from_record(number, record), False
            record = AuditRecord.create(seq=len(records) + 1, ts=self._clock(), kind=KIND, payload=payload,
                                        prev_hash=records[-1].hash if records else GENESIS)
            line = json.dumps(asdict(record), sort_keys=True, separators=(",", ":")) + "\n"
            with self.path.open("a") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            return Anchor.from_record(len(records) + 1, record), True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_name(self.path.name + ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def anchor_urls(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The apprise URLs in ``ALPHALINE_ANCHOR_URLS`` (validated; one line naming the item if one is not a URL).

    Raises:
        ComplianceError: an item apprise cannot send to.
    """
    from trader.alerts import Alerter
    from trader.errors import TraderConfigError

    text = (os.environ if env is None else env).get(URLS_ENV, "").strip()
    if not text:
        return ()
    from apprise.utils.parse import parse_urls

    try:
        return Alerter.from_urls(parse_urls(text), source="environment", field=URLS_ENV).urls
    except TraderConfigError as err:
        raise ComplianceError(str(err)) from None


def publish(anchor: Anchor, *, urls: tuple[str, ...], timeout_s: float = 10.0) -> bool:
    """Send an anchor line to ``urls`` through the alerting channel; ``True`` if every destination took it.

    The body is the anchor as JSON (what a receiver keeps, to check the local anchor against later);
    a receiver that is down is logged, never raised (the local anchor is already written).
    """
    from trader.alerts import Alerter

    if not urls:
        return False
    body = json.dumps({"line": anchor.line, "seq": anchor.seq, "hash": anchor.hash, "date": anchor.date.isoformat(),
                       "mode": anchor.mode, "audit_head": {"count": anchor.head.count, "hash": anchor.head.hash},
                       "merkle_root": anchor.merkle_root, "first_signed": anchor.first_signed}, sort_keys=True)
    title = f"Alphaline anchor {anchor.mode} {anchor.date.isoformat()}: head {anchor.head.count}:{anchor.head.hash[:16]}"
    return Alerter(urls, timeout_s=timeout_s).send(title, body, level="info")
