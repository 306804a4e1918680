"""The trader store's floor: what writing one cycle's rows costs SQLite itself, with no Python around it.

Used by :mod:`tests.benchmarks.bench_trader`. After the runner's timed cycles, the rows its store
holds are split back into cycles (the audit records by the chain's head after each cycle, the
orders by their decision time, fills and positions by the fill time, the equity mark by the
cycle's time) and written again, cycle by cycle, into a fresh store file with the same schema
(indexes, append-only and change-count triggers): one ``executemany`` per table on the bare
``sqlite3`` driver, each order written three times as the runner does (new, accepted, filled),
and **one** transaction per cycle, synced (``synchronous=FULL``). No checkpoints (the store's
run off the cycle, :mod:`trader.store_wal`).

That is the least a cycle can spend to keep what it keeps; the runner's store part (its cycle
minus the in-memory core) is judged against it.
"""

from __future__ import annotations

import bisect
import sqlite3
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from trader.store import TraderStore

#: How often the runner writes each order within its cycles: the decision (NEW), the venue's answer, the fill.
ORDER_WRITES = 3


def _rows(conn: sqlite3.Connection, table: str, order: str) -> tuple[list[str], list[tuple]]:
    cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {order}")
    return [d[0] for d in cursor.description], cursor.fetchall()


def _insert(table: str, columns: Sequence[str], key: str | None = None) -> str:
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    if key is not None:
        sql += f" ON CONFLICT ({key}) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return sql


def cycle_rows(db: Path, cycle_ts: Sequence[str], audit_heads: Sequence[int]) -> tuple[dict[str, list[str]], list[dict]]:
    """The rows the runner's store at ``db`` holds, per cycle; ``cycle_ts`` as stored (ISO text), ``audit_heads``: the
    chain's head ``seq`` after each cycle."""
    src = sqlite3.connect(db)
    try:
        tables = {name: _rows(src, name, key) for name, key in
                  (("audit", "seq"), ("orders", "rowid"), ("fills", "rowid"), ("positions", "rowid"), ("equity_marks", "ts"))}
    finally:
        src.close()
    columns = {name: cols for name, (cols, _) in tables.items()}
    cycles: list[dict] = [defaultdict(list) for _ in cycle_ts]
    times, heads = list(cycle_ts), list(audit_heads)

    def at(ts: str) -> int:  # the cycle a time belongs to: the last one at or before it
        return max(0, bisect.bisect_right(times, ts) - 1)

    seq = columns["audit"].index("seq")
    for row in tables["audit"][1]:
        cycles[min(bisect.bisect_left(heads, row[seq]), len(times) - 1)]["audit"].append(row)
    created = columns["orders"].index("created_at")
    for row in tables["orders"][1]:
        cycles[at(row[created])]["orders"].append(row)
    fill_ts, fill_symbol = columns["fills"].index("ts"), columns["fills"].index("symbol")
    positions = {row[columns["positions"].index("symbol")]: row for row in tables["positions"][1]}
    for row in tables["fills"][1]:
        cycle = cycles[at(row[fill_ts])]
        cycle["fills"].append(row)
        if positions.get(row[fill_symbol]) not in cycle["positions"]:
            cycle["positions"].append(positions[row[fill_symbol]])
    mark_ts = columns["equity_marks"].index("ts")
    for row in tables["equity_marks"][1]:
        cycles[at(row[mark_ts])]["equity_marks"].append(row)
    return columns, cycles


def store_floor(db: Path, cycle_ts: Sequence[str], audit_heads: Sequence[int]) -> tuple[list[float], dict[str, float]]:
    """Seconds per cycle to write its rows as described in the module docstring, and what a cycle writes on average."""
    columns, cycles = cycle_rows(db, cycle_ts, audit_heads)
    statements = [(name, _insert(name, columns[name], key)) for name, key in
                  (("audit", None), ("fills", None), ("positions", "symbol"), ("equity_marks", None))]
    upsert_order = _insert("orders", columns["orders"], "client_order_id")
    payload = columns["audit"].index("payload")
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "floor.db"
        TraderStore(f"sqlite:///{path}").close()  # the same schema, triggers included
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "wal_autocheckpoint=0"):
                conn.execute(f"PRAGMA {pragma}")
            for cycle in cycles:
                t0 = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                for _ in range(ORDER_WRITES):
                    conn.executemany(upsert_order, cycle["orders"])
                for name, sql in statements:
                    conn.executemany(sql, cycle[name])
                conn.execute("COMMIT")
                times.append(time.perf_counter() - t0)
        finally:
            conn.close()
    n = len(cycles)
    volume = {"audit records": sum(len(c["audit"]) for c in cycles) / n,
              "audit kB": sum(len(r[payload]) for c in cycles for r in c["audit"]) / n / 1e3,
              "orders": sum(len(c["orders"]) for c in cycles) / n, "fills": sum(len(c["fills"]) for c in cycles) / n}
    return times, volume
