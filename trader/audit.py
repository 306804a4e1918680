"""The hash-chained audit record: one format shared by the trader's log and compliance's verifier.

Every decision the trader takes (prediction → risk decision → order → fill) is appended as
an :class:`AuditRecord`. Each record's ``hash`` covers its own content *and* the previous
record's hash, so changing a byte, dropping, reordering or inserting a record anywhere
breaks every later hash. A forged tail with recomputed hashes is caught by comparing the
chain's head with a head published earlier (compliance seals one per day).

    hash = sha256( prev_hash  +  canonical({"seq", "ts", "kind", "payload"}) )

``canonical`` is JSON with sorted keys and no whitespace; ``Decimal`` is written as its
exact string, ``datetime`` as ISO 8601 in UTC. The first record's ``prev_hash`` is
``GENESIS`` (64 zeros).

The bytes are those of ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=True, allow_nan=False)``, the format every chain has been written in. A
trader cycle encodes about a hundred records (~120 KB), so :func:`canonical` writes them
with orjson (several times faster) wherever its bytes are provably the same: plain
containers and leaf types only, floats finite and outside the range where
``float.__repr__`` uses an exponent, integers within 64 bits; non-ASCII and DEL are
escaped as ``\\uXXXX`` afterwards. Anything else (or anything orjson refuses, such as a
non-text key) goes through ``json`` itself, so errors and edge cases are its own.

Example:
    >>> import datetime as dt
    >>> from decimal import Decimal
    >>> ts = dt.datetime(2024, 1, 2, 15, tzinfo=dt.UTC)
    >>> first = AuditRecord.create(seq=1, ts=ts, kind="fill", payload={"qty": Decimal("1.5")}, prev_hash=GENESIS)
    >>> second = AuditRecord.create(seq=2, ts=ts, kind="fill", payload={"qty": Decimal("2")}, prev_hash=first.hash)
    >>> verify_chain([first, second]).ok
    True
    >>> verify_chain([second, first]).reason
    'seq 2: expected seq 1'
"""

from __future__ import annotations

import codecs
import datetime as dt
import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

GENESIS = "0" * 64
_NESTED = (dict, list, tuple)
_LEAVES = frozenset({str, int, float, bool, type(None), Decimal, dt.datetime})  # never hold a mapping


def _default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"audit: naive datetime {value!r}; every timestamp is UTC")
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"audit: cannot serialise {type(value).__name__}")


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_default, allow_nan=False).encode()


_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
#: Leaves both encoders write alike (exact types: a subclass, an Enum or a UUID goes the ``json`` way).
_PLAIN_LEAVES = frozenset({str, bool, type(None), Decimal, dt.datetime, dt.date})
_INT_RANGE = range(-(2**63), 2**64)  # orjson's integers
_MAX_CONTAINERS = 100_000  # more (or a cycle): the ``json`` way


def _plain(obj: Any) -> bool:
    """Only what orjson writes byte for byte as ``json`` does (keys: orjson refuses non-text ones itself)."""
    todo, budget = [obj if type(obj) in (dict, list, tuple) else (obj,)], _MAX_CONTAINERS
    while todo:  # a loop, not recursion: this runs on every record written
        item, budget = todo.pop(), budget - 1
        if budget < 0:
            return False
        for value in item.values() if type(item) is dict else item:
            kind = type(value)
            if kind in _PLAIN_LEAVES:
                continue
            if kind is float:
                # float.__repr__ (json's) switches to an exponent outside [1e-4, 1e16), orjson elsewhere; NaN fails both
                if not (1e-4 <= abs(value) < 1e16 or value == 0.0):
                    return False
            elif kind is int:
                if value not in _INT_RANGE:
                    return False
            elif kind is dict or kind is list or kind is tuple:
                todo.append(value)
            else:
                return False
    return True


def _ascii_escape(error: UnicodeError) -> tuple[str, int]:
    """``ensure_ascii``'s escapes (``\\u00e9``; a surrogate pair above U+FFFF) for the run the ASCII codec refused."""
    assert isinstance(error, UnicodeEncodeError)
    out = []
    for char in error.object[error.start:error.end]:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out), error.end


codecs.register_error("alphaline.json_ascii", _ascii_escape)


def _fast(obj: Any) -> bytes | None:
    """orjson's bytes where they are provably ``json``'s (see the module docstring); ``None``: use ``json``."""
    if not _plain(obj):
        return None
    try:
        body = orjson.dumps(obj, default=_default, option=_ORJSON)
    except TypeError:  # a non-text key, a naive datetime, ...: json says what it says
        return None
    if b"\x7f" in body:  # inside a string (nothing else can hold it); ASCII, so ensure_ascii's own case
        body = body.replace(b"\x7f", b"\\u007f")
    return body if body.isascii() else body.decode().encode("ascii", "alphaline.json_ascii")


def canonical(obj: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no whitespace, exact Decimals, UTC datetimes, ASCII only.

    >>> print(canonical({"b": 1.5, "a": ["é", Decimal("2.50")]}).decode())
    {"a":["\\u00e9","2.50"],"b":1.5}
    """
    body = _fast(obj)
    return _json(obj) if body is None else body


def _text_keys(obj: Any) -> bool:
    """Every mapping key inside ``obj`` is a ``str``: then its canonical JSON reads back to the same JSON."""
    todo = [obj]
    while todo:  # a loop, not recursion: this runs on every record written
        item = todo.pop()
        if isinstance(item, dict):
            for key in item:
                if type(key) is not str:
                    return False
            item = item.values()
        elif not isinstance(item, list | tuple):
            continue
        todo += [value for value in item if type(value) not in _LEAVES and isinstance(value, _NESTED)]
    return True


def canonical_payload(payload: Any) -> bytes:
    """The canonical JSON a stored payload keeps: ``canonical`` of the payload *as read back* from that JSON.

    Reading back turns keys into text (``{2: .., 10: ..}`` sorts as ``"10", "2"`` then), so a
    payload with a non-text key is encoded, decoded and encoded again; one with only text
    keys (nearly all) reads back to itself and is encoded once.

    >>> canonical_payload({10: "a", 2: "b"}), canonical_payload({"q": Decimal("1.50")})
    (b'{"10":"a","2":"b"}', b'{"q":"1.50"}')
    """
    body = _fast(payload)
    if body is not None:  # orjson took it: every key is a str
        return body
    body = _json(payload)
    return body if _text_keys(payload) else canonical(json.loads(body))


def record_hash(*, seq: int, ts: str, kind: str, payload: dict[str, Any], prev_hash: str) -> str:
    body = canonical({"seq": seq, "ts": ts, "kind": kind, "payload": payload})
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def record_body(*, seq: int, ts: str, kind: str, payload_json: bytes) -> bytes:
    """``canonical({"seq", "ts", "kind", "payload"})`` around a payload already in canonical bytes.

    The same bytes as :func:`record_hash` hashes (keys in sorted order: kind, payload, seq,
    ts), without decoding and re-encoding the payload: the store keeps the payload as this
    canonical text, so writers and verifiers hash it as stored.

    >>> payload = {"b": [1, "x"], "a": "é"}
    >>> record_body(seq=3, ts="t", kind="k", payload_json=canonical(payload)) == canonical(
    ...     {"seq": 3, "ts": "t", "kind": "k", "payload": payload})
    True
    """
    return b'{"kind":%b,"payload":%b,"seq":%d,"ts":%b}' % (_json_text(kind), payload_json, seq, _json_text(ts))


@functools.lru_cache(maxsize=1024)
def _json_text(text: str) -> bytes:
    """A record's kind or time as JSON (a few kinds; a cycle's records share their time)."""
    return json.dumps(text).encode()


@dataclass(frozen=True)
class AuditRecord:
    """One link of the chain. ``ts`` is an ISO 8601 UTC string; ``payload`` is JSON-safe after ``canonical``."""

    seq: int
    ts: str
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def create(cls, *, seq: int, ts: dt.datetime, kind: str, payload: dict[str, Any], prev_hash: str) -> AuditRecord:
        return cls.create_canonical(seq=seq, ts=ts, kind=kind, payload=payload, prev_hash=prev_hash)[0]

    @classmethod
    def create_canonical(cls, *, seq: int, ts: dt.datetime, kind: str, payload: dict[str, Any],
                         prev_hash: str) -> tuple[AuditRecord, bytes]:
        """:meth:`create`, also returning the payload's canonical bytes (what a store keeps): encoded once."""
        stamp, body, digest = cls.link(seq=seq, ts=ts, kind=kind, payload=payload, prev_hash=prev_hash)
        # The record holds exactly what was hashed (Decimals as strings): the payload read back.
        return cls(seq, stamp, kind, json.loads(body), prev_hash, digest), body

    @staticmethod
    def link(*, seq: int, ts: dt.datetime, kind: str, payload: dict[str, Any], prev_hash: str) -> tuple[str, bytes, str]:
        """``(ts as stored, canonical payload, hash)`` of the record :meth:`create_canonical` builds, without building it
        (a writer that stores the text needs no decoded copy)."""
        if type(seq) is not int:
            raise TypeError(f"audit: seq must be an int, not {type(seq).__name__}")
        stamp, body = _default(ts), canonical_payload(payload)
        return stamp, body, hashlib.sha256(prev_hash.encode() + record_body(seq=seq, ts=stamp, kind=kind, payload_json=body)).hexdigest()

    def expected_hash(self) -> str:
        return record_hash(seq=self.seq, ts=self.ts, kind=self.kind, payload=self.payload, prev_hash=self.prev_hash)


@dataclass(frozen=True)
class ChainVerification:
    """Outcome of :func:`verify_chain`: ``reason`` names the first broken record, or is empty."""

    ok: bool
    count: int
    head: str
    first_bad_seq: int | None = None
    reason: str = ""


def verify_chain(records: Iterable[AuditRecord], *, start_hash: str = GENESIS, start_seq: int = 1,
                 expected_head: str | None = None, expected_count: int | None = None) -> ChainVerification:
    """Walk the chain in order; report the first record whose link or content does not check out.

    ``expected_head``/``expected_count`` come from an earlier published head: a chain that
    is internally consistent but ends elsewhere (truncated, or a forged tail) fails against it.
    """
    prev, seq, count = start_hash, start_seq, 0
    for record in records:
        if record.seq != seq:
            return ChainVerification(False, count, prev, record.seq, f"seq {record.seq}: expected seq {seq}")
        if record.prev_hash != prev:
            return ChainVerification(False, count, prev, record.seq, f"seq {record.seq}: prev_hash does not match the previous record")
        if record.expected_hash() != record.hash:
            return ChainVerification(False, count, prev, record.seq, f"seq {record.seq}: content does not match its hash")
        prev, seq, count = record.hash, seq + 1, count + 1
    if expected_count is not None and count != expected_count:
        return ChainVerification(False, count, prev, None, f"chain has {count} records, the published head says {expected_count}")
    if expected_head is not None and prev != expected_head:
        return ChainVerification(False, count, prev, None, "chain head differs from the published head")
    return ChainVerification(True, count, prev)
