"""Dagster alert sensors: a failed run (and a failed ERROR check in a run that succeeded) reaches a real webhook
receiver on 127.0.0.1 exactly once, however often the sensor ticks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from webhook_receiver import webhook_receiver

from orchestration.defs.ops.sensors import build_alert_sensors
from orchestration.errors import ConfigError
from orchestration.settings import Settings
from trader.alerts import Alerter


def _ticks(defs: dg.Definitions, name: str, instance: dg.DagsterInstance, cursor: str | None) -> str | None:
    sensor = defs.resolve_sensor_def(name) if hasattr(defs, "resolve_sensor_def") else defs.get_sensor_def(name)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def())
    return sensor.evaluate_tick(context).cursor


def test_alert_on_run_failure_a_failed_run_sends_exactly_one_notification(settings, monkeypatch):
    from orchestration.definitions import build_definitions
    from orchestration.defs.features.schedules import FEATURES_JOB

    with webhook_receiver() as hook:
        monkeypatch.setenv("ALPHALINE_ALERT_URLS", hook.url("dagster"))
        defs = build_definitions(Settings())
        with dg.instance_for_test() as instance:
            cursor = _ticks(defs, "alert_on_run_failure", instance, None)  # the first tick starts from now
            # A real job on a home without bars: bar_features fails ("marts.bars does not exist yet").
            result = defs.resolve_job_def(FEATURES_JOB).execute_in_process(instance=instance, raise_on_error=False)
            assert not result.success
            for _ in range(3):
                cursor = _ticks(defs, "alert_on_run_failure", instance, cursor)
            assert _ticks(defs, "alert_on_failed_checks", instance, None) is not None
    assert len(hook.received) == 1, hook.received
    note = hook.received[0]
    assert note["title"] == "Alphaline: features_job failed" and note["type"] == "failure" and note["path"] == "/dagster"
    assert f"run {result.run_id[:8]}" in note["message"] and "marts.bars does not exist yet" in note["message"]


def _check_defs(alerter: Alerter, *, blocking: bool) -> dg.Definitions:
    @dg.asset
    def prices() -> int:
        return 1

    @dg.asset_check(asset=prices, blocking=blocking, description="a check that always fails")
    def prices_positive() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, description="3 prices <= 0")

    @dg.asset(deps=[prices])
    def returns() -> int:
        return 2

    job = dg.define_asset_job("prices_job", selection=[prices, returns])
    return dg.Definitions(assets=[prices, returns], asset_checks=[prices_positive], jobs=[job],
                          sensors=build_alert_sensors(alerter))


@pytest.mark.parametrize("blocking", [True, False])
def test_alert_sensors_a_failed_error_check_is_reported_once_by_exactly_one_sensor(blocking):
    with webhook_receiver() as hook, dg.instance_for_test() as instance:
        defs = _check_defs(Alerter([hook.url()]), blocking=blocking)
        cursors = {name: _ticks(defs, name, instance, None) for name in ("alert_on_run_failure", "alert_on_failed_checks")}
        result = defs.resolve_job_def("prices_job").execute_in_process(instance=instance, raise_on_error=False)
        assert result.success is not blocking  # a blocking ERROR check fails its run; a non-blocking one does not
        for _ in range(2):
            cursors = {name: _ticks(defs, name, instance, c) for name, c in cursors.items()}
    assert len(hook.received) == 1, hook.received
    expected = "Alphaline: prices_job failed" if blocking else "Alphaline: 1 check(s) failed in prices_job"
    assert hook.received[0]["title"] == expected
    assert "prices:prices_positive: 3 prices <= 0" in hook.received[0]["message"]


def test_alert_url_setting_that_apprise_cannot_use_is_refused_without_echoing_it(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"^ALPHALINE_ALERT_URLS.1: 'slak://…' is not a URL apprise can send to"):
        Settings(home=tmp_path, alert_urls="json://127.0.0.1:9/a slak://T0/B0/SECRET").alert_url_list()
    code = "from orchestration.cli import run; run()"
    env = {"ALPHALINE_HOME": str(tmp_path / "home"), "PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path),
           "ALPHALINE_ALERT_URLS": "slak://T0/B0/SECRET"}
    proc = subprocess.run([sys.executable, "-c", code, "ingest", "--synthetic"], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "SECRET" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines() == ["error: ALPHALINE_ALERT_URLS.0: 'slak://…' is not a URL apprise can send to "
                                                "(unknown scheme or missing parts)"]
