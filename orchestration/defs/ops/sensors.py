"""Alert sensors: a failed run, or a successful run with a failed ERROR check, sends one notification.

Both are Dagster run-status sensors (the daemon of ``make ui`` / ``dagster-daemon`` evaluates them; a
cursor in the instance means each run is reported once, however often the sensor ticks):

* ``alert_on_run_failure`` — any job's run that failed. A blocking check that fails with ERROR severity fails
  its run (the downstream assets do not run), so this message names the failed checks and their descriptions;
* ``alert_on_failed_checks`` — a run that *succeeded* while an ERROR-severity check failed (a non-blocking
  check, or a check-only run). WARN-severity results (drift warnings among them) stay in the UI, unsent.

Notifications go through :class:`trader.alerts.Alerter` (apprise) to ``ALPHALINE_ALERT_URLS``; with none set,
each sensor logs the alert it would have sent.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster._core.events import DagsterEventType

from trader.alerts import Alerter

_MAX_LINES = 5


def failed_checks(instance: dg.DagsterInstance, run_id: str, *, severity: str = "ERROR") -> list[str]:
    """``asset:check: description`` for each check of ``run_id`` that failed with ``severity``."""
    lines = []
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        ev = record.get_dagster_event().event_specific_data
        if not ev.passed and getattr(ev.severity, "value", "ERROR") == severity:
            lines.append(f"{ev.asset_key.to_user_string()}:{ev.check_name}: {ev.description or 'failed'}")
    return lines


def _where(run: Any) -> str:
    partition = run.tags.get("dagster/partition") or "-".join(
        v for k, v in sorted(run.tags.items()) if k.startswith("dagster/asset_partition_range_"))
    return f"run {run.run_id[:8]}" + (f", partition {partition}" if partition else "")


def _notify(context: Any, alerter: Alerter, title: str, lines: list[str]) -> None:
    body = "\n".join(lines[:_MAX_LINES] + ([f"... and {len(lines) - _MAX_LINES} more"] if len(lines) > _MAX_LINES else []))
    sent = alerter.send(title, body)
    context.log.info(f"alert {'sent' if sent else 'NOT sent'} ({alerter.describe()}): {title}")


def build_alert_sensors(alerter: Alerter) -> list[dg.SensorDefinition]:
    """The two alert sensors, sending through ``alerter``."""

    @dg.run_failure_sensor(name="alert_on_run_failure", default_status=dg.DefaultSensorStatus.RUNNING,
                           description="Sends one notification (apprise, ALPHALINE_ALERT_URLS) per failed run, naming "
                                       "the failed steps and blocking checks.")
    def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        checks = failed_checks(context.instance, run.run_id)
        steps = [f"step {e.step_key}: {_last_line(e)}" for e in context.get_step_failure_events()
                 if not (checks and "blocking asset check failed" in _last_line(e))]
        lines = [f"{_where(run)}: {context.failure_event.message or 'failed'}", *checks, *steps]
        _notify(context, alerter, f"Alphaline: {run.job_name} failed", lines)

    @dg.run_status_sensor(name="alert_on_failed_checks", run_status=dg.DagsterRunStatus.SUCCESS,
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Sends one notification per successful run in which an ERROR-severity check failed.")
    def alert_on_failed_checks(context: dg.RunStatusSensorContext) -> None:
        run = context.dagster_run
        checks = failed_checks(context.instance, run.run_id)
        if checks:
            _notify(context, alerter, f"Alphaline: {len(checks)} check(s) failed in {run.job_name}",
                    [f"{_where(run)} succeeded, but:", *checks])

    return [alert_on_run_failure, alert_on_failed_checks]


def _last_line(event: Any) -> str:
    """The step's error as a user reads it: the innermost cause's last line."""
    error = event.step_failure_data.error if event.step_failure_data else None
    while error is not None and error.cause is not None:
        error = error.cause
    lines = ((error.message if error else "") or "failed").strip().splitlines()
    return lines[-1] if lines else "failed"
