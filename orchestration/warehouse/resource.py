"""The warehouse as a Dagster resource (its own module: the domain packages import it without a cycle)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from orchestration.warehouse import Session, Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse (:class:`~orchestration.warehouse.Warehouse`): a DuckDB file, or in the servers profile a
    PostgreSQL URL given as ``dg.EnvVar`` (the password never enters Dagster's config)."""

    location: str = Field(description="The DuckDB file, or the PostgreSQL URL (from the environment).")

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.location)

    @property
    def kind(self) -> str:
        return self.warehouse.kind

    @contextmanager
    def get_connection(self, *, read_only: bool = False) -> Iterator[Session]:
        """A :class:`~orchestration.warehouse.Session` for the block (DuckDB: the file is locked while it is open)."""
        with self.warehouse.connect(read_only=read_only) as session:
            yield session
