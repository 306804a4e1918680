"""Benchmark: combinatorial purged CV of the row-wise learners on the synthetic market, against walk-forward.

Prints the wall time of the purged walk-forward CV (the demo's 3 folds) and of CPCV (``--groups`` groups,
``--test-groups`` tested: 15 splits and 5 paths by default) per learner, then each learner's CPCV path
Sharpe ratios (gross top-k long/short every 4 bars) and ICs, PBO across the learners, and the same
for ridge on labels shuffled within each timestamp (the leakage sentinel: its paths should hover around 0).

With ``--search-trials N`` it also runs an Optuna search of ``--search-family`` (``models.search``, in a
temporary study) and prints the deflated Sharpe ratio of its best trial and PBO across its trials.

Features come straight from the synthetic market through the feature library (as ``bench_training.py``).

Run: ``.venv/bin/python -m tests.benchmarks.bench_cpcv [--symbols 48] [--sessions 120] [--families sklearn_ridge,xgboost]
[--search-trials 12 --search-family lightgbm]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl

from feature_repo import FEATURE_NAMES
from models.cpcv import CHEAP_FAMILIES, CPCVConfig, markdown_lines, run_cpcv
from models.walkforward import WalkForwardConfig, run_walk_forward, shuffle_labels
from tests.benchmarks.bench_training import LABEL, _market, training_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=48)
    parser.add_argument("--sessions", type=int, default=120, help="The demo trains on 120 sessions.")
    parser.add_argument("--families", default=",".join(CHEAP_FAMILIES))
    parser.add_argument("--groups", type=int, default=6)
    parser.add_argument("--test-groups", type=int, default=2)
    parser.add_argument("--folds", type=int, default=3, help="Walk-forward folds to compare with (the demo's 3).")
    parser.add_argument("--search-trials", type=int, default=0, help="Also an Optuna search of this many trials.")
    parser.add_argument("--search-family", default="lightgbm")
    parser.add_argument("--skip-cpcv", action="store_true", help="Only the search.")
    args = parser.parse_args()

    t0 = time.perf_counter()
    bars, _ = _market(args.symbols, args.sessions)
    frame = training_frame(bars)
    print(f"data: {frame.height:,} rows × {len(FEATURE_NAMES)} features, {frame['event_timestamp'].n_unique():,} timestamps "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)
    families = tuple(args.families.split(","))
    config = WalkForwardConfig(families=families, n_folds=args.folds)
    if args.search_trials:
        _search(frame, config, args.search_family, args.search_trials)
    if args.skip_cpcv:
        return
    began = time.perf_counter()
    wf = run_walk_forward(frame, config)
    wf_seconds = time.perf_counter() - began
    cpcv_config = CPCVConfig(n_groups=args.groups, n_test_groups=args.test_groups)
    began = time.perf_counter()
    result = run_cpcv(frame, config, cpcv_config, families=families, log=lambda m: print("  " + m, flush=True))
    cpcv_seconds = time.perf_counter() - began
    summary = result.summary()
    began = time.perf_counter()
    sentinel = run_cpcv(shuffle_labels(frame, LABEL), config.model_copy(update={"families": ("sklearn_ridge",)}), cpcv_config)
    sentinel_seconds = time.perf_counter() - began
    print(f"\n{'learner':<14} {'walk-forward s':>15} {'CPCV s':>8} {'× wf':>6}")
    for f in families:
        print(f"{f:<14} {wf.seconds[f]:>15.1f} {result.seconds[f]:>8.1f} {result.seconds[f] / wf.seconds[f]:>6.1f}")
    print(f"{'total':<14} {wf_seconds:>15.1f} {cpcv_seconds:>8.1f} {cpcv_seconds / wf_seconds:>6.1f}\n")
    print("\n".join(markdown_lines(summary)))
    s = sentinel.summary()["members"]["sklearn_ridge"]
    print(f"\nsentinel (sklearn_ridge, shuffled labels): path Sharpe {s['sharpe_paths']}, mean IC {s['ic_mean']:.4f} "
          f"({sentinel_seconds:.1f} s)")
    print("walk-forward OOS IC: " + ", ".join(f"{f} {wf.summary(f)['ic']:.4f}" for f in families))
    print(f"total {time.perf_counter() - t0:.0f} s")


def _search(frame: pl.DataFrame, config: WalkForwardConfig, family: str, trials: int) -> None:
    from models.search import search

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = search(frame, config, family=family, trials=trials, storage=Path(tmp) / "optuna.db")
    r = result.rigour
    print(f"search {family}, {trials} trials in {time.perf_counter() - began:.0f} s: best OOS IC {result.best_ic:.4f} "
          f"{result.best_params}; best trial's gross Sharpe {r['sharpe']:.2f} against {r['dsr_benchmark_sharpe']:.2f} for the best "
          f"of {r['n_trials']} by luck: deflated Sharpe ratio {r['dsr']:.3f}; PBO across the trials {r.get('pbo', float('nan')):.2f}",
          flush=True)


if __name__ == "__main__":
    main()
