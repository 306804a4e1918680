"""The warehouse as a Dagster resource (its own module: the domain packages import it without a cycle)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import dagster as dg
from pydantic import Field

from orchestration.warehouse import Session, Warehouse, WarehouseBusy


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse (:class:`~orchestration.warehouse.Warehouse`): a DuckDB file, or in the servers profile a
    PostgreSQL URL given as ``dg.EnvVar`` (the password never enters Dagster's config)."""

    location: str = Field(description="The DuckDB file, or the PostgreSQL URL (from the environment).")
    busy_wait_s: float = Field(default=60.0, description="How long to wait for a DuckDB file another process writes.")

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.location)

    @property
    def kind(self) -> str:
        return self.warehouse.kind

    @contextmanager
    def get_connection(self, *, read_only: bool = False) -> Iterator[Session]:
        """A :class:`~orchestration.warehouse.Session` for the block (DuckDB: the file is locked while it is open).

        A DuckDB file another process holds (a step of the same run under the multiprocess executor, the bar
        stream) is tried again with a growing pause for up to ``busy_wait_s``; then :class:`WarehouseBusy`.
        """
        deadline, pause = time.monotonic() + self.busy_wait_s, 0.1
        with ExitStack() as stack:
            while True:
                try:
                    session = stack.enter_context(self.warehouse.connect(read_only=read_only))
                    break
                except WarehouseBusy:
                    if time.monotonic() + pause > deadline:
                        raise
                    time.sleep(pause)
                    pause = min(pause * 2, 2.0)
            yield session
