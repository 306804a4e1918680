"""Benchmark the point-in-time training-set build through Feast against a DuckDB ASOF join of the same Parquet files.

Run by hand, never under pytest::

    python -m tests.benchmarks.bench_training_set [--symbols 48] [--sessions 250] [--chunk-rows 100000] [--stock]

Setup (not timed): ``--symbols`` × the last ``--sessions`` XNYS sessions of 2024 (ending
2024-12-31) of 15-minute synthetic bars (``tests/features/synthetic_bars.feature_bars``);
``compute_features`` and ``compute_labels``; ``write_features``/``write_labels`` into a
temporary ALPHALINE home; ``open_store`` and ``apply`` (one view per family, TTL 4 bars).

What is measured, each contender in a fresh process (multiprocessing, spawn), imports and
store opening done before the clock starts:

* feast: ``training_set(store, offline, chunk_rows=--chunk-rows)`` as the pipeline calls it:
  entity frame = every non-warm-up labelled bar, Feast's ``get_historical_features`` with the
  ``model_inputs`` service, chunk by chunk, through the embedded profile's offline store
  (``feature_repo/asof_offline_store.py``: Feast's DuckDB store with ASOF joins);
* stock feast (``--stock``): the same through Feast's own DuckDB offline store (ibis), the
  reference the ASOF store replaced (~16x the floor at full size);
* feast, 4 chunks: the same cut into 4 calls, so the fixed cost of a Feast call is visible;
* feast, 1 entity row: one ``get_historical_features`` call for a single entity row: what
  Feast spends per call whatever its size (registry look-ups, entity frame checks, planning,
  scanning the files). The report also gives Feast / (ASOF floor + calls × this).
* floor: one DuckDB query, the same entity frame (``bars.parquet`` where not warmup,
  inner join ``labels.parquet``) ``ASOF LEFT JOIN`` each family's Parquet file on
  ``symbol`` and ``entity ts >= feature ts``, a feature row older than the views' TTL
  giving null (Feast's rule: ``feature ts + ttl >= entity ts``), sorted, as a polars frame.
  The offline files hold one row per (symbol, event_timestamp), so the ``created``
  tie-break Feast applies never matters and the floor leaves it out.

Memory, per contender process (Linux ``/proc/self/status``): ``peak MiB`` is its peak RSS during
the timed call(s) (the peak is reset just before, so imports do not count beyond what stays
resident), ``+RSS MiB`` is that minus its RSS just before the call, i.e. what the build added.

Before any timing is printed the outputs are compared: same (symbol, event_timestamp) rows
in the same order, every feature equal within 1e-12 with the same nulls, labels identical.
A mismatch is printed and the script exits non-zero.

How to read it: machines are noisy, so judge the ratios, not the seconds. ``/floor`` is a
contender's time over the ASOF floor measured in the same run. Only a temporary directory is
written (removed at the end unless ``--keep``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from feature_repo.labels import LABEL_NAMES, compute_labels
from feature_repo.library import FAMILIES, FEATURE_NAMES, FEATURES, compute_features
from tests.benchmarks.summary import Verdict, report

LAST_SESSION = dt.date(2024, 12, 31)
BAR = dt.timedelta(minutes=15)
KEYS = ("symbol", "event_timestamp")
UTC_TS = pl.Datetime("us", "UTC")
TOLERANCE = 1e-12


@dataclass(frozen=True)
class Measure:
    name: str
    seconds: list[float]
    rows: int
    rss_before_kib: int  # resident set just before the timed call(s)
    rss_peak_kib: int  # the process's peak resident set from then until after them
    output: str  # the frame, as Parquet (written after the clock stopped)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def added_mib(self) -> float:
        return (self.rss_peak_kib - self.rss_before_kib) / 1024

    @property
    def peak_mib(self) -> float:
        return self.rss_peak_kib / 1024


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_start() -> int:
    """The current RSS in KiB, after resetting the peak (Linux ``clear_refs`` 5) so that :func:`rss_peak` sees only what follows.

    ``ru_maxrss`` is no use in a spawned child: Linux carries the forked parent's peak across ``exec``.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    now = _status_kib("VmRSS")
    return now if now is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_peak() -> int:
    peak = _status_kib("VmHWM")  # this process image's peak RSS (since the reset)
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def quiet() -> None:
    """Silence the dependencies' import-time deprecation notices (sqlglot, ibis), as the test suite does."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*sqlglot.*")


# --- setup (parent process, not timed) -----------------------------------------------------------


def first_session(n_sessions: int) -> dt.date:
    from orchestration.market.calendars import sessions

    cal = sessions("XNYS", LAST_SESSION - dt.timedelta(days=2 * n_sessions + 30), LAST_SESSION)
    if cal.height < n_sessions:
        raise SystemExit(f"only {cal.height} XNYS sessions found before {LAST_SESSION}")
    return cal["session"][-n_sessions]


def build_home(home: Path, n_symbols: int, n_sessions: int) -> dict[str, object]:
    """Bars → features + labels → offline Parquet files → Feast registry; returns facts for the report."""
    from feature_repo.definitions import TTL_BARS
    from feature_repo.store import apply, offline_dir, open_store, write_features, write_labels
    from tests.features.synthetic_bars import feature_bars

    first = first_session(n_sessions)
    bars = feature_bars(n_symbols, first, LAST_SESSION)
    got = bars["session"].n_unique()
    if got != n_sessions:
        raise SystemExit(f"the synthetic market gave {got} sessions, not {n_sessions} (it starts on 2024-01-02: at most 252)")
    features = compute_features(bars, bar_length=BAR)
    labels = compute_labels(bars)
    offline = offline_dir(home)
    write_features(features, offline)
    write_labels(labels, offline)
    if features.select(pl.struct(*KEYS).is_duplicated().any()).item():
        raise SystemExit("duplicate (symbol, event_timestamp) in the features: the floor's semantics would differ from Feast's")
    apply(open_store(home), offline, bar_length=BAR)
    return {
        "bars": bars.height,
        "first": first,
        "warmup": features["warmup"].sum(),
        "ttl": TTL_BARS * BAR,
    }


def entity_rows(offline: Path) -> tuple[int, dt.timedelta]:
    """How many entity rows ``training_set`` sends to Feast (non-warm-up labelled bars), and the span they cover."""
    ts = (
        pl.scan_parquet(offline / "bars.parquet").filter(~pl.col("warmup"))
        .join(pl.scan_parquet(offline / "labels.parquet"), on=list(KEYS), how="inner")
        .select("event_timestamp").collect()["event_timestamp"]
    )
    first, last = ts.min(), ts.max()
    assert isinstance(first, dt.datetime) and isinstance(last, dt.datetime)
    return ts.len(), last - first


# --- contenders (each in a fresh spawned process) ------------------------------------------------


def run_feast(name: str, home: str, chunk_rows: int, repeat: int, out: str, offline_store: str | None = None) -> Measure:
    from feature_repo.store import offline_dir, open_store, training_set

    quiet()  # after importing Feast, which turns deprecation warnings back on

    store = open_store(Path(home), offline_store=offline_store)
    offline = offline_dir(Path(home))
    before = rss_start()
    seconds, frame = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        frame = training_set(store, offline, chunk_rows=chunk_rows)
        seconds.append(time.perf_counter() - t0)
    peak = rss_peak()
    assert frame is not None
    frame.write_parquet(out)
    return Measure(name, seconds, frame.height, before, peak, out)


def run_feast_fixed(name: str, home: str, repeat: int, out: str) -> Measure:
    """Feast's fixed cost: one ``get_historical_features`` call for a single entity row (the last bar)."""
    from feature_repo.definitions import SERVICE
    from feature_repo.store import open_store, spine_path

    quiet()
    store = open_store(Path(home))
    entity = pl.read_parquet(spine_path(Path(home) / "feast" / "offline")).select(*KEYS).tail(1).to_pandas()
    before = rss_start()
    seconds, table = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        table = store.get_historical_features(entity_df=entity, features=store.get_feature_service(SERVICE)).to_arrow()
        seconds.append(time.perf_counter() - t0)
    peak = rss_peak()
    assert table is not None
    pl.from_arrow(table).write_parquet(out)  # type: ignore[union-attr]
    return Measure(name, seconds, table.num_rows, before, peak, out)


def asof_sql(offline: str, family_files: dict[str, str], ttl_us: int) -> str:
    """The floor: one statement, entity frame ASOF-joined to every family file, Feast's TTL rule, sorted."""
    joins, cols = [], {}
    for i, family in enumerate(FAMILIES):
        a = f"f{i}"
        joins.append(
            f"ASOF LEFT JOIN read_parquet('{family_files[family]}') {a} "
            f"ON e.symbol = {a}.symbol AND e.event_timestamp >= {a}.event_timestamp"
        )
        fresh = f"{a}.event_timestamp >= e.event_timestamp - to_microseconds({ttl_us})"
        cols |= {n: f"CAST(CASE WHEN {fresh} THEN {a}.{n} END AS DOUBLE) AS {n}" for n, s in FEATURES.items() if s.family == family}
    labels = ", ".join(f"l.{n}" for n in LABEL_NAMES)
    return (
        f"WITH e AS (SELECT s.symbol, s.event_timestamp, {labels} "
        f"FROM read_parquet('{offline}/bars.parquet') s "
        f"JOIN read_parquet('{offline}/labels.parquet') l USING (symbol, event_timestamp) WHERE NOT s.warmup) "
        f"SELECT e.symbol, e.event_timestamp, {', '.join(cols[n] for n in FEATURE_NAMES)}, {', '.join(f'e.{n}' for n in LABEL_NAMES)} "
        f"FROM e {' '.join(joins)} ORDER BY e.symbol, e.event_timestamp"
    )


def run_asof(name: str, sql: str, repeat: int, out: str) -> Measure:
    quiet()
    import duckdb

    before = rss_start()
    seconds, frame = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        con = duckdb.connect()  # in memory, default threads (= cores), like Feast's ibis backend
        con.execute("SET TimeZone = 'UTC'")
        frame = con.sql(sql).pl()
        con.close()
        seconds.append(time.perf_counter() - t0)
    peak = rss_peak()
    assert frame is not None
    frame.write_parquet(out)
    return Measure(name, seconds, frame.height, before, peak, out)


def in_fresh_process(fn: Callable[..., Measure], *args: object) -> Measure:
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# --- comparison and report -----------------------------------------------------------------------


def compare(got: pl.DataFrame, ref: pl.DataFrame) -> tuple[list[str], float]:
    """Mismatches of ``got`` against ``ref`` (empty if identical within tolerance) and the largest |difference|."""
    if got.columns != ref.columns:
        return [f"columns differ: {got.columns} vs {ref.columns}"], math.inf
    if got.height != ref.height:
        return [f"rows differ: {got.height:,} vs {ref.height:,}"], math.inf
    if not got.select(*KEYS).equals(ref.select(*KEYS)):
        diff = got.select(*KEYS).with_row_index().join(ref.select(*KEYS).with_row_index(), on="index").filter(
            (pl.col("symbol") != pl.col("symbol_right")) | (pl.col("event_timestamp") != pl.col("event_timestamp_right"))
        )
        return [f"(symbol, event_timestamp) differ on {diff.height:,} rows, first: {diff.row(0)}"], math.inf
    bad, worst = [], 0.0
    for n in FEATURE_NAMES:
        a, b = got[n].cast(pl.Float64), ref[n].cast(pl.Float64)
        if not a.is_null().equals(b.is_null()):
            bad.append(f"{n}: nulls differ ({a.null_count():,} vs {b.null_count():,})")
            continue
        d = (a - b).abs().max()
        d = float(d) if d is not None else 0.0  # type: ignore[arg-type]
        worst = max(worst, d)
        if d > TOLERANCE:
            bad.append(f"{n}: max |difference| {d:.3e}")
    for n in LABEL_NAMES:
        if not got[n].equals(ref[n]):
            bad.append(f"{n}: labels differ")
    return bad, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, default=48)
    parser.add_argument("--sessions", type=int, default=250, help="XNYS sessions of 15-minute bars ending 2024-12-31 (at most 252)")
    parser.add_argument("--chunk-rows", type=int, default=None, help="training_set's chunk_rows (default: its own, CHUNK_ROWS)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per contender in its process; the best counts")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--stock", action="store_true", help="also time Feast's stock DuckDB offline store (reference; slow)")
    args = parser.parse_args()
    repeat = max(1, args.repeat)

    from feature_repo.definitions import offline_path
    from feature_repo.store import CHUNK_ROWS, offline_dir

    quiet()  # after importing Feast, which turns deprecation warnings back on

    root = Path(tempfile.mkdtemp(prefix="alphaline-bench-ts-"))
    try:
        home = root / "home"
        t0 = time.perf_counter()
        facts = build_home(home, args.symbols, args.sessions)
        setup = time.perf_counter() - t0
        offline = offline_dir(home)
        n_rows, span = entity_rows(offline)
        chunk_rows = args.chunk_rows or CHUNK_ROWS
        quarter = max(1, math.ceil(n_rows / 4))
        ttl: dt.timedelta = facts["ttl"]  # type: ignore[assignment]
        print(f"input: {facts['bars']:,} bars = {args.symbols} symbols x {args.sessions} XNYS sessions of 15-minute bars "
              f"({facts['first']} .. {LAST_SESSION}), {facts['warmup']:,} warm-up; features, labels, Parquet and "
              f"feast apply in {setup:.1f} s (not timed); workdir {root}")
        print(f"entity frame: {n_rows:,} rows (every non-warm-up labelled bar) over {span / dt.timedelta(days=1):.1f} days; "
              f"{len(FEATURE_NAMES)} features in {len(FAMILIES)} views, TTL {ttl}; "
              f"{math.ceil(n_rows / chunk_rows)} chunk(s) of at most {chunk_rows:,} rows")

        files = {f: str(offline_path(offline, f)) for f in FAMILIES}
        sql = asof_sql(str(offline), files, int(ttl / dt.timedelta(microseconds=1)))
        runs = [
            (run_asof, ("ASOF floor", sql, repeat, str(root / "asof.parquet"))),
            (run_feast, ("feast", str(home), chunk_rows, repeat, str(root / "feast.parquet"))),
            (run_feast, ("feast 4 chunks", str(home), quarter, repeat, str(root / "feast4.parquet"))),
            (run_feast_fixed, ("feast 1 entity row", str(home), repeat, str(root / "feast_fixed.parquet"))),
        ]
        if args.stock:
            runs.append((run_feast, ("stock feast", str(home), chunk_rows, repeat, str(root / "stock.parquet"), "duckdb")))
        results: list[Measure] = []
        for fn, fn_args in runs:
            print(f"  running {fn_args[0]} ...", flush=True)
            try:
                results.append(in_fresh_process(fn, *fn_args))
            except Exception as exc:
                print(f"  FAILED {fn_args[0]}: {type(exc).__name__}: {exc}")
                raise

        floor, feast, feast4, fixed, *stock = results
        ref = pl.read_parquet(floor.output)
        failed = False
        for m in (feast, feast4, *stock):
            bad, worst = compare(pl.read_parquet(m.output), ref)
            print(f"check {m.name} vs ASOF floor: {m.rows:,} vs {floor.rows:,} rows, {len(FEATURE_NAMES)} features, "
                  f"max |difference| {worst:.2e} (tolerance {TOLERANCE:g}): {'identical' if not bad else 'MISMATCH'}")
            for line in bad:
                print(f"  DIFFERS {line}")
            failed |= bool(bad)

        fmt = "{:>18} {:>9} {:>10} {:>20} {:>11} {:>10} {:>9} {:>9}"
        print(fmt.format("contender", "rows", "best s", f"runs s (x{repeat})", "rows/s", "/floor", "peak MiB", "+RSS MiB"))
        for m in results:
            print(fmt.format(m.name, f"{m.rows:,}", f"{m.best:.3f}", " ".join(f"{s:.2f}" for s in m.seconds),
                             f"{m.rows / m.best:,.0f}", f"{m.best / floor.best:.1f}x", f"{m.peak_mib:,.0f}", f"{m.added_mib:,.0f}"))
        ratio = feast.best / floor.best
        calls = math.ceil(n_rows / chunk_rows)
        feast_floor = floor.best + calls * fixed.best  # the ASOF work plus what Feast spends per call on no work
        print(f"Feast/ASOF = {ratio:.1f}x: Feast takes {feast.best:.2f} s where the ASOF floor takes {floor.best:.2f} s "
              f"(+{feast.best - floor.best:.2f} s); peak RSS {feast.peak_mib:,.0f} vs {floor.peak_mib:,.0f} MiB.")
        print(f"Feast's fixed cost: {fixed.best:.2f} s per get_historical_features call for ONE entity row (registry "
              f"look-ups, entity frame checks, planning, file scans); {calls} call(s) here. Floor with it: {feast_floor:.2f} s; "
              f"Feast / that = {feast.best / feast_floor:.2f}x. 4 calls instead: {feast4.best:.2f} s "
              f"({(feast4.best - feast.best) / max(1, 4 - calls):+.2f} s per extra call).")
        join = feast.best - calls * fixed.best
        print(f"Feast's join beyond the fixed cost: {join:.2f} s = {join / floor.best:.1f}x the whole ASOF floor.")
        stage = f"Feast get_historical_features (ASOF store), {feast.rows:,} rows"
        verdicts = [Verdict("training_set", stage, f"{feast.best:.2f} s", "DuckDB ASOF join", ratio,
                            "< 2× floor, identical", ratio < 2 and not failed),
                    Verdict("training_set", stage, f"{feast.best:.2f} s",
                            f"ASOF join + Feast's fixed cost ({calls} × {fixed.best:.2f} s)", feast.best / feast_floor,
                            "- (reference)", None)]
        for m in stock:
            print(f"Feast's stock DuckDB store (ibis; hash-joins each entity row to every feature row of its symbol, then "
                  f"filters and ranks): {m.best:.2f} s = {m.best / floor.best:.1f}x the floor, {m.best / feast.best:.1f}x the ASOF store.")
            verdicts.append(Verdict("training_set", f"Feast stock DuckDB store, {m.rows:,} rows", f"{m.best:.2f} s",
                                    "DuckDB ASOF join", m.best / floor.best, "- (reference)", None))
        report(verdicts)
        if failed:
            sys.exit(1)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
