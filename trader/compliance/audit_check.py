"""End-of-day verification of the trader's hash-chained audit log (``trader.audit``).

:func:`verify_audit_trail` walks the whole chain (the same checks as
:func:`trader.audit.verify_chain`), names every record that does not check out, checks that
heads published on earlier days are still in the chain at their position, and computes what
this day publishes:

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

:func:`scan_chain` does all of it in one streaming pass over the records *as stored*
(the payload as its canonical JSON text, so nothing is decoded and re-encoded): each record
is hashed once, and the day's Merkle leaves come from the same pass. The EOD run reads the
store in chunks through it; :func:`verify_audit_trail` is the same pass over objects.

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
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote  # type: ignore[attr-defined]  # the C encoder json.dumps uses
from typing import Any

from trader.audit import GENESIS, AuditRecord, canonical
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


#: A record as the store holds it: ``(seq, ts, kind, payload, prev_hash, hash)``, ``payload`` the canonical JSON text.
StoredRecord = tuple[int, str, str, str, str, str]


def stored_records(records: Iterable[AuditRecord]) -> Iterator[StoredRecord]:
    """Records in the stored form (their payload encoded canonically, as the store keeps it)."""
    for r in records:
        yield r.seq, r.ts, r.kind, canonical(r.payload).decode(), r.prev_hash, r.hash


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
    return scan_chain(stored_records(records), day=day, published=published, whole=True).sealed


@dataclass(frozen=True)
class ChainScan:
    """What one pass over the stored chain found (:func:`scan_chain`)."""

    sealed: AuditVerification  # the chain through the day, against heads published before it
    records: int  # the whole chain
    after_day: str  # the first break after the day ('' if none)
    later_heads: tuple[str, ...]  # heads published on or after the day that the chain no longer holds


def scan_chain(rows: Iterable[StoredRecord], *, day: dt.date, published: Iterable[PublishedHead | tuple[int, str]] = (),
               later: Iterable[tuple[dt.date, PublishedHead]] = (), whole: bool = False,
               on_day_record: Callable[[StoredRecord], object] | None = None) -> ChainScan:
    """Verify a stored chain in one streaming pass: each record hashed once, the day's Merkle root from the same pass.

    ``rows`` may be any iterable (a cursor read in chunks): nothing but the day's leaves is
    kept. The chain through the end of ``day`` (a prefix: records are appended in time order)
    is checked as :func:`verify_audit_trail` checks it, against ``published`` (earlier heads);
    the records after it must continue it (``after_day``), and every head in ``later``
    (``(date, head)`` published on or after the day) must still be in the chain.
    ``whole=True`` checks every row as part of the sealed chain (:func:`verify_audit_trail`).
    ``on_day_record`` receives each of the day's records (e.g. to write them out).
    """
    heads = tuple(PublishedHead(*_head(p)) for p in published)
    want = {h.count: h.hash for h in heads}
    later = tuple(later)
    want_later = {h.count: h.hash for _, h in later}
    found: dict[int, str] = {}
    found_later: dict[int, str] = {}
    lo, hi = (dt.datetime.combine(d, dt.time(), EXCHANGE_TZ).astimezone(dt.UTC).isoformat() for d in (day, day + dt.timedelta(days=1)))
    sha256 = hashlib.sha256
    links = _Links()
    leaves: list[bytes] = []
    day_seqs: list[int] = []
    prev_stored, upto, head, in_prefix, position = GENESIS, 0, GENESIS, True, 0
    chain_reason, first_bad, after = "", None, ""
    watch = set(want) | set(want_later)
    prev_seq: int | None = None
    clean = True  # every record checked so far is in place, linked and intact: nothing to remember
    for row in rows:
        seq, ts, kind, payload, prev_hash, digest = row
        position += 1
        computed = sha256(f'{prev_hash}{{"kind":{_quote(kind)},"payload":{payload},"seq":{seq},"ts":{_quote(ts)}}}'.encode()).hexdigest()
        utc = ts[-6:] == "+00:00"  # the stored form, where text order is time order
        if in_prefix and (ts >= hi if utc else _after(ts, hi, day)):
            in_prefix = False
        if in_prefix:
            upto, head = position, digest
            if ts >= lo if utc else _after(ts, lo, day - dt.timedelta(days=1)):  # on the day itself
                leaves.append(_raw(digest))
                day_seqs.append(seq)
                if on_day_record is not None:
                    on_day_record(row)
        intact = seq == position and prev_hash == prev_stored and computed == digest
        if in_prefix or whole:
            if not (clean and intact):
                clean = False
                links.check(position, seq, prev_hash, digest, computed, None if prev_seq is None else (prev_seq, prev_stored))
                if not chain_reason:
                    chain_reason = _link_break(position, seq, prev_hash, prev_stored, computed, digest)
                    first_bad = seq if chain_reason else None
            prev_seq = seq
        elif not after and not intact:
            after = _link_break(position, seq, prev_hash, prev_stored, computed, digest)
        if position in watch:
            if position in want and (in_prefix or whole):
                found[position] = digest
            if position in want_later:
                found_later[position] = digest
        prev_stored = digest
    problems = links.problems
    count = position if whole else upto
    for h in heads:
        if count < h.count:
            problems.append(f"the chain has {count} records, fewer than the {h.count} of a published head (records were removed)")
        elif found.get(h.count) != h.hash:
            problems.append(f"record at position {h.count} does not match the published head "
                            f"(the chain was rewritten after {h.hash[:12]}… was published)")
    later_problems = tuple(
        f"the chain no longer holds the head published for {date} (record {h.count}, {h.hash[:12]}…): records were "
        "removed, replaced or forged after it was sealed" for date, h in later if found_later.get(h.count) != h.hash)
    sealed = AuditVerification(
        day=day, ok=not chain_reason and not problems, records=count, chain_reason=chain_reason, first_bad_seq=first_bad,
        head=PublishedHead(upto, head if upto else GENESIS), day_records=len(day_seqs),
        day_first_seq=day_seqs[0] if day_seqs else None, day_last_seq=day_seqs[-1] if day_seqs else None,
        merkle_root=merkle_root(leaves).hex(), problems=tuple(problems), checked_against=heads)
    return ChainScan(sealed=sealed, records=position, after_day=after, later_heads=later_problems)


def _after(ts: str, bound: str, day: dt.date) -> bool:
    """Whether ``ts`` is at or after ``bound`` (the UTC start of the day after ``day``), by text when both are UTC ISO."""
    if ts.endswith("+00:00"):  # the stored form: same format, so text order is time order
        return ts >= bound
    return dt.datetime.fromisoformat(ts).astimezone(EXCHANGE_TZ).date() > day


def _link_break(position: int, seq: int, prev_hash: str, prev_stored: str, computed: str, digest: str) -> str:
    """:func:`trader.audit.verify_chain`'s reason for the first record that does not check out ('' if this one does)."""
    if seq != position:
        return f"seq {seq}: expected seq {position}"
    if prev_hash != prev_stored:
        return f"seq {seq}: prev_hash does not match the previous record"
    if computed != digest:
        return f"seq {seq}: content does not match its hash"
    return ""


class _Links:
    """:func:`chain_problems` for the stored form, fed one record at a time with its hash already computed."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._seen: set[int] | None = None  # built on the first gap; until then the seqs seen are 1..previous

    def check(self, position: int, seq: int, prev_hash: str, digest: str, computed: str, prev: tuple[int, str] | None) -> None:
        """One record after ``prev`` (``(seq, hash)`` of the record before it, ``None`` for the first)."""
        where = f"record seq {seq} (position {position})"
        if computed != digest:
            self.problems.append(f"{where}: content altered (does not match its hash)")
        if self._seen is None and (seq != 1 if prev is None else seq != prev[0] + 1):
            self._seen = set(range(1, prev[0] + 1)) if prev is not None else set()
        if prev is None:
            if seq != 1 or prev_hash != GENESIS:
                self.problems.append(f"{where}: the chain does not start at seq 1 from GENESIS (records removed from the start)")
        elif seq > prev[0] + 1:
            seen = self._seen or set()
            skipped = [s for s in range(prev[0] + 1, seq) if s not in seen]
            missing = "out of order" if not skipped else f"seq {_ranges(skipped)} missing"
            self.problems.append(f"{where}: follows seq {prev[0]}; {missing}")
        elif seq != prev[0] + 1:
            self.problems.append(f"{where}: follows seq {prev[0]}; out of order or duplicated")
        elif prev_hash != prev[1]:
            self.problems.append(f"{where}: does not link to seq {prev[0]} (seq {prev[0]} was altered or replaced)")
        if self._seen is not None:
            self._seen.add(seq)


def day_leaves(records: Iterable[AuditRecord]) -> list[bytes]:
    """The Merkle leaves of records: each record's hash as 32 raw bytes (see the module docstring)."""
    return [_raw(record.hash) for record in records]


def _raw(digest: str) -> bytes:
    try:
        return bytes.fromhex(digest)
    except ValueError:  # a tampered, non-hex hash: still a leaf (the chain check already reports the record)
        return digest.encode()
