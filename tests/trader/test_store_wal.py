"""WAL checkpoints of the SQLite store run off the writer's path (trader.store_wal), and the log stays bounded."""

from __future__ import annotations

import datetime as dt
import sqlite3

from trader.store import TraderStore
from trader.store_engine import make_engine
from trader.store_wal import BACKSTOP_PAGES, CHECKPOINT_BYTES, KEEP_BYTES, WalCheckpointer

T0 = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)


def _wal_db(path):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # only the checkpointer copies the log back
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    return conn


def test_a_log_past_the_threshold_is_checkpointed_in_the_background_and_the_next_writer_restarts_it(tmp_path):
    db = tmp_path / "t.db"
    conn = _wal_db(db)
    wal = WalCheckpointer(db, threshold_bytes=64 * 1024)
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(b"x" * 1000,) for _ in range(200)])  # ~200 kB of log
    grown = wal.wal.stat().st_size
    assert grown > wal.threshold_bytes
    wal.poke()
    wal.wait(10)
    assert wal.checkpoints == 1
    # Every frame was copied back: the next write starts the log from the top instead of growing it.
    conn.execute("INSERT INTO t (v) VALUES (?)", (b"y",))
    assert wal.wal.stat().st_size == grown
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert (busy, frames, copied) == (0, 1, 1)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 201
    conn.close()


def test_a_short_log_starts_no_checkpoint(tmp_path):
    db = tmp_path / "t.db"
    conn = _wal_db(db)
    conn.execute("INSERT INTO t (v) VALUES (?)", (b"x",))
    wal = WalCheckpointer(db)
    wal.poke()
    wal.wait(10)
    assert wal.checkpoints == 0
    assert conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1] > 0  # the frames were still in the log
    conn.close()
    missing = WalCheckpointer(tmp_path / "none.db")
    missing.poke()  # no log at all: nothing to do, no error
    assert missing.checkpoints == 0


def test_the_store_keeps_its_log_bounded_by_checkpointing_behind_its_commits(tmp_path):
    db = tmp_path / "trader.db"
    payload = {"blob": "z" * 100_000}
    with TraderStore(f"sqlite:///{db}") as store:
        assert store.wal is not None
        largest = 0
        for i in range(3 * CHECKPOINT_BYTES // 100_000):  # about three thresholds' worth of log, one commit each
            with store.transaction(durable=False) as tx:
                tx.append_audit("bulk", payload | {"i": i}, ts=T0 + dt.timedelta(seconds=i))
            store.wal.wait(10)  # as between cycles: the checkpoint started by this commit is done
            largest = max(largest, db.with_name(db.name + "-wal").stat().st_size)
        # Without the checkpointer the log would hold every commit (the connections' own limit is far above it).
        assert store.wal.checkpoints >= 2
        assert largest < CHECKPOINT_BYTES + 400_000  # at most the threshold plus one commit's pages
        assert store.verify_audit().ok
    probe = sqlite3.connect(db)
    assert probe.execute("SELECT count(*) FROM audit WHERE kind = 'bulk'").fetchone()[0] == 3 * CHECKPOINT_BYTES // 100_000
    probe.close()


def test_the_store_connections_leave_checkpoints_to_the_checkpointer_up_to_the_backstop(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'trader.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == BACKSTOP_PAGES
        assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar() == KEEP_BYTES  # a restarted log keeps its file
    engine.dispose()


def test_the_checkpointer_counts_the_frames_left_to_copy_not_the_size_of_a_kept_log_file(tmp_path):
    """A restarted log keeps its file (KEEP_BYTES): its size no longer says how much is left to copy back; the WAL
    index does, so a big but copied log starts no checkpoint and a short write after it counts as short."""
    db = tmp_path / "t.db"
    conn = _wal_db(db)
    conn.execute(f"PRAGMA journal_size_limit={KEEP_BYTES}")
    wal = WalCheckpointer(db, threshold_bytes=64 * 1024)
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(b"x" * 1000,) for _ in range(200)])
    assert wal.pending_bytes() > wal.threshold_bytes
    wal.poke()
    wal.wait(10)
    assert wal.checkpoints == 1 and wal.pending_bytes() == 0
    conn.execute("INSERT INTO t (v) VALUES (?)", (b"y",))  # the log restarts from the top, its file kept
    assert wal.wal.stat().st_size > wal.threshold_bytes
    assert 0 < wal.pending_bytes() < wal.threshold_bytes
    wal.poke()
    wal.wait(10)
    assert wal.checkpoints == 1
    conn.close()


def test_an_idle_checkpoint_runs_in_the_caller_once_the_log_holds_its_minimum_and_not_before(tmp_path):
    """Between cycles the run loop checkpoints itself (checkpoint_if_grown): below the minimum nothing runs."""
    db = tmp_path / "t.db"
    conn = _wal_db(db)
    wal = WalCheckpointer(db)
    conn.execute("INSERT INTO t (v) VALUES (?)", (b"x",))
    assert not wal.checkpoint_if_grown(min_bytes=64 * 1024) and wal.checkpoints == 0
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(b"x" * 1000,) for _ in range(200)])
    assert wal.checkpoint_if_grown(min_bytes=64 * 1024)
    assert wal.checkpoints == 1 and wal.pending_bytes() == 0  # done when it returns, no thread left behind
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 201
    conn.close()
