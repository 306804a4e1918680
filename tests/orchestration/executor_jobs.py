"""A job each step process of Dagster's multiprocess executor can rebuild by module and name
(``dg.build_reconstructable_job("tests.orchestration.executor_jobs", "features_steps_job")``): the test modules
themselves are imported by pytest under another name, which a step process cannot import."""

from __future__ import annotations

import dagster as dg

#: The features job's assets without their checks (13 steps, ~95 s here with forkserver, ~270 s with spawn: the checks
#: are the same code under either executor; the test is about the executor and the storage).
STEPS = ("bar_features", "bar_labels", "feast_registry", "online_features")


def features_steps_job() -> dg.JobDefinition:
    """The features job's assets as a job each step process can rebuild (by module and name)."""
    from orchestration.definitions import build_definitions

    job = dg.define_asset_job("features_steps_job", selection=dg.AssetSelection.assets(*STEPS).without_checks())
    return dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[job])).resolve_job_def("features_steps_job")


