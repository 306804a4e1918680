"""The raw layer on both warehouse engines (DuckDB file; PostgreSQL, marker ``servers``): same rows, same quarantine."""

import json

import polars as pl
import pytest

from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket
from orchestration.market.warehouse import batch_reports, ingest_batch
from tests.conftest import utc

NOW = utc(2024, 2, 1)


def _batch(**faults: int):
    cfg = SyntheticConfig(n_symbols=3, n_sectors=1, faults=faults)
    return SyntheticMarket(cfg).fetch(utc(2024, 1, 2), utc(2024, 1, 4), now=NOW)


@pytest.fixture
def con(any_warehouse):
    with any_warehouse.connect() as session:
        yield session


def test_ingest_batch_when_same_data_ingested_twice_appends_nothing_the_second_time(con):
    first = ingest_batch(con, _batch(), asset="raw_bars", now=NOW)
    second = ingest_batch(con, _batch(), asset="raw_bars", now=NOW)
    assert first.rows_accepted == 3 * 26 * 2 and first.duplicate_of is None
    assert second.duplicate_of == first.batch_id and second.rows_accepted == 0
    assert con.scalar("select count(*) from raw.bars") == first.rows_accepted
    assert con.scalar("select count(*) from raw.batches") == 2
    assert con.scalar("select count(*) from raw.synthetic_oracle") == first.rows_accepted * 3


def test_ingest_batch_quarantines_rejects_with_original_values_reason_and_batch(con):
    report = ingest_batch(con, _batch(negative_volume=2, duplicate_key=1), asset="raw_bars", now=NOW)
    rows = con.read("select batch_id, reason, volume from raw.bars_rejected order by source_row")
    assert rows["batch_id"].unique().to_list() == [report.batch_id]
    assert sorted(rows["reason"].to_list()) == ["duplicate_key", "volume_negative:volume", "volume_negative:volume"]
    assert "-100.0" in rows["volume"].to_list()
    stored = con.scalar("select reasons from raw.batches")
    assert json.loads(stored) == {"volume_negative:volume": 2, "duplicate_key": 1}
    again = batch_reports(con, asset="raw_bars")[0]
    assert again.rows_rejected == 3 and again.reject_rows["duplicate_key"]


def test_ingest_batch_stores_timestamps_in_utc_and_sessions_and_symbols(con):
    ingest_batch(con, _batch(), asset="raw_bars", now=NOW)
    ts = con.read("select min(ts) from raw.bars")
    assert ts.dtypes[0] == pl.Datetime("us", "UTC") and ts.item() == utc(2024, 1, 2, 14, 30)
    assert con.scalar("select count(*) from raw.sessions where calendar = 'XNYS'") >= 2
    assert con.fetchone("select count(*), count(sector) from raw.symbols") == (3, 3)


def test_batch_reports_when_a_blocked_batch_is_ingested_again_judge_it_by_the_original(con):
    from orchestration.defs.market.checks import reject_share_message

    first = ingest_batch(con, _batch(negative_volume=4), asset="raw_bars", now=NOW)
    second = ingest_batch(con, _batch(negative_volume=4), asset="raw_bars", now=NOW)
    assert second.duplicate_of == first.batch_id and second.rows_accepted == 0  # nothing appended twice
    report = batch_reports(con, asset="raw_bars")[0]
    assert (report.batch_id, report.duplicate_of) == (second.batch_id, first.batch_id)
    assert (report.rows_received, report.rows_rejected) == (first.rows_received, 4)
    passed, message = reject_share_message([report], limit=0.01)
    assert not passed
    assert f"(batch {second.batch_id}: identical to blocked batch {first.batch_id}, nothing appended): 4 of " in message
    assert "volume_negative:volume ×4 (rows " in message and "\n" not in message
    rejected = con.fetchall("select batch_id, count(*) from raw.bars_rejected group by 1")
    assert rejected == [(first.batch_id, 4)]  # the first batch's quarantined rows stay where they were
