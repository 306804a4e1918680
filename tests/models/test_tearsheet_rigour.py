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
