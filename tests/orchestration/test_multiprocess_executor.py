"""The features job's assets under Dagster's multiprocess executor on the servers profile: run, event log and schedules in
PostgreSQL (the ``dagster.yaml`` the profile writes), each step in a process of its own, features into Feast's
PostgreSQL offline tables and Redis.

Why this job: its steps only *read* the DuckDB warehouse (dagster-duckdb retries a connection the file lock refuses),
so ``bar_features`` and ``bar_labels`` and the checks can run side by side. A job whose steps write the warehouse
(ingest: dbt holds the lock for the whole build) stays on the in-process executor until the warehouse moves to
PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil

import dagster as dg
import polars as pl
import pytest
from test_servers_profile import clean_env, servers_settings  # noqa: F401 (clean_env is a fixture)

from feature_repo import store as fs
from orchestration.market.warehouse import connect
from tests.features.synthetic_bars import feature_bars
from tests.orchestration.executor_jobs import STEPS
from tests.servers import count_rows

pytestmark = [pytest.mark.slow, pytest.mark.servers]

#: forkserver: one server process imports the code once and forks each step from it (a fresh interpreter per step
#: would import Dagster, dbt, Feast and the learners again: ~16 s a step on a busy 2-core box).
EXECUTION = {"config": {"multiprocess": {"max_concurrent": 2, "start_method": {
    "forkserver": {"preload_modules": ["orchestration.definitions", "feature_repo.store"]}}}}}
def _clean_bars(warehouse: str, bars: pl.DataFrame) -> None:
    """``marts.bars`` and ``raw.sessions`` as dbt leaves them, for the columns the features job reads."""
    con = connect(warehouse)
    try:
        con.register("b", bars.to_arrow())
        con.execute("create schema if not exists marts; create schema if not exists raw")
        con.execute("create table marts.bars as select symbol, sector, timeframe, ts, close_ts, session, 'XNYS' as calendar, "
                    "open as adj_open, high as adj_high, low as adj_low, close as adj_close, volume as adj_volume, "
                    "vwap as adj_vwap from b")
        con.execute("create table raw.sessions as select distinct 'XNYS' as calendar, session, session_open as open_ts, "
                    "session_close as close_ts from b")
    finally:
        con.close()


def test_features_job_runs_each_step_in_its_own_process_with_postgres_run_storage(clean_env, postgres_url, redis_url,  # noqa: F811
                                                                                  dbt_manifest, tmp_path):
    settings = servers_settings(clean_env, postgres_url, redis_url)
    settings.dbt_target_dir.mkdir(parents=True, exist_ok=True)  # prepared once: no step process parses the dbt project
    shutil.copy(dbt_manifest, settings.dbt_target_dir / "manifest.json")
    bars = feature_bars(n_symbols=3, first=dt.date(2024, 6, 3), last=dt.date(2024, 6, 21))
    _clean_bars(str(settings.warehouse_path), bars)
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME/dagster.yaml as the profile wrote it
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        job = dg.build_reconstructable_job("tests.orchestration.executor_jobs", "features_steps_job")
        result = dg.execute_job(job, instance, run_config={"execution": EXECUTION})
        assert result.success, [e.message for e in result.all_events if e.is_failure]
    with dg.DagsterInstance.get() as other:  # another process reading the same storage sees the run and its steps
        (run,) = other.get_runs()
        assert run.is_success and run.run_id == result.run_id
        starts = other.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records
    step_pids = {r.event_log_entry.dagster_event.step_key: r.event_log_entry.dagster_event.pid for r in starts}
    assert set(step_pids) == set(STEPS)
    assert len(set(step_pids.values())) == len(STEPS) and os.getpid() not in step_pids.values()  # a process per step

    features = fs.read_features(fs.offline_dir(settings.home))
    feast_db = postgres_url.rsplit("/", 1)[0] + "/" + postgres_url.rsplit("/", 1)[1] + "_feast"
    assert count_rows(feast_db, "SELECT count(*) FROM feast_offline.bar_ret") == features.height == bars.height
    online = fs.online_features(fs.open_store(settings.home, "prod"), ["AAA", "BBB", "CCC"])
    assert online["ts_bar_ret"].to_list() == [features["event_timestamp"].max()] * 3  # materialised into Redis
