"""Ops domain: running unattended — alert sensors and drift checks."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.ops.sensors import build_alert_sensors
from orchestration.settings import Settings
from trader.alerts import Alerter


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(sensors=build_alert_sensors(Alerter(settings.alert_url_list())))


__all__ = ["build_defs"]
