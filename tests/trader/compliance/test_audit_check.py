"""Audit-trail verification: tampering is detected (forgeries against the published head); day head and Merkle root."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from trader.audit import GENESIS, AuditRecord
from trader.compliance import PublishedHead, verify_audit_trail
from trader.compliance.audit_check import day_leaves, scan_chain, stored_records
from trader.compliance.merkle import EMPTY_ROOT, audit_path, merkle_root, verify_inclusion

DAY1, DAY2 = dt.date(2024, 1, 2), dt.date(2024, 1, 3)


def chain(stamps: list[dt.datetime], *, kind: str = "fill") -> list[AuditRecord]:
    records, prev = [], GENESIS
    for seq, ts in enumerate(stamps, start=1):
        record = AuditRecord.create(seq=seq, ts=ts, kind=kind, payload={"n": seq, "qty": "1"}, prev_hash=prev)
        records.append(record)
        prev = record.hash
    return records


def two_days() -> list[AuditRecord]:
    """Records 1–3 on Jan 2 (the third at 01:00 UTC Jan 3 = 20:00 New York), 4–5 on Jan 3."""
    return chain([dt.datetime(2024, 1, 2, 15, tzinfo=dt.UTC), dt.datetime(2024, 1, 2, 20, tzinfo=dt.UTC),
                  dt.datetime(2024, 1, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 1, 3, 15, tzinfo=dt.UTC),
                  dt.datetime(2024, 1, 3, 16, tzinfo=dt.UTC)])


def as_lines(records: list[AuditRecord]) -> list[str]:
    return [json.dumps(dataclasses.asdict(r), sort_keys=True) for r in records]


def from_lines(lines: list[str]) -> list[AuditRecord]:
    return [AuditRecord(**json.loads(line)) for line in lines]


def forge_insert(records: list[AuditRecord], at: int) -> list[AuditRecord]:
    """Insert a record and recompute every later seq and hash: a chain that checks out on its own."""
    items = [(r.ts, r.kind, r.payload) for r in records]
    items.insert(at, (records[at].ts, "fill", {"n": 99, "qty": "1000"}))
    return chain([dt.datetime.fromisoformat(ts) for ts, _, _ in items])


def test_an_untouched_chain_verifies_and_seals_the_day_with_its_head_and_merkle_root():
    records = two_days()
    day1 = verify_audit_trail(records, day=DAY1)
    assert day1.ok and day1.problems == ()
    assert day1.head == PublishedHead(3, records[2].hash)  # the 01:00 UTC record is still Jan 2 in New York
    assert (day1.day_records, day1.day_first_seq, day1.day_last_seq) == (3, 1, 3)
    assert day1.merkle_root == merkle_root([bytes.fromhex(r.hash) for r in records[:3]]).hex()
    day2 = verify_audit_trail(records, day=DAY2, published=[day1.head])
    assert day2.ok and day2.head == PublishedHead(5, records[4].hash) and day2.day_first_seq == 4


def test_a_record_can_be_proven_part_of_its_day_from_the_published_merkle_root():
    records = two_days()
    sealed = verify_audit_trail(records, day=DAY1)
    leaves = day_leaves(records[:3])
    path = audit_path(leaves, 1)
    assert verify_inclusion(bytes.fromhex(records[1].hash), 1, 3, path, bytes.fromhex(sealed.merkle_root))
    assert not verify_inclusion(bytes.fromhex(records[3].hash), 1, 3, path, bytes.fromhex(sealed.merkle_root))


def test_tamper_when_one_byte_of_a_record_changes_names_the_record():
    lines = as_lines(two_days())
    lines[1] = lines[1].replace('"qty": "1"', '"qty": "7"')  # one byte
    result = verify_audit_trail(from_lines(lines), day=DAY2)
    assert not result.ok and result.first_bad_seq == 2
    assert result.problems == ("record seq 2 (position 2): content altered (does not match its hash)",)


def test_tamper_when_a_record_is_altered_and_rehashed_the_next_link_breaks():
    records = two_days()
    altered = AuditRecord.create(seq=2, ts=dt.datetime.fromisoformat(records[1].ts), kind="fill",
                                 payload={"n": 2, "qty": "9"}, prev_hash=records[0].hash)
    result = verify_audit_trail([records[0], altered, *records[2:]], day=DAY2)
    assert result.problems == ("record seq 3 (position 3): does not link to seq 2 (seq 2 was altered or replaced)",)


def test_tamper_when_a_middle_record_is_dropped_names_the_gap():
    records = two_days()
    result = verify_audit_trail([*records[:2], *records[3:]], day=DAY2)
    assert result.problems == ("record seq 4 (position 3): follows seq 2; seq 3 missing",)


def test_tamper_when_the_last_record_is_dropped_is_caught_by_the_published_head():
    records = two_days()
    published = verify_audit_trail(records, day=DAY2).head
    truncated = records[:-1]
    assert verify_audit_trail(truncated, day=DAY2).ok  # nothing inside the chain shows it
    result = verify_audit_trail(truncated, day=DAY2, published=[published])
    assert not result.ok
    assert result.problems == ("the chain has 4 records, fewer than the 5 of a published head (records were removed)",)


def test_tamper_when_two_records_are_swapped_names_both():
    records = two_days()
    swapped = [records[0], records[2], records[1], *records[3:]]
    result = verify_audit_trail(swapped, day=DAY2)
    assert not result.ok and result.chain_reason == "seq 3: expected seq 2"
    assert result.problems == ("record seq 3 (position 2): follows seq 1; seq 2 missing",
                               "record seq 2 (position 3): follows seq 3; out of order or duplicated",
                               "record seq 4 (position 4): follows seq 2; out of order")


def test_tamper_when_a_forged_record_is_inserted_with_recomputed_hashes_is_caught_by_the_published_head():
    records = two_days()
    day1_head = verify_audit_trail(records, day=DAY1).head
    forged = forge_insert(records, at=1)
    assert verify_audit_trail(forged, day=DAY2).ok  # a perfect forgery of the chain itself...
    result = verify_audit_trail(forged, day=DAY2, published=[day1_head])
    assert not result.ok  # ...does not reproduce the head sealed on day 1
    assert result.problems == ("record at position 3 does not match the published head "
                               f"(the chain was rewritten after {day1_head.hash[:12]}… was published)",)


def test_a_day_without_records_publishes_the_previous_head_and_the_empty_merkle_root():
    records = two_days()[:3]
    result = verify_audit_trail(records, day=DAY2)
    assert result.ok and result.day_records == 0 and result.day_first_seq is None
    assert result.head == PublishedHead(3, records[2].hash) and result.merkle_root == EMPTY_ROOT.hex()
    assert verify_audit_trail([], day=DAY1).head == PublishedHead(0, GENESIS)


def test_audit_verification_json_is_plain_json_and_round_trips_the_published_head():
    records = two_days()
    report = verify_audit_trail(records, day=DAY1).to_json()
    assert json.loads(json.dumps(report)) == report
    assert report["date"] == "2024-01-02" and report["ok"] is True
    assert report["day"]["merkle_leaf"].startswith("record hash") and report["day"]["hashing"] == "RFC 6962 (SHA-256)"
    assert PublishedHead.from_json(report) == PublishedHead(3, records[2].hash)
    day2 = verify_audit_trail(records, day=DAY2, published=[PublishedHead.from_json(report)]).to_json()
    assert day2["checked_against"] == [{"count": 3, "hash": records[2].hash}]
    assert verify_audit_trail(records, day=DAY1).dumps() == verify_audit_trail(list(records), day=DAY1).dumps()


def test_scan_chain_over_stored_rows_seals_the_day_as_verify_audit_trail_does_and_names_a_break_after_it():
    records = two_days()
    day1 = verify_audit_trail(records[:3], day=DAY1)
    kept: list[int] = []
    scan = scan_chain(iter(list(stored_records(records))), day=DAY1, on_day_record=lambda row: kept.append(row[0]))
    assert scan.sealed == day1 and scan.records == 5 and kept == [1, 2, 3] and scan.after_day == ""
    broken = [*records[:3], dataclasses.replace(records[3], payload={"n": 4, "qty": "2"}), records[4]]
    scan = scan_chain(stored_records(broken), day=DAY1, later=[(DAY2, PublishedHead(5, records[4].hash))])
    assert scan.sealed == day1  # the sealed day does not depend on what came after it
    assert scan.after_day == "seq 4: content does not match its hash" and scan.later_heads == ()


def test_scan_chain_names_a_later_published_head_the_chain_no_longer_holds():
    records = two_days()
    scan = scan_chain(stored_records(records[:4]), day=DAY1, later=[(DAY2, PublishedHead(5, records[4].hash))])
    assert len(scan.later_heads) == 1 and "published for 2024-01-03 (record 5" in scan.later_heads[0]
