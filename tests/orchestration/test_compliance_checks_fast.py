"""The EOD checks' shortcuts (issue 20) report what the full checks report."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from orchestration.defs.compliance.anchoring import signature_problems
from orchestration.defs.compliance.expectations import run_day_suite
from orchestration.defs.compliance.paths import CompliancePaths
from trader.audit_hmac import KEY_ENV
from trader.compliance import ComplianceFill, close_day
from trader.store import TraderStore

DAY = dt.date(2024, 3, 4)


def _fill(fid: str, side: str, qty: str, hour: int) -> ComplianceFill:
    return ComplianceFill(fill_id=fid, order_id=fid, client_order_id=fid, symbol="AAA", side=side, qty=qty, price="10",
                          fee="0.01", ts=dt.datetime(2024, 3, 4, hour, tzinfo=dt.UTC), venue="SIM", account="A1")


def test_the_suite_without_data_docs_names_a_broken_lot_as_the_published_suite_does(tmp_path: Path):
    close = close_day([_fill("b1", "buy", "10", 15), _fill("b2", "buy", "4", 16)], day=DAY,
                      closing_marks={"AAA": Decimal("11")})
    close.ledger.open_lots()[0].qty = Decimal(-5)  # a bug that books a long lot below zero

    plain, published = run_day_suite(close), run_day_suite(close, docs_dir=tmp_path / "docs")

    assert not plain.success and plain.failed == published.failed
    assert plain.failed == ["lots: expect_column_values_to_be_between(qty): 1 unexpected, e.g. ['-5.0']"]
    assert (tmp_path / "docs" / "index.html").exists()


def _paths(tmp_path: Path) -> CompliancePaths:
    return CompliancePaths(store_url=f"sqlite:///{tmp_path / 'trader.db'}", reports_dir=tmp_path / "reports",
                           archive_root=tmp_path / "archive", work_dir=tmp_path / "compliance")


@pytest.mark.parametrize("key", ["", "k" * 32])
def test_a_store_with_nothing_signed_counts_every_record_as_unsigned(tmp_path: Path, monkeypatch, key: str):
    monkeypatch.setenv(KEY_ENV, "")
    paths = _paths(tmp_path)
    with TraderStore(paths.store_url) as store:
        for n in range(3):
            store.append_audit("note", {"n": n}, ts=dt.datetime(2024, 3, 4, 15, n, tzinfo=dt.UTC))
    monkeypatch.setenv(KEY_ENV, key)

    summary, problems = signature_problems(paths)
    assert summary.startswith("audit HMAC: 0 signed, 3 unsigned") and problems == []
    _, problems = signature_problems(paths, required_from=2)
    assert problems == ["audit HMAC: the anchor says records were signed from seq 2, but no record is signed "
                        "(HMAC rows removed)"]


def test_a_signed_store_still_checks_each_record(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k" * 32)
    paths = _paths(tmp_path)
    with TraderStore(paths.store_url) as store:
        for n in range(3):
            store.append_audit("note", {"n": n}, ts=dt.datetime(2024, 3, 4, 15, n, tzinfo=dt.UTC))

    assert signature_problems(paths) == ("audit HMAC: 3 signed, 0 unsigned (from before ALPHALINE_AUDIT_KEY was set)", [])
    monkeypatch.setenv(KEY_ENV, "x" * 32)
    _, problems = signature_problems(paths)
    assert len(problems) == 3 and problems[0] == ("audit HMAC: record seq 1: HMAC does not match (forged or altered "
                                                  "without the key, or another key)")
