"""What model_evaluation shows in the Dagster UI: the tear sheet's charts embedded, numbers rounded, one row per learner."""

from __future__ import annotations

import base64
import datetime as dt
from html.parser import HTMLParser

import mistune
import numpy as np
import polars as pl

from models.backtest import Costs, run_backtest
from models.tearsheet import default_rolling_window, equal_weight_returns, write_tearsheet
from orchestration.defs.training.metadata import evaluation_metadata

T0 = dt.datetime(2026, 7, 1, 13, 45, tzinfo=dt.UTC)
MODELS = {
    "xgboost": {"ic": 0.0412345678901, "rank_ic": 0.04, "icir": 0.3, "ic_tstat": 5.0, "hit_rate": 0.52, "oracle_fraction": 0.4, "is_ic": 0.09},
    "sklearn_ridge": {"ic": 0.0301234567, "rank_ic": 0.03, "icir": 0.2, "ic_tstat": 3.0, "hit_rate": 0.51, "oracle_fraction": 0.3, "is_ic": 0.04},
    "ensemble": {"ic": 0.0456789012345, "rank_ic": 0.045, "icir": 0.3312345, "ic_tstat": 5.5, "hit_rate": 0.53, "oracle_fraction": 0.4412345},
    "equal_weight": {"ic": 0.0398765432109, "rank_ic": 0.04, "icir": 0.3, "ic_tstat": 5.1, "hit_rate": 0.52, "oracle_fraction": 0.39},
}


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")


def _backtest(n_symbols: int = 6, n_bars: int = 26 * 30):
    rng = np.random.default_rng(3)
    times = [T0 + i * dt.timedelta(minutes=15) for i in range(n_bars)]
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, (n_bars, n_symbols)), axis=0))
    bars = pl.DataFrame({"symbol": [f"S{j}" for _ in times for j in range(n_symbols)], "ts": [t for t in times for _ in range(n_symbols)],
                         "open": closes.ravel(), "close": closes.ravel(), "volume": 1e6})
    scores = bars.select("symbol", "ts", pl.Series("score", rng.normal(size=bars.height)))
    return bars, run_backtest(scores, bars, k=2, costs=Costs(commission_bps=1.0, half_spread_bps=2.0), rebalance_every=4)


def _metadata(tmp_path):
    bars, result = _backtest()
    sheet = write_tearsheet(result, tmp_path, periods_per_year=6552, ic_by_horizon={1: 0.05, 4: 0.04},
                            benchmark=equal_weight_returns(bars, result.equity["ts"]))
    report = {"models": MODELS, "oracle_ic": 0.1012345678, "warnings": [],
              "backtest": {"sharpe_ratio": 1.234567891, "max_drawdown": -0.0123456789, "turnover": 0.1234567, "annual_return": 0.0987654321}}
    return evaluation_metadata(report, passed=True, sheet=sheet)


def test_model_evaluation_summary_renders_with_every_chart_embedded_as_a_png(tmp_path):
    meta = _metadata(tmp_path)
    parser = _Images()
    parser.feed(mistune.html(meta["summary"].value))  # what the UI's markdown renderer gets
    assert len(parser.sources) == 4  # cumulative return, drawdown, rolling Sharpe, IC decay
    for src in parser.sources:
        assert src.startswith("data:image/png;base64,"), src[:60]  # no relative path the UI cannot follow
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(meta["summary"].value) < 400_000  # small enough for the event log
    assert "| metric | net | gross | equal-weight universe |" in meta["summary"].value


def test_model_evaluation_numbers_are_rounded_and_each_learner_has_a_row(tmp_path):
    meta = _metadata(tmp_path)
    assert meta["ic"] == 0.0457 and meta["sharpe"] == 1.23 and meta["oracle_fraction"] == 0.441 and meta["max_drawdown"] == -0.0123
    rows = [line for line in meta["learners"].value.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0].strip("| ") for r in rows] == ["xgboost", "sklearn_ridge", "**stacked ensemble**", "equal-weight ensemble"]
    assert "| 0.0412 |" in rows[0] and "2.2 |" in rows[0]  # in-sample / out-of-sample IC


def test_rolling_sharpe_window_leaves_most_of_the_curve():
    assert default_rolling_window(1859, 6552) == 11 * 26  # was a quarter of a year: 1,638 of 1,859 bars
    assert default_rolling_window(252 * 26 * 2, 6552) == 63 * 26  # capped at a quarter of a year
