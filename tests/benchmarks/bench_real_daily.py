"""Benchmark: the learner family on the real daily files (S&P 500 and NASDAQ Composite, 1999–2018).

The robustness check of issue 14: the same features, learners, purged walk-forward and
stacking as on the synthetic market, on real prices the features were not designed on.
There is no oracle here and no cross-section (two indices), so the signal measure is the
**time-series IC**: per index, the correlation of each out-of-fold score with the next
session's log return, then averaged over the two (t-stat from the pooled rows). A
shuffled-label sentinel (labels permuted in time within each index) gives the noise level
the real numbers must be read against. Expect little: daily index returns are close to a
random walk; what there is over 2009–2018 is mostly short-term reversal after large moves.

Learners fit the raw label (demeaning across two indices would leave only their spread). The
stack's weights are fitted on cross-sectional IC (``models.ensemble``), which with two indices
is only their spread, so here the equal-weight ensemble is the fairer combination to read.

Run: ``.venv/bin/python -m tests.benchmarks.bench_real_daily [--folds 5] [--families sklearn_ridge,xgboost]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import math
import time
from pathlib import Path

import numpy as np
import polars as pl

from feature_repo import compute_features, compute_labels
from models.data import prepare
from models.ensemble import stacked_oof
from models.walkforward import DEFAULT_FAMILIES, WalkForwardConfig, run_walk_forward
from orchestration.market.calendars import sessions as xnys_sessions

DATA = Path(__file__).resolve().parents[1] / "data"
FILES = {"SPX": "sp500_daily.csv.gz", "COMP": "nasdaq_daily.csv.gz"}
LABEL = "label_fwd_ret_1"
DAY = dt.timedelta(days=1)


def daily_bars() -> pl.DataFrame:
    """Both files as clean daily bars on the XNYS calendar (one bar per session, open to close)."""
    parts = []
    for symbol, name in FILES.items():
        raw = pl.read_csv(io.BytesIO(gzip.decompress((DATA / name).read_bytes())))
        parts.append(raw.select(pl.lit(symbol).alias("symbol"), pl.col("Date").str.strptime(pl.Date, "%m/%d/%Y").alias("session"),
                                pl.col("Open").alias("open"), pl.col("High").alias("high"), pl.col("Low").alias("low"),
                                pl.col("Close").alias("close"), pl.col("Volume").cast(pl.Float64).alias("volume")))
    bars = pl.concat(parts)
    cal = xnys_sessions("XNYS", bars["session"].min(), bars["session"].max()).select(
        "session", pl.col("open_ts").alias("session_open"), pl.col("close_ts").alias("session_close"))
    return (bars.join(cal, on="session")
            .with_columns(pl.lit("index").alias("sector"), pl.col("session_open").alias("ts"), pl.col("session_close").alias("close_ts"),
                          ((pl.col("high") + pl.col("low") + pl.col("close")) / 3).alias("vwap"))
            .sort("symbol", "ts"))


def ts_ic(oof: pl.DataFrame, score: str) -> dict[str, float]:
    """Per-index time-series IC of ``score`` vs the label, their mean, and its t-stat over the sessions.

    The t-stat counts sessions, not rows: the two indices move together, so their rows are far from independent.
    """
    per = {}
    for (symbol,), part in oof.group_by("symbol", maintain_order=True):
        ok = part.filter(pl.col(score).is_finite() & pl.col(LABEL).is_finite())
        per[symbol] = float(np.corrcoef(ok[score].to_numpy(), ok[LABEL].to_numpy())[0, 1]) if ok.height > 2 else math.nan
    mean = float(np.nanmean(list(per.values())))
    n = oof.filter(pl.col(score).is_finite())["event_timestamp"].n_unique()
    return {"ic": mean, "t": mean * math.sqrt(max(n - 2, 1)) / math.sqrt(max(1 - mean**2, 1e-12)), **per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--families", default=",".join(f for f in DEFAULT_FAMILIES if f != "torch_tcn"),
                        help="Comma-separated learner families (default: all but the TCN, whose 16-bar window is 3 weeks here).")
    args = parser.parse_args()

    t0 = time.perf_counter()
    bars = daily_bars()
    joined = compute_features(bars, bar_length=DAY).join(compute_labels(bars), on=["symbol", "event_timestamp"])
    frame = prepare(joined.filter(~pl.col("warmup")).drop("warmup"), label=LABEL)
    families = tuple(args.families.split(","))
    config = WalkForwardConfig(label=LABEL, target="raw", families=families, n_folds=args.folds)
    print(f"data: {bars.height:,} daily bars of {', '.join(FILES)} → {frame.height:,} rows in {time.perf_counter() - t0:.1f} s")
    wf = run_walk_forward(frame, config)
    stacked = stacked_oof(wf.oof, list(families), label=LABEL, first_scales={f: wf.in_sample_scale[f][0] or 1.0 for f in families})
    scored = stacked.evaluated()
    sentinel_cfg = config.model_copy(update={"families": ("sklearn_ridge",)})
    sentinel = run_walk_forward(_shuffled_in_time(frame), sentinel_cfg).oof.filter(pl.col("fold") != stacked.burn_in)

    rows = {f: ts_ic(scored, f"pred_{f}") for f in families}
    rows["ensemble"] = ts_ic(scored, "pred_ensemble")
    rows["equal_weight"] = ts_ic(scored, "pred_equal")
    rows["sentinel (shuffled)"] = ts_ic(sentinel, "pred_sklearn_ridge")
    print(f"\n{'model':<20} {'TS IC':>8} {'t':>6} " + " ".join(f"{s:>8}" for s in FILES))
    for name, r in rows.items():
        print(f"{name:<20} {r['ic']:>8.4f} {r['t']:>6.2f} " + " ".join(f"{r[s]:>8.4f}" for s in FILES))
    window = scored["event_timestamp"]
    print(f"\nOOS {window.min():%Y-%m-%d} .. {window.max():%Y-%m-%d} ({window.n_unique():,} sessions, folds after the burn-in); "
          f"label: next session's log return; total {time.perf_counter() - t0:.0f} s")


def _shuffled_in_time(frame: pl.DataFrame, seed: int = 11) -> pl.DataFrame:
    """The label permuted across time within each index: whatever a model finds in it is noise."""
    keys = pl.Series(np.random.default_rng(seed).random(frame.height))
    shuffled = (frame.select("symbol", LABEL).with_row_index("_row").with_columns(_k=keys)
                .with_columns(pl.col(LABEL).sort_by("_k").over("symbol").alias("_s")).sort("_row")["_s"])
    return frame.with_columns(shuffled.alias(LABEL))


if __name__ == "__main__":
    main()
