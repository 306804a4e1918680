"""Audit records signed with a secret key: a record forged without the key fails verification at once.

The hash chain (:mod:`trader.audit`) proves that nothing *before a published head* changed; a
record appended *after* the last head (a forged fill at the end of the log, hashes recomputed)
still links perfectly, and only the next published head would tell. With
``ALPHALINE_AUDIT_KEY`` set, every writer of the store also keeps, per record::

    hmac = HMAC-SHA256(key, "<seq>:<record hash>")      # table audit_hmac (seq, hmac)

The record hash already covers the record's content and the previous record's hash, so the HMAC
authenticates the record and its place in the chain. What each layer protects against:

* **an attacker with write access to the trader's database only, without the key**: a forged or
  edited record has no valid HMAC; leaving it unsigned does not help either, since a record
  after the first signed one must be signed; deleting every HMAC row is caught against the
  anchor file, which records where signing began (:mod:`trader.compliance.anchor`);
* **an attacker who also holds the key** (reads the trader's environment) can sign forgeries:
  only the heads published before the forgery (the archive, the local anchor, the external
  anchor) catch a rewrite of history; a fresh tail stays possible until the next head is published;
* **an attacker with write access to the database and the anchor file** is out of scope for the
  local checks; the external anchor (``ALPHALINE_ANCHOR_URLS``) keeps the heads elsewhere.

Backward compatible: records written before the key was set have no HMAC; they are accepted as
*unsigned* and counted in the report. Without the key, a verifier cannot check HMACs; it says so.

Example:
    >>> key = b"k" * 32
    >>> mac = record_hmac(key, 1, "ab" * 32)
    >>> check = check_signatures([(1, "ab" * 32), (2, "cd" * 32)], [(1, mac)], key=key)
    >>> check.signed, check.problems
    (1, ['record seq 2: unsigned, after signing began at seq 1 (appended without the key: forged?)'])
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

KEY_ENV = "ALPHALINE_AUDIT_KEY"
MIN_KEY_BYTES = 16


def audit_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The signing key from ``ALPHALINE_AUDIT_KEY`` (None when unset or empty).

    Raises:
        ValueError: the key is shorter than :data:`MIN_KEY_BYTES` bytes (one line naming the variable).
    """
    text = (os.environ if env is None else env).get(KEY_ENV, "")
    if not text:
        return None
    key = text.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{KEY_ENV}: too short ({len(key)} bytes); use at least {MIN_KEY_BYTES} random bytes")
    return key


def record_hmac(key: bytes, seq: int, record_hash: str) -> str:
    """``HMAC-SHA256(key, "<seq>:<hash>")`` as hex."""
    return hmac.new(key, f"{seq}:{record_hash}".encode(), hashlib.sha256).hexdigest()


@dataclass
class SignatureCheck:
    """What :func:`check_signatures` found: counts, where signing began, and every problem by seq."""

    records: int = 0
    signed: int = 0
    unsigned: int = 0
    unchecked: int = 0  # signed, but no key to check with
    first_signed: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line for a report."""
        parts = [f"{self.signed} signed", f"{self.unsigned} unsigned (from before {KEY_ENV} was set)"]
        if self.unchecked:
            parts.append(f"{self.unchecked} not checked ({KEY_ENV} is not set here)")
        return "audit HMAC: " + ", ".join(parts)


def check_signatures(records: Iterable[tuple[int, str]], macs: Iterable[tuple[int, str]], *, key: bytes | None,
                     required_from: int | None = None, limit: int = 20) -> SignatureCheck:
    """Check each record's HMAC; both inputs in ``seq`` order (streamed, merged by seq).

    Args:
        records: ``(seq, hash)`` of the chain.
        macs: ``(seq, hmac)`` rows of the ``audit_hmac`` table.
        key: the key to check with; without it, HMACs are counted as unchecked.
        required_from: a seq from which an anchor says records were signed (signing cannot have
            begun later: HMAC rows were removed).
        limit: at most this many per-record problems are listed (then a count).
    """
    check, extra = SignatureCheck(), 0
    pending = _peekable(macs)
    for seq, digest in records:
        check.records += 1
        mac = None
        while (ahead := pending.peek()) is not None and ahead[0] <= seq:
            other, value = next(pending)
            if other == seq:
                mac = value
            else:
                extra += 1
        problem = _one(check, key, seq, digest, mac)
        if problem and len(check.problems) < limit:
            check.problems.append(problem)
        elif problem:
            check.problems[-1:] = [f"… and more records that do not check out (first {limit} listed)"]
    extra += sum(1 for _ in pending)
    if extra:
        check.problems.append(f"{extra} HMAC row(s) for records that are not in the chain (records removed)")
    if required_from is not None and (check.first_signed is None or check.first_signed > required_from):
        found = "no record is signed" if check.first_signed is None else f"the first signed record is seq {check.first_signed}"
        check.problems.append(f"the anchor says records were signed from seq {required_from}, but {found} "
                              "(HMAC rows removed)")
    return check


def _one(check: SignatureCheck, key: bytes | None, seq: int, digest: str, mac: str | None) -> str:
    if mac is None:
        check.unsigned += 1
        if check.first_signed is not None:
            return f"record seq {seq}: unsigned, after signing began at seq {check.first_signed} (appended without the key: forged?)"
        return ""
    check.signed += 1
    if check.first_signed is None:
        check.first_signed = seq
    if key is None:
        check.unchecked += 1
        return ""
    if not hmac.compare_digest(mac, record_hmac(key, seq, digest)):
        return f"record seq {seq}: HMAC does not match (forged or altered without the key, or another key)"
    return ""


class _peekable(Iterator[tuple[int, str]]):
    def __init__(self, items: Iterable[tuple[int, str]]):
        self._it = iter(items)
        self._next: tuple[int, str] | None = None
        self._advance()

    def _advance(self) -> None:
        self._next = next(self._it, None)

    def peek(self) -> tuple[int, str] | None:
        return self._next

    def __next__(self) -> tuple[int, str]:
        if self._next is None:
            raise StopIteration
        item = self._next
        self._advance()
        return item
