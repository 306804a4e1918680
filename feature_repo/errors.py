"""Errors a user can cause in the feature layer (each message names the input and the reason).

::

    ValueError
    └── FeatureInputError      bars that cannot produce features (missing columns, empty universe)
    RuntimeError
    └── FeatureStoreError      the store cannot answer yet (nothing written, unknown config)
"""


class FeatureInputError(ValueError):
    """The bars handed to the feature code cannot produce features."""


class FeatureStoreError(RuntimeError):
    """The feature store cannot answer (no features written yet, unknown config, ...)."""
