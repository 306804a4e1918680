"""The warehouse resource waits for a DuckDB file another process holds (a parallel step, the bar stream), then gives up
with one line: what dagster-duckdb's resource did before the warehouse interface."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from orchestration.warehouse import WarehouseBusy
from orchestration.warehouse.resource import WarehouseResource

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("create table if not exists t as select 1 as x")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _hold(path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_busy_duckdb_file_is_waited_for_until_the_other_process_lets_go(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    proc = _hold(path, 1.5)
    try:
        started = time.monotonic()
        with WarehouseResource(location=str(path), busy_wait_s=30).get_connection(read_only=True) as con:
            assert con.scalar("select x from t") == 1
        assert time.monotonic() - started > 0.5  # it did wait for the holder
    finally:
        proc.wait(timeout=30)


def test_a_file_held_longer_than_the_wait_is_one_line_naming_the_warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    proc = _hold(path, 20)
    try:
        with pytest.raises(WarehouseBusy, match=rf"^warehouse {path}: busy, another process writes it") as err:
            with WarehouseResource(location=str(path), busy_wait_s=0.5).get_connection():
                pass
        assert "\n" not in str(err.value)
    finally:
        proc.kill()
        proc.wait()
