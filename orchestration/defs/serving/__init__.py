"""Serving domain: which production model the prediction service answers with (``serving_deployment``)."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.serving.assets import SERVING_DEPLOYMENT, serving_deployment


def build_defs() -> dg.Definitions:
    return dg.Definitions(assets=[serving_deployment])


__all__ = ["SERVING_DEPLOYMENT", "build_defs"]
