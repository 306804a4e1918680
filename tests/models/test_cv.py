"""Purged walk-forward CV (DESIGN.md §4.2): time-ordered splits only, purge and embargo between train and test."""

import datetime as dt

import numpy as np
import pytest

from models.cv import CVConfigError, PurgedWalkForward

TIMES = [dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC) + dt.timedelta(minutes=15 * i) for i in range(1000)]


@pytest.mark.parametrize("max_train", [None, 300])
@pytest.mark.parametrize(("purge", "embargo"), [(4, 4), (26, 10), (0, 0)])
def test_no_train_index_within_purge_or_embargo_of_a_test_index_and_no_test_before_train(purge, embargo, max_train):
    cv = PurgedWalkForward(n_folds=5, purge=purge, embargo=embargo, min_train=200, max_train=max_train)
    folds = cv.split(TIMES)
    assert len(folds) == 5
    for fold in folds:
        train = np.flatnonzero(fold.train_mask(len(TIMES)))
        test = np.arange(fold.test_start_index, fold.test_end_index)
        assert train.size and test.size
        assert train.max() < test.min() - purge  # walk-forward + purge: every train index ends purge bars before the test
        assert fold.train_end < fold.test_start
        if max_train:
            assert train.size <= max_train
        for earlier in folds[: fold.number]:  # nothing right after an earlier test block trains this fold
            after = np.arange(earlier.test_end_index, earlier.test_end_index + embargo)
            assert not np.isin(after, train).any()


def test_test_blocks_are_consecutive_and_cover_everything_after_the_first_training_window():
    folds = PurgedWalkForward(n_folds=4, purge=4, embargo=4, min_train=100).split(TIMES)
    assert folds[0].test_start_index == 104
    assert [f.test_end_index for f in folds[:-1]] == [f.test_start_index for f in folds[1:]]
    assert folds[-1].test_end_index == len(TIMES)


def test_expanding_window_grows_and_rolling_window_slides():
    expanding = PurgedWalkForward(n_folds=3, min_train=100).split(TIMES)
    rolling = PurgedWalkForward(n_folds=3, min_train=100, max_train=150).split(TIMES)
    assert [f.train_start_index for f in expanding] == [0, 0, 0]
    assert [f.train_end_index - f.train_start_index for f in rolling] == [100, 150, 150]


def test_duplicate_and_unsorted_timestamps_split_on_distinct_times():
    panel = [t for t in reversed(TIMES) for _ in range(3)]  # 3 symbols per timestamp, any order
    assert PurgedWalkForward(n_folds=3, min_train=100).split(panel) == PurgedWalkForward(n_folds=3, min_train=100).split(TIMES)


def test_fold_record_gives_iso_boundaries_for_model_metadata():
    record = PurgedWalkForward(n_folds=2, min_train=100).split(TIMES)[0].record()
    assert record["train_start"] == "2024-01-02T14:30:00+00:00"
    assert dt.datetime.fromisoformat(record["test_start"]) > dt.datetime.fromisoformat(record["train_end"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_folds": 0}, "n_folds: must be at least 1"), ({"purge": -1}, "purge: must not be negative"),
     ({"max_train": 0}, "max_train: must be at least 1")],
)
def test_bad_settings_name_the_setting(kwargs, message):
    with pytest.raises(CVConfigError, match=message):
        PurgedWalkForward(**kwargs)


def test_too_few_timestamps_is_a_clear_error():
    with pytest.raises(CVConfigError, match="timestamps: 50 distinct, too few for 5 folds"):
        PurgedWalkForward(n_folds=5, min_train=48).split(TIMES[:50])
