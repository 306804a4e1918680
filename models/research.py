"""Research rigour: is a backtest's Sharpe real, or the best of many tries?

* :func:`cpcv_splits` / :func:`cpcv_paths` — combinatorial purged cross-validation (López de
  Prado, *Advances in Financial ML*, ch. 12): ``n_groups`` contiguous blocks, every choice of
  ``n_test_groups`` of them as the test set (purged and embargoed like :mod:`models.cv`), and the
  ``C(N−1, k−1)`` backtest *paths* that stitch the test predictions into complete histories;
* :func:`deflated_sharpe_ratio` — the probability that the true Sharpe is above what the best of
  ``N`` unskilled trials would show (Bailey & López de Prado, 2014), from the track record's length,
  skewness and kurtosis; :func:`probabilistic_sharpe_ratio` is the same against a fixed benchmark;
* :func:`probability_of_backtest_overfitting` — PBO by combinatorially symmetric cross-validation
  (CSCV; Bailey, Borwein, López de Prado & Zhu, 2017): how often the in-sample best of a family of
  strategies lands in the bottom half out of sample;
* :func:`bootstrap_ci` — a circular block bootstrap interval for the Sharpe ratio or the mean IC
  (blocks keep the serial dependence that an i.i.d. bootstrap would destroy).

Sharpe ratios in the DSR and PBO are *per period* (not annualised), as in the papers.

Example (the DSR paper's worked example: 100 trials whose annualised Sharpes vary by 0.5, a best
annualised Sharpe of 2.5 over 1,250 days with skewness −3 and kurtosis 10):
    >>> sr0 = expected_max_sharpe(100, 0.5 / 250)
    >>> round(sr0, 4), round(psr(2.5 / 250**0.5, n=1250, skew=-3.0, kurtosis=10.0, benchmark=sr0), 4)
    (0.1132, 0.9004)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

_EULER_GAMMA = 0.5772156649015329


class ResearchInputError(ValueError):
    """An input that cannot give a meaningful answer (names the argument and why)."""


# -- combinatorial purged CV ---------------------------------------------------------------------
@dataclass(frozen=True)
class CPCVSplit:
    """One CPCV split: the test groups and the sample indices to train and test on."""

    test_groups: tuple[int, ...]
    train: np.ndarray
    test: np.ndarray


def cpcv_splits(n_samples: int, *, n_groups: int, n_test_groups: int, purge: int = 0, embargo: int = 0) -> list[CPCVSplit]:
    """Every ``C(n_groups, n_test_groups)`` split of ``n_samples`` time-ordered samples (distinct timestamps).

    Train drops the ``purge`` samples before each test block (their labels reach into it) and the
    ``embargo`` samples after it (serial correlation leaks the block into what follows).

    Example:
        >>> splits = cpcv_splits(12, n_groups=4, n_test_groups=2, purge=1, embargo=1)
        >>> len(splits), splits[0].test_groups, splits[0].test.tolist(), splits[0].train.tolist()
        (6, (0, 1), [0, 1, 2, 3, 4, 5], [7, 8, 9, 10, 11])
    """
    if not 0 < n_test_groups < n_groups <= n_samples:
        raise ResearchInputError(f"cpcv: need 0 < n_test_groups ({n_test_groups}) < n_groups ({n_groups}) ≤ samples ({n_samples})")
    groups = np.array_split(np.arange(n_samples), n_groups)
    out = []
    for combo in itertools.combinations(range(n_groups), n_test_groups):
        test = np.concatenate([groups[g] for g in combo])
        banned = np.zeros(n_samples, dtype=bool)
        banned[test] = True
        for g in combo:
            start, end = groups[g][0], groups[g][-1] + 1
            banned[max(start - purge, 0):start] = True
            banned[end:end + embargo] = True
        out.append(CPCVSplit(test_groups=combo, train=np.flatnonzero(~banned), test=test))
    return out


def cpcv_paths(n_groups: int, n_test_groups: int) -> np.ndarray:
    """``(n_paths, n_groups)``: which split (index into :func:`cpcv_splits`) tests each group on each path.

    Each group is tested by ``C(N−1, k−1)`` splits; path ``j`` takes the ``j``-th of them, so every
    path covers the whole history once and every split's test predictions are used exactly once per group.

    Example:
        >>> cpcv_paths(4, 2).tolist()  # splits: 0=(0,1) 1=(0,2) 2=(0,3) 3=(1,2) 4=(1,3) 5=(2,3)
        [[0, 0, 1, 2], [1, 3, 3, 4], [2, 4, 5, 5]]
    """
    combos = list(itertools.combinations(range(n_groups), n_test_groups))
    per_group = [[i for i, c in enumerate(combos) if g in c] for g in range(n_groups)]
    return np.array(per_group).T


def cpcv_path_returns(split_returns: Sequence[np.ndarray], splits: Sequence[CPCVSplit], *, n_groups: int,
                      n_test_groups: int) -> np.ndarray:
    """Stitch each split's out-of-sample returns (aligned with its ``test`` indices) into ``(n_paths, n_samples)``."""
    n_samples = max(int(s.test.max()) for s in splits) + 1
    groups = np.array_split(np.arange(n_samples), n_groups)
    paths = cpcv_paths(n_groups, n_test_groups)
    out = np.full((paths.shape[0], n_samples), np.nan)
    for p, row in enumerate(paths):
        for g, i in enumerate(row):
            where = np.searchsorted(splits[i].test, groups[g])
            out[p, groups[g]] = np.asarray(split_returns[i])[where]
    return out


# -- Sharpe ratio under multiple testing ---------------------------------------------------------
def psr(sharpe: float, *, n: int, skew: float, kurtosis: float, benchmark: float = 0.0) -> float:
    """Probabilistic Sharpe ratio from moments: ``Φ((SR − SR*)·√(n−1) / √(1 − γ₃·SR + (γ₄−1)/4·SR²))``.

    ``sharpe`` and ``benchmark`` per period; ``kurtosis`` is the plain (not excess) kurtosis, 3 for a normal.
    """
    var = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if n < 2 or var <= 0:
        return math.nan
    return float(stats.norm.cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(var)))


def expected_max_sharpe(n_trials: int, var_sharpe: float) -> float:
    """What the best of ``n_trials`` unskilled strategies shows: ``√V·((1−γ)Φ⁻¹(1−1/N) + γΦ⁻¹(1−1/(N·e)))``."""
    if n_trials < 2 or var_sharpe <= 0:
        return 0.0
    z = stats.norm.ppf
    return float(math.sqrt(var_sharpe) * ((1 - _EULER_GAMMA) * z(1 - 1 / n_trials) + _EULER_GAMMA * z(1 - 1 / (n_trials * math.e))))


@dataclass(frozen=True)
class DeflatedSharpe:
    sharpe: float  # per period
    benchmark: float  # the expected maximum Sharpe of the trials (0 with one trial)
    n_trials: int
    probability: float  # the DSR: P(true Sharpe > benchmark)


def _sharpe(r: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    sd = np.std(r, ddof=1, axis=axis)
    return np.mean(r, axis=axis) / np.where(sd > 0, sd, np.nan)


def probabilistic_sharpe_ratio(returns: Sequence[float] | np.ndarray, benchmark: float = 0.0) -> float:
    """PSR of a return series against a per-period benchmark Sharpe (NaN returns dropped)."""
    r = np.asarray(returns, dtype=float)
    r = r[~np.isnan(r)]
    if r.size < 3:
        return math.nan
    return psr(float(_sharpe(r)), n=r.size, skew=float(stats.skew(r)), kurtosis=float(stats.kurtosis(r, fisher=False)),
               benchmark=benchmark)


def deflated_sharpe_ratio(returns: Sequence[float] | np.ndarray, trial_sharpes: Sequence[float]) -> DeflatedSharpe:
    """DSR of the chosen strategy's ``returns`` given the per-period Sharpes of *every* trial (it included)."""
    sharpes = np.asarray(trial_sharpes, dtype=float)
    sharpes = sharpes[np.isfinite(sharpes)]
    n = int(sharpes.size)
    benchmark = expected_max_sharpe(n, float(np.var(sharpes, ddof=1))) if n > 1 else 0.0
    r = np.asarray(returns, dtype=float)
    r = r[~np.isnan(r)]
    sr = float(_sharpe(r)) if r.size > 1 else math.nan
    return DeflatedSharpe(sharpe=sr, benchmark=benchmark, n_trials=max(n, 1),
                          probability=probabilistic_sharpe_ratio(r, benchmark))


# -- probability of backtest overfitting ---------------------------------------------------------
@dataclass(frozen=True)
class PBOResult:
    pbo: float
    logits: np.ndarray  # λ per combination: ln(ω/(1−ω)) of the in-sample winner's out-of-sample rank
    n_combinations: int


def probability_of_backtest_overfitting(returns: np.ndarray, *, n_blocks: int = 16) -> PBOResult:
    """PBO by CSCV over a ``(T, N)`` matrix: one column per strategy tried, same periods.

    Rows are cut into ``n_blocks`` (even) blocks; for each half of them as in-sample, the strategy
    with the best in-sample Sharpe is ranked among all ``N`` out of sample (1 = worst);
    ``ω = rank/(N+1)``, ``λ = ln(ω/(1−ω))``, and PBO is the share of combinations with ``λ ≤ 0``.

    Example (each strategy wins exactly where the other loses: the in-sample winner always loses after):
        >>> m = np.array([[0.02, -0.01], [0.01, -0.02], [-0.01, 0.02], [-0.02, 0.01]])
        >>> probability_of_backtest_overfitting(m, n_blocks=2).pbo
        1.0
    """
    m = np.asarray(returns, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ResearchInputError(f"pbo: returns must be (periods, strategies ≥ 2), got shape {m.shape}")
    if n_blocks < 2 or n_blocks % 2 or m.shape[0] < n_blocks:
        raise ResearchInputError(f"pbo: n_blocks must be even, ≥ 2 and ≤ the {m.shape[0]} periods; got {n_blocks}")
    blocks = np.array_split(np.arange(m.shape[0]), n_blocks)
    # Sharpe of any union of blocks from per-block sums (count, Σr, Σr²): no re-slicing per combination
    count = np.array([len(b) for b in blocks], dtype=float)
    s1 = np.stack([m[b].sum(axis=0) for b in blocks])
    s2 = np.stack([(m[b] ** 2).sum(axis=0) for b in blocks])

    # every half of the blocks at once: a (combinations, blocks) 0/1 matrix, in-sample and its complement
    ins = np.zeros((math.comb(n_blocks, n_blocks // 2), n_blocks))
    for row, chosen in enumerate(itertools.combinations(range(n_blocks), n_blocks // 2)):
        ins[row, list(chosen)] = 1.0

    def sharpe(pick: np.ndarray) -> np.ndarray:
        n, a, b = (pick @ count)[:, None], pick @ s1, pick @ s2
        var = (b - a * a / n) / (n - 1)
        return (a / n) / np.sqrt(np.where(var > 0, var, np.nan))

    is_sr, oos_sr = sharpe(ins), np.nan_to_num(sharpe(1.0 - ins), nan=-np.inf)
    best = np.argmax(np.nan_to_num(is_sr, nan=-np.inf), axis=1)
    chosen_oos = oos_sr[np.arange(best.size), best][:, None]
    rank = (oos_sr < chosen_oos).sum(axis=1) + ((oos_sr == chosen_oos).sum(axis=1) + 1) / 2  # average rank, 1 = worst
    omega = rank / (m.shape[1] + 1)
    lam = np.log(omega / (1 - omega))
    return PBOResult(pbo=float(np.mean(lam <= 0)), logits=lam, n_combinations=lam.size)


# -- bootstrap confidence intervals --------------------------------------------------------------
def bootstrap_ci(x: Sequence[float] | np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], *,
                 n_boot: int = 2000, block: int | None = None, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(low, high, estimate)``: a circular block bootstrap percentile interval of ``statistic``.

    ``statistic`` takes a ``(n_boot, T)`` array and returns one value per row (``axis=1``);
    :func:`sharpe_statistic` and :func:`mean_statistic` are ready-made. ``block`` defaults to
    ``⌈T^(1/3)⌉`` periods; NaN values are dropped first. Seeded: the same input, the same interval.
    """
    data = np.asarray(x, dtype=float)
    data = data[~np.isnan(data)]
    t = data.size
    if t < 3:
        return math.nan, math.nan, math.nan
    block = block or max(1, math.ceil(t ** (1 / 3)))
    rng = np.random.default_rng(seed)
    n_blocks = math.ceil(t / block)
    starts = rng.integers(0, t, size=(n_boot, n_blocks))
    index = ((starts[:, :, None] + np.arange(block)) % t).reshape(n_boot, -1)[:, :t]
    samples = statistic(data[index])
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(samples, [alpha, 1 - alpha])
    return float(low), float(high), float(statistic(data[None, :])[0])


def sharpe_statistic(periods_per_year: int) -> Callable[[np.ndarray], np.ndarray]:
    """Annualised Sharpe of each row (``ddof=1``), for :func:`bootstrap_ci`."""
    return lambda rows: np.asarray(_sharpe(rows, axis=1)) * math.sqrt(periods_per_year)


def mean_statistic(rows: np.ndarray) -> np.ndarray:
    """Mean of each row (e.g. the mean IC), for :func:`bootstrap_ci`."""
    return rows.mean(axis=1)


# -- the tear sheet's section --------------------------------------------------------------------
def rigour_summary(returns: np.ndarray, *, periods_per_year: int, ic_series: np.ndarray | None = None,
                   trials: dict[str, np.ndarray] | None = None, confidence: float = 0.95) -> dict[str, float | int]:
    """The numbers :mod:`models.tearsheet` shows: Sharpe and mean-IC intervals, PSR, and with ``trials``
    (the returns of every variant tried on the same periods, the chosen one included) DSR and PBO.

    Example:
        >>> r = np.random.default_rng(0).normal(0.001, 0.01, 500)
        >>> s = rigour_summary(r, periods_per_year=252)
        >>> s["sharpe_ci_low"] < s["sharpe"] < s["sharpe_ci_high"], "pbo" in s
        (True, False)
    """
    low, high, sharpe = bootstrap_ci(returns, sharpe_statistic(periods_per_year), confidence=confidence)
    out: dict[str, float | int] = {"sharpe": sharpe, "sharpe_ci_low": low, "sharpe_ci_high": high,
                                   "psr": probabilistic_sharpe_ratio(returns)}
    if ic_series is not None:
        out["mean_ic"], (out["ic_ci_low"], out["ic_ci_high"]) = float(np.nanmean(ic_series)), \
            bootstrap_ci(ic_series, mean_statistic, confidence=confidence)[:2]
    if trials and len(trials) > 1:
        matrix = np.nan_to_num(np.column_stack([np.asarray(v, dtype=float) for v in trials.values()]))
        dsr = deflated_sharpe_ratio(returns, [float(_sharpe(matrix[:, j])) for j in range(matrix.shape[1])])
        out |= {"n_trials": dsr.n_trials, "dsr": dsr.probability, "dsr_benchmark_sharpe": dsr.benchmark * math.sqrt(periods_per_year)}
        blocks = min(16, matrix.shape[0] - matrix.shape[0] % 2)
        if blocks >= 2:
            result = probability_of_backtest_overfitting(matrix, n_blocks=blocks)
            out |= {"pbo": result.pbo, "pbo_blocks": blocks}
    return out


def sweep_rigour(returns_by_trial: dict[str, np.ndarray], *, best: str, periods_per_year: float,
                 n_blocks: int = 16) -> dict[str, float | int | str]:
    """DSR of the ``best`` trial given every trial of a parameter sweep, and PBO (CSCV) across the trials.

    ``returns_by_trial`` holds each trial's per-period returns on the same periods (NaN counts as 0);
    ``best`` is the one the sweep picked (by whatever criterion it used). The Sharpes are annualised
    with ``periods_per_year`` in the result; the DSR and PBO use per-period ones, as in the papers.
    PBO cuts the periods into ``n_blocks`` (at most; even) blocks: ``C(16, 8)`` = 12,870 combinations by default.

    Example (twenty noise trials: the best looks good, but not better than the best of twenty by luck):
        >>> rng = np.random.default_rng(1)
        >>> trials = {f"t{i}": rng.normal(0, 0.01, 400) for i in range(20)}
        >>> best = max(trials, key=lambda t: trials[t].mean())
        >>> r = sweep_rigour(trials, best=best, periods_per_year=252)
        >>> r["n_trials"], round(r["sharpe"], 2), round(r["dsr"], 2), round(r["pbo"], 2)
        (20, 1.21, 0.33, 0.61)
    """
    if best not in returns_by_trial:
        raise ResearchInputError(f"sweep: best trial {best!r} is not among the {len(returns_by_trial)} trials")
    names = list(returns_by_trial)
    matrix = np.nan_to_num(np.column_stack([np.asarray(returns_by_trial[n], dtype=float) for n in names]))
    sharpes = [float(_sharpe(matrix[:, j])) for j in range(len(names))]
    dsr = deflated_sharpe_ratio(matrix[:, names.index(best)], sharpes)
    scale = math.sqrt(periods_per_year)
    out: dict[str, float | int | str] = {"best": best, "n_trials": dsr.n_trials, "sharpe": dsr.sharpe * scale,
                                         "dsr": dsr.probability, "dsr_benchmark_sharpe": dsr.benchmark * scale,
                                         "periods": int(matrix.shape[0])}
    blocks = min(n_blocks - n_blocks % 2, matrix.shape[0] - matrix.shape[0] % 2)
    if len(names) > 1 and blocks >= 2:
        out |= {"pbo": probability_of_backtest_overfitting(matrix, n_blocks=blocks).pbo, "pbo_blocks": blocks}
    return out


@dataclass(frozen=True)
class WalkForwardChoice:
    """A parameter chosen block by block on the blocks before it (:func:`walk_forward_choice`)."""

    chosen: list[object]  # the parameter used on each block after the first
    returns: np.ndarray  # the stitched out-of-sample returns (blocks after the first)
    sharpe: float  # annualised Sharpe of ``returns``
    fixed: dict[object, float]  # annualised Sharpe of each parameter held fixed over the same blocks
    sweep: dict[str, float | int | str] = field(default_factory=dict)  # sweep_rigour of the whole-window best value


def walk_forward_choice(returns_by_param: dict[object, np.ndarray], *, blocks: int, periods_per_year: int) -> WalkForwardChoice:
    """Walk-forward parameter optimisation: on each time block, use the parameter with the best Sharpe over
    every earlier block; the first block only informs. The stitched returns are out of sample for the choice.

    ``returns_by_param`` maps each candidate parameter to its per-period returns on the same periods. Compare
    :attr:`WalkForwardChoice.sharpe` with :attr:`WalkForwardChoice.fixed`: a choice that does not beat the
    fixed parameters is tuning noise. :attr:`WalkForwardChoice.sweep` judges the other way to pick, the value
    with the best Sharpe over the whole window: its deflated Sharpe ratio and PBO across the values
    (:func:`sweep_rigour`, with two values or more).

    Example:
        >>> rng = np.random.default_rng(1)
        >>> good, bad = rng.normal(0.002, 0.01, 600), rng.normal(-0.001, 0.01, 600)
        >>> wf = walk_forward_choice({"good": good, "bad": bad}, blocks=6, periods_per_year=252)
        >>> wf.chosen, len(wf.returns)
        (['good', 'good', 'good', 'good', 'good'], 500)
    """
    params = list(returns_by_param)
    matrix = np.nan_to_num(np.column_stack([np.asarray(returns_by_param[p], dtype=float) for p in params]))
    edges = np.linspace(0, matrix.shape[0], blocks + 1).astype(int)
    scale = math.sqrt(periods_per_year)
    chosen, parts = [], []
    for b in range(1, blocks):
        past = matrix[: edges[b]]
        best = int(np.nanargmax([_annual(past[:, j], scale) for j in range(len(params))]))
        chosen.append(params[best])
        parts.append(matrix[edges[b]: edges[b + 1], best])
    stitched = np.concatenate(parts) if parts else np.zeros(0)
    later = matrix[edges[1]:]
    sweep: dict[str, float | int | str] = {}
    if len(params) > 1:
        best = params[int(np.nanargmax([_annual(matrix[:, j], scale) for j in range(len(params))]))]
        sweep = sweep_rigour({str(p): matrix[:, j] for j, p in enumerate(params)}, best=str(best), periods_per_year=periods_per_year)
    return WalkForwardChoice(chosen, stitched, _annual(stitched, scale),
                             {p: _annual(later[:, j], scale) for j, p in enumerate(params)}, sweep)


def _annual(r: np.ndarray, scale: float) -> float:
    sd = float(np.std(r, ddof=1)) if r.size > 1 else 0.0
    return float(np.mean(r)) / sd * scale if sd > 0 else float("nan")
