"""The audit chain's canonical JSON: the fast encoder writes exactly the bytes ``json.dumps`` always wrote.

Every chain ever stored was hashed over ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
default=..., allow_nan=False)``; a single differing byte would break the verification of old
chains (and of new ones by an older verifier). So the reference below is that call, and the
property runs over the payload shapes records hold, and the awkward ones (non-ASCII, DEL,
control characters, lone surrogates, floats near the exponent switch, NaN, huge integers,
non-text keys, Enum/UUID/subclass values, naive datetimes).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import uuid
from decimal import Decimal

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trader import audit
from trader.audit import GENESIS, AuditRecord, canonical, canonical_payload, verify_chain


def reference(obj: object) -> bytes:
    """The encoding every stored chain was written with."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=audit._default, allow_nan=False).encode()


def outcome(encode, obj) -> tuple[str, object]:
    try:
        return "ok", encode(obj)
    except (TypeError, ValueError, RecursionError) as exc:
        return "error", (type(exc).__name__, str(exc))


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Tag(str):
    pass


texts = st.text(st.one_of(st.characters(), st.sampled_from("\x00\x1f\x7f\"\\/é≤€\u2028😀"),
                          st.characters(categories=["Cs"])), max_size=12)
floats = st.one_of(st.floats(), st.sampled_from([1e-4, 9.999999999999999e-05, 1e16, 9999999999999998.0, -0.0, 1e-7, 5e-324]))
stamps = st.datetimes(timezones=st.one_of(st.none(), st.timezones(), st.just(dt.UTC)))
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70), floats, texts,
                   st.decimals(places=None), stamps, st.dates(),
                   st.sampled_from([Colour.RED, Level.HIGH, Tag("x"), uuid.UUID(int=7)]))
keys = st.one_of(texts, texts, st.integers(-5, 12), st.sampled_from([Tag("k"), True, None]))
payloads = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=5), st.lists(inner, max_size=4).map(tuple),
                                                         st.dictionaries(keys, inner, max_size=5)), max_leaves=30)
text_key_payloads = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                                  st.dictionaries(texts, inner, max_size=6)), max_leaves=40)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads)
@example({"message": "notional 49937.42 ≤ 1000000", "qty": Decimal("358"), "score": 1.3597475403099617, "limit_price": None})
@example({"a": float("nan")})
@example({"k\x7f": "del \x7f", "tab": "\t"})
@example({"a": [1e16, 1e-05, 2**64]})
@example({"é": 1, "e": 2, "\U0001f600": [Colour.RED]})
def test_canonical_writes_the_bytes_of_json_dumps_and_fails_where_it_fails(payload):
    assert outcome(canonical, payload) == outcome(reference, payload)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads)
@example({10: "a", 2: "b"})
def test_canonical_payload_is_the_canonical_json_of_the_payload_as_read_back(payload):
    expected = outcome(lambda p: reference(json.loads(reference(p))), payload)
    assert outcome(canonical_payload, payload) == expected


@settings(max_examples=100, deadline=None)
@given(text_key_payloads)
def test_a_chain_hashed_by_the_old_encoder_verifies_with_the_new_one(payload):
    """Old chains: hash = sha256(prev + json.dumps(record)); the verifier recomputes it with :func:`canonical`."""
    if outcome(reference, payload)[0] == "error":
        return
    stored = json.loads(reference(payload))  # what a reader gets back from the store
    ts = "2024-03-05T15:00:00+00:00"
    body = reference({"seq": 1, "ts": ts, "kind": "risk_decision", "payload": stored})
    old = AuditRecord(1, ts, "risk_decision", stored, GENESIS, hashlib.sha256(GENESIS.encode() + body).hexdigest())
    assert verify_chain([old]).ok
    new = AuditRecord.create(seq=1, ts=dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC), kind="risk_decision", payload=payload,
                             prev_hash=GENESIS)
    assert new.hash == old.hash


def test_a_plain_decision_payload_is_encoded_by_the_fast_path_and_a_special_one_by_json():
    """The property above compares both paths only if the fast one runs: it does for what the trader writes."""
    decision = {"approved": True, "qty": Decimal("1.5"), "ts": dt.datetime(2024, 1, 2, tzinfo=dt.UTC), "score": 0.25,
                "checks": [{"check": "max_notional", "message": "notional 10 ≤ 20"}], "limit_price": None, "n": 3}
    assert audit._fast(decision) == reference(decision)
    for special in ({"x": float("inf")}, {"x": 1e-5}, {"x": Colour.RED}, {"x": 2**64}, {1: "int key"}):
        assert audit._fast(special) is None
