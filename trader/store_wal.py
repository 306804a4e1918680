"""WAL checkpoints of the trader's SQLite store, off the decision cycle's path.

In WAL mode SQLite copies the log back into the database file (a *checkpoint*) when a commit
finds the log longer than ``wal_autocheckpoint`` pages (1,000 by default): that commit then
reads the log, writes the pages and syncs the database file before it returns. With a cycle
appending a few hundred kB (orders, fills, ~100 audit records), every eighth cycle or so paid
that inside one of its commits, possibly the durable one that orders wait for: those cycles
were the slowest ones (p99).

:class:`WalCheckpointer` takes that work off the writer: the store's connections checkpoint by
themselves only past :data:`BACKSTOP_PAGES` (a safety net, if checkpoints here keep failing),
and after each write transaction :meth:`WalCheckpointer.poke` looks at the log's size; past
:data:`CHECKPOINT_BYTES` it starts one short-lived thread that runs a ``PASSIVE`` checkpoint
on a connection of its own. ``PASSIVE`` never blocks readers or writers (it copies what no
reader still needs; the next writer then restarts the log from the top), and sqlite3 releases
the GIL while it works, so on a second core it runs beside the next cycle.

Durability is unchanged: a commit is durable once it is in the log (``synchronous=FULL``); a
checkpoint only moves committed pages, and SQLite recovers an interrupted one from the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

_log = logging.getLogger(__name__)

PAGE_BYTES = 4096
#: A checkpoint starts once the log holds about this much (SQLite's own default: 1,000 pages).
CHECKPOINT_BYTES = 1000 * PAGE_BYTES
#: The store's connections still checkpoint by themselves past this many pages (16× the above).
BACKSTOP_PAGES = 16_000


class WalCheckpointer:
    """Checkpoints the SQLite file ``path`` in the background when its log has grown (see the module docstring)."""

    def __init__(self, path: Path, *, threshold_bytes: int = CHECKPOINT_BYTES):
        self.path = Path(path)
        self.wal = self.path.with_name(self.path.name + "-wal")
        self.threshold_bytes = threshold_bytes
        self.checkpoints = 0  # completed, for tests and monitoring
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        """After a commit: start a checkpoint if the log is past the threshold and none is running (a stat, no I/O)."""
        if self._thread is not None and self._thread.is_alive():
            return
        try:
            size = self.wal.stat().st_size
        except OSError:  # no log (yet, or any more)
            return
        if size < self.threshold_bytes:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._checkpoint, name=f"wal-checkpoint {self.path.name}", daemon=True)
            self._thread.start()

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
