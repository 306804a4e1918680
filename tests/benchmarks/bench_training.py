"""Benchmark: the full learner family on 48 symbols × 1 year of 15-minute features.

Prints, per learner: wall time of its purged walk-forward CV (all folds) and of the final
fit, as ratios against the ridge learner measured in the same run (the cheapest honest
model: the floor), then out-of-sample IC, rank IC and IC as a fraction of the oracle's,
for every learner, the stacked ensemble and the equal-weight ensemble, beside the same on a second
synthetic world (another seed, other effect strengths and spans) the features were not designed on.

Features come straight from the synthetic market through the feature library (no Feast:
``bench_training_set.py`` measures Feast's join); labels, oracle and CV are the real ones.

Run: ``.venv/bin/python tests/benchmarks/bench_training.py [--symbols 48] [--sessions 250] [--folds 3]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from feature_repo import FEATURE_NAMES, compute_features, compute_labels
from models.data import prepare
from models.ensemble import stacked_oof
from models.evaluation import signal_report
from models.walkforward import DEFAULT_FAMILIES, WalkForwardConfig, fit_final, run_walk_forward
from orchestration.market.calendars import sessions as xnys_sessions
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket

BAR = dt.timedelta(minutes=15)
LABEL = "label_fwd_ret_4"


#: A second world the features were not designed on: another seed, weaker and shorter or longer effects.
SECOND_WORLD = {"seed": 11, "alpha": {"gap_reversal": 0.2, "gap_bars": 5, "residual_reversal": 0.08, "reversal_bars": 6,
                                      "volume_momentum": 0.3, "volume_threshold": 1.3, "volume_bars": 5, "sector_momentum": 0.25}}


def _market(n_symbols: int, n_sessions: int, *, seed: int = 7, alpha: dict[str, float] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    last = dt.date(2024, 12, 31)
    days = xnys_sessions("XNYS", dt.date(2023, 1, 1), last)["session"].to_list()[-n_sessions:]
    first = days[0]
    market = SyntheticMarket(SyntheticConfig(seed=seed, n_symbols=n_symbols, origin=first, alpha=alpha or {}))
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    batch = market.fetch(start, end, now=end + dt.timedelta(days=2))
    cal = xnys_sessions("XNYS", first, last).select("session", pl.col("open_ts").alias("session_open"), pl.col("close_ts").alias("session_close"))
    bars = (
        batch.bars.with_columns(session=pl.col("ts").dt.convert_time_zone("America/New_York").dt.date())
        .join(cal, on="session").join(batch.symbols.select("symbol", "sector"), on="symbol")
        .with_columns(close_ts=pl.min_horizontal(pl.col("ts") + BAR, pl.col("session_close"))).sort("symbol", "ts")
    )
    oracle = batch.oracle.filter(pl.col("horizon") == 4).select(
        "symbol", (pl.col("ts") + BAR).alias("event_timestamp"), pl.col("expected_log_return").alias("expected"))
    return bars, oracle


def training_frame(bars: pl.DataFrame) -> pl.DataFrame:
    """Features joined to labels, warm-up rows dropped, prepared for the learners (what training reads)."""
    joined = compute_features(bars, bar_length=BAR).join(compute_labels(bars), on=["symbol", "event_timestamp"])
    return prepare(joined.filter(~pl.col("warmup")).drop("warmup"), label=LABEL)


def _second_world(args: argparse.Namespace, config: WalkForwardConfig) -> dict[str, Any]:
    """The same CV and stacking on :data:`SECOND_WORLD`: the signal report."""
    bars, oracle = _market(args.symbols, args.sessions, **SECOND_WORLD)
    frame = training_frame(bars)
    wf = run_walk_forward(frame, config)
    families = list(config.families)
    stacked = stacked_oof(wf.oof, families, label=LABEL, first_scales={f: wf.in_sample_scale[f][0] or 1.0 for f in families})
    return signal_report(stacked.evaluated(), families=families, label=LABEL, oracle=oracle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=48)
    parser.add_argument("--sessions", type=int, default=250)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--target", choices=("raw", "demeaned", "rank"), default="demeaned", help="What the learners fit.")
    parser.add_argument("--skip-final", action="store_true", help="Skip the final fits (CV and metrics only).")
    parser.add_argument("--save-oof", type=Path, default=None, help="Write the OOF frame (with the oracle) here.")
    parser.add_argument("--no-second-world", action="store_true", help="Skip the second synthetic world.")
    args = parser.parse_args()

    t0 = time.perf_counter()
    bars, oracle = _market(args.symbols, args.sessions)
    frame = training_frame(bars)
    print(f"data: {bars.height:,} bars → {frame.height:,} training rows × {len(FEATURE_NAMES)} features in {time.perf_counter() - t0:.1f} s")

    config = WalkForwardConfig(families=DEFAULT_FAMILIES, n_folds=args.folds, target=args.target)
    wf = run_walk_forward(frame, config, log=lambda m: print("  " + m, flush=True))
    final_seconds = wf.seconds if args.skip_final else fit_final(frame, config)[1]
    families = list(DEFAULT_FAMILIES)
    stacked = stacked_oof(wf.oof, families, label=LABEL, first_scales={f: wf.in_sample_scale[f][0] or 1.0 for f in families})
    report = signal_report(stacked.evaluated(), families=families, label=LABEL, oracle=oracle)
    if args.save_oof:
        wf.oof.join(oracle, on=["symbol", "event_timestamp"], how="left").write_parquet(args.save_oof)

    second = None if args.no_second_world else _second_world(args, config)
    floor_cv, floor_fit = wf.seconds["sklearn_ridge"], final_seconds["sklearn_ridge"]
    print(f"\n{'learner':<14} {'CV s':>8} {'×ridge':>8} {'final s':>8} {'×ridge':>8} {'OOS IC':>8} {'rank IC':>8} {'/oracle':>8}"
          + ("  2nd world IC /oracle" if second else ""))
    for name, m in report["models"].items():
        cv_s, fit_s = wf.seconds.get(name), final_seconds.get(name)
        timing = f"{cv_s:>8.1f} {cv_s / floor_cv:>8.1f} {fit_s:>8.1f} {fit_s / floor_fit:>8.1f}" if cv_s is not None else " " * 35
        other = f"  {second['models'][name]['ic']:>12.4f} {second['models'][name]['oracle_fraction']:>7.2f}" if second else ""
        print(f"{name:<14} {timing} {m['ic']:>8.4f} {m['rank_ic']:>8.4f} {m['oracle_fraction']:>8.2f}{other}")
    if second:
        print(f"second world {SECOND_WORLD}: oracle IC {second['oracle_ic']:.4f}")
    for fold, weights in stacked.fold_weights.items():
        print(f"fold {fold} weights: " + ", ".join(f"{f} {w:.2f}" for f, w in weights.items()))
    for name, rep in (("this world", report), ("second world", second)):
        if rep:
            best = max(families, key=lambda f: rep["models"][f]["ic"])
            ens, top = rep["models"]["ensemble"]["ic"], rep["models"][best]["ic"]
            print(f"{name}: ensemble {ens:.4f} {'≥' if ens >= top else '<'} best member {best} {top:.4f} "
                  f"({ens / top:.3f}×); ensemble {rep['models']['ensemble']['oracle_fraction']:.2f} of oracle")
    print(f"evaluated folds: {sorted(stacked.evaluated()['fold'].unique().to_list())} (fold {stacked.burn_in} is the stack's burn-in)")
    print(f"\ntarget {args.target}; oracle IC {report['oracle_ic']:.4f} over {report['window']['timestamps']:,} OOS timestamps; "
          f"{args.folds} purged walk-forward folds; total {time.perf_counter() - t0:.0f} s")
    from tests.benchmarks.summary import Verdict
    from tests.benchmarks.summary import report as summary

    summary([Verdict("training", f"{name} CV", f"{wf.seconds[name]:.1f} s, OOS IC {m['ic']:.4f} ({m['oracle_fraction']:.2f} of oracle)",
                     "sklearn_ridge CV time", wf.seconds[name] / floor_cv, "- (reference)", None)
             for name, m in report["models"].items() if name in wf.seconds])


if __name__ == "__main__":
    main()
