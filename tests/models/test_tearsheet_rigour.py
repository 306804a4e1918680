"""The tear sheet's research-rigour section: intervals always, DSR and PBO when the variants tried are given."""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from models import research
from models.backtest import run_signal_backtest
from models.tearsheet import write_tearsheet


def _backtest(n: int = 400):
    rng = np.random.default_rng(2)
    close = 100 * np.cumprod(1 + rng.normal(0.0005, 0.01, n))
    bars = pl.DataFrame({"ts": np.arange(n), "open": np.concatenate(([100.0], close[:-1])), "close": close})
    return run_signal_backtest(bars, np.where(rng.random(n) > 0.3, 1, -1), initial_cash=10_000.0)


def test_tearsheet_shows_sharpe_interval_and_psr_without_trials(tmp_path):
    result = _backtest()
    text = write_tearsheet(result, tmp_path, periods_per_year=252)["summary"].read_text()
    expected = research.rigour_summary(result.returns, periods_per_year=252)
    row = re.search(r"\| Sharpe \(annualised\), 95% CI, block bootstrap \| (-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\] \|", text)
    assert row is not None, text
    assert [float(x) for x in row.groups()] == [round(expected[k], 2) for k in ("sharpe", "sharpe_ci_low", "sharpe_ci_high")]
    assert "probabilistic Sharpe ratio" in text and "deflated Sharpe" not in text and "overfitting" not in text


def test_tearsheet_with_trials_and_ic_shows_deflated_sharpe_pbo_and_ic_interval(tmp_path):
    result = _backtest()
    rng = np.random.default_rng(4)
    trials = {"chosen": result.returns, **{f"variant_{i}": rng.normal(0, 0.01, result.returns.size) for i in range(9)}}
    ic = rng.normal(0.03, 0.1, 300)
    text = write_tearsheet(result, tmp_path, periods_per_year=252, trials=trials, ic_series=ic)["summary"].read_text()
    assert re.search(r"\| deflated Sharpe ratio \(10 trials; best of them by luck: Sharpe -?[\d.]+\) \| [\d.]+% \|", text), text
    assert re.search(r"\| probability of backtest overfitting \(CSCV, 16 blocks\) \| [\d.]+% \|", text)
    assert re.search(rf"\| mean IC, 95% CI, block bootstrap \| {ic.mean():.4f} \[", text)


def test_research_inputs_trade_every_member_alike_and_feed_dsr_and_pbo(tmp_path):
    import datetime as dt

    from models.evaluation import BacktestConfig, research_inputs

    rng = np.random.default_rng(9)
    symbols, n = [f"S{i}" for i in range(8)], 240
    times = [dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC) + dt.timedelta(minutes=15 * i) for i in range(n)]
    rets = rng.normal(0, 0.01, (n, len(symbols)))
    close = 100 * np.cumprod(1 + rets, axis=0)
    bars = pl.DataFrame({"symbol": symbols * n, "ts": [t for t in times for _ in symbols],
                         "open": np.vstack([close[:1], close[:-1]]).ravel(), "close": close.ravel(), "volume": 1e6})
    future = np.vstack([rets[1:], np.zeros((1, len(symbols)))])  # the next bar's return: what a perfect score knows
    oof = pl.DataFrame({"symbol": bars["symbol"], "event_timestamp": bars["ts"], "label_fwd_ret_1": future.ravel(),
                        "pred_good": (future + rng.normal(0, 0.01, future.shape)).ravel(),
                        "pred_noise": rng.normal(0, 1, future.size), "pred_ensemble": future.ravel(),
                        "pred_equal": rng.normal(0, 1, future.size)})
    trials, ic = research_inputs(oof, bars, families=["good", "noise"], label="label_fwd_ret_1", horizon=1,
                                 config=BacktestConfig(k=2))
    assert set(trials) == {"good", "noise", "ensemble", "equal_weight"}
    assert len({v.size for v in trials.values()}) == 1 and ic.size == n and ic.mean() > 0.9  # the ensemble is the label
    summary = research.rigour_summary(trials["ensemble"], periods_per_year=6552, ic_series=ic, trials=trials)
    assert summary["n_trials"] == 4 and summary["dsr"] > 0.95 and summary["pbo"] < 0.5


def test_tearsheet_shows_the_score_as_a_factor_with_quantiles_bands_and_turnover(tmp_path):
    from models.evaluation import factor_report

    rng = np.random.default_rng(8)
    t, symbols = np.repeat(np.arange(300), 20), np.tile(np.arange(20), 300)
    score = rng.normal(size=t.size)
    oof = pl.DataFrame({"event_timestamp": t, "symbol": symbols, "pred_ensemble": score,
                        "label_fwd_ret_1": 2e-4 * score + 1e-3 * rng.normal(size=t.size),
                        "label_fwd_ret_4": 1e-4 * score + 2e-3 * rng.normal(size=t.size)})
    factor = factor_report(oof, labels={1: "label_fwd_ret_1", 4: "label_fwd_ret_4"}, horizon=4)
    q = factor["quantile_bps"][1]
    assert q == sorted(q) and factor["spread_bps"][1] == q[-1] - q[0] > 0  # a monotone factor
    assert factor["ic"][1]["low"] < factor["ic"][1]["ic"] < factor["ic"][1]["high"]
    assert 0.7 < factor["turnover_top"] < 0.9  # scores redrawn every timestamp: most of the top quintile is new
    paths = write_tearsheet(_backtest(), tmp_path, periods_per_year=252, ic_by_horizon={1: factor["ic"][1]["ic"], 4: factor["ic"][4]["ic"]},
                            factor=factor)
    text = paths["summary"].read_text()
    assert "quantiles" in paths and "![quantiles](quantiles.png)" in text
    assert factor["horizon"] == 4 and factor["spread_bps"][1] > factor["spread_bps"][4]  # charted: the model's horizon, not the widest
    assert re.search(r"\| 1 \| 0\.\d{4} \| \[0\.\d{4}, 0\.\d{4}\] \| -\d+\.\d\d \|", text), text
    assert "Quantile turnover between consecutive timestamps: top " in text


def test_tearsheet_shows_a_parameter_walk_forward_against_each_value_held_fixed(tmp_path):
    from models.research import walk_forward_choice

    rng = np.random.default_rng(3)
    wf = walk_forward_choice({3: rng.normal(0.004, 0.01, 400), 6: rng.normal(-0.002, 0.01, 400)}, blocks=4, periods_per_year=252)
    assert wf.chosen == [3, 3, 3] and wf.sharpe == wf.fixed[3]  # the better value wins every block: same returns
    text = write_tearsheet(_backtest(), tmp_path, periods_per_year=252, parameter_walk_forward=("k", wf))["summary"].read_text()
    assert "## Parameter walk-forward" in text and "(3 blocks after the first: 3, 3, 3)" in text
    assert "| walk-forward choice | fixed 3 | fixed 6 |" in text
    assert wf.sweep["best"] == "3" and wf.sweep["n_trials"] == 2 and wf.sweep["pbo"] < 0.2  # one value dominates
    assert re.search(r"Picking the k with the best Sharpe over the whole window \(3, [\d.]+ of 2 values\): deflated Sharpe "
                     r"ratio [\d.]+%, probability of backtest overfitting [\d.]+% \(CSCV, 16 blocks\)\.", text), text


def test_tearsheet_with_a_search_and_cpcv_shows_the_searchs_dsr_pbo_and_the_cpcv_table(tmp_path):
    result = _backtest()
    search = {"lightgbm": {"n_trials": 8, "sharpe": 2.1, "dsr": 0.41, "dsr_benchmark_sharpe": 1.9, "pbo": 0.55, "pbo_blocks": 16}}
    cpcv = {"n_groups": 6, "n_test_groups": 2, "splits": 15, "paths": 5, "k": 6, "horizon": 4, "pbo": 0.1, "pbo_min": 0.0,
            "pbo_max": 0.3, "pbo_blocks": 16,
            "members": {"xgboost": {"paths": 5, "sharpe_mean": 1.5, "sharpe_p5": 0.4, "sharpe_positive": 0.8, "ic_mean": 0.03,
                                    "ic_p5": 0.01, "seconds": 12.0}}}
    text = write_tearsheet(result, tmp_path, periods_per_year=252, search=search, cpcv=cpcv)["summary"].read_text()
    assert "| lightgbm parameter search: deflated Sharpe ratio of the best of 8 trials (gross long-short Sharpe 2.10; " \
           "best of them by luck 1.90) | 41.00% |" in text
    assert "| lightgbm parameter search: PBO across its trials (CSCV, 16 blocks) | 55.00% |" in text
    assert "## Combinatorial purged CV (CPCV)" in text and "| xgboost | 5 | 1.50 | 0.40 | 80% | 0.0300 | 0.0100 | 12.0 |" in text
    plain = write_tearsheet(result, tmp_path / "plain", periods_per_year=252)["summary"].read_text()
    assert "parameter search" not in plain and "CPCV" not in plain
