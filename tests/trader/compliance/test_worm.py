"""The write-once archive: no overwrite or delete, idempotent puts, corrections, and tamper detection."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest

from trader.audit import AuditRecord
from trader.compliance import ComplianceError, WormArchive, WormViolation
from trader.compliance.worm import default_root

DAY = dt.date(2024, 1, 2)
T0 = dt.datetime(2024, 1, 2, 23, tzinfo=dt.UTC)


@pytest.fixture
def archive(tmp_path: Path) -> WormArchive:
    return WormArchive(tmp_path / "archive", clock=lambda: T0)


def filled(archive: WormArchive, n: int = 3) -> WormArchive:
    for i in range(n):
        archive.put(f"record {i}\n".encode(), name=f"r{i}.csv", date=DAY)
    return archive


def make_writable(path: Path) -> None:
    path.chmod(0o644)


def rewrite_manifest(archive: WormArchive, edit) -> None:
    lines = archive.manifest_path.read_text().splitlines()
    archive.manifest_path.write_text("".join(line + "\n" for line in edit(lines)))


def test_put_writes_a_read_only_content_addressed_object_and_a_chained_entry(archive):
    entry = archive.put(b"hello\n", name="tax_lots.csv", date=DAY, meta={"audit_head": "ab" * 32})
    path = archive.object_path(entry.sha256)
    assert path.read_bytes() == b"hello\n" and path.parent.name == entry.sha256[:2]
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert (entry.seq, entry.size, entry.retention_until, entry.corrects) == (1, 6, dt.date(2030, 1, 2), None)
    assert archive.entries() == [entry] and entry.meta == {"audit_head": "ab" * 32}
    assert archive.head() == (1, entry.hash)
    assert archive.read(entry.sha256) == b"hello\n"


def test_archiving_identical_content_again_is_idempotent_with_no_new_entry_or_file(archive):
    first = archive.put(b"same", name="a.csv", date=DAY)
    manifest = archive.manifest_path.read_bytes()
    assert archive.put(b"same", name="a.csv", date=DAY) == first
    assert archive.manifest_path.read_bytes() == manifest


def test_same_bytes_under_another_name_get_a_new_entry_but_share_one_object(archive):
    first = archive.put(b"same", name="a.csv", date=DAY)
    second = archive.put(b"same", name="b.csv", date=DAY)
    assert (second.seq, second.sha256) == (2, first.sha256)
    assert archive.verify().objects == 1


def test_overwriting_an_archived_record_fails(archive):
    archive.put(b"v1", name="form_8949.csv", date=DAY)
    with pytest.raises(WormViolation, match=r"^archive: form_8949.csv \(2024-01-02\) is already archived with different content"):
        archive.put(b"v2", name="form_8949.csv", date=DAY)
    assert len(archive.entries()) == 1


def test_an_archived_file_is_read_only_on_disk(archive):
    entry = archive.put(b"v1", name="form_8949.csv", date=DAY)
    path = archive.object_path(entry.sha256)
    assert not stat.S_IMODE(path.stat().st_mode) & 0o222
    if os.geteuid() != 0:  # root ignores permission bits; the mode check above still holds
        with pytest.raises(PermissionError):
            path.write_bytes(b"v2")


def test_delete_is_always_refused_and_names_the_retention(archive):
    entry = archive.put(b"v1", name="form_8949.csv", date=DAY)
    with pytest.raises(WormViolation, match=r"deleting an archived record is not allowed \(retained until 2030-01-02\)"):
        archive.delete(entry.sha256)
    assert archive.object_path(entry.sha256).exists()


def test_a_correction_is_appended_and_references_the_original(archive):
    original = archive.put(b"v1", name="form_8949.csv", date=DAY)
    fixed = archive.put(b"v2", name="form_8949.csv", date=DAY, corrects=original.hash)
    assert (fixed.seq, fixed.corrects) == (2, original.hash)
    assert archive.latest("form_8949.csv", DAY) == fixed
    assert archive.read(original.sha256) == b"v1"  # the original is kept
    assert archive.put(b"v2", name="form_8949.csv", date=DAY, corrects=original.hash) == fixed  # idempotent
    assert archive.put(b"v2", name="form_8949.csv", date=DAY) == fixed
    with pytest.raises(WormViolation, match="was already corrected by entry seq 2"):
        archive.put(b"v3", name="form_8949.csv", date=DAY, corrects=original.hash)
    with pytest.raises(ComplianceError, match="corrects: no manifest entry has hash"):
        archive.put(b"v3", name="form_8949.csv", date=DAY, corrects="0" * 64)
    assert archive.verify().ok


def test_verify_passes_on_an_untouched_archive(archive):
    result = filled(archive).verify()
    assert (result.ok, result.entries, result.objects, result.problems) == (True, 3, 3, ())


def test_verify_when_one_byte_of_an_object_changes_names_the_file(archive):
    entry = filled(archive).entries()[1]
    path = archive.object_path(entry.sha256)
    make_writable(path)
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))
    path.chmod(0o444)
    (problem,) = archive.verify().problems
    assert problem.startswith(f"object {entry.sha256} (r1.csv, 2024-01-02, entry seq 2): altered")


def test_verify_when_an_object_is_missing_or_writable_says_so(archive):
    first, second, _ = filled(archive).entries()
    archive.object_path(first.sha256).unlink()
    archive.object_path(second.sha256).chmod(0o644)
    problems = archive.verify().problems
    assert problems == (f"object {first.sha256} (r0.csv, 2024-01-02, entry seq 1): missing",
                        f"object {second.sha256} (r1.csv, 2024-01-02, entry seq 2): writable (mode 0o644); "
                        "archived files must be read-only")


def test_verify_when_an_object_appears_outside_the_manifest_names_it(archive):
    filled(archive)
    stray = archive.root / "objects" / "ff" / ("f" * 64)
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"smuggled")
    assert archive.verify().problems == (f"object file objects/ff/{'f' * 64}: not in the manifest",)


def test_verify_when_one_byte_of_a_manifest_entry_changes_names_the_entry(archive):
    filled(archive)
    rewrite_manifest(archive, lambda lines: [lines[0], lines[1].replace("r1.csv", "r9.csv"), lines[2]])
    problems = archive.verify().problems
    assert problems[0] == "manifest entry seq 2 (position 2): content altered (does not match its hash)"


def test_verify_when_the_last_entry_is_dropped_fails_against_the_published_head(archive):
    count, head = filled(archive).head()
    dropped = archive.entries()[-1]
    rewrite_manifest(archive, lambda lines: lines[:-1])
    orphan = f"object file objects/{dropped.sha256[:2]}/{dropped.sha256}: not in the manifest"
    assert archive.verify().problems == (orphan,)  # the chain alone still checks out; its object gives it away
    assert archive.verify(expected_count=count, expected_head=head).problems == (
        "the chain has 2 manifest entries, fewer than the 3 of a published head (manifest entries were removed)", orphan)


def test_verify_when_two_entries_are_swapped_names_them(archive):
    filled(archive)
    rewrite_manifest(archive, lambda lines: [lines[0], lines[2], lines[1]])
    problems = archive.verify().problems
    assert problems == ("manifest entry seq 3 (position 2): follows seq 1; seq 2 missing",
                        "manifest entry seq 2 (position 3): follows seq 3; out of order or duplicated")


def test_verify_when_a_forged_entry_is_inserted_with_recomputed_hashes_fails_against_the_published_head(archive):
    count, head = filled(archive).head()
    records = [AuditRecord(**json.loads(line)) for line in archive.manifest_path.read_text().splitlines()]
    forged_payload = {**records[0].payload, "name": "forged.csv"}
    rebuilt, prev = [], "0" * 64
    for seq, (ts, kind, payload) in enumerate([(r.ts, r.kind, r.payload) for r in records[:1]]
                                              + [(records[0].ts, "archive", forged_payload)]
                                              + [(r.ts, r.kind, r.payload) for r in records[1:]], start=1):
        record = AuditRecord.create(seq=seq, ts=dt.datetime.fromisoformat(ts), kind=kind, payload=payload, prev_hash=prev)
        rebuilt.append(json.dumps(record.__dict__))
        prev = record.hash
    archive.manifest_path.write_text("".join(line + "\n" for line in rebuilt))
    assert archive.verify().ok  # a perfect forgery of the chain itself...
    problems = archive.verify(expected_count=count, expected_head=head).problems
    assert problems == ("manifest entry at position 3 does not match the published head "
                        f"(the chain was rewritten after {head[:12]}… was published)",)


def test_verify_when_a_manifest_line_is_unreadable_names_the_line(archive):
    filled(archive)
    with archive.manifest_path.open("a") as handle:
        handle.write("{not json\n")
    (problem,) = archive.verify().problems
    assert problem.startswith("manifest line 4: unreadable (JSONDecodeError")


def test_put_refuses_to_extend_a_tampered_manifest(archive):
    filled(archive)
    rewrite_manifest(archive, lambda lines: [lines[0], lines[2], lines[1]])
    with pytest.raises(ComplianceError, match=r"manifest chain is broken \(seq 3: expected seq 2\); run verify"):
        archive.put(b"new", name="new.csv", date=DAY)


def test_default_root_follows_alphaline_home_when_called(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / "archive"
    assert WormArchive().root == tmp_path / "home" / "archive"
