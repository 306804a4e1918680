"""Features domain: polars features and labels, the Feast registry and online store, their checks and schedule."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.features.assets import bar_features, bar_labels, feast_registry, online_features
from orchestration.defs.features.checks import FEATURE_CHECKS
from orchestration.defs.features.schedules import build_jobs_and_schedules


def build_defs() -> dg.Definitions:
    jobs, schedules = build_jobs_and_schedules()
    return dg.Definitions(
        assets=[bar_features, bar_labels, feast_registry, online_features],
        asset_checks=FEATURE_CHECKS,
        jobs=jobs,
        schedules=schedules,
    )


__all__ = ["build_defs"]
