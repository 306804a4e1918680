"""Ops domain: running unattended — alert sensors and drift checks."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.ops.checks import build_drift_checks
from orchestration.defs.ops.drift import Thresholds
from orchestration.defs.ops.sensors import build_alert_sensors
from orchestration.settings import Settings
from trader.alerts import Alerter


def thresholds(settings: Settings) -> Thresholds:
    """The drift thresholds of ``ALPHALINE_DRIFT_*``."""
    return Thresholds(psi_warn=settings.drift_psi_warn, psi_block=settings.drift_psi_block,
                      ks_warn=settings.drift_ks_warn, ks_block=settings.drift_ks_block)


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        sensors=build_alert_sensors(Alerter(settings.alert_url_list())),
        asset_checks=build_drift_checks(thresholds(settings), settings.drift_window_sessions),
    )


__all__ = ["build_defs", "thresholds"]
