"""The training frame: Feast's point-in-time join of features and labels, built once per retrain.

Every training run starts from :func:`build_training_frame`, which asks Feast
(``feature_repo.store.training_set``) for the features knowable at each bar's close
and joins that bar's labels; nothing here re-joins features by hand. The frame is
sorted by time then symbol (what walk-forward splitting and sequence models expect),
rows whose chosen label is null (the horizon runs past the data) are left out, and a
**fingerprint** (SHA-256 over a row hash of every column) identifies it in the model
metadata. Feast's join is the slow part of training, so the frame is written once to
Parquet (:func:`save_frame`) and every learner reads that copy.

Example:
    >>> import polars as pl, datetime as dt
    >>> t = dt.datetime(2024, 1, 2, 15, tzinfo=dt.UTC)
    >>> frame = pl.DataFrame({"symbol": ["B", "A"], "event_timestamp": [t, t], "x": [1.0, 2.0]})
    >>> len(fingerprint(frame)) == 64 and fingerprint(frame) == fingerprint(frame.reverse())
    True
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from feature_repo import FEATURE_NAMES, LABEL_NAMES

if TYPE_CHECKING:
    from feast import FeatureStore

KEYS = ("symbol", "event_timestamp")
DEFAULT_LABEL = "label_fwd_ret_4"


class TrainingDataError(ValueError):
    """A training frame that cannot be used (names the input and why)."""


def label_horizon(label: str) -> int:
    """Bars ahead that ``label`` looks (``label_fwd_ret_4`` → 4)."""
    if label not in LABEL_NAMES:
        raise TrainingDataError(f"label: {label!r} is not one of {', '.join(LABEL_NAMES)}")
    return int(label.rsplit("_", 1)[1])


def build_training_frame(
    store: FeatureStore, offline: Path, *, label: str = DEFAULT_LABEL,
    start: dt.datetime | None = None, end: dt.datetime | None = None,
) -> pl.DataFrame:
    """Features as of each bar's close (Feast ``get_historical_features``) plus every label, for ``[start, end)``."""
    from feature_repo.store import training_set

    label_horizon(label)
    frame = training_set(store, offline, start=start, end=end)
    return prepare(frame, label=label)


def prepare(frame: pl.DataFrame, *, label: str) -> pl.DataFrame:
    """Check the columns, drop rows without ``label``, sort by time then symbol."""
    missing = [c for c in (*KEYS, *FEATURE_NAMES, label) if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"training frame: missing columns {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    out = frame.drop_nulls(label).filter(pl.col(label).is_finite()).sort("event_timestamp", "symbol")
    if out.is_empty():
        raise TrainingDataError(f"training frame: no rows with a {label} value (is the history long enough?)")
    return out


def fingerprint(frame: pl.DataFrame) -> str:
    """SHA-256 of the frame's content, independent of row order (hashes of sorted rows)."""
    ordered = frame.select(sorted(frame.columns)).sort(*[c for c in KEYS if c in frame.columns])
    hashes = ordered.hash_rows(seed=0).to_numpy()
    digest = hashlib.sha256(np.ascontiguousarray(hashes).tobytes())
    digest.update(",".join(ordered.columns).encode())
    return digest.hexdigest()


def matrix(frame: pl.DataFrame, features: list[str] | tuple[str, ...] = FEATURE_NAMES) -> np.ndarray:
    """Feature matrix (float64, NaN for missing) in the given column order."""
    return frame.select(features).cast(pl.Float64).fill_null(np.nan).to_numpy()


TARGETS = ("raw", "demeaned", "rank")


def target(frame: pl.DataFrame, label: str, kind: str = "demeaned") -> np.ndarray:
    """What the learners fit: the label ``raw``, minus its cross-sectional mean (``demeaned``), or its cross-sectional
    percentile rank centred on 0 (``rank``), per ``event_timestamp``.

    Models are judged by cross-sectional IC; the raw label is dominated by market-wide moves that no
    symbol's features can rank, and a tree early-stopped on it can end up a constant. The demeaned
    label keeps only what IC measures.

    Example:
        >>> f = pl.DataFrame({"event_timestamp": [1, 1, 2, 2], "y": [0.03, 0.01, -0.02, 0.0]})
        >>> target(f, "y", "demeaned").round(3).tolist(), target(f, "y", "rank").tolist()
        ([0.01, -0.01, -0.01, 0.01], [0.5, -0.5, -0.5, 0.5])
    """
    y = pl.col(label)
    if kind == "raw":
        expr = y
    elif kind == "demeaned":
        expr = y - y.mean().over("event_timestamp")
    elif kind == "rank":
        n = y.count().over("event_timestamp")
        expr = pl.when(n > 1).then((y.rank("average").over("event_timestamp") - 1) / (n - 1) - 0.5).otherwise(0.0)
    else:
        raise ValueError(f"target {kind!r}: one of {', '.join(TARGETS)}")
    return frame.select(expr.cast(pl.Float64).alias("y"))["y"].to_numpy()


def symbol_codes(frame: pl.DataFrame) -> np.ndarray:
    """One integer per symbol (its rank in sorted symbol order), for sequence learners' ``groups``."""
    names = sorted(frame["symbol"].unique().to_list())
    lookup = {name: i for i, name in enumerate(names)}
    return np.fromiter((lookup[s] for s in frame["symbol"].to_list()), dtype=np.int64, count=frame.height)


def save_frame(frame: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.write_parquet(tmp)
    tmp.replace(path)
    return path


def load_frame(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise TrainingDataError(f"{path}: no training frame yet (materialize training_frame first)")
    return pl.read_parquet(path)
