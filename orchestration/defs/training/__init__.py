"""Training domain: Feast training frame, walk-forward CV, gated ensemble, registry promotion, daily retrain."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.training.assets import (
    ensemble_candidate,
    model_evaluation,
    production_model,
    training_frame,
    walk_forward_predictions,
)
from orchestration.defs.training.checks import TRAINING_CHECKS
from orchestration.defs.training.schedules import build_jobs_and_schedules
from orchestration.defs.training.search import learner_search, learner_search_job


def build_defs() -> dg.Definitions:
    jobs, schedules = build_jobs_and_schedules()
    return dg.Definitions(
        assets=[training_frame, walk_forward_predictions, model_evaluation, ensemble_candidate, production_model, learner_search],
        asset_checks=TRAINING_CHECKS,
        jobs=[*jobs, learner_search_job],
        schedules=schedules,
    )


__all__ = ["build_defs"]
