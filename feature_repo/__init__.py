"""Alphaline's Feast repo and the polars code that computes its features and labels.

This package imports nothing else of Alphaline's (DESIGN.md §1): the orchestration
layer hands it bars and paths, ``models/`` and ``serving/`` read features through it.

Example:
    >>> from feature_repo import FEATURE_NAMES, LABEL_NAMES
    >>> "tech_rsi_14" in FEATURE_NAMES, "label_fwd_ret_4" in LABEL_NAMES
    (True, True)
"""

from feature_repo.errors import FeatureInputError, FeatureStoreError
from feature_repo.labels import HORIZONS, LABEL_NAMES, compute_labels
from feature_repo.library import (
    BAR_COLUMNS,
    FAMILIES,
    FEATURE_NAMES,
    FEATURES,
    WARMUP_BARS,
    FeatureSpec,
    compute_features,
    describe,
)

__all__ = [
    "BAR_COLUMNS",
    "FAMILIES",
    "FEATURES",
    "FEATURE_NAMES",
    "HORIZONS",
    "LABEL_NAMES",
    "WARMUP_BARS",
    "FeatureInputError",
    "FeatureSpec",
    "FeatureStoreError",
    "compute_features",
    "compute_labels",
    "describe",
]
