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
