"""CPCV, deflated Sharpe, PBO and bootstrap intervals against worked examples and known values."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from models import research as rs


# -- CPCV ----------------------------------------------------------------------------------------
def test_cpcv_six_groups_two_test_gives_fifteen_splits_and_five_paths():
    splits = rs.cpcv_splits(60, n_groups=6, n_test_groups=2)
    paths = rs.cpcv_paths(6, 2)
    assert len(splits) == math.comb(6, 2) == 15 and paths.shape == (math.comb(5, 1), 6)
    for p in paths:  # each path tests every group once, with a split that holds that group in its test set
        assert all(g in splits[i].test_groups for g, i in enumerate(p))
    cells = sorted(int(i) for i in paths.ravel())  # each split serves exactly its k groups
    assert cells == sorted(i for i in range(15) for _ in range(2))


def test_cpcv_purges_before_and_embargoes_after_every_test_block():
    for split in rs.cpcv_splits(100, n_groups=5, n_test_groups=2, purge=3, embargo=2):
        train, test = set(split.train.tolist()), set(split.test.tolist())
        assert not train & test
        for g in split.test_groups:
            start, end = 20 * g, 20 * g + 20
            assert not train & set(range(start - 3, start)) and not train & set(range(end, end + 2))
        assert len(train) == 100 - len(test) - sum(min(3, 20 * g) for g in split.test_groups
                                                   if g - 1 not in split.test_groups) \
            - sum(min(2, 100 - 20 * g - 20) for g in split.test_groups if g + 1 not in split.test_groups)


def test_cpcv_path_returns_rebuild_each_sample_from_a_split_that_tested_it():
    splits = rs.cpcv_splits(30, n_groups=6, n_test_groups=2)
    # split i "predicts" sample j as 1000·i + j, so the stitched path shows who supplied each sample
    path_returns = rs.cpcv_path_returns([1000.0 * i + s.test for i, s in enumerate(splits)], splits, n_groups=6, n_test_groups=2)
    assert path_returns.shape == (5, 30) and not np.isnan(path_returns).any()
    supplier = (path_returns // 1000).astype(int)
    assert np.array_equal(path_returns % 1000, np.tile(np.arange(30), (5, 1)))
    assert np.array_equal(supplier[:, ::5], rs.cpcv_paths(6, 2))


# -- deflated Sharpe -----------------------------------------------------------------------------
def test_dsr_reproduces_the_papers_worked_example():
    sr0 = rs.expected_max_sharpe(100, 0.5 / 250)  # Bailey & López de Prado (2014): SR0 ≈ 0.1132, DSR ≈ 0.9004
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert rs.psr(2.5 / math.sqrt(250), n=1250, skew=-3.0, kurtosis=10.0, benchmark=sr0) == pytest.approx(0.9004, abs=5e-5)


def test_psr_of_normal_returns_reduces_to_the_normal_cdf_of_the_sharpe_t_statistic():
    # skew 0, kurtosis 3: PSR = Φ(SR·√(n−1)/√(1 + SR²/2)) = Φ(0.1·√499/√1.005) = Φ(2.2283)
    assert rs.psr(0.1, n=500, skew=0.0, kurtosis=3.0) == pytest.approx(NormalDist().cdf(0.1 * math.sqrt(499) / math.sqrt(1.005)))
    assert rs.psr(0.1, n=500, skew=0.0, kurtosis=3.0) == pytest.approx(0.98707, abs=1e-5)


def test_dsr_falls_as_the_number_of_trials_grows():
    rng = np.random.default_rng(11)
    returns = rng.normal(0.0008, 0.01, 1000)  # a true per-period Sharpe of 0.08
    few = rs.deflated_sharpe_ratio(returns, rng.normal(0, 0.03, 5))
    many = rs.deflated_sharpe_ratio(returns, rng.normal(0, 0.03, 500))
    one = rs.deflated_sharpe_ratio(returns, [0.08])
    assert one.benchmark == 0.0 and one.probability == pytest.approx(rs.probabilistic_sharpe_ratio(returns))
    assert many.benchmark > few.benchmark > 0 and many.probability < few.probability < one.probability


# -- PBO -----------------------------------------------------------------------------------------
def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample():
    m = np.array([[0.02, -0.01], [0.01, -0.02], [-0.01, 0.02], [-0.02, 0.01]])
    result = rs.probability_of_backtest_overfitting(m, n_blocks=2)
    assert result.pbo == 1.0 and result.n_combinations == 2 and np.allclose(result.logits, math.log(0.5))


def test_pbo_is_zero_for_a_family_with_one_truly_better_strategy():
    rng = np.random.default_rng(5)
    m = rng.normal(0, 0.01, (2000, 10))
    m[:, 3] += 0.004  # a Sharpe of 0.4 a period: best in every half
    result = rs.probability_of_backtest_overfitting(m, n_blocks=8)
    assert result.pbo == 0.0 and result.n_combinations == math.comb(8, 4)


def test_pbo_of_pure_noise_is_near_one_half():
    rng = np.random.default_rng(1)
    pbo = rs.probability_of_backtest_overfitting(rng.normal(0, 0.01, (1000, 50)), n_blocks=10).pbo
    assert 0.3 < pbo < 0.7


def test_pbo_refuses_an_odd_number_of_blocks_naming_the_argument():
    with pytest.raises(rs.ResearchInputError, match="n_blocks must be even"):
        rs.probability_of_backtest_overfitting(np.zeros((20, 3)), n_blocks=5)


# -- bootstrap -----------------------------------------------------------------------------------
def test_sharpe_bootstrap_interval_matches_lo_2002_width_on_iid_returns():
    rng = np.random.default_rng(3)
    r = rng.normal(0.001, 0.01, 2500)  # per-period Sharpe ≈ 0.1
    low, high, est = rs.bootstrap_ci(r, rs.sharpe_statistic(1), block=1, n_boot=4000)
    se = math.sqrt((1 + est**2 / 2) / r.size)  # Lo (2002): SE of the Sharpe ratio of i.i.d. returns
    assert low < est < high and (high - low) == pytest.approx(2 * 1.96 * se, rel=0.1)
    annual = rs.bootstrap_ci(r, rs.sharpe_statistic(252), block=1, n_boot=4000)
    assert annual[0] == pytest.approx(low * math.sqrt(252)) and annual[2] == pytest.approx(est * math.sqrt(252))


def test_block_bootstrap_widens_the_interval_of_autocorrelated_ic():
    rng = np.random.default_rng(8)
    noise = rng.normal(0, 0.05, 3000)
    ic = 0.03 + np.convolve(noise, np.ones(20) / np.sqrt(20), mode="same")  # strongly autocorrelated IC series
    iid = rs.bootstrap_ci(ic, rs.mean_statistic, block=1)
    blocks = rs.bootstrap_ci(ic, rs.mean_statistic, block=60)
    assert iid[2] == blocks[2] == pytest.approx(ic.mean())
    assert (blocks[1] - blocks[0]) > 2.5 * (iid[1] - iid[0])


def test_bootstrap_is_reproducible_and_ignores_nan():
    r = [math.nan, 0.01, -0.02, 0.015, 0.0, 0.005, -0.01, 0.02]
    assert rs.bootstrap_ci(r, rs.mean_statistic) == rs.bootstrap_ci(r[1:], rs.mean_statistic)
    assert all(math.isnan(v) for v in rs.bootstrap_ci([0.1, math.nan], rs.mean_statistic))


def test_the_examples_in_research_and_performance_run():
    import doctest

    from models import performance

    for module in (rs, performance):
        assert doctest.testmod(module).failed == 0, module.__name__
