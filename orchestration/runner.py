"""Running a Dagster job from the command line: in-process, on the persistent instance, one line per step.

Dagster's and dbt's own output goes to ``$ALPHALINE_HOME/logs/<job>-<time>.log``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import sys
import time
import traceback
from typing import Any

import click

from orchestration.settings import Settings


def fail(message: str, code: int = 2) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _user_message(error: Any) -> str:
    """The last line of the innermost cause (the user's exception, not Dagster's wrapper), without a class path."""
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        return "failed"
    lines = (error.message or "").strip().splitlines()
    message = lines[-1] if lines else error.cls_name or "failed"
    # "dagster._core.definitions.events.Failure: text" → "text": a module path means nothing to a user, and our
    # own errors' messages are written for them. A builtin's name stays ("ValueError: ..." says it is a bug).
    prefix = re.match(r"^[\w]+(\.[\w]+)+: ", message)
    return message[prefix.end():] if prefix else message


class _Progress(logging.Handler):
    """Prints one line per Dagster step instead of Dagster's full event log."""

    def __init__(self, out: Any, log: Any = None) -> None:
        super().__init__(logging.DEBUG)
        self.out = out  # the terminal: stdout itself is redirected to the run log meanwhile
        self.log = log  # the run log: gets each failure's whole traceback, which the terminal shows one line of
        self.started: dict[str, float] = {}
        self.failures: list[str] = []

    def _say(self, text: str, colour: str | None = None) -> None:
        click.secho(text, fg=colour, file=self.out)

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None:
            return
        kind, step = event.event_type_value, event.step_key or ""
        if kind == "STEP_START":
            self.started[step] = time.monotonic()
            self._say(f"  … {step}")
        elif kind == "STEP_SUCCESS":
            self._say(f"  ✓ {step} ({time.monotonic() - self.started.get(step, time.monotonic()):.1f}s)")
        elif kind == "STEP_FAILURE":
            error = event.step_failure_data.error
            message = _user_message(error)
            self.failures.append(f"{step}: {message}")
            self._say(f"  ✗ {step}: {message}", "red")
            if self.log is not None and error is not None:
                self.log.write(f"\n=== step {step} failed ===\n{error.to_string()}\n")
                self.log.flush()
        elif kind == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            if not ev.passed:
                sev = getattr(ev.severity, "value", "ERROR")
                colour = "yellow" if sev == "WARN" else "red"
                self._say(f"    ! check {ev.asset_key.to_user_string()}:{ev.check_name} failed: {ev.description}", colour)


def run_job(job_name: str, *, tags: dict[str, str] | None = None, run_config: dict[str, Any] | None = None) -> Any:
    import dagster as dg

    from orchestration.definitions import build_definitions

    settings = Settings()
    handler = _Progress(sys.stdout)

    @dg.logger
    def progress(_init_context: Any) -> logging.Logger:
        log = logging.getLogger("alphaline.progress")
        log.handlers, log.propagate = [handler], False
        log.setLevel(logging.DEBUG)  # step events arrive at DEBUG
        return log

    defs = build_definitions(settings, loggers={"console": progress})
    job = defs.resolve_job_def(job_name)
    log_dir = settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{job_name}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.log"
    # dbt and Dagster's own loggers write to stdout/stderr: keep that in the run log.
    # A job's logger only starts when the run config names it.
    config = {**(run_config or {}), "loggers": {"console": {}}}
    with (
        open(log_path, "w") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
        dg.DagsterInstance.get() as instance,
    ):
        handler.log = log
        try:
            result = job.execute_in_process(instance=instance, tags=tags, run_config=config, raise_on_error=False)
        except BaseException:  # a failure outside any step (config, definitions): its traceback belongs in the log too
            log.write(traceback.format_exc())
            raise
        finally:
            handler.log = None
    click.echo(f"  log: {log_path}")
    checks = result.get_asset_check_evaluations()
    blocking_failed = [c for c in checks if not c.passed and getattr(c.severity, "value", "ERROR") == "ERROR"]
    click.echo(f"  run {result.run_id[:8]}: {'succeeded' if result.success and not blocking_failed else 'FAILED'}; "
               f"{sum(c.passed for c in checks)}/{len(checks)} checks passed")
    if not result.success or blocking_failed:
        # A blocking check's own description says what was wrong; the step that raised for it only names the check.
        detail = [f"{c.asset_key.to_user_string()}:{c.check_name}: {c.description}" for c in blocking_failed[:1]] or handler.failures[:1]
        fail(detail[0] if detail else "the run failed (see `make ui`)", code=1)
    return result


