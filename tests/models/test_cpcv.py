"""CPCV of the model family: no training label meets a test label, every path covers the history once, a real
signal beats its shuffled sentinel on every path, and PBO across learners tells a dominant one from look-alikes."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import numpy as np
import polars as pl
import pytest

from feature_repo import FEATURE_NAMES
from models.cpcv import CPCVConfig, long_short_returns, markdown_lines, run_cpcv
from models.walkforward import WalkForwardConfig, shuffle_labels

H = 4  # label_fwd_ret_4
N_TIMES, N_SYMBOLS = 300, 12


def _frame(seed: int = 0, strength: float = 0.5) -> pl.DataFrame:
    """A panel whose first feature is the timestamp index (so a spy can see which timestamps it trained on) and whose
    label loads on the second feature with the given strength."""
    rng = np.random.default_rng(seed)
    t0 = dt.datetime(2024, 1, 2, 15, tzinfo=dt.UTC)
    times = [t0 + dt.timedelta(minutes=15 * i) for i in range(N_TIMES) for _ in range(N_SYMBOLS)]
    x = rng.normal(size=(len(times), len(FEATURE_NAMES)))
    x[:, 0] = np.repeat(np.arange(N_TIMES), N_SYMBOLS)
    y = 0.01 * (strength * x[:, 1] + rng.normal(size=len(times)))
    return pl.DataFrame({"symbol": [f"S{j:02d}" for j in range(N_SYMBOLS)] * N_TIMES, "event_timestamp": times}).with_columns(
        *[pl.Series(name, x[:, j]) for j, name in enumerate(FEATURE_NAMES)], label_fwd_ret_4=pl.Series(y))


class _Spy:
    """Records the timestamp indices it is fitted on; predicts the number of its fit (= the CPCV split)."""

    fits: ClassVar[list[np.ndarray]] = []

    def fit(self, x, y, *, feature_names, groups=None):
        self.number = len(_Spy.fits)
        _Spy.fits.append(np.unique(x[:, 0]).astype(int))
        return self

    def predict(self, x, *, groups=None):
        return np.full(len(x), float(self.number)) + 1e-6 * x[:, 1]  # a split-constant score, not degenerate


@pytest.fixture
def spied(monkeypatch):
    _Spy.fits = []
    monkeypatch.setattr(WalkForwardConfig, "learner", lambda self, family: _Spy())
    return run_cpcv(_frame(), WalkForwardConfig(families=("sklearn_ridge",)), CPCVConfig(k=3))


def test_cpcv_fit_never_trains_on_a_row_whose_label_window_meets_a_test_group(spied):
    assert len(_Spy.fits) == len(spied.splits) == 15
    for fitted, split in zip(_Spy.fits, spied.splits, strict=True):
        assert np.array_equal(fitted, split.train)  # the learner saw exactly the split's training timestamps
        for g in split.test_groups:
            lo, hi = int(spied.groups[g][0]), int(spied.groups[g][-1])
            # a label at t spans (t, t+H]; a test group's labels span (lo, hi+H]: the windows must not meet
            meets = (fitted + H > lo) & (fitted < hi + H)
            assert not meets.any(), (split.test_groups, fitted[meets])
        tested = np.concatenate([spied.groups[g] for g in split.test_groups])
        assert not np.isin(fitted, tested).any()


def test_cpcv_paths_cover_every_timestamp_once_each_from_a_split_that_held_it_out(spied):
    preds = spied.predictions["sklearn_ridge"]
    assert preds.shape == (5, N_TIMES * N_SYMBOLS) and np.isfinite(preds).all()
    index = np.repeat(np.arange(N_TIMES), N_SYMBOLS)
    for p in range(preds.shape[0]):
        for g, rows in enumerate(spied.groups):
            supplier = np.round(preds[p, np.isin(index, rows)]).astype(int)
            assert (supplier == spied.path_splits[p, g]).all()  # the one split this path takes group g from ...
            assert g in spied.splits[supplier[0]].test_groups  # ... which tested (never trained on) group g
    assert spied.returns["sklearn_ridge"].shape == (5, N_TIMES // H)  # one return per rebalance, non-overlapping


def test_cpcv_sharpe_of_a_real_signal_beats_its_shuffled_label_sentinel_on_every_path():
    frame, config = _frame(seed=1, strength=0.3), WalkForwardConfig(families=("sklearn_ridge",))
    real = run_cpcv(frame, config, CPCVConfig(k=3)).summary()["members"]["sklearn_ridge"]
    sentinel = run_cpcv(shuffle_labels(frame, "label_fwd_ret_4"), config, CPCVConfig(k=3)).summary()["members"]["sklearn_ridge"]
    assert real["sharpe_p5"] > sentinel["sharpe_mean"] and real["sharpe_positive"] == 1.0, (real, sentinel)
    assert real["ic_p5"] > 0.1 and abs(sentinel["ic_mean"]) < 0.05, (real, sentinel)


def test_cpcv_pbo_across_learners_is_near_zero_for_one_dominant_learner_and_near_half_for_look_alikes():
    result = run_cpcv(_frame(seed=2, strength=0.3), WalkForwardConfig(families=("sklearn_ridge",)), CPCVConfig(k=3, pbo_blocks=10))
    rng = np.random.default_rng(5)
    shape = result.returns["sklearn_ridge"].shape
    for j in range(4):  # learners with no signal at all beside the real one
        result.returns[f"noise{j}"], result.ic[f"noise{j}"] = rng.normal(0, 0.01, shape), np.zeros(shape[0])
    summary = result.summary()
    assert summary["pbo"] < 0.1 and summary["members"]["sklearn_ridge"]["sharpe_p5"] > 1.0, summary
    text = "\n".join(markdown_lines(summary))
    assert "| sklearn_ridge | 5 |" in text and "| noise0 | 5 |" in text and "Probability of backtest overfitting" in text

    del result.returns["sklearn_ridge"]  # only look-alikes left: the in-sample winner is a coin flip out of sample
    for j in range(4, 10):
        result.returns[f"noise{j}"] = rng.normal(0, 0.01, shape)
    assert 0.25 < result.pbo()["pbo"] < 0.75


def test_long_short_returns_trade_every_horizon_th_timestamp_top_against_bottom():
    f = pl.DataFrame({"event_timestamp": [0] * 4 + [1] * 4 + [2] * 4, "symbol": list("ABCD") * 3,
                      "s": [1.0, 2, 3, 4] * 3, "y": [0.0, 0, 0, 0.1, 9, 9, 9, 9, -0.1, 0, 0, 0]})
    out = long_short_returns(f, score="s", label="y", horizon=2, k=1)
    assert out["event_timestamp"].to_list() == [0, 2]  # timestamp 1 overlaps the first holding: not traded
    assert out["return"].to_list() == pytest.approx([0.5 * (np.exp(0.1) - 1), -0.5 * (np.exp(-0.1) - 1)])
