"""dbt in the Dagster process: :class:`InProcessDbtCliResource`, a ``DbtCliResource`` without subprocesses.

``DbtCliResource`` starts two processes per invocation: ``dbt --version`` (to learn the
version) and the dbt command itself, each importing dbt and its adapter again (seconds
each, more than ``dbt build`` spends running this project's models and tests). This
resource runs the command with dbt's programmatic entry point (``dbtRunner``) in a thread
of this process instead, and feeds dagster-dbt the same JSON event lines the subprocess
would print, so everything downstream of the process is dagster-dbt's own: ``--select``
from the asset selection, partial parsing, the event stream (each model an asset
materialisation, each dbt test an asset check), artifacts, errors. It also skips loading a
second adapter per command that only the optional column-metadata and row-count queries
use (``fetch_metadata=True`` loads it).

The swap is narrow: during :meth:`InProcessDbtCliResource.cli` only, dagster-dbt's
``subprocess.Popen`` is replaced by :class:`_DbtThread`. Where that cannot reproduce the
subprocess exactly (an environment variable it does not know how to pass), it starts the
real subprocess instead, so a dagster-dbt upgrade can make this slower but not wrong.

Example::

    dbt = InProcessDbtCliResource(project_dir=project)
    yield from dbt.cli(["build"], context=context).stream()   # as with DbtCliResource
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import queue
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

import orjson
from dagster_dbt import DbtCliResource
from dagster_dbt.core import dbt_cli_invocation
from packaging import version
from pydantic import Field

#: Environment variables dagster-dbt sets for its subprocess, as the dbt flags that say the same in this process.
_ENV_FLAGS = {
    "DBT_PROJECT_DIR": "--project-dir",
    "DBT_PROFILES_DIR": "--profiles-dir",
    "DBT_TARGET_PATH": "--target-path",
    "DBT_LOG_PATH": "--log-path",
    "DBT_LOG_FORMAT": "--log-format",
    "DBT_INDIRECT_SELECTION": "--indirect-selection",
}
_SWAP_LOCK = threading.Lock()
#: dbt keeps its flags, adapters and event manager in globals: one command at a time in a process (a second waits).
_RUN_LOCK = threading.Lock()


class InProcessDbtCliResource(DbtCliResource):
    """``DbtCliResource`` whose commands run in this process (see the module docstring); same API and events."""

    fetch_metadata: bool = Field(
        default=False,
        description="Give each command dagster-dbt's own adapter handle, which the event stream's fetch_column_metadata() "
        "and fetch_row_counts() query through (loading it costs about 0.7 s a command); off, they add no metadata.",
    )

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return super()._initialize_dbt_core_adapter(args) if self.fetch_metadata else None

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))  # not a `dbt --version` subprocess

    def cli(self, args: Sequence[str], **kwargs: Any) -> dbt_cli_invocation.DbtCliInvocation:
        with _SWAP_LOCK:
            real = dbt_cli_invocation.subprocess
            dbt_cli_invocation.subprocess = _SubprocessInProcess  # type: ignore[assignment]
            try:
                return super().cli(args, **kwargs)
            finally:
                dbt_cli_invocation.subprocess = real


def _flags_from_env(env: Mapping[str, str]) -> list[str] | None:
    """The dbt flags that give this process what ``env`` gives a subprocess; None if some setting has no flag here."""
    flags: list[str] = []
    for key, value in env.items():
        if not key.startswith("DBT_") or os.environ.get(key) == value:
            continue  # dbt reads the same from this process's environment
        if key in _ENV_FLAGS:
            flags += [_ENV_FLAGS[key], value]
        elif key == "DBT_SEND_ANONYMOUS_USAGE_STATS" and value.lower() == "false":
            flags.append("--no-send-anonymous-usage-stats")
        else:
            return None
    return flags


class _SubprocessInProcess:
    """Stands in for the ``subprocess`` module inside dagster-dbt's invocation while a command starts."""

    PIPE, STDOUT = subprocess.PIPE, subprocess.STDOUT

    @staticmethod
    def Popen(args: Sequence[str], *, env: Mapping[str, str], cwd: Any = None, **kwargs: Any) -> Any:
        flags = _flags_from_env(env)
        if flags is None:
            return subprocess.Popen(args, env=env, cwd=cwd, **kwargs)
        return _DbtThread(list(args), [*args[1:], *flags])


class _DbtThread:
    """The part of ``subprocess.Popen`` dagster-dbt uses, for a dbt command run by ``dbtRunner`` in a thread.

    ``stdout`` yields dbt's events as the JSON lines ``--log-format json`` prints (info level
    and above, as on the console); ``returncode`` follows dbt's exit codes (0 success, 1 a
    failed node, 2 an error).
    """

    def __init__(self, args: list[str], dbt_args: list[str]) -> None:
        self.args = args
        self.returncode: int | None = None
        self._lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.stdout = _Lines(self._lines)
        self._thread = threading.Thread(target=self._run, args=(dbt_args,), name="dbt", daemon=True)
        self._thread.start()

    def _run(self, dbt_args: list[str]) -> None:
        code = 2
        try:
            from dbt.cli.main import dbtRunner
            from dbt_common.events.functions import msg_to_dict

            def emit(msg: Any) -> None:
                if msg.info.level != "debug":
                    self._lines.put(orjson.dumps(msg_to_dict(msg), default=str))

            with _RUN_LOCK:
                try:  # --quiet: a console copy would repeat what dagster-dbt echoes from these events
                    result = dbtRunner(callbacks=[emit]).invoke([*dbt_args, "--quiet"])
                finally:
                    _release_duckdb()
            code = 0 if result.success else (2 if result.exception is not None else 1)
            if result.exception is not None:
                self._error(str(result.exception))
        except Exception as exc:  # reported like a crashed subprocess, never lost with the thread
            self._error(repr(exc))
        finally:
            self.returncode = code
            self._lines.put(None)

    def _error(self, message: str) -> None:
        self._lines.put(orjson.dumps({"info": {"level": "error", "msg": message, "name": "RunnerError"}, "data": {}}))

    def wait(self, timeout: float | None = None) -> int | None:
        self._thread.join(timeout)
        return self.returncode

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """A thread cannot be interrupted: the command finishes (``wait`` then returns)."""


class _Lines:
    """The event lines of a :class:`_DbtThread` as a read-once binary stream (iteration ends with the command)."""

    def __init__(self, lines: queue.SimpleQueue[bytes | None]) -> None:
        self._queue = lines
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        while not self.closed and (line := self._queue.get()) is not None:
            yield line
        self.closed = True

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True


def _release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open for the life of the process (a subprocess's exit closed it),
    so that other processes can open the warehouse again."""
    with contextlib.suppress(ImportError):
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager

        env = DuckDBConnectionManager._ENV  # no public way to reach the open database
        if env is not None and hasattr(env, "close"):
            env.close()
        DuckDBConnectionManager.close_all_connections()
