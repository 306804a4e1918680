"""Metrics against hand computations on small return series (empyrical's conventions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models import performance as perf

# mean 0.005; deviations ±0.015 and ±0.025; losses 0.01 and 0.02
R = [0.02, -0.01, 0.03, -0.02]
# wealth 1.1, 1.045, 0.99275, 1.012605 (still under 1.1), 1.2151260, 1.2029747: three periods under the first peak
PATH = [0.1, -0.05, -0.05, 0.02, 0.2, -0.01]


def test_sharpe_is_mean_over_sample_std_times_sqrt_periods() -> None:
    sd = math.sqrt((2 * 0.015**2 + 2 * 0.025**2) / 3)
    assert perf.sharpe_ratio(R, 252) == pytest.approx(0.005 / sd * math.sqrt(252), rel=1e-12)
    assert perf.annual_volatility(R, 252) == pytest.approx(sd * math.sqrt(252), rel=1e-12)


def test_sharpe_subtracts_the_per_period_risk_free_rate() -> None:
    sd = math.sqrt((2 * 0.015**2 + 2 * 0.025**2) / 3)  # a constant shift leaves the deviation alone
    assert perf.sharpe_ratio(R, 12, risk_free=0.001) == pytest.approx(0.004 / sd * math.sqrt(12), rel=1e-12)


def test_sortino_uses_downside_deviation_over_all_periods() -> None:
    downside = math.sqrt((0.01**2 + 0.02**2) / 4)  # zeros for the two winning periods are in the mean
    assert perf.sortino_ratio(R, 252) == pytest.approx(0.005 / downside * math.sqrt(252), rel=1e-12)
    assert perf.downside_risk(R, 252) == pytest.approx(downside * math.sqrt(252), rel=1e-12)


def test_cagr_of_twelve_monthly_one_percent_returns_is_their_compound() -> None:
    assert perf.annual_return([0.01] * 12, 12) == pytest.approx(1.01**12 - 1, rel=1e-12)
    assert perf.annual_return([0.01] * 24, 12) == pytest.approx(1.01**12 - 1, rel=1e-12)  # two years: same rate
    assert perf.annual_return([0.1, -0.5], 2) == pytest.approx(0.55 - 1, rel=1e-12)


def test_max_drawdown_and_its_duration_follow_the_wealth_path() -> None:
    assert perf.max_drawdown(PATH) == pytest.approx(0.99275 / 1.1 - 1, rel=1e-12)
    assert perf.max_drawdown_duration(PATH) == 3
    assert perf.drawdown(PATH)[-1] == pytest.approx(-0.01, rel=1e-12)


def test_max_drawdown_counts_a_loss_in_the_first_period() -> None:
    assert perf.max_drawdown([-0.1, 0.05]) == pytest.approx(-0.1)
    assert perf.max_drawdown_duration([-0.1, 0.05]) == 2  # 0.945 is still under the starting 1.0


def test_calmar_is_cagr_over_absolute_max_drawdown() -> None:
    final = 1.1 * 0.95 * 0.95 * 1.02 * 1.2 * 0.99
    expected = (final ** (252 / 6) - 1) / (1 - 0.99275 / 1.1)
    assert perf.calmar_ratio(PATH, 252) == pytest.approx(expected, rel=1e-12)


def test_a_series_that_never_falls_has_no_drawdown_and_no_calmar() -> None:
    assert perf.max_drawdown([0.01, 0.02]) == 0.0
    assert perf.max_drawdown_duration([0.01, 0.02]) == 0
    assert math.isnan(perf.calmar_ratio([0.01, 0.02], 252))
    assert perf.sortino_ratio([0.01, 0.02], 252) == math.inf  # no downside, positive mean: empyrical's inf


def test_win_rate_and_profit_factor_ignore_flat_periods() -> None:
    pnl = [*PATH, 0.0]
    assert perf.win_rate(pnl) == 0.5
    assert perf.profit_factor(pnl) == pytest.approx((0.1 + 0.02 + 0.2) / (0.05 + 0.05 + 0.01), rel=1e-12)
    assert perf.profit_factor([0.1, 0.0]) == math.inf


def test_turnover_is_traded_notional_over_prior_equity_and_exposure_counts_invested_periods() -> None:
    assert perf.turnover(np.array([100.0, 0.0, 50.0]), np.array([1000.0, 1000.0, 500.0])) == pytest.approx(0.2 / 3)
    assert perf.exposure([0.0, 1.0, -0.5, 0.0]) == 0.5


def test_undefined_metrics_are_nan_not_errors() -> None:
    assert perf.sharpe_ratio([0.01, 0.01, 0.01], 252) == math.inf  # no variance, positive mean: empyrical's inf
    assert math.isnan(perf.sharpe_ratio([0.0, 0.0], 252))  # 0 / 0
    assert math.isnan(perf.sharpe_ratio([0.01], 252))
    assert math.isnan(perf.annual_return([], 252))


def test_summary_holds_every_metric_by_name() -> None:
    s = perf.summary(PATH, periods_per_year=252)
    assert s["max_drawdown_duration"] == 3
    assert s["sharpe_ratio"] == perf.sharpe_ratio(PATH, 252)


@pytest.mark.parametrize(("timeframe", "calendar", "expected"), [("15m", "XNYS", 26 * 252), ("1d", "XNYS", 252), ("1h", "XNYS", 7 * 252), ("1h", "24/7", 24 * 365)])
def test_periods_per_year_counts_bars_per_session_times_sessions(timeframe: str, calendar: str, expected: int) -> None:
    assert perf.periods_per_year(timeframe, calendar) == expected


def test_periods_per_year_of_an_unknown_timeframe_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"^timeframe: '2h' is not supported"):
        perf.periods_per_year("2h")


# -- empyrical parity ------------------------------------------------------------------------------
# Reference values are empyrical 0.5.5's own output (annualization=252), computed once outside the test
# environment: empyrical does not import on numpy 2 (``np.NINF`` was removed), so it ran with that one
# name restored (``np.NINF = -np.inf``) and nothing else changed. Columns: annual_return, annual_volatility,
# sharpe_ratio, sortino_ratio, downside_risk, calmar_ratio, max_drawdown.
NAN, INF = math.nan, math.inf
EMPYRICAL = {
    'plain': ([0.02, -0.01, 0.03, -0.02], [2.3328518240355924, 0.37788887255382375, 3.334313581357268, 7.099295739719539, 0.1774823934929885, 116.64259120177925, -0.020000000000000063]),
    'nan_first': ([NAN, 0.02, -0.01, 0.03, -0.02], [1.619707506713151, 0.37788887255382375, 3.334313581357268, 7.099295739719539, 0.1774823934929885, 80.9853753356573, -0.020000000000000063]),
    'nan_middle': ([0.02, NAN, -0.01, 0.03, -0.02], [1.619707506713151, 0.37788887255382375, 3.334313581357268, 7.099295739719539, 0.1774823934929885, 80.9853753356573, -0.020000000000000063]),
    'two_nans_first': ([NAN, NAN, 0.01, -0.01], [-0.006280509651503063, 0.2244994432064365, 0.0, 0.0, 0.11224972160321825, -0.6280509651503031, -0.01000000000000005]),
    'nan_then_one': ([NAN, 0.01], [2.5034271933694074, NAN, NAN, INF, 0.0, NAN, 0.0]),
    'only_nan': ([NAN], [0.0, NAN, NAN, NAN, NAN, NAN, 0.0]),
    'nan_first_loss': ([NAN, -0.1, 0.05], [-0.9913648096621377, 1.6837458240482739, -3.7416573867739413, -5.612486080160911, 1.1224972160321827, -9.913648096621376, -0.1]),
    'up_only': ([0.01, 0.02], [41.473176131220576, 0.11224972160321825, 33.67491648096547, INF, 0.0, NAN, 0.0]),
    'constant': ([0.01, 0.01, 0.01], [11.274002099240128, 0.0, INF, INF, 0.0, NAN, 0.0]),
    'wiped_out': ([-1.0, 0.5], [-1.0, 16.837458240482736, -3.7416573867739418, -5.612486080160911, 11.224972160321826, -1.0, -1.0]),
    'one': ([0.01], [11.274002099240244, NAN, NAN, NAN, 0.0, NAN, 0.0]),
    'path': ([0.1, -0.05, -0.05, 0.02, 0.2, -0.01], [2347.4068690235617, 1.557806149686154, 5.6618084360348275, 19.057189472433627, 0.4628174586162454, 24075.9678874211, -0.0975000000000002]),
}

_METRICS = ("annual_return", "annual_volatility", "sharpe_ratio", "sortino_ratio", "downside_risk", "calmar_ratio")


@pytest.mark.parametrize("case", sorted(EMPYRICAL))
def test_every_metric_matches_empyrical_including_nan_periods(case: str) -> None:
    returns, expected = EMPYRICAL[case]
    ours = [getattr(perf, name)(returns, 252) for name in _METRICS] + [perf.max_drawdown(returns)]
    for name, got, want in zip((*_METRICS, "max_drawdown"), ours, expected, strict=True):
        if math.isnan(want):
            assert math.isnan(got), f"{case} {name}: {got} != NaN"
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-15), f"{case} {name}"


def test_a_leading_nan_counts_as_a_period_in_the_annual_return() -> None:
    with_nan, without = [math.nan, 0.02, -0.01, 0.03, -0.02], [0.02, -0.01, 0.03, -0.02]
    growth = 1.02 * 0.99 * 1.03 * 0.98
    assert perf.annual_return(with_nan, 252) == pytest.approx(growth ** (252 / 5) - 1, rel=1e-12)
    assert perf.annual_return(without, 252) == pytest.approx(growth ** (252 / 4) - 1, rel=1e-12)
    assert perf.sharpe_ratio(with_nan, 252) == perf.sharpe_ratio(without, 252)  # moments skip it
