"""End-of-day verification of the trader's hash-chained audit log (``trader.audit``).

:func:`verify_audit_trail` walks the whole chain with :func:`trader.audit.verify_chain`,
names every record that does not check out, checks that heads published on earlier days
are still in the chain at their position, and computes what this day publishes:

* the **chain head** at the end of the day: ``(count, hash)`` of the last record up to the
  day. A later rewrite of anything before it (a forged record inserted with every hash
  recomputed, a truncation) no longer reproduces it;
* the **Merkle root** (RFC 6962, :mod:`trader.compliance.merkle`) of the day's records, so
  one record can later be proven part of the day with a short audit path.

Merkle leaf choice: each leaf's data is the record's ``hash`` as 32 raw bytes
(``bytes.fromhex(record.hash)``). That hash already commits to the record's content *and*
its place in the chain (it covers ``prev_hash``), so the root commits to both, leaves are
fixed-size, and an inclusion proof needs only the hash, not the record's payload.

A record's day is its trade date in New York, as for fills (``ts`` is stored in UTC).

Example:
    >>> import datetime as dt
    >>> from trader.audit import GENESIS
    >>> ts = dt.datetime(2024, 1, 2, 15, tzinfo=dt.UTC)
    >>> first = AuditRecord.create(seq=1, ts=ts, kind="fill", payload={"qty": "1"}, prev_hash=GENESIS)
    >>> second = AuditRecord.create(seq=2, ts=ts, kind="fill", payload={"qty": "2"}, prev_hash=first.hash)
    >>> report = verify_audit_trail([first, second], day=dt.date(2024, 1, 2))
    >>> report.ok, report.head == PublishedHead(2, second.hash)
    (True, True)
    >>> verify_audit_trail([first], day=dt.date(2024, 1, 2), published=[report.head]).problems[0]
    'the chain has 1 records, fewer than the 2 of a published head (records were removed)'
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trader.audit import GENESIS, AuditRecord, verify_chain
from trader.compliance.fills import EXCHANGE_TZ
from trader.compliance.merkle import merkle_root

MERKLE_LEAF = "record hash (32 raw bytes of AuditRecord.hash)"


@dataclass(frozen=True)
class PublishedHead:
    """A chain head sealed earlier: the chain's first ``count`` records ended with ``hash``."""

    count: int
    hash: str

    @classmethod
    def from_json(cls, verification: Mapping[str, Any]) -> PublishedHead:
        """Read the head a day published (the ``head`` field of its ``audit_verification.json``)."""
        return cls(int(verification["head"]["count"]), str(verification["head"]["hash"]))


def _head(published: PublishedHead | tuple[int, str]) -> tuple[int, str]:
    return (published.count, published.hash) if isinstance(published, PublishedHead) else (int(published[0]), str(published[1]))


def _ranges(seqs: list[int]) -> str:
    return str(seqs[0]) if len(seqs) == 1 else f"{seqs[0]}–{seqs[-1]}" if seqs[-1] - seqs[0] + 1 == len(seqs) else ", ".join(map(str, seqs))


def record_day(record: AuditRecord) -> dt.date:
    """The New York trade date of a record's UTC timestamp."""
    return dt.datetime.fromisoformat(record.ts).astimezone(EXCHANGE_TZ).date()


def chain_problems(records: Sequence[AuditRecord], *, label: str = "record", plural: str = "records",
                   expected_kind: str | None = None, published: Iterable[PublishedHead | tuple[int, str]] = ()) -> list[str]:
    """Every record that does not check out, each named by seq and position, plus published-head mismatches.

    Unlike :func:`trader.audit.verify_chain`, which stops at the first bad link, this keeps
    going so a report can say exactly which records were altered, removed or moved.
    """
    problems = []
    previous: AuditRecord | None = None
    seen: set[int] = set()
    for position, record in enumerate(records, start=1):
        where = f"{label} seq {record.seq} (position {position})"
        if record.expected_hash() != record.hash:
            problems.append(f"{where}: content altered (does not match its hash)")
        if expected_kind is not None and record.kind != expected_kind:
            problems.append(f"{where}: kind {record.kind!r}, expected {expected_kind!r}")
        if previous is None:
            if record.seq != 1 or record.prev_hash != GENESIS:
                problems.append(f"{where}: the chain does not start at seq 1 from GENESIS (records removed from the start)")
        elif record.seq > previous.seq + 1:
            skipped = [seq for seq in range(previous.seq + 1, record.seq) if seq not in seen]
            # Skipped seqs that already appeared earlier were moved, not removed.
            missing = "out of order" if not skipped else f"seq {_ranges(skipped)} missing"
            problems.append(f"{where}: follows seq {previous.seq}; {missing}")
        elif record.seq != previous.seq + 1:
            problems.append(f"{where}: follows seq {previous.seq}; out of order or duplicated")
        elif record.prev_hash != previous.hash:
            problems.append(f"{where}: does not link to seq {previous.seq} (seq {previous.seq} was altered or replaced)")
        previous = record
        seen.add(record.seq)
    for count, head in (_head(p) for p in published):
        if len(records) < count:
            problems.append(f"the chain has {len(records)} {plural}, fewer than the {count} of a published head "
                            f"({plural} were removed)")
        elif records[count - 1].hash != head:
            problems.append(f"{label} at position {count} does not match the published head "
                            f"(the chain was rewritten after {head[:12]}… was published)")
    return problems


@dataclass(frozen=True)
class AuditVerification:
    """The day's audit-trail verification; :meth:`to_json` is ``audit_verification.json``."""

    day: dt.date
    ok: bool
    records: int
    chain_reason: str
    first_bad_seq: int | None
    head: PublishedHead
    day_records: int
    day_first_seq: int | None
    day_last_seq: int | None
    merkle_root: str
    problems: tuple[str, ...]
    checked_against: tuple[PublishedHead, ...] = ()

    def dumps(self) -> bytes:
        """The bytes of ``audit_verification.json``: sorted keys, so the same chain gives the same file
        (and archiving it again on a re-run is a no-op)."""
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`dumps` for the file)."""
        return {
            "date": self.day.isoformat(),
            "ok": self.ok,
            "chain": {"records": self.records, "verified": not self.chain_reason, "first_bad_seq": self.first_bad_seq,
                      "reason": self.chain_reason},
            "head": {"count": self.head.count, "hash": self.head.hash},
            "day": {"records": self.day_records, "first_seq": self.day_first_seq, "last_seq": self.day_last_seq,
                    "merkle_root": self.merkle_root, "merkle_leaf": MERKLE_LEAF, "hashing": "RFC 6962 (SHA-256)"},
            "checked_against": [{"count": p.count, "hash": p.hash} for p in self.checked_against],
            "problems": list(self.problems),
        }


def verify_audit_trail(records: Sequence[AuditRecord], *, day: dt.date,
                       published: Iterable[PublishedHead | tuple[int, str]] = ()) -> AuditVerification:
    """Verify the whole chain end to end and seal ``day``: its head and the Merkle root of its records.

    Args:
        records: the full audit log, oldest first (seq 1 from ``GENESIS``).
        day: the trading day being closed.
        published: heads published on earlier days; each must still be in the chain.

    Returns:
        The verification; ``head`` is what this day publishes, ``ok`` is False on any problem.
    """
    published = tuple(PublishedHead(*_head(p)) for p in published)
    chain = verify_chain(records)
    problems = chain_problems(records, published=published)
    # Records are in append (time) order, so "up to the end of the day" is a prefix of the chain.
    upto = 0
    while upto < len(records) and record_day(records[upto]) <= day:
        upto += 1
    todays = [r for r in records[:upto] if record_day(r) == day]
    return AuditVerification(
        day=day, ok=chain.ok and not problems, records=len(records), chain_reason=chain.reason,
        first_bad_seq=chain.first_bad_seq, head=PublishedHead(upto, records[upto - 1].hash if upto else GENESIS),
        day_records=len(todays), day_first_seq=todays[0].seq if todays else None,
        day_last_seq=todays[-1].seq if todays else None, merkle_root=merkle_root(day_leaves(todays)).hex(),
        problems=tuple(problems), checked_against=published,
    )


def day_leaves(records: Iterable[AuditRecord]) -> list[bytes]:
    """The Merkle leaves of records: each record's hash as 32 raw bytes (see the module docstring)."""
    return [_raw(record.hash) for record in records]


def _raw(digest: str) -> bytes:
    try:
        return bytes.fromhex(digest)
    except ValueError:  # a tampered, non-hex hash: still a leaf (the chain check already reports the record)
        return digest.encode()
