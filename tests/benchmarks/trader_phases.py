"""Where a trader cycle's time goes, phase by phase, and what its slowest cycles did differently.

Used by :mod:`tests.benchmarks.bench_trader` (``--phases``): a runner loop like the timed one, with each
phase of :meth:`trader.runner.Runner.cycle` wrapped in a timer (so a little slower), the cyclic garbage
collector's pauses taken from :data:`gc.callbacks`, this thread's CPU time beside the wall time, and the
upkeep between cycles (:meth:`~trader.runner.Runner.idle`) apart. It prints each phase's median and, for
the slowest cycles, each phase against its median: a cause (a collection, a commit waiting for the disk,
more orders) stands out in one phase; a cycle whose phases are all slower by the same factor, with CPU
time up as much as wall time, was slowed by the machine (other processes on its cores), not by its work.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import trader.runner as runner_module
from trader.runner import Runner, Tick, steady_heap
from trader.store import TraderStore

#: Runner methods timed, in the order a cycle runs them (``sizing``: :func:`trader.sizing.size_orders`).
_METHODS = ("_sync", "_context", "_current_bar", "_route", "_finish")
COLUMNS = ("wall", "cpu", "sync", "context", "predict", "sizing", "risk", "route", "durable commit", "finish",
           "other commits", "gc")


def _timed(into: dict[str, float], label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into[label] += time.perf_counter() - t0
    return wrapper


def _instrument(runner: Runner, into: dict[str, float]) -> Callable[[], None]:
    """Wrap the runner's phases, its store's commits and the GC; returns the undo."""
    for name, label in zip(_METHODS, ("sync", "context", "predict", "route", "finish"), strict=True):
        setattr(runner, name, _timed(into, label, getattr(runner, name)))
    runner.execution.check_all = _timed(into, "risk", runner.execution.check_all)  # type: ignore[method-assign]
    sizing = runner_module.size_orders
    runner_module.size_orders = _timed(into, "sizing", sizing)  # type: ignore[assignment]
    store, transaction = runner.store, runner.store.transaction

    @contextmanager
    def commit_timed(*, durable: bool = True) -> Iterator[Any]:
        with transaction(durable=durable) as tx:
            yield tx
            t0 = time.perf_counter()  # from the block's end: the batch's statements, the commit (and its sync)
        into["durable commit" if durable else "other commits"] += time.perf_counter() - t0

    store.transaction = commit_timed  # type: ignore[method-assign]
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            into["gc"] += time.perf_counter() - started.pop()
            into[f"gc{info['generation']}"] += 1

    gc.callbacks.append(on_gc)

    def undo() -> None:
        gc.callbacks.remove(on_gc)
        runner_module.size_orders = sizing
        for name in (*_METHODS, "transaction"):
            vars(runner if name != "transaction" else store).pop(name, None)
        vars(runner.execution).pop("check_all", None)
    return undo


def phase_rows(make_runner: Callable[[TraderStore], Runner], ticks: list[Tick], before: Callable[[Tick], object]
               ) -> tuple[list[dict[str, float]], list[float]]:
    """One row of phase times (seconds) per cycle, and the upkeep after each, for the runner ``make_runner`` builds
    on a fresh SQLite store; ``before(tick)`` moves the venue's clock."""
    with tempfile.TemporaryDirectory() as tmp, TraderStore(f"sqlite:///{Path(tmp) / 'phases.db'}") as store:
        runner = make_runner(store)
        runner.start()
        return _loop(runner, ticks, before)


def _loop(runner: Runner, ticks: list[Tick], before: Callable[[Tick], object]) -> tuple[list[dict[str, float]], list[float]]:
    into: dict[str, float] = defaultdict(float)
    undo = _instrument(runner, into)
    rows, idle = [], []
    try:
        with steady_heap():
            for tick in ticks:
                before(tick)
                into.clear()
                t0, c0 = time.perf_counter(), time.thread_time()
                report = runner.cycle(tick)
                wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
                rows.append(dict(into, wall=wall, cpu=cpu, orders=report.submitted))
                t0 = time.perf_counter()
                runner.idle()
                idle.append(time.perf_counter() - t0)
    finally:
        undo()
    return rows, idle


def print_phases(rows: list[dict[str, float]], idle: list[float], *, slowest: int = 5) -> None:
    """Each phase's median (ms) and, for the ``slowest`` cycles, each phase's ratio to its median."""
    median = {c: float(np.median([r.get(c, 0.0) for r in rows])) for c in COLUMNS}
    print(f"\nRunner.cycle phases, {len(rows)} cycles (instrumented; ms; 'cpu' is this thread's CPU time):")
    print(f"  {'':7}" + " ".join(f"{c:>15}" for c in COLUMNS) + "  orders  gc0/1/2")
    print(f"  {'median':7}" + " ".join(f"{median[c] * 1e3:15.2f}" for c in COLUMNS))
    for i, row in sorted(enumerate(rows), key=lambda item: -item[1]["wall"])[:slowest]:
        cells = " ".join(f"{row.get(c, 0.0) * 1e3:7.2f} ({row.get(c, 0.0) / median[c] if median[c] else 0:4.1f}×)" for c in COLUMNS)
        gcs = "/".join(f"{row.get(f'gc{g}', 0):.0f}" for g in range(3))
        print(f"  {'#' + str(i):7}{cells}  {row['orders']:6.0f}  {gcs}")
    print(f"  upkeep between cycles (Runner.idle, not in the cycle): p50 {np.median(idle) * 1e3:.2f} ms, "
          f"max {max(idle) * 1e3:.2f} ms")
