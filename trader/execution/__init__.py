"""Execution algorithms: large orders go out as TWAP/VWAP child slices over the next bars (``execution`` in trader.yaml).

* :mod:`trader.execution.algos` — the volume profile, the participation test, the child schedule (pure);
* :mod:`trader.execution.parents` — the parent order, its row in ``parent_orders`` and its children's ids;
* :mod:`trader.execution.desk` — :class:`ExecutionDesk`, between sizing and routing in the runner's cycle.

Readers (``trader tca``) import only the light modules; the desk (store, risk engine) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trader.execution.algos import Slice, VolumeProfile, build_schedule, twap_schedule, volume_profiles, vwap_schedule
from trader.execution.parents import ParentOrder, ParentStatus, child_id, lineage, parent_of

if TYPE_CHECKING:
    from trader.execution.desk import ExecutionDesk

__all__ = ["ExecutionDesk", "ParentOrder", "ParentStatus", "Slice", "VolumeProfile", "build_schedule", "child_id", "lineage",
           "parent_of", "twap_schedule", "volume_profiles", "vwap_schedule"]


def __getattr__(name: str) -> Any:
    if name == "ExecutionDesk":
        from trader.execution.desk import ExecutionDesk

        return ExecutionDesk
    raise AttributeError(f"module 'trader.execution' has no attribute {name!r}")
