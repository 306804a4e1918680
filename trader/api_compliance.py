"""Compliance on the ops API: tax reports per year and sealed days with their Merkle proofs, read from the WORM archive.

Every endpoint needs ``Authorization: Bearer <TRADER_API_TOKEN>`` (401 without it, 403 with a
wrong one, 503 when the server has none), reads only, and answers from what was *sealed*
(each object's bytes are checked against their hash when read):

=========================================  =====================================================
``GET /compliance/tax/{year}/form-8949``   Form 8949 rows (a)–(h) of the year, as of its last sealed day
``GET /compliance/tax/{year}/schedule-d``  Schedule D totals (short-term, long-term, total)
``GET /compliance/tax/{year}/tax-lots``    lots open at the year's last sealed close
``GET /compliance/archive/{day}``          the day's sealed records, its audit head and Merkle root, and
                                           each audit record with its RFC 6962 inclusion path
``GET /compliance/archive/{day}/{name}``   the bytes of one sealed file of the day
=========================================  =====================================================

404 names a year or day with nothing sealed (or a file that is not there); 422 a year outside
1900–2200 or a date that is not ``YYYY-MM-DD``. A proof is checked by a client with
:func:`trader.compliance.merkle.verify_inclusion`::

    >>> from trader.compliance.merkle import verify_inclusion  # doctest: +SKIP
    >>> day = client.get("/compliance/archive/2024-03-05", headers=auth).json()["audit"]  # doctest: +SKIP
    >>> r = day["records"][0]  # doctest: +SKIP
    >>> verify_inclusion(bytes.fromhex(r["hash"]), r["index"], day["tree_size"],
    ...                  [bytes.fromhex(h) for h in r["proof"]], bytes.fromhex(day["merkle_root"]))  # doctest: +SKIP
    True
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import Response

from trader.compliance import ComplianceError, WormArchive, restore_day_close
from trader.compliance.audit_check import MERKLE_LEAF
from trader.compliance.checkpoint import loads
from trader.compliance.merkle import audit_paths, merkle_root
from trader.compliance.reports import schedule_d_rows, tax_lot_rows, year_form_8949_rows
from trader.compliance.worm import ArchiveEntry, default_root

# The EOD run's file names (orchestration.defs.compliance.eod): the trader does not import orchestration.
LEDGER_STATE, AUDIT_RECORDS, AUDIT_VERIFICATION = "ledger_state.json", "audit_records.jsonl", "audit_verification.json"
Year = Annotated[int, PathParam(ge=1900, le=2200, description="The tax year, e.g. 2024.")]


def compliance_router(*, guard: Callable[..., None], archive_root: Path | None = None) -> APIRouter:
    """The ``/compliance`` endpoints, each behind ``guard`` (the ops API's bearer-token check).

    Args:
        guard: the dependency that refuses a request without the right token.
        archive_root: the WORM archive (default ``$ALPHALINE_HOME/archive``, read per request).
    """
    router = APIRouter(prefix="/compliance", tags=["compliance"], dependencies=[Depends(guard)])

    def archive() -> WormArchive:
        return WormArchive(archive_root if archive_root is not None else default_root())

    @router.get("/tax/{year}/form-8949", summary="Form 8949 rows of a tax year, as of its last sealed day")
    def form_8949(year: Year) -> dict[str, Any]:
        as_of, close = _year_close(archive(), year)
        return {"year": year, "as_of": as_of.isoformat(), "rows": year_form_8949_rows(close.ledger, year)}

    @router.get("/tax/{year}/schedule-d", summary="Schedule D totals of a tax year")
    def schedule_d(year: Year) -> dict[str, Any]:
        as_of, close = _year_close(archive(), year)
        return {"year": year, "as_of": as_of.isoformat(), "rows": schedule_d_rows(year_form_8949_rows(close.ledger, year))}

    @router.get("/tax/{year}/tax-lots", summary="Tax lots open at the year's last sealed close")
    def tax_lots(year: Year) -> dict[str, Any]:
        as_of, close = _year_close(archive(), year)
        return {"year": year, "as_of": as_of.isoformat(), "rows": tax_lot_rows(close)}

    @router.get("/archive/{day}", summary="A sealed day: its records, audit head, Merkle root and inclusion proofs")
    def archived_day(day: dt.date) -> dict[str, Any]:
        return day_with_proofs(archive(), day)

    @router.get("/archive/{day}/{name}", summary="The bytes of one sealed file of a day")
    def archived_file(day: dt.date, name: str) -> Response:
        entry = _current(archive(), day).get(name)
        if entry is None:
            raise HTTPException(404, f"archive: {day}: no sealed file named {name!r}")
        media = "application/json" if name.endswith(".json") else "text/csv" if name.endswith(".csv") else "text/plain"
        return Response(_read(archive(), entry), media_type=media)

    return router


def _current(archive: WormArchive, day: dt.date) -> dict[str, ArchiveEntry]:
    """The current version of each file sealed for ``day`` (corrections replace what they correct)."""
    try:
        entries = archive.entries()
    except ComplianceError as err:
        raise HTTPException(500, f"{err}") from None
    corrected = {e.corrects for e in entries if e.corrects}
    return {e.name: e for e in entries if e.date == day and e.hash not in corrected}


def _read(archive: WormArchive, entry: ArchiveEntry) -> bytes:
    try:
        return archive.read(entry.sha256)
    except ComplianceError as err:  # altered or missing on disk: the server's problem, said in one line
        raise HTTPException(500, f"{err} (run `alphaline compliance verify`)") from None


def _year_close(archive: WormArchive, year: int):
    """``(day, DayClose)`` of the year's last sealed ledger checkpoint; 404 when the year has none."""
    try:
        days = {e.date for e in archive.entries() if e.name == LEDGER_STATE and e.date.year == year}
    except ComplianceError as err:
        raise HTTPException(500, f"{err}") from None
    if not days:
        raise HTTPException(404, f"year {year}: no sealed day in the archive")
    last = max(days)
    entry = _current(archive, last)[LEDGER_STATE]
    return last, restore_day_close(loads(_read(archive, entry)))


def day_with_proofs(archive: WormArchive, day: dt.date) -> dict[str, Any]:
    """The sealed files of ``day`` and each of its audit records with its Merkle inclusion path (hex).

    Raises:
        HTTPException: 404 when nothing is sealed for ``day``; 500 when an archived object no longer
            matches its hash or the records no longer give the sealed Merkle root.
    """
    current = _current(archive, day)
    if not current:
        raise HTTPException(404, f"archive: nothing sealed for {day.isoformat()}")
    files = [{"name": e.name, "sha256": e.sha256, "size": e.size, "entry_seq": e.seq, "entry_hash": e.hash,
              "retention_until": e.retention_until.isoformat(), "corrects": e.corrects,
              "url": f"/compliance/archive/{day.isoformat()}/{e.name}"} for e in sorted(current.values(), key=lambda e: e.seq)]
    out: dict[str, Any] = {"date": day.isoformat(), "files": files, "audit": None}
    if AUDIT_RECORDS in current and AUDIT_VERIFICATION in current:
        records = [json.loads(line) for line in _read(archive, current[AUDIT_RECORDS]).splitlines() if line.strip()]
        sealed = json.loads(_read(archive, current[AUDIT_VERIFICATION]))
        leaves = [bytes.fromhex(r["hash"]) for r in records]
        root = sealed["day"]["merkle_root"]
        if merkle_root(leaves).hex() != root:
            raise HTTPException(500, f"archive: {day}: the sealed audit records do not give the sealed Merkle root")
        proofs = audit_paths(leaves)
        out["audit"] = {
            "head": sealed["head"], "merkle_root": root, "tree_size": len(records), "leaf": MERKLE_LEAF,
            "hashing": "RFC 6962 (SHA-256)",
            "records": [{"index": i, "proof": [h.hex() for h in proofs[i]], **r} for i, r in enumerate(records)],
        }
    return out
