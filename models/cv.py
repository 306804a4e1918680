"""Purged walk-forward cross-validation over time (López de Prado, *Advances in Financial ML*, ch. 7).

Folds split the distinct timestamps of a panel (many symbols per timestamp) into
consecutive test blocks. Each fold trains only on timestamps *before* its test
block (walk-forward: no shuffling, no future in training), minus a **purge** of
``purge`` timestamps right before the test block (their labels look ``h`` bars
ahead, into the test block) and an **embargo** of ``embargo`` timestamps right
after each earlier test block (serial correlation leaks the test block into the
bars that follow it). Train windows are expanding, or rolling with ``max_train``.

Example:
    >>> import datetime as dt
    >>> times = [dt.datetime(2024, 1, 1) + dt.timedelta(hours=i) for i in range(100)]
    >>> folds = PurgedWalkForward(n_folds=4, purge=4, embargo=2, min_train=20).split(times)
    >>> [(f.train_end_index, f.test_start_index) for f in folds]
    [(20, 24), (39, 43), (58, 62), (77, 81)]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


class CVConfigError(ValueError):
    """A cross-validation setting that cannot work (names the setting and why)."""


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold as index ranges into the sorted distinct timestamps (end exclusive)."""

    number: int
    train_start_index: int
    train_end_index: int
    test_start_index: int
    test_end_index: int
    train_start: dt.datetime
    train_end: dt.datetime  # last training timestamp (inclusive)
    test_start: dt.datetime
    test_end: dt.datetime  # last test timestamp (inclusive)
    embargoed: tuple[tuple[int, int], ...] = ()  # index ranges left out of training after earlier test blocks

    def train_mask(self, n: int) -> np.ndarray:
        """Boolean mask over the ``n`` distinct timestamps: which are in this fold's training set."""
        mask = np.zeros(n, dtype=bool)
        mask[self.train_start_index : self.train_end_index] = True
        for lo, hi in self.embargoed:
            mask[lo:hi] = False
        return mask

    def record(self) -> dict[str, object]:
        """The fold's boundaries for model metadata (timestamps as ISO strings)."""
        out = asdict(self)
        return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in out.items()}


@dataclass(frozen=True)
class PurgedWalkForward:
    """Walk-forward splitter with purge and embargo.

    Args:
        n_folds: number of consecutive test blocks, covering the timestamps after ``min_train``.
        purge: timestamps dropped between the end of training and each test block; at least the
            label horizon (a label at t looks ``h`` bars ahead).
        embargo: timestamps dropped from training after each earlier test block.
        min_train: timestamps the first fold trains on at least.
        max_train: if set, a rolling window of at most this many training timestamps.
    """

    n_folds: int = 5
    purge: int = 4
    embargo: int = 4
    min_train: int = 500
    max_train: int | None = None

    def __post_init__(self) -> None:
        for name in ("n_folds", "min_train"):
            if getattr(self, name) < 1:
                raise CVConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("purge", "embargo"):
            if getattr(self, name) < 0:
                raise CVConfigError(f"{name}: must not be negative, got {getattr(self, name)}")
        if self.max_train is not None and self.max_train < 1:
            raise CVConfigError(f"max_train: must be at least 1, got {self.max_train}")

    def split(self, timestamps: Sequence[dt.datetime]) -> list[Fold]:
        """Folds over the sorted distinct ``timestamps``; raises :class:`CVConfigError` if they are too few."""
        times = sorted(set(timestamps))
        n = len(times)
        usable = n - self.min_train - self.purge
        if usable < self.n_folds:
            raise CVConfigError(
                f"timestamps: {n} distinct, too few for {self.n_folds} folds after min_train={self.min_train} "
                f"and purge={self.purge}"
            )
        first_test = self.min_train + self.purge
        edges = np.linspace(first_test, n, self.n_folds + 1).round().astype(int)
        folds = []
        for k in range(self.n_folds):
            test_lo, test_hi = int(edges[k]), int(edges[k + 1])
            train_hi = test_lo - self.purge
            train_lo = 0 if self.max_train is None else max(0, train_hi - self.max_train)
            embargoed = tuple(
                (int(edges[j + 1]), min(int(edges[j + 1]) + self.embargo, train_hi))
                for j in range(k) if int(edges[j + 1]) < train_hi and self.embargo
            )
            folds.append(
                Fold(
                    number=k, train_start_index=train_lo, train_end_index=train_hi,
                    test_start_index=test_lo, test_end_index=test_hi,
                    train_start=times[train_lo], train_end=times[train_hi - 1],
                    test_start=times[test_lo], test_end=times[test_hi - 1], embargoed=embargoed,
                )
            )
        return folds
