"""WAL checkpoints of the trader's SQLite store, off the decision cycle's path.

In WAL mode SQLite copies the log back into the database file (a *checkpoint*) when a commit
finds the log longer than ``wal_autocheckpoint`` pages (1,000 by default): that commit then
reads the log, writes the pages and syncs the database file before it returns. With a cycle
appending a few hundred kB (orders, fills, ~100 audit records), every eighth cycle or so paid
that inside one of its commits, possibly the durable one that orders wait for: those cycles
were the slowest ones (p99).

:class:`WalCheckpointer` takes that work off the writer: the store's connections checkpoint by
themselves only past :data:`BACKSTOP_PAGES` (a safety net, if checkpoints here keep failing),
and after each write transaction :meth:`WalCheckpointer.poke` reads how much of the log is not
yet copied back (the WAL index's frame counts); past :data:`CHECKPOINT_BYTES` it starts one
short-lived thread that runs a ``PASSIVE`` checkpoint on a connection of its own. ``PASSIVE``
never blocks readers or writers (it copies what no reader still needs; the next writer then
restarts the log from the top), and sqlite3 releases the GIL while it works, so on a second
core it runs beside the next cycle.

A restarted log keeps its file, up to :data:`KEEP_BYTES` (``journal_size_limit``): the commits after
a restart overwrite blocks the file already has, so syncing them writes data only, never a new
file size through the file system's journal — the durable commit's sync is shorter and steadier.

A run loop has idle time between cycles (a live runner waits for the next bar): it calls
:meth:`WalCheckpointer.checkpoint_if_grown` there, which checkpoints in its own thread once
:data:`IDLE_BYTES` are waiting. The log then never reaches :data:`CHECKPOINT_BYTES` inside a cycle
(a cycle appends about 0.5 MB), so no checkpoint competes with a cycle's commits for the disk and
the second core — the cycles that overlapped one were the slowest.

Durability is unchanged: a commit is durable once it is in the log (``synchronous=FULL``); a
checkpoint only moves committed pages, and SQLite recovers an interrupted one from the log.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
import threading
from pathlib import Path

_log = logging.getLogger(__name__)

PAGE_BYTES = 4096
#: A checkpoint starts once the log holds about this much (SQLite's own default: 1,000 pages).
CHECKPOINT_BYTES = 1000 * PAGE_BYTES
#: Between cycles (:meth:`WalCheckpointer.checkpoint_if_grown`) a checkpoint runs once the log holds this much.
IDLE_BYTES = CHECKPOINT_BYTES // 2
#: The store's connections still checkpoint by themselves past this many pages (16× the above).
BACKSTOP_PAGES = 16_000
#: A restarted log keeps its file up to this size (``journal_size_limit``), so later commits overwrite its blocks
#: instead of growing the file: their sync then moves no file size (no file-system journal commit).
KEEP_BYTES = 4 * CHECKPOINT_BYTES
#: The WAL-index header's page size (u16 at byte 14), ``mxFrame`` (u32 at 16) and ``nBackfill`` (u32 at 96).
_SHM_HEAD = struct.Struct("=14xHI76xI")
_FRAME_HEADER = 24


class WalCheckpointer:
    """Checkpoints the SQLite file ``path`` in the background when its log has grown (see the module docstring)."""

    def __init__(self, path: Path, *, threshold_bytes: int = CHECKPOINT_BYTES):
        self.path = Path(path)
        self.wal = self.path.with_name(self.path.name + "-wal")
        self.shm = self.path.with_name(self.path.name + "-shm")
        self.threshold_bytes = threshold_bytes
        self.checkpoints = 0  # completed, for tests and monitoring
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        """After a commit: start a checkpoint if the log is past the threshold and none is running (a stat, no I/O)."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self.pending_bytes() < self.threshold_bytes:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._checkpoint, name=f"wal-checkpoint {self.path.name}", daemon=True)
            self._thread.start()

    def checkpoint_if_grown(self, min_bytes: int = IDLE_BYTES) -> bool:
        """In idle time (the run loop between cycles): checkpoint now, in this thread, if at least ``min_bytes`` of the
        log are not yet copied back; a background checkpoint still running is waited for first. Whether one ran."""
        self.wait()
        if self.pending_bytes() < min_bytes:
            return False
        with self._lock:  # no background one starts meanwhile (poke() checks under this lock)
            self._checkpoint()
        return True

    def pending_bytes(self) -> int:
        """The log's frames not yet copied back, in bytes (frame headers included), from the WAL index; 0 without one.

        Read from the WAL-index header in the ``-shm`` file (https://sqlite.org/walformat.html: ``mxFrame`` at
        byte 16 of the header, ``nBackfill`` at byte 96 of the checkpoint information, native byte order), not
        from the log's size: the log file is kept at its size when it restarts (:data:`KEEP_BYTES`).
        """
        try:
            with open(self.shm, "rb") as file:
                head = file.read(_SHM_HEAD.size)
        except OSError:  # no log open (yet, or any more)
            return 0
        if len(head) < _SHM_HEAD.size:
            return 0
        page, frames, copied = _SHM_HEAD.unpack(head)
        page = 65536 if page == 1 else page
        return max(frames - copied, 0) * (page + _FRAME_HEADER)

    def wait(self, timeout: float | None = None) -> None:
        """Until a running checkpoint is done (the store calls this on close)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _checkpoint(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
            try:
                busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:  # the backstop still bounds the log; say why, once per attempt
            _log.warning("%s: WAL checkpoint failed (%s); SQLite checkpoints past %d pages by itself", self.path, exc,
                         BACKSTOP_PAGES)
            return
        self.checkpoints += 1
        _log.debug("%s: WAL checkpoint: %d of %d frames copied (busy=%d)", self.path, done, frames, busy)
